//! The cluster-scoped `Host` kind: one per agent watching a cluster, written by that agent.
//!
//! `metadata.name` is the agent's `--node-name`; `metadata.labels` are the host's labels (the
//! ones `spec.hostSelector` is matched against), so `kubectl get hosts.berth.dev -l zone=eu-1`
//! lists the hosts a selector targets. The liveness heartbeat is a `coordination.k8s.io/v1`
//! Lease named like the host (cheap to renew, as kubelets do); `status.lastHeartbeatTime` is
//! refreshed together with the rest of the status, at most every few minutes.

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::status::Condition;

/// Desired state of a host record. Agents create it; nothing in it is required.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "berth.dev",
    version = "v1alpha1",
    doc = "A Docker host running a berth agent that watches this cluster; written by that agent",
    kind = "Host",
    status = "HostStatus",
    shortname = "bhost",
    category = "berth",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Engine","type":"string","jsonPath":".status.engineVersion"}"#,
    printcolumn = r#"{"name":"Objects","type":"integer","jsonPath":".status.objects.total"}"#,
    printcolumn = r#"{"name":"Degraded","type":"integer","jsonPath":".status.objects.degraded"}"#,
    printcolumn = r#"{"name":"Heartbeat","type":"date","jsonPath":".status.lastHeartbeatTime"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct HostSpec {
    /// Free-form description for people (e.g. the machine's location).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// What the agent reports about its host.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HostStatus {
    /// The host's labels (also on `metadata.labels`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Docker Engine version, e.g. `27.3.1 (API 1.47)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine_version: Option<String>,
    /// berth agent version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_version: Option<String>,
    /// Capacity of the host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<HostCapacity>,
    /// RFC 3339 time the agent last wrote this status (the Lease is renewed more often).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("format" = "date-time"))]
    pub last_heartbeat_time: Option<String>,
    /// Counts of the objects this host runs, by state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub objects: Option<ObjectCounts>,
    /// `Ready` (the agent is connected and its sources are complete).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

/// Capacity of a host, as the engine reports it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HostCapacity {
    /// CPUs.
    pub cpu: u32,
    /// Memory in bytes.
    pub memory_bytes: u64,
}

/// Counts of managed objects by state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObjectCounts {
    /// All objects this host runs.
    pub total: u32,
    /// Objects in state `Ready`.
    pub ready: u32,
    /// Objects in state `Progressing`.
    pub progressing: u32,
    /// Objects in state `Degraded`.
    pub degraded: u32,
}
