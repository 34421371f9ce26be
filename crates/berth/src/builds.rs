//! Builds (`spec.build`) for the agent, `apply` and `diff`: the build contexts are read (walk
//! and digest, on blocking threads) before each pass and handed to the pure core as data
//! ([`berth_core::build::with_contexts`]); the tags of built images are observed with their
//! build-hash labels; `apply` follows a build's progress.

use std::borrow::Cow;
use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use berth_core::DesiredState;
use berth_core::build::{ContextDigests, context_keys};
use berth_engine::context::Context;
use berth_engine::{BuildEvent, BuildProgress};
use tokio::sync::mpsc;

use crate::progress::StderrLines;

/// Reads every build context of `desired`: its digest, or why it cannot be read.
pub async fn read_contexts(desired: &DesiredState) -> ContextDigests {
    let keys = context_keys(desired);
    if keys.is_empty() {
        return ContextDigests::new();
    }
    let walked = tokio::task::spawn_blocking(move || {
        keys.into_iter()
            .map(|k| {
                let r = Context::walk(&PathBuf::from(&k.context), &k.dockerfile)
                    .map(|c| c.digest)
                    .map_err(|e| e.to_string());
                (k, r)
            })
            .collect::<ContextDigests>()
    })
    .await;
    walked.unwrap_or_default()
}

/// `desired` with the build hash of every build whose context was read (borrowed unchanged
/// when nothing is built).
pub async fn with_contexts(desired: &DesiredState) -> Cow<'_, DesiredState> {
    let digests = read_contexts(desired).await;
    if digests.is_empty() {
        Cow::Borrowed(desired)
    } else {
        Cow::Owned(berth_core::build::with_contexts(desired, &digests))
    }
}

/// The tags of the desired state's built images.
pub fn build_tags(desired: &DesiredState) -> Vec<&str> {
    let mut tags: Vec<&str> = desired
        .containers
        .values()
        .filter(|dc| dc.build.is_some())
        .map(|dc| dc.config.image.as_str())
        .collect();
    tags.sort_unstable();
    tags.dedup();
    tags
}

/// The builder's output of the builds `apply` ran, per (first) tag: the last lines, for a
/// failure report.
#[derive(Clone, Default)]
pub struct BuildOutput {
    lines: Arc<Mutex<BTreeMap<String, VecDeque<String>>>>,
}

impl BuildOutput {
    /// Follows the progress of builds: prints each step ("step N/M") through `terminal` (on
    /// standard error, above `apply`'s progress line) when it is given, and keeps the last
    /// lines of output per tag.
    pub fn follow(
        mut rx: mpsc::UnboundedReceiver<BuildProgress>,
        terminal: Option<StderrLines>,
    ) -> BuildOutput {
        let out = BuildOutput::default();
        let lines = out.lines.clone();
        tokio::spawn(async move {
            while let Some(p) = rx.recv().await {
                let line = match &p.event {
                    BuildEvent::Step(s) => {
                        if let Some(lines) = &terminal {
                            lines.println(&format!("building {}: {s}", p.tag));
                        }
                        format!("{s}")
                    }
                    BuildEvent::Output(l) => l.clone(),
                };
                let mut all = lines
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                let tail = all.entry(p.tag).or_default();
                if tail.len() == berth_engine::BUILD_OUTPUT_TAIL {
                    tail.pop_front();
                }
                tail.push_back(line);
            }
        });
        out
    }

    /// The last lines of output of the build of `tag`.
    pub fn tail(&self, tag: &str) -> Vec<String> {
        let all = self
            .lines
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        all.get(tag)
            .map(|t| t.iter().cloned().collect())
            .unwrap_or_default()
    }
}
