//! Status of berth custom resources, as written back to a Kubernetes cluster by the agents.
//!
//! Many hosts may run one object, so the status is built so that every host writes only its
//! own part, without conflicts (server-side apply, one field manager per host, `berth-<host>`):
//!
//! - `status.hosts[]` is a map-list keyed by `name` (`x-kubernetes-list-type: map`): each host
//!   owns exactly its own entry;
//! - `status.conditions[]` (keyed by `type`) and `status.observedGeneration` are an aggregate
//!   over all entries, computed by a pure, deterministic function (`berth_core::conditions`), so
//!   every host that writes computes the same value from the same entries; a host only writes
//!   when its entry or the aggregate differs from what the cluster holds, so writes stop as soon
//!   as the hosts agree.
//!
//! Condition types: `Ready`, `Progressing`, `Degraded` (`metav1.Condition` shape, as read by
//! kstatus, Flux and Argo CD), plus `Reconciling` and `Stalled`, which mirror `Progressing` and
//! `Degraded` under the names kstatus' abnormal-true convention reads.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Status of a `Container`, `Network` or `Volume` custom resource.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObjectStatus {
    /// The lowest `metadata.generation` observed by every host that has an entry; equal to
    /// `metadata.generation` once every host has seen the latest spec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Aggregate conditions over all hosts (see the module docs).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// One entry per host that runs the object, each written by that host only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub hosts: Vec<HostEntry>,
}

/// Status of a `Container` custom resource.
pub type ContainerStatus = ObjectStatus;
/// Status of a `Network` custom resource.
pub type NetworkStatus = ObjectStatus;
/// Status of a `Volume` custom resource.
pub type VolumeStatus = ObjectStatus;

/// A condition in the shape of Kubernetes' `metav1.Condition`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// `Ready`, `Progressing`, `Degraded`, `Reconciling` or `Stalled`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// CamelCase reason of the last transition, e.g. `AllHostsReady`.
    pub reason: String,
    /// Human-readable detail.
    #[serde(default)]
    pub message: String,
    /// RFC 3339 time of the last change of `status`.
    #[schemars(extend("format" = "date-time"))]
    pub last_transition_time: String,
    /// `metadata.generation` the condition was computed for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// Where one host stands with one object.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
pub enum HostObjectState {
    /// Converged: the engine objects exist as declared (containers running).
    Ready,
    /// Work is under way (pulling, creating, restarting within its backoff).
    #[default]
    Progressing,
    /// Cannot converge until something changes: a failing action backing off, a crash loop, a
    /// conflict, an invalid reference or a missing Secret.
    Degraded,
}

impl HostObjectState {
    /// The state's name as written.
    pub fn as_str(self) -> &'static str {
        match self {
            HostObjectState::Ready => "Ready",
            HostObjectState::Progressing => "Progressing",
            HostObjectState::Degraded => "Degraded",
        }
    }
}

/// One host's view of one object: written by that host only.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HostEntry {
    /// The host's name (the agent's `--node-name`); the list key.
    pub name: String,
    /// `metadata.generation` this host last acted on.
    pub observed_generation: i64,
    /// Where the host stands.
    pub state: HostObjectState,
    /// CamelCase reason, e.g. `Running`, `CrashLoopBackOff`, `BackOff`, `Conflict`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// Human-readable detail (never a Secret value).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// Containers only: replicas declared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<u32>,
    /// Containers only: replicas running with the current spec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_replicas: Option<u32>,
    /// Containers only: restarts by this host's agent (all replicas) since the containers were
    /// created or last ran 10 minutes without a restart (CrashLoopBackOff's window). When a
    /// restart is being delayed, `message` says by how long (`back-off 40s restarting …`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_count: Option<u32>,
    /// Containers only: exit code of the last run that ended in a restart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_exit_code: Option<i64>,
    /// RFC 3339 time of the last change of `state`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("format" = "date-time"))]
    pub last_transition_time: Option<String>,
}
