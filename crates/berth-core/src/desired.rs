//! Desired state: the declared objects after cross-object resolution, in engine terms.

use std::collections::BTreeMap;

use berth_api::{
    DependencyCondition, HostPathType, NetworkMode, ObjectKey, Protocol, PullPolicy, ReclaimPolicy,
    RestartPolicy,
};
use serde::Serialize;

/// Who an action or a retry belongs to: an object, or one replica of a `Container`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Owner {
    /// The declared (or, for orphans, labelled) object.
    pub key: ObjectKey,
    /// Replica index for containers; `None` for networks and volumes.
    pub replica: Option<u32>,
}

impl Owner {
    /// Owner of a network or volume.
    pub fn object(key: ObjectKey) -> Self {
        Owner { key, replica: None }
    }

    /// Owner of one container replica.
    pub fn replica(key: ObjectKey, replica: u32) -> Self {
        Owner {
            key,
            replica: Some(replica),
        }
    }
}

impl std::fmt::Display for Owner {
    /// `Container/ns/name#0`, or `Network/ns/name`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.replica {
            Some(r) => write!(f, "{}#{r}", self.key),
            None => write!(f, "{}", self.key),
        }
    }
}

/// Everything the host should run, resolved and hashed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DesiredState {
    /// Name of the berth instance that owns these objects (the `berth.dev/instance` label).
    pub instance: String,
    /// Networks by object key.
    pub networks: BTreeMap<ObjectKey, DesiredNetwork>,
    /// Volumes by object key.
    pub volumes: BTreeMap<ObjectKey, DesiredVolume>,
    /// Containers by object key (each with its replica count).
    pub containers: BTreeMap<ObjectKey, DesiredContainer>,
    /// Objects that cannot be applied as declared (unknown reference, name clash), with why.
    /// Their existing engine objects are left alone.
    pub blocked: BTreeMap<ObjectKey, String>,
    /// Objects the security policy refuses as declared, with every violation (see
    /// [`crate::policy::admit`]). A refused object with a version applied before is also in
    /// `containers`/`networks`/`volumes` at that version; without one it is not, and its
    /// existing engine objects are left alone.
    pub refused: BTreeMap<ObjectKey, String>,
    /// Why the set may be missing objects, if it may: a source has a file that never decoded
    /// since the agent started, or a conflict without a previously applied version. While set,
    /// `plan` removes nothing that is not declared (orphans stay), so that a broken file never
    /// deletes what it used to declare — not even across an agent restart.
    pub incomplete: Option<String>,
}

/// A network to exist.
#[derive(Clone, Debug, PartialEq)]
pub struct DesiredNetwork {
    /// Engine name (`<namespace>_<name>`).
    pub engine_name: String,
    /// Resolved engine configuration; hashed.
    pub config: NetworkConfig,
    /// Versioned hash of `config`.
    pub hash: String,
    /// `spec.external`: an existing network berth uses but never creates or removes
    /// (`engine_name` is then its own name).
    pub external: bool,
}

/// Engine configuration of a network: exactly the fields that decide whether it is recreated.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct NetworkConfig {
    /// Driver (`bridge` when not declared).
    pub driver: String,
    /// `--internal`.
    pub internal: bool,
    /// `--attachable`.
    pub attachable: bool,
    /// `--ipv6`.
    pub enable_ipv6: bool,
    /// IPAM driver (`default` when not declared).
    pub ipam_driver: String,
    /// IPAM pools: (subnet, gateway, ipRange).
    pub ipam_config: Vec<(String, Option<String>, Option<String>)>,
    /// Driver options.
    pub options: BTreeMap<String, String>,
    /// User labels.
    pub labels: BTreeMap<String, String>,
}

/// A volume to exist.
#[derive(Clone, Debug, PartialEq)]
pub struct DesiredVolume {
    /// Engine name (`<namespace>_<name>`).
    pub engine_name: String,
    /// Resolved engine configuration; hashed.
    pub config: VolumeConfig,
    /// Versioned hash of `config`.
    pub hash: String,
    /// Written to the `berth.dev/reclaim-policy` label at creation.
    pub reclaim_policy: ReclaimPolicy,
    /// `spec.external`: an existing volume berth uses but never creates or removes
    /// (`engine_name` is then its own name).
    pub external: bool,
}

/// Engine configuration of a volume.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct VolumeConfig {
    /// Driver (`local` when not declared).
    pub driver: String,
    /// Driver options.
    pub driver_opts: BTreeMap<String, String>,
    /// User labels.
    pub labels: BTreeMap<String, String>,
}

/// A `Container` object: `replicas` identical engine containers.
#[derive(Clone, Debug, PartialEq)]
pub struct DesiredContainer {
    /// Number of replicas (indexes `0..replicas`).
    pub replicas: u32,
    /// `containerName`, if fixed.
    pub container_name: Option<String>,
    /// Restart policy (applied by the agent, not the engine).
    pub restart_policy: RestartPolicy,
    /// Pull policy.
    pub pull_policy: PullPolicy,
    /// Credential files for pulls (`imagePullSecrets[].file`), in order; not hashed.
    pub image_pull_secrets: Vec<String>,
    /// Networks (object keys) the container needs.
    pub networks: Vec<ObjectKey>,
    /// Volumes (object keys) the container needs.
    pub volumes: Vec<ObjectKey>,
    /// Containers (object keys) that must reach a condition before this one is created or
    /// started; includes the target of `networkMode: container:<name>` (condition `Started`).
    pub depends_on: Vec<(ObjectKey, DependencyCondition)>,
    /// Target of `networkMode: container:<name>`.
    pub network_target: Option<ObjectKey>,
    /// Probes run by the agent (not hashed: changing a probe does not recreate the container).
    pub probes: Probes,
    /// How a spec change replaces the replicas (not hashed).
    pub rollout: RolloutConfig,
    /// Resolved engine configuration; hashed.
    pub config: ContainerConfig,
    /// Versioned hash of `config`; with a read build, `<spec hash>+<build hash>`
    /// ([`crate::build::with_contexts`]).
    pub hash: String,
    /// `spec.build`: how the image (tag `config.image`) is built on this host; not part of the
    /// spec hash.
    pub build: Option<crate::build::DesiredBuild>,
}

/// How a spec change replaces the replicas of one `Container`, with the bounds already scaled
/// to the replica count (Kubernetes Deployment semantics).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RolloutConfig {
    /// `Recreate`: stop every old replica, then create every new one.
    pub recreate: bool,
    /// Extra replicas allowed during the update; above 0 the update is start-first.
    pub max_surge: u32,
    /// Replicas that may be unavailable during the update (at least 1 when `max_surge` is 0).
    pub max_unavailable: u32,
    /// How long a new replica must be ready before it counts as available.
    pub min_ready: std::time::Duration,
    /// How long the update may go without progress before it is rolled back.
    pub progress_deadline: std::time::Duration,
}

impl Default for RolloutConfig {
    /// A one-replica rolling update, start-first (Kubernetes' 25 % / 25 % of 1: surge 1,
    /// unavailable 0), no `minReadySeconds`, 600 s deadline.
    fn default() -> Self {
        RolloutConfig {
            recreate: false,
            max_surge: 1,
            max_unavailable: 0,
            min_ready: std::time::Duration::ZERO,
            progress_deadline: std::time::Duration::from_secs(600),
        }
    }
}

/// Engine configuration of a container: the explicit allowlist of fields whose change recreates
/// the container. Scheduling-only fields (`replicas`, `restartPolicy`, `pullPolicy`) are absent.
///
/// Hash stability: every field is skipped in the hash input while it has its default value, so a
/// field added in a later release leaves existing hashes (and containers) alone.
///
/// `Debug` prints environment variable names and file paths only: values may come from
/// Kubernetes Secrets and must never reach a log.
#[derive(Clone, Default, PartialEq, Serialize)]
pub struct ContainerConfig {
    /// Image reference as declared.
    pub image: String,
    /// ENTRYPOINT override.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    /// CMD override.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    /// `NAME=value` entries, in declared order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    /// Working directory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    /// User.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Hostname.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// Ports.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortConfig>,
    /// Mounts.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<MountConfig>,
    /// Network attachments (engine network names), in declared order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub networks: Vec<AttachmentConfig>,
    /// Files copied in before the first start; their content is hashed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<FileConfig>,
    /// User labels.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// CPU limit in nano-CPUs (1 CPU = 1e9).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nano_cpus: Option<u64>,
    /// Memory limit in bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<u64>,
    /// Stop signal.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    /// Seconds between stop signal and SIGKILL (engine `StopTimeout`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_grace_period_seconds: Option<u32>,
    /// Capabilities added.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cap_add: Vec<String>,
    /// Capabilities dropped.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cap_drop: Vec<String>,
    /// Read-only root filesystem.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub read_only_root_filesystem: bool,
    /// `--init`.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub init: bool,
    /// `hostname:ip` entries.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub extra_hosts: Vec<String>,
    /// Native health check.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheckConfig>,
    /// `host`, `none` or `container:<engine name of the target>`; `None` is the bridge mode
    /// (attach to `networks`). Hashed as its wire string.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network_mode: Option<NetworkMode>,
    /// `--privileged`.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub privileged: bool,
    /// Host devices.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<DeviceConfig>,
    /// `--pid host`.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub host_pid: bool,
    /// `--ipc host`.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub host_ipc: bool,
    /// Seccomp profile other than the engine's default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seccomp_profile: Option<ProfileConfig>,
    /// AppArmor profile other than the engine's default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_armor_profile: Option<ProfileConfig>,
    /// `--security-opt no-new-privileges` (`allowPrivilegeEscalation: false`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub no_new_privileges: bool,
    /// Namespaced kernel parameters.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub sysctls: BTreeMap<String, String>,
    /// Size of `/dev/shm` in bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shm_size: Option<u64>,
    /// `-t`.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub tty: bool,
    /// `-i`.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub stdin: bool,
    /// Process resource limits.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ulimits: Vec<UlimitConfig>,
    /// DNS servers.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dns: Vec<String>,
    /// DNS search domains.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dns_search: Vec<String>,
    /// Resolver options.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dns_options: Vec<String>,
    /// Logging driver and options.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logging: Option<LoggingConfig>,
}

/// A host device, defaults applied.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DeviceConfig {
    /// Path on the host.
    pub host_path: String,
    /// Path in the container.
    pub container_path: String,
    /// Cgroup permissions (`rwm`).
    pub permissions: String,
}

/// A confinement profile that is not the engine's default.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum ProfileConfig {
    /// No confinement.
    Unconfined,
    /// A host profile: a seccomp JSON file's path, or an AppArmor profile's name.
    Localhost(String),
}

/// One process resource limit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct UlimitConfig {
    /// `nofile`, `nproc`, …
    pub name: String,
    /// Soft limit (-1 unlimited).
    pub soft: i64,
    /// Hard limit (-1 unlimited).
    pub hard: i64,
}

/// Logging driver and options.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LoggingConfig {
    /// Driver name; `None`: the engine's default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    /// Driver options.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
}

/// The agent-run probes of a container (Kubernetes semantics).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Probes {
    /// `livenessProbe`.
    pub liveness: Option<berth_api::Probe>,
    /// `readinessProbe`.
    pub readiness: Option<berth_api::Probe>,
    /// `startupProbe`.
    pub startup: Option<berth_api::Probe>,
}

impl Probes {
    /// True when no probe is declared.
    pub fn is_empty(&self) -> bool {
        self.liveness.is_none() && self.readiness.is_none() && self.startup.is_none()
    }
}

/// Native health check with durations in nanoseconds (the engine's unit).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct HealthCheckConfig {
    /// `["CMD", …]`, `["CMD-SHELL", …]` or `["NONE"]`.
    pub test: Vec<String>,
    /// Interval, nanoseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval_ns: Option<u64>,
    /// Timeout, nanoseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_ns: Option<u64>,
    /// Failures before unhealthy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retries: Option<u32>,
    /// Start period, nanoseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_period_ns: Option<u64>,
    /// Start interval, nanoseconds (Engine API 1.44+).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_interval_ns: Option<u64>,
}

impl std::fmt::Debug for ContainerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let env_names: Vec<&str> = self
            .env
            .iter()
            .map(|e| e.split_once('=').map_or(e.as_str(), |(n, _)| n))
            .collect();
        let files: Vec<&str> = self.files.iter().map(|f| f.path.as_str()).collect();
        f.debug_struct("ContainerConfig")
            .field("image", &self.image)
            .field("entrypoint", &self.entrypoint)
            .field("cmd", &self.cmd)
            .field("env (names only)", &env_names)
            .field("files (paths only)", &files)
            .field("ports", &self.ports)
            .field("mounts", &self.mounts)
            .field("networks", &self.networks)
            .finish_non_exhaustive()
    }
}

impl ContainerConfig {
    /// Seconds to wait for a graceful stop (default 10, Docker's).
    pub fn stop_timeout(&self) -> u32 {
        self.stop_grace_period_seconds.unwrap_or(10)
    }
}

/// A port, published when `host_port` is set.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PortConfig {
    /// Port inside the container.
    pub container_port: u16,
    /// Protocol.
    pub protocol: Protocol,
    /// Host port.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_port: Option<u16>,
    /// Host address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_ip: Option<String>,
}

/// A resolved mount.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MountConfig {
    /// Path inside the container.
    pub target: String,
    /// Read-only.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub read_only: bool,
    /// What is mounted.
    pub source: MountSource,
}

/// Source of a mount.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub enum MountSource {
    /// A named engine volume (engine name).
    Volume(String),
    /// A host path, with the check or creation to do before create.
    Bind {
        /// Host path.
        path: String,
        /// Kubernetes `hostPath.type`.
        #[serde(skip_serializing_if = "Option::is_none")]
        path_type: Option<HostPathTypeConfig>,
    },
    /// tmpfs with an optional size in bytes.
    Tmpfs {
        /// Size limit in bytes.
        #[serde(skip_serializing_if = "Option::is_none")]
        size_bytes: Option<u64>,
    },
}

/// `hostPath.type`, serialisable for the hash.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub enum HostPathTypeConfig {
    /// See [`HostPathType::Directory`].
    Directory,
    /// See [`HostPathType::DirectoryOrCreate`].
    DirectoryOrCreate,
    /// See [`HostPathType::File`].
    File,
    /// See [`HostPathType::FileOrCreate`].
    FileOrCreate,
    /// See [`HostPathType::Socket`].
    Socket,
}

impl From<HostPathType> for HostPathTypeConfig {
    fn from(t: HostPathType) -> Self {
        match t {
            HostPathType::Directory => HostPathTypeConfig::Directory,
            HostPathType::DirectoryOrCreate => HostPathTypeConfig::DirectoryOrCreate,
            HostPathType::File => HostPathTypeConfig::File,
            HostPathType::FileOrCreate => HostPathTypeConfig::FileOrCreate,
            HostPathType::Socket => HostPathTypeConfig::Socket,
        }
    }
}

/// A network attachment.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AttachmentConfig {
    /// Engine network name.
    pub network: String,
    /// DNS aliases.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    /// Fixed IPv4 address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ipv4_address: Option<String>,
}

/// A file to copy in.
#[derive(Clone, PartialEq, Serialize)]
pub struct FileConfig {
    /// Absolute path.
    pub path: String,
    /// Content.
    pub content: String,
    /// Permission bits.
    pub mode: u32,
    /// Owner uid.
    pub uid: u32,
    /// Owner gid.
    pub gid: u32,
}

impl std::fmt::Debug for FileConfig {
    /// Never prints the content: it may come from a Secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileConfig")
            .field("path", &self.path)
            .field("content", &format_args!("<{} bytes>", self.content.len()))
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_prints_env_values_or_file_contents() {
        let c = ContainerConfig {
            image: "app:1".into(),
            env: vec!["PASSWORD=hunter2".into()],
            files: vec![FileConfig {
                path: "/etc/key".into(),
                content: "hunter2".into(),
                mode: 0o600,
                uid: 0,
                gid: 0,
            }],
            ..Default::default()
        };
        let d = format!("{c:?}");
        assert!(d.contains("PASSWORD") && d.contains("/etc/key"), "{d}");
        assert!(!d.contains("hunter2"), "{d}");
    }
}
