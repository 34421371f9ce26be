//! Engine labels and names: how berth recognises its own objects after a restart.
//!
//! Every engine object berth creates carries [`MANAGED_BY`]`=berth`, the agent's [`INSTANCE`]
//! name, plus its kind, namespace, name, spec hash and (containers) replica index. An agent
//! manages only objects carrying both labels with its own instance name; everything else —
//! unlabelled objects and other instances' objects — is never changed or removed.
//!
//! Engine names (documented in the README):
//! - network `<namespace>_<name>`, volume `<namespace>_<name>`;
//! - container `<namespace>_<name>_<replica>` (replica index from 0), or `containerName` when set.
//!
//! Object names are DNS-1123 subdomains and namespaces DNS-1123 labels, neither containing `_`,
//! so generated names never collide with each other.

use std::collections::BTreeMap;

use berth_api::{Kind, ObjectKey};

/// Label marking an engine object as berth's; value [`MANAGED_BY_VALUE`].
pub const MANAGED_BY: &str = "berth.dev/managed-by";
/// Value of [`MANAGED_BY`].
pub const MANAGED_BY_VALUE: &str = "berth";
/// Label holding the name of the berth instance (agent) that owns the object; default
/// [`DEFAULT_INSTANCE`]. Several instances on one host (tests, split ownership) never touch
/// each other's objects.
pub const INSTANCE: &str = "berth.dev/instance";
/// Instance name used when none is configured.
pub const DEFAULT_INSTANCE: &str = "default";
/// Label holding the object's kind (`Container`, `Network`, `Volume`).
pub const KIND: &str = "berth.dev/kind";
/// Label holding `metadata.namespace`.
pub const NAMESPACE: &str = "berth.dev/namespace";
/// Label holding `metadata.name`.
pub const NAME: &str = "berth.dev/name";
/// Label holding a container's replica index (decimal, from 0).
pub const REPLICA: &str = "berth.dev/replica";
/// Label holding the versioned spec hash (`v1-<16 hex digits>`).
pub const SPEC_HASH: &str = "berth.dev/spec-hash";
/// Label holding a volume's reclaim policy at creation (`Retain` or `Delete`).
pub const RECLAIM_POLICY: &str = "berth.dev/reclaim-policy";
/// Label on an image berth built: the build hash of its input (context digest, Dockerfile,
/// args, target); a rebuild is due when it differs from the desired one.
pub const BUILD_HASH: &str = "berth.dev/build-hash";

/// Engine name of a network.
pub fn network_name(namespace: &str, name: &str) -> String {
    format!("{namespace}_{name}")
}

/// Engine name of a volume.
pub fn volume_name(namespace: &str, name: &str) -> String {
    format!("{namespace}_{name}")
}

/// The tag of the image built for a Container without `image` (`spec.build`):
/// `berth.local/<namespace>/<name>:latest` for the [`DEFAULT_INSTANCE`], and
/// `berth.local/<instance>/<namespace>/<name>:latest` for any other, so that two instances on one
/// host that build an object of the same name never overwrite each other's image. The `.local`
/// registry host means it can never be pulled from Docker Hub by mistake; the build hash is not
/// part of it (it is a label on the image), so a rebuild is not a spec change. An instance name
/// is a DNS-1123 label, a valid repository path component, and namespaces and names hold no `/`,
/// so the two shapes never name the same image.
pub fn build_tag(instance: &str, namespace: &str, name: &str) -> String {
    if instance == DEFAULT_INSTANCE {
        format!("berth.local/{namespace}/{name}:latest")
    } else {
        format!("berth.local/{instance}/{namespace}/{name}:latest")
    }
}

/// Engine name of a container replica: `containerName` if given, else `<namespace>_<name>_<replica>`.
pub fn container_name(key: &ObjectKey, replica: u32, fixed: Option<&str>) -> String {
    match fixed {
        Some(n) => n.to_string(),
        None => format!("{}_{}_{replica}", key.namespace, key.name),
    }
}

/// Engine name of a replica's surge container during a start-first rolling update
/// (`<name>_next`); renamed to `name` once the old container stopped.
pub fn surge_name(name: &str) -> String {
    format!("{name}_next")
}

/// Engine name of a replica's previous container during a rolling update (`<name>_prev`):
/// stopped, kept as the rollback target until the update completes.
pub fn previous_name(name: &str) -> String {
    format!("{name}_prev")
}

/// What an engine container is to its replica during a rolling update, from its engine name
/// compared with the replica's name: decided in one place ([`ReplicaRole::of`]) instead of by
/// name-suffix checks wherever it matters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplicaRole {
    /// The replica's container (`name`).
    Current,
    /// The surge container of a start-first update (`<name>_next`).
    Surge,
    /// The stopped previous container, the rollback target (`<name>_prev`).
    Previous,
    /// Labelled with the replica under any other name (a renamed object's, say).
    Other,
}

impl ReplicaRole {
    /// The role of the engine container `engine_name` of the replica named `replica_name`.
    pub fn of(engine_name: &str, replica_name: &str) -> ReplicaRole {
        match engine_name.strip_prefix(replica_name) {
            Some("") => ReplicaRole::Current,
            Some("_next") => ReplicaRole::Surge,
            Some("_prev") => ReplicaRole::Previous,
            _ => ReplicaRole::Other,
        }
    }
}

/// The berth labels for an object (without the user's own labels).
pub fn object_labels(
    instance: &str,
    key: &ObjectKey,
    replica: Option<u32>,
    hash: &str,
) -> BTreeMap<String, String> {
    let mut l = BTreeMap::new();
    l.insert(MANAGED_BY.to_string(), MANAGED_BY_VALUE.to_string());
    l.insert(INSTANCE.to_string(), instance.to_string());
    l.insert(KIND.to_string(), key.kind.as_str().to_string());
    l.insert(NAMESPACE.to_string(), key.namespace.clone());
    l.insert(NAME.to_string(), key.name.clone());
    if let Some(r) = replica {
        l.insert(REPLICA.to_string(), r.to_string());
    }
    l.insert(SPEC_HASH.to_string(), hash.to_string());
    l
}

/// True when the labels mark an object as owned by berth instance `instance`.
pub fn is_managed(labels: &BTreeMap<String, String>, instance: &str) -> bool {
    labels.get(MANAGED_BY).map(String::as_str) == Some(MANAGED_BY_VALUE)
        && labels.get(INSTANCE).map(String::as_str) == Some(instance)
}

/// Reads the owning object's key back from labels; `None` when a label is missing or invalid.
pub fn key_from_labels(labels: &BTreeMap<String, String>) -> Option<ObjectKey> {
    Some(ObjectKey::new(
        Kind::parse(labels.get(KIND)?)?,
        labels.get(NAMESPACE)?.clone(),
        labels.get(NAME)?.clone(),
    ))
}

/// Reads a container's replica index back from labels.
pub fn replica_from_labels(labels: &BTreeMap<String, String>) -> Option<u32> {
    labels.get(REPLICA)?.parse().ok()
}

#[cfg(test)]
mod replica_role_tests {
    use super::*;

    #[test]
    fn replica_role_from_the_engine_name() {
        let r = "app_web_0";
        assert_eq!(ReplicaRole::of("app_web_0", r), ReplicaRole::Current);
        assert_eq!(ReplicaRole::of(&surge_name(r), r), ReplicaRole::Surge);
        assert_eq!(ReplicaRole::of(&previous_name(r), r), ReplicaRole::Previous);
        assert_eq!(ReplicaRole::of("app_web_0_old", r), ReplicaRole::Other);
        assert_eq!(ReplicaRole::of("app_web_01", r), ReplicaRole::Other);
        assert_eq!(ReplicaRole::of("web", r), ReplicaRole::Other);
    }
}
