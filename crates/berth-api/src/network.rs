//! The `Network` kind: a Docker network declared by name.

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Desired state of a Docker network. Changing any field recreates the network and every
/// container attached to it (Docker networks are immutable).
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "berth.dev",
    version = "v1alpha1",
    doc = "A Docker network created by every berth agent whose host the hostSelector targets",
    kind = "Network",
    namespaced,
    shortname = "bnet",
    category = "berth",
    status = "crate::status::NetworkStatus",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Driver","type":"string","jsonPath":".spec.driver"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NetworkSpec {
    /// Network driver; default `bridge` (same as `docker network create --driver`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    /// Restrict external access to the network (`--internal`); default false.
    #[serde(default)]
    pub internal: bool,
    /// Allow manually started containers to attach (`--attachable`); default false.
    #[serde(default)]
    pub attachable: bool,
    /// Enable IPv6 (`--ipv6`); default false.
    #[serde(default, rename = "enableIPv6")]
    pub enable_ipv6: bool,
    /// IP address management; default: the engine picks a subnet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipam: Option<Ipam>,
    /// Driver options (`--opt key=value`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
    /// Labels set on the engine network (keys under `berth.dev/` are reserved).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// The network already exists on the host and is not berth's: berth uses it but never
    /// creates, changes or removes it (Compose's `external: true`). Its engine name is
    /// `externalName`, default `metadata.name` (not `<namespace>_<name>`); while it does not
    /// exist, the containers that use it wait. The other fields must be left out.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub external: bool,
    /// With `external`: the engine name of the existing network (Compose's `name:`); default
    /// `metadata.name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_name: Option<String>,
    /// Which hosts create this object (a Kubernetes `LabelSelector` matched against host
    /// labels); absent: every host that reads it. Not part of the spec hash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_selector: Option<crate::LabelSelector>,
}

/// IP address management of a network (same shape as Docker Compose's `ipam`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Ipam {
    /// IPAM driver; default `default`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    /// Address pools.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub config: Vec<IpamConfig>,
}

/// One address pool of a network.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IpamConfig {
    /// Subnet in CIDR notation, e.g. `10.88.0.0/24`.
    pub subnet: String,
    /// Gateway address inside the subnet, e.g. `10.88.0.1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    /// Sub-range (CIDR) from which container addresses are allocated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_range: Option<String>,
}
