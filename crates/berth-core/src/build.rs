//! Builds (`spec.build`): the desired build hash of every Container that declares one.
//!
//! The engine adapter walks each build context (I/O) and hands the context digests in as data
//! ([`ContextDigests`]); [`with_contexts`] turns them into each Container's desired build hash
//! ([`crate::hash::build_hash`]: context digest, Dockerfile, args, target). A Container's
//! desired hash (`DesiredContainer::hash`, the `berth.dev/spec-hash` label of its containers
//! and the retry-book key) then becomes `<spec hash>+<build hash>`, so that:
//!
//! - a rebuilt image (another build hash) replaces the containers through the normal update
//!   strategy (rolling update, rollback, `progressDeadlineSeconds`), like a spec change;
//! - a failed build backs off per (object, spec hash + build hash): fixing the Dockerfile or
//!   the context resets the back-off;
//! - the spec hash itself (golden-tested) does not depend on the context: a Container without
//!   `build` keeps exactly the hash it had.
//!
//! Whether to build is decided in the image phase of [`crate::plan`]: when the image its tag
//! names is missing, or carries another `berth.dev/build-hash` label than the desired one.

use std::collections::{BTreeMap, BTreeSet};

use berth_api::ObjectKey;

use crate::desired::DesiredState;

/// Where a build reads its context: the context directory (absolute) and the Dockerfile
/// (relative to it), which decide which files are kept (`<Dockerfile>.dockerignore`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ContextKey {
    /// The context directory.
    pub context: String,
    /// The Dockerfile, relative to the context (defaulted).
    pub dockerfile: String,
}

impl ContextKey {
    /// The context key of `build`.
    pub fn of(build: &berth_api::Build) -> ContextKey {
        ContextKey {
            context: build.context.clone(),
            dockerfile: build.dockerfile_or_default().to_string(),
        }
    }
}

/// Context digests (`sha256:…`) as the engine adapter read them, or why a context cannot be
/// read (missing directory, missing Dockerfile, symlink loop, over the size limit).
pub type ContextDigests = BTreeMap<ContextKey, Result<String, String>>;

/// A Container's build, as planned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DesiredBuild {
    /// `spec.build`, with an absolute context.
    pub spec: berth_api::Build,
    /// What reading the context gave.
    pub input: BuildInput,
}

/// The state of a build's input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BuildInput {
    /// The context was not read (the caller passed no digest for it).
    Unread,
    /// The desired build hash (`v1-…`).
    Ready(String),
}

impl DesiredBuild {
    /// The desired build hash, once the context was read.
    pub fn hash(&self) -> Option<&str> {
        match &self.input {
            BuildInput::Ready(h) => Some(h),
            BuildInput::Unread => None,
        }
    }
}

/// The desired hash of a Container with a build: `<spec hash>+<build hash>`.
pub fn combined_hash(spec_hash: &str, build_hash: &str) -> String {
    format!("{spec_hash}+{build_hash}")
}

/// Every context the desired state's builds read.
pub fn context_keys(desired: &DesiredState) -> BTreeSet<ContextKey> {
    desired
        .containers
        .values()
        .filter_map(|dc| dc.build.as_ref())
        .map(|b| ContextKey::of(&b.spec))
        .collect()
}

/// `desired` with each build's hash from `digests`: a Container whose context was read gets
/// its build hash and the combined desired hash; one whose context cannot be read is blocked
/// (its running containers are left alone, as for an unknown reference), with the reason
/// naming `spec.build.context`. Containers without `build` are unchanged.
pub fn with_contexts(desired: &DesiredState, digests: &ContextDigests) -> DesiredState {
    let mut out = desired.clone();
    let mut unreadable: Vec<(ObjectKey, String)> = Vec::new();
    for (key, dc) in out.containers.iter_mut() {
        let Some(build) = dc.build.as_mut() else {
            continue;
        };
        match digests.get(&ContextKey::of(&build.spec)) {
            Some(Ok(digest)) => {
                let h = crate::hash::build_hash(digest, &build.spec);
                dc.hash = combined_hash(&dc.hash, &h);
                build.input = BuildInput::Ready(h);
            }
            Some(Err(why)) => unreadable.push((key.clone(), format!("spec.build.context: {why}"))),
            None => {}
        }
    }
    for (key, why) in unreadable {
        out.containers.remove(&key);
        out.blocked.insert(key, why);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::DesiredContainer;
    use berth_api::Kind;

    fn desired_with_build(context: &str) -> DesiredState {
        let mut d = DesiredState::default();
        let dc = DesiredContainer {
            replicas: 1,
            container_name: None,
            restart_policy: Default::default(),
            pull_policy: Default::default(),
            image_pull_secrets: vec![],
            networks: vec![],
            volumes: vec![],
            depends_on: vec![],
            network_target: None,
            probes: Default::default(),
            rollout: Default::default(),
            config: Default::default(),
            hash: "v1-spec".into(),
            build: Some(DesiredBuild {
                spec: berth_api::Build {
                    context: context.into(),
                    ..Default::default()
                },
                input: BuildInput::Unread,
            }),
        };
        d.containers
            .insert(ObjectKey::new(Kind::Container, "default", "app"), dc);
        d
    }

    #[test]
    fn a_read_context_sets_the_build_hash_and_the_combined_hash() {
        let d = desired_with_build("/srv/app");
        let keys = context_keys(&d);
        assert_eq!(keys.len(), 1);
        let digests: ContextDigests = keys
            .into_iter()
            .map(|k| (k, Ok("sha256:00".to_string())))
            .collect();
        let out = with_contexts(&d, &digests);
        let dc = out.containers.values().next().expect("container");
        let h = dc.build.as_ref().and_then(|b| b.hash()).expect("hash");
        assert_eq!(dc.hash, format!("v1-spec+{h}"));
        assert!(h.starts_with("v1-"));
    }

    #[test]
    fn an_unreadable_context_blocks_the_object_naming_the_field() {
        let d = desired_with_build("/nope");
        let digests: ContextDigests = context_keys(&d)
            .into_iter()
            .map(|k| {
                (
                    k,
                    Err("build context /nope: expected a directory".to_string()),
                )
            })
            .collect();
        let out = with_contexts(&d, &digests);
        assert!(out.containers.is_empty());
        let why = out.blocked.values().next().expect("blocked");
        assert!(
            why.starts_with("spec.build.context: build context /nope"),
            "{why}"
        );
    }
}
