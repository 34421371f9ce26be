//! The `Volume` kind: a named Docker volume.

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Desired state of a named Docker volume. Volumes hold data, so berth never recreates one:
/// a changed driver or option is reported, not applied.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "berth.dev",
    version = "v1alpha1",
    doc = "A named Docker volume created by every berth agent whose host the hostSelector targets",
    kind = "Volume",
    namespaced,
    shortname = "bvol",
    category = "berth",
    status = "crate::status::VolumeStatus",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Driver","type":"string","jsonPath":".spec.driver"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VolumeSpec {
    /// Volume driver; default `local`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    /// Driver options (`docker volume create --opt`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub driver_opts: BTreeMap<String, String>,
    /// Labels set on the engine volume (keys under `berth.dev/` are reserved).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// What happens to the engine volume when the object is no longer declared; default `Retain`
    /// (same meaning as a Kubernetes PersistentVolume's `persistentVolumeReclaimPolicy`).
    #[serde(default)]
    pub reclaim_policy: ReclaimPolicy,
    /// The volume already exists on the host and is not berth's: berth uses it but never
    /// creates, changes or removes it (Compose's `external: true`). Its engine name is
    /// `externalName`, default `metadata.name` (not `<namespace>_<name>`); while it does not
    /// exist, the containers that use it wait. The other fields must be left out.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub external: bool,
    /// With `external`: the engine name of the existing volume (Compose's `name:`); default
    /// `metadata.name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_name: Option<String>,
    /// Which hosts create this object (a Kubernetes `LabelSelector` matched against host
    /// labels); absent: every host that reads it. Not part of the spec hash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_selector: Option<crate::LabelSelector>,
}

/// Fate of a volume whose object is deleted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ReclaimPolicy {
    /// Keep the volume and its data (default).
    #[default]
    Retain,
    /// Remove the volume once no container uses it.
    Delete,
}

impl ReclaimPolicy {
    /// The policy as written in YAML and in the `berth.dev/reclaim-policy` engine label.
    pub fn as_str(self) -> &'static str {
        match self {
            ReclaimPolicy::Retain => "Retain",
            ReclaimPolicy::Delete => "Delete",
        }
    }
}
