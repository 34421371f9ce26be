//! Image builds (`spec.build`) through the engine's **classic builder** (`POST /build` with the
//! context as a tar, builder version 1).
//!
//! Why not BuildKit: through the Engine API, BuildKit needs a gRPC session on a hijacked
//! connection (`/session`) that serves the context and credentials to the daemon, and on
//! Engine 20.10 it must be enabled in the daemon's configuration or per request; the classic
//! builder works on every Engine ≥ 20.10 with no set-up and takes the tar berth already packs.
//! The price: no parallel stages, no `RUN --mount`, and Docker ≥ 23 prints a deprecation notice
//! for it (it is still served through the API).
//!
//! The builder's JSON stream is parsed into typed progress ([`BuildEvent::Step`], "step N/M")
//! and, on failure, a [`BuildFailure`] naming the failing step, the builder's error and the
//! last lines of its output.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use berth_api::{Build, PullPolicy};
use berth_core::labels;
use bollard::auth::DockerCredentials;
use bollard::errors::Error as BollardError;
use bollard::models::BuildInfo;
use bollard::query_parameters::{BuildImageOptions, BuilderVersion, TagImageOptionsBuilder};
use futures_util::StreamExt;

use super::{DockerEngine, EngineError, api, split_reference};
use crate::context::{Context, ContextError};
use crate::credentials;

/// Label on a built image: the tags it was built for, comma-separated (old images of a tag are
/// found by it once the tag names a newer one).
pub const BUILD_TAGS: &str = "berth.dev/build-tags";

/// Lines of builder output kept for a failure report.
pub const OUTPUT_TAIL: usize = 30;

/// One step of a Dockerfile, as the classic builder announces it (`Step 2/5 : RUN make`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuildStep {
    /// The step's number, from 1.
    pub number: u32,
    /// Steps in the build.
    pub total: u32,
    /// The instruction as the builder prints it (`RUN make`).
    pub instruction: String,
}

impl BuildStep {
    /// Parses the builder's `Step N/M : INSTRUCTION` line.
    pub fn parse(line: &str) -> Option<BuildStep> {
        let rest = line.trim().strip_prefix("Step ")?;
        let (counts, instruction) = rest.split_once(" : ")?;
        let (n, m) = counts.split_once('/')?;
        Some(BuildStep {
            number: n.trim().parse().ok()?,
            total: m.trim().parse().ok()?,
            instruction: instruction.trim().to_string(),
        })
    }
}

impl fmt::Display for BuildStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "step {}/{} ({})",
            self.number, self.total, self.instruction
        )
    }
}

/// Something the builder reported.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BuildEvent {
    /// A step started.
    Step(BuildStep),
    /// A line of output (of the current step's command, or the builder's own).
    Output(String),
}

/// Progress of one build, for a display (`berth apply` on a terminal).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuildProgress {
    /// The tag being built (the first one).
    pub tag: String,
    /// What happened.
    pub event: BuildEvent,
}

/// Why a build failed: the failing step (when the builder got to one), its error and the last
/// [`OUTPUT_TAIL`] lines of output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuildFailure {
    /// The step that failed; `None` when the build failed before its first step (a Dockerfile
    /// syntax error, say).
    pub step: Option<BuildStep>,
    /// The builder's error (`The command '/bin/sh -c false' returned a non-zero code: 1`).
    pub message: String,
    /// The last lines of output, oldest first.
    pub output: Vec<String>,
}

impl fmt::Display for BuildFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.step {
            Some(s) => write!(f, "{s} failed: {}", self.message),
            None => write!(f, "{}", self.message),
        }
    }
}

/// Reads the builder's stream: the current step, the tail of the output, the built image ID.
#[derive(Debug, Default)]
pub struct BuildLog {
    step: Option<BuildStep>,
    tail: VecDeque<String>,
    image_id: Option<String>,
}

impl BuildLog {
    /// Takes one message of the stream; returns what it reported.
    pub fn feed(&mut self, info: &BuildInfo) -> Vec<BuildEvent> {
        if let Some(id) = info.aux.as_ref().and_then(|a| a.id.clone()) {
            self.image_id = Some(id);
        }
        let Some(text) = info.stream.as_deref() else {
            return Vec::new();
        };
        let mut events = Vec::new();
        for line in text.lines().map(str::trim_end).filter(|l| !l.is_empty()) {
            if self.tail.len() == OUTPUT_TAIL {
                self.tail.pop_front();
            }
            self.tail.push_back(line.to_string());
            match BuildStep::parse(line) {
                Some(step) => {
                    self.step = Some(step.clone());
                    events.push(BuildEvent::Step(step));
                }
                None => events.push(BuildEvent::Output(line.to_string())),
            }
        }
        events
    }

    /// The failure of the build at this point, with the builder's `message`.
    pub fn failure(&self, message: impl Into<String>) -> BuildFailure {
        BuildFailure {
            step: self.step.clone(),
            message: message.into().trim().to_string(),
            output: self.tail.iter().cloned().collect(),
        }
    }

    /// The ID of the built image (`sha256:…`), once the builder reported it.
    pub fn image_id(&self) -> Option<&str> {
        self.image_id.as_deref()
    }
}

/// The images named by the `FROM` lines of a Dockerfile, without stage references and
/// `scratch` (for their registries' credentials). Build arguments are not expanded: a `FROM`
/// with `$` is left out.
pub fn from_images(dockerfile: &str) -> Vec<String> {
    let mut stages: Vec<String> = Vec::new();
    let mut images = Vec::new();
    for line in dockerfile.lines() {
        let mut words = line.split_whitespace();
        if !words.next().is_some_and(|w| w.eq_ignore_ascii_case("FROM")) {
            continue;
        }
        let rest: Vec<&str> = words.filter(|w| !w.starts_with("--")).collect();
        let Some(image) = rest.first() else { continue };
        if let [_, as_, name, ..] = rest.as_slice()
            && as_.eq_ignore_ascii_case("AS")
        {
            stages.push(name.to_ascii_lowercase());
        }
        let lower = image.to_ascii_lowercase();
        if image.contains('$') || lower == "scratch" || stages[..].contains(&lower) {
            continue;
        }
        if !images.contains(&image.to_string()) {
            images.push(image.to_string());
        }
    }
    images
}

/// Registry credentials for the `FROM` images of the Dockerfile at `path`, keyed by registry
/// (the builder's `X-Registry-Config`). Blocking (files, helper programs).
fn registry_config(
    path: &Path,
    pull_secrets: &[String],
) -> Result<HashMap<String, DockerCredentials>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let files: Vec<PathBuf> = pull_secrets.iter().map(PathBuf::from).collect();
    let mut out = HashMap::new();
    for image in from_images(&text) {
        if let Some(c) = credentials::credentials_for(&image, &files).map_err(|e| e.to_string())? {
            out.insert(credentials::registry_key(&image), c);
        }
    }
    Ok(out)
}

/// A walked and packed context, read on a blocking thread.
struct Packed {
    tar: Vec<u8>,
    digest: String,
    credentials: HashMap<String, DockerCredentials>,
}

/// What a build needs besides its [`Build`].
#[derive(Clone, Copy, Debug)]
pub struct BuildRequest<'a> {
    /// Tags the image gets; the first is built, the others tagged.
    pub tags: &'a [String],
    /// berth's labels (the build hash is added).
    pub labels: &'a BTreeMap<String, String>,
    /// How `FROM` images are resolved.
    pub policy: PullPolicy,
    /// Credential files for the `FROM` images' registries.
    pub pull_secrets: &'a [String],
}

impl DockerEngine {
    /// The lock that keeps builds of one context from running at once.
    fn context_lock(&self, context: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self
            .build_locks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        locks.entry(context.to_string()).or_default().clone()
    }

    /// Builds `build` and tags it `req.tags`, at most one build per context at a time. The
    /// context is read again here (walk, digest, tar), and the image is labelled with the build
    /// hash of what was sent; when the first tag already names an image with that label (a
    /// build of the same input finished meanwhile) nothing is built. Progress goes to the
    /// engine's progress sink, if any. Returns the image ID.
    ///
    /// # Errors
    /// [`EngineError::Context`] when the context cannot be read; [`EngineError::Build`] naming
    /// the failing step.
    pub async fn build_image(
        &self,
        build: &Build,
        req: BuildRequest<'_>,
    ) -> Result<String, EngineError> {
        let Some(first) = req.tags.first() else {
            return Ok(String::new());
        };
        let lock = self.context_lock(&build.context);
        let _one_at_a_time = lock.lock().await;
        let packed = self.pack(build, first, req.pull_secrets).await?;
        let hash = berth_core::hash::build_hash(&packed.digest, build);
        if let Some(id) = self.built_as(first, &hash).await {
            return self.tag_all(&id, req.tags).await.map(|()| id);
        }
        let mut image_labels = req.labels.clone();
        image_labels.insert(labels::BUILD_HASH.to_string(), hash);
        image_labels.insert(BUILD_TAGS.to_string(), req.tags.join(","));
        let opts = BuildImageOptions {
            dockerfile: build.dockerfile_or_default().to_string(),
            t: Some(first.clone()),
            rm: true,
            forcerm: true,
            pull: (req.policy == PullPolicy::Always).then(|| "1".to_string()),
            buildargs: (!build.args.is_empty()).then(|| build.args.clone().into_iter().collect()),
            labels: Some(image_labels.into_iter().collect()),
            target: build.target.clone().unwrap_or_default(),
            version: BuilderVersion::BuilderV1,
            ..Default::default()
        };
        let creds = (!packed.credentials.is_empty()).then_some(packed.credentials);
        self.count();
        let mut stream =
            self.docker
                .build_image(opts, creds, Some(bollard::body_full(packed.tar.into())));
        let mut log = BuildLog::default();
        let fail = |log: &BuildLog, message: String| EngineError::Build {
            tag: first.clone(),
            failure: log.failure(message),
        };
        while let Some(item) = stream.next().await {
            let info = match item {
                Ok(info) => info,
                Err(BollardError::DockerStreamError { error }) => return Err(fail(&log, error)),
                Err(e) => return Err(fail(&log, e.to_string())),
            };
            for event in log.feed(&info) {
                self.report(first, event);
            }
        }
        let id = match log.image_id() {
            Some(id) => id.to_string(),
            None => self.image_id(first).await?,
        };
        self.tag_all(&id, &req.tags[1..]).await?;
        if let Err(e) = self.collect_garbage(req.tags, req.labels).await {
            tracing::warn!(tag = %first, error = %e, "removing old built images failed");
        }
        Ok(id)
    }

    /// Removes the images berth built earlier for `tags` that nothing uses any more: untagged
    /// images of this instance (`labels`) whose `berth.dev/build-tags` label names one of
    /// `tags`, used by no container (in any state), except the newest per tag — the image the
    /// tag named before this build, kept for a rollback.
    async fn collect_garbage(
        &self,
        tags: &[String],
        labels: &BTreeMap<String, String>,
    ) -> Result<(), EngineError> {
        let mut label_filters: Vec<String> =
            labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        label_filters.push(BUILD_TAGS.to_string());
        let filters = HashMap::from([
            ("label".to_string(), label_filters),
            ("dangling".to_string(), vec!["true".to_string()]),
        ]);
        let opts = bollard::query_parameters::ListImagesOptionsBuilder::default()
            .filters(&filters)
            .build();
        self.calls
            .fetch_add(2, std::sync::atomic::Ordering::Relaxed);
        let mut images = self
            .docker
            .list_images(Some(opts))
            .await
            .map_err(api("list built images"))?;
        let all = bollard::query_parameters::ListContainersOptionsBuilder::default()
            .all(true)
            .build();
        let used: std::collections::BTreeSet<String> = self
            .docker
            .list_containers(Some(all))
            .await
            .map_err(api("list containers"))?
            .into_iter()
            .filter_map(|c| c.image_id)
            .collect();
        images.sort_by_key(|i| std::cmp::Reverse(i.created));
        for tag in tags {
            let mut older = images.iter().filter(|i| {
                i.labels
                    .get(BUILD_TAGS)
                    .is_some_and(|t| t.split(',').any(|t| t == tag))
            });
            // The newest is the previous image of the tag: kept for a rollback.
            older.next();
            for img in older.filter(|i| !used.contains(&i.id)) {
                self.count();
                match self
                    .docker
                    .remove_image(
                        &img.id,
                        None::<bollard::query_parameters::RemoveImageOptions>,
                        None,
                    )
                    .await
                {
                    Ok(_) => {
                        tracing::info!(tag = %tag, image = %img.id, "removed an old built image")
                    }
                    Err(e) => tracing::debug!(image = %img.id, error = %e, "old built image kept"),
                }
            }
        }
        Ok(())
    }

    /// Walks and packs the context and reads the `FROM` credentials, on a blocking thread.
    async fn pack(
        &self,
        build: &Build,
        tag: &str,
        pull_secrets: &[String],
    ) -> Result<Packed, EngineError> {
        let (root, dockerfile) = (PathBuf::from(&build.context), build.dockerfile_or_default());
        let dockerfile = dockerfile.to_string();
        let secrets = pull_secrets.to_vec();
        let context_error = |source: ContextError| EngineError::Context {
            tag: tag.to_string(),
            source,
        };
        let read = tokio::task::spawn_blocking(move || {
            let ctx = Context::walk(&root, &dockerfile)?;
            let tar = ctx.tar()?;
            let creds = registry_config(&root.join(&ctx.dockerfile), &secrets);
            Ok::<_, ContextError>((tar, ctx.digest, creds))
        })
        .await
        .map_err(|e| EngineError::Build {
            tag: tag.to_string(),
            failure: BuildLog::default().failure(format!("reading the context: {e}")),
        })?;
        let (tar, digest, creds) = read.map_err(context_error)?;
        let credentials = creds.map_err(|message| EngineError::Pull {
            image: tag.to_string(),
            message: format!("credentials for the FROM images: {message}"),
        })?;
        Ok(Packed {
            tar,
            digest,
            credentials,
        })
    }

    /// The ID of the image `tag` names when its build-hash label is `hash`.
    async fn built_as(&self, tag: &str, hash: &str) -> Option<String> {
        self.count();
        let img = self.docker.inspect_image(tag).await.ok()?;
        let label = img
            .config
            .as_ref()?
            .labels
            .as_ref()?
            .get(labels::BUILD_HASH)?;
        (label == hash).then_some(img.id?)
    }

    async fn image_id(&self, tag: &str) -> Result<String, EngineError> {
        self.count();
        let img = self
            .docker
            .inspect_image(tag)
            .await
            .map_err(api(format!("inspect built image {tag}")))?;
        Ok(img.id.unwrap_or_default())
    }

    /// Gives image `id` every tag of `tags`.
    async fn tag_all(&self, id: &str, tags: &[String]) -> Result<(), EngineError> {
        for t in tags {
            let (repo, tag) = split_reference(t);
            let opts = TagImageOptionsBuilder::default()
                .repo(repo)
                .tag(tag)
                .build();
            self.count();
            self.docker
                .tag_image(id, Some(opts))
                .await
                .map_err(api(format!("tag image {t}")))?;
        }
        Ok(())
    }

    fn report(&self, tag: &str, event: BuildEvent) {
        if let Some(tx) = &self.build_progress {
            let _ = tx.send(BuildProgress {
                tag: tag.to_string(),
                event,
            });
        }
    }

    /// The local image each of `tags` names, with its build-hash label (what `plan` compares
    /// with the desired build hash). Tags missing locally are left out.
    pub async fn built_images<'a>(
        &self,
        tags: impl IntoIterator<Item = &'a str>,
    ) -> BTreeMap<String, berth_core::ObservedImage> {
        let tags: Vec<&str> = tags.into_iter().collect();
        self.calls
            .fetch_add(tags.len() as u64, std::sync::atomic::Ordering::Relaxed);
        let found =
            futures_util::future::join_all(tags.iter().map(|t| self.docker.inspect_image(t))).await;
        tags.into_iter()
            .zip(found)
            .filter_map(|(t, r)| {
                let img = r.ok()?;
                let build_hash = img
                    .config
                    .as_ref()
                    .and_then(|c| c.labels.as_ref())
                    .and_then(|l| l.get(labels::BUILD_HASH).cloned());
                Some((
                    t.to_string(),
                    berth_core::ObservedImage {
                        id: img.id?,
                        build_hash,
                    },
                ))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(text: &str) -> BuildInfo {
        BuildInfo {
            stream: Some(text.to_string()),
            ..Default::default()
        }
    }

    #[test]
    fn steps_and_failures_are_typed() {
        let mut log = BuildLog::default();
        assert_eq!(
            log.feed(&stream("Step 1/3 : FROM berth-test/busybox:latest\n")),
            [BuildEvent::Step(BuildStep {
                number: 1,
                total: 3,
                instruction: "FROM berth-test/busybox:latest".into()
            })]
        );
        log.feed(&stream(" ---> 0353bb08a270\n"));
        log.feed(&stream("Step 2/3 : RUN false\n"));
        log.feed(&stream(" ---> Running in 4f3e\n"));
        let f = log.failure("The command '/bin/sh -c false' returned a non-zero code: 1\n");
        assert_eq!(
            f.to_string(),
            "step 2/3 (RUN false) failed: The command '/bin/sh -c false' returned a non-zero code: 1"
        );
        assert_eq!(
            f.output.last().map(String::as_str),
            Some(" ---> Running in 4f3e")
        );
        assert_eq!(BuildStep::parse("Successfully built 0353bb08a270"), None);
    }

    #[test]
    fn output_keeps_the_last_lines() {
        let mut log = BuildLog::default();
        for i in 0..100 {
            log.feed(&stream(&format!("line {i}\n")));
        }
        let f = log.failure("x");
        assert_eq!(f.output.len(), OUTPUT_TAIL);
        assert_eq!(f.output[0], format!("line {}", 100 - OUTPUT_TAIL));
        assert_eq!(f.step, None);
        assert_eq!(f.to_string(), "x");
    }

    #[test]
    fn from_images_skips_stages_scratch_and_arguments() {
        let df = "ARG V=1\nFROM --platform=linux/amd64 golang:1.22 AS build\nRUN make\nFROM build AS test\nfrom scratch\nFROM registry.example:5000/base:$V\nFROM registry.example:5000/run:1\n";
        assert_eq!(
            from_images(df),
            ["golang:1.22", "registry.example:5000/run:1"]
        );
    }
}
