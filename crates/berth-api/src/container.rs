//! The `Container` kind: one or more identical replicas of a Docker container.

use std::collections::BTreeMap;

pub use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Desired state of a container (and its replicas).
///
/// Field semantics follow Kubernetes' `Container` where Kubernetes has the field, else Docker's.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "berth.dev",
    version = "v1alpha1",
    doc = "A Docker container (one or more identical replicas) run by every berth agent whose host the hostSelector targets",
    kind = "Container",
    namespaced,
    shortname = "bc",
    category = "berth",
    status = "crate::status::ContainerStatus",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Image","type":"string","jsonPath":".spec.image"}"#,
    printcolumn = r#"{"name":"Hosts","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].message","priority":1}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ContainerSpec {
    /// Image reference, e.g. `nginx:1.27` or `registry.local:5000/app@sha256:…`. Required
    /// unless `build` is given; with `build` it is the tag the built image gets (default
    /// `berth.local/<namespace>/<name>:latest`, `berth.local/<instance>/<namespace>/<name>:latest`
    /// for an agent with another `--instance` than `default`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Build the image from a Dockerfile context on this host instead of pulling it (Compose's
    /// `build:`). Rebuilt exactly when the build input changes: the files of the context that
    /// `.dockerignore` keeps (paths, contents, modes), the Dockerfile, `args` and `target`.
    /// Only a manifest directory (or a Compose file) can declare it: a custom resource has no
    /// context on the host, so there it is an error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build: Option<Build>,
    /// Replaces the image's ENTRYPOINT (same meaning as Kubernetes' `command`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// Replaces the image's CMD (same meaning as Kubernetes' `args`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<Vec<String>>,
    /// Environment variables, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    /// Working directory (absolute path); default: the image's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    /// User as `name`, `uid`, or `uid:gid`; default: the image's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Hostname inside the container; default: the engine's (a container ID prefix).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// Ports; only those with a `hostPort` are published on the host.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<ContainerPort>,
    /// Named volumes, host paths and tmpfs mounts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<Mount>,
    /// Networks to attach to (berth `Network` objects of the same namespace). Empty: the engine's
    /// default `bridge` network.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub networks: Vec<NetworkAttachment>,
    /// Files copied into the container after it is created and before it first starts.
    /// Their content is part of the spec hash: editing one recreates the container.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<File>,
    /// Number of identical containers; default 1, at most 1000. Engine names carry the replica
    /// index (0-based).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<u32>,
    /// How a spec change replaces running replicas (Kubernetes Deployment's `strategy`);
    /// default `RollingUpdate` with Kubernetes' 25 % / 25 %. Not part of the spec hash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_strategy: Option<UpdateStrategy>,
    /// Seconds a new replica must be ready (running, and passing its health check and readiness
    /// probe if it has them) before it counts as available and the rolling update moves on;
    /// default 0 (Kubernetes Deployment's `minReadySeconds`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_ready_seconds: Option<u32>,
    /// Seconds a rolling update may go without progress (one more new replica available) before
    /// berth rolls it back to the containers that ran before; default 600 (Kubernetes
    /// Deployment's `progressDeadlineSeconds`, where Kubernetes only reports, berth also rolls
    /// back). Must be greater than `minReadySeconds`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress_deadline_seconds: Option<u32>,
    /// Fixed engine container name; only allowed with `replicas` ≤ 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_name: Option<String>,
    /// When berth starts an exited container again; default `Always`
    /// (same meaning as Kubernetes' `restartPolicy`).
    #[serde(default)]
    pub restart_policy: RestartPolicy,
    /// When berth pulls the image; default `IfNotPresent` (same meaning as Kubernetes' `imagePullPolicy`).
    #[serde(default)]
    pub pull_policy: PullPolicy,
    /// Registry credentials for pulling `image`: Docker config files tried in order, before the
    /// agent's own Docker config (`$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`).
    /// Same name and role as Kubernetes' `imagePullSecrets`, with a file in place of a Secret.
    /// Not part of the spec hash: changing credentials never recreates a running container.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub image_pull_secrets: Vec<ImagePullSecret>,
    /// Labels set on the engine container (keys under `berth.dev/` are reserved).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// CPU and memory limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Resources>,
    /// Signal sent to stop the container, e.g. `SIGTERM` (default: the image's, else SIGTERM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    /// Seconds between the stop signal and SIGKILL; default 10 (Docker's default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_grace_period_seconds: Option<u32>,
    /// Linux capabilities to add, e.g. `NET_ADMIN`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cap_add: Vec<String>,
    /// Linux capabilities to drop, e.g. `ALL`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cap_drop: Vec<String>,
    /// Mount the root filesystem read-only; default false. Cannot be combined with `files`.
    #[serde(default)]
    pub read_only_root_filesystem: bool,
    /// Run an init process (tini) as PID 1 (`docker run --init`); default false.
    #[serde(default)]
    pub init: bool,
    /// Extra `/etc/hosts` entries as `hostname:ip` (`docker run --add-host`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_hosts: Vec<String>,
    /// The engine's native health check (Docker `HEALTHCHECK`); overrides the image's. A container
    /// whose health turns `unhealthy` is restarted by berth (with CrashLoopBackOff).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheck>,
    /// Containers (same namespace) that must reach a condition before this one is created or
    /// started. Same idea as Compose's `depends_on` with conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<Dependency>,
    /// Restart the container when this probe fails (same meaning as Kubernetes'
    /// `livenessProbe`); run by the agent, not the engine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub liveness_probe: Option<Probe>,
    /// Whether the container is ready (Kubernetes' `readinessProbe`): gates `dependsOn`
    /// condition `Healthy`. Run by the agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readiness_probe: Option<Probe>,
    /// Must succeed once before liveness and readiness probes run; failing it
    /// `failureThreshold` times restarts the container (Kubernetes' `startupProbe`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub startup_probe: Option<Probe>,
    /// Network namespace: `bridge` (default; attach to `networks`), `host`, `none`, or
    /// `container:<name>` to share the namespace of replica 0 of Container `<name>` (same
    /// namespace). Only `bridge` may be combined with `networks` and published `ports`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub network_mode: Option<NetworkMode>,
    /// Run the container privileged (`docker run --privileged`: every capability, every host
    /// device, no seccomp or AppArmor confinement); default false (same meaning as Kubernetes'
    /// `securityContext.privileged`). Refused by the `baseline` and `restricted` policy profiles.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub privileged: bool,
    /// Host devices made available inside the container (`docker run --device`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<Device>,
    /// Share the host's PID namespace (`docker run --pid host`); default false (same name and
    /// meaning as Kubernetes' `hostPID`; Compose's `pid: host`).
    #[serde(
        default,
        rename = "hostPID",
        skip_serializing_if = "std::ops::Not::not"
    )]
    pub host_pid: bool,
    /// Share the host's IPC namespace (`docker run --ipc host`); default false (same name and
    /// meaning as Kubernetes' `hostIPC`; Compose's `ipc: host`).
    #[serde(
        default,
        rename = "hostIPC",
        skip_serializing_if = "std::ops::Not::not"
    )]
    pub host_ipc: bool,
    /// The seccomp profile (Kubernetes' `securityContext.seccompProfile`); default the
    /// engine's (`RuntimeDefault`). Compose's `security_opt: [seccomp=…]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seccomp_profile: Option<SeccompProfile>,
    /// The AppArmor profile (Kubernetes' `securityContext.appArmorProfile`); default the
    /// engine's (`docker-default` where AppArmor is enabled). Compose's
    /// `security_opt: [apparmor=…]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_armor_profile: Option<AppArmorProfile>,
    /// `false` sets the kernel's `no_new_privs` flag (Docker's
    /// `--security-opt no-new-privileges`): setuid binaries and file capabilities cannot raise
    /// privileges. Same name and meaning as Kubernetes' `securityContext.allowPrivilegeEscalation`;
    /// absent or `true`: the engine's default (allowed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_privilege_escalation: Option<bool>,
    /// Namespaced kernel parameters set in the container (`docker run --sysctl`), e.g.
    /// `net.ipv4.ip_unprivileged_port_start: "0"`. The `baseline` policy profile allows only
    /// Kubernetes' safe set.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sysctls: BTreeMap<String, String>,
    /// Size of `/dev/shm` as a quantity (`64Mi`, `1G`); default the engine's (64 MiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shm_size: Option<String>,
    /// Allocate a TTY (`docker run -t`); default false (same meaning as Kubernetes' `tty`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tty: bool,
    /// Keep stdin open (`docker run -i`; Compose's `stdin_open`); default false (same name and
    /// meaning as Kubernetes' `stdin`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stdin: bool,
    /// Resource limits of the processes (`docker run --ulimit name=soft:hard`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ulimits: Vec<Ulimit>,
    /// DNS servers (IP addresses) instead of the engine's (`docker run --dns`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns: Vec<String>,
    /// DNS search domains (`docker run --dns-search`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns_search: Vec<String>,
    /// Resolver options written to `/etc/resolv.conf`, e.g. `ndots:2` (`docker run --dns-option`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns_options: Vec<String>,
    /// Logging driver and its options (`docker run --log-driver --log-opt`), e.g. `json-file`
    /// with `max-size: 10m` and `max-file: "3"` for log rotation; default the engine's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logging: Option<Logging>,
    /// Which hosts run this object (a Kubernetes `LabelSelector` matched against host labels);
    /// absent: every host that reads it. Not part of the spec hash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_selector: Option<crate::LabelSelector>,
}

/// A host device made available in the container (`docker run --device`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Device {
    /// Absolute path of the device on the host, e.g. `/dev/ttyUSB0`.
    pub host_path: String,
    /// Absolute path inside the container; default `hostPath`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_path: Option<String>,
    /// Cgroup permissions: a combination of `r` (read), `w` (write), `m` (mknod); default `rwm`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permissions: Option<String>,
}

impl Device {
    /// `containerPath` after defaulting (`hostPath`).
    pub fn container_path_or_default(&self) -> &str {
        self.container_path.as_deref().unwrap_or(&self.host_path)
    }
    /// `permissions` after defaulting (`rwm`).
    pub fn permissions_or_default(&self) -> &str {
        self.permissions.as_deref().unwrap_or("rwm")
    }
}

/// Which kind of confinement profile (Kubernetes' `SeccompProfile.type` and
/// `AppArmorProfile.type`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ProfileType {
    /// The engine's default profile.
    #[default]
    RuntimeDefault,
    /// No confinement (`seccomp=unconfined`, `apparmor=unconfined`).
    Unconfined,
    /// A profile of this host named by `localhostProfile`.
    Localhost,
}

/// A seccomp profile (Kubernetes' `SeccompProfile`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SeccompProfile {
    /// `RuntimeDefault`, `Unconfined` or `Localhost`.
    #[serde(rename = "type")]
    pub type_: ProfileType,
    /// With `Localhost`: absolute path of the profile (Docker's seccomp JSON) on the host where
    /// the agent runs; read when the container is created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub localhost_profile: Option<String>,
}

/// An AppArmor profile (Kubernetes' `AppArmorProfile`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AppArmorProfile {
    /// `RuntimeDefault`, `Unconfined` or `Localhost`.
    #[serde(rename = "type")]
    pub type_: ProfileType,
    /// With `Localhost`: the name of a profile loaded on the host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub localhost_profile: Option<String>,
}

/// One process resource limit (setrlimit(2)), as `docker run --ulimit name=soft:hard`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Ulimit {
    /// The limit's name without `RLIMIT_`, lower case: `nofile`, `nproc`, `memlock`, `core`, …
    pub name: String,
    /// Soft limit; -1 is unlimited.
    pub soft: i64,
    /// Hard limit (at least `soft`); -1 is unlimited.
    pub hard: i64,
}

/// Logging driver of a container (`docker run --log-driver`, `--log-opt`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Logging {
    /// Driver name, e.g. `json-file`, `local`, `journald`, `syslog`, `none`; default the
    /// engine's default driver.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    /// Driver options, e.g. `max-size: 10m`, `max-file: "3"`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
}

/// How to build a Container's image (`spec.build`), the fields of `docker build`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Build {
    /// The build context: a directory, relative to the directory of the manifest file that
    /// declares it (sources make it absolute before berth-core sees it). Its `.dockerignore`
    /// (or `<dockerfile>.dockerignore` beside the Dockerfile) is honoured with Docker's rules.
    pub context: String,
    /// The Dockerfile, relative to the context and inside it; default `Dockerfile`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dockerfile: Option<String>,
    /// Build arguments (`docker build --build-arg NAME=value`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub args: BTreeMap<String, String>,
    /// The stage of a multi-stage Dockerfile to build (`docker build --target`); default the
    /// last stage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

impl Build {
    /// `dockerfile` after defaulting (`Dockerfile`).
    pub fn dockerfile_or_default(&self) -> &str {
        self.dockerfile.as_deref().unwrap_or("Dockerfile")
    }
}

/// Docker's native health check. Durations are written like `10s`, `1m30s`, `500ms` and sent to
/// the engine in nanoseconds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HealthCheck {
    /// The check, in Docker's form: `["CMD", "prog", "arg"]`, `["CMD-SHELL", "shell command"]`,
    /// or `["NONE"]` to disable the image's check.
    pub test: Vec<String>,
    /// Time between checks; engine default 30s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    /// Time before one check counts as failed; engine default 30s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// Consecutive failures before `unhealthy`; engine default 3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<u32>,
    /// Grace period after start during which failures do not count; engine default 0s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_period: Option<String>,
    /// Time between checks during the start period (needs Engine API 1.44+; reported and left
    /// out on older engines).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_interval: Option<String>,
}

/// A probe run by the agent (Kubernetes' `Probe`): exactly one of `exec`, `httpGet`,
/// `tcpSocket`. Defaults are Kubernetes': delay 0 s, period 10 s, timeout 1 s, success
/// threshold 1, failure threshold 3.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Probe {
    /// Run a command inside the container; exit code 0 is success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec: Option<ExecAction>,
    /// HTTP GET; a status from 200 to 399 is success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_get: Option<HttpGetAction>,
    /// TCP connect; an established connection is success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_socket: Option<TcpSocketAction>,
    /// Seconds after the container started before the first probe; default 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_delay_seconds: Option<u32>,
    /// Seconds between probes; default 10, minimum 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period_seconds: Option<u32>,
    /// Seconds before a probe attempt counts as failed; default 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<u32>,
    /// Consecutive successes to count as passing after a failure; default 1 (must be 1 for
    /// liveness and startup probes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success_threshold: Option<u32>,
    /// Consecutive failures to count as failing; default 3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_threshold: Option<u32>,
}

impl Probe {
    /// `initialDelaySeconds` after defaulting.
    pub fn initial_delay(&self) -> u32 {
        self.initial_delay_seconds.unwrap_or(0)
    }
    /// `periodSeconds` after defaulting (at least 1).
    pub fn period(&self) -> u32 {
        self.period_seconds.unwrap_or(10).max(1)
    }
    /// `timeoutSeconds` after defaulting (at least 1).
    pub fn timeout(&self) -> u32 {
        self.timeout_seconds.unwrap_or(1).max(1)
    }
    /// `successThreshold` after defaulting.
    pub fn success_threshold(&self) -> u32 {
        self.success_threshold.unwrap_or(1).max(1)
    }
    /// `failureThreshold` after defaulting.
    pub fn failure_threshold(&self) -> u32 {
        self.failure_threshold.unwrap_or(3).max(1)
    }
}

/// A command run inside the container.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExecAction {
    /// Command and arguments (no shell unless you call one).
    pub command: Vec<String>,
}

/// An HTTP GET request.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpGetAction {
    /// Path; default `/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Port, 1–65535.
    pub port: u16,
    /// Host to connect to; default the container's IP address (127.0.0.1 with `networkMode: host`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Extra request headers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub http_headers: Vec<EnvVar>,
}

/// A TCP connection attempt.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TcpSocketAction {
    /// Port, 1–65535.
    pub port: u16,
    /// Host; default the container's IP address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
}

/// One dependency of a container.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Dependency {
    /// Name of a Container object in the same namespace.
    pub name: String,
    /// What must hold for every replica of it; default `Started`.
    #[serde(default)]
    pub condition: DependencyCondition,
}

/// Condition a dependency must reach.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum DependencyCondition {
    /// Running (Compose's `service_started`).
    #[default]
    Started,
    /// Running and its health check reports `healthy` (Compose's `service_healthy`).
    Healthy,
    /// Exited with code 0 (Compose's `service_completed_successfully`).
    Completed,
}

impl ContainerSpec {
    /// `replicas` after defaulting (1).
    pub fn replica_count(&self) -> u32 {
        self.replicas.unwrap_or(1)
    }
}

/// One environment variable: a literal `value`, or `valueFrom` a Secret or ConfigMap key.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnvVar {
    /// Variable name.
    pub name: String,
    /// Value; default empty. Exclusive with `valueFrom`.
    #[serde(default)]
    pub value: String,
    /// Take the value from a key of a Secret or ConfigMap in the object's namespace (same
    /// shape as Kubernetes' `env[].valueFrom`). Needs the Kubernetes source: a manifest
    /// directory has no Secrets, so there it is an error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_from: Option<ValueFrom>,
}

impl std::fmt::Debug for EnvVar {
    /// Never prints the value: it may come from a Secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnvVar")
            .field("name", &self.name)
            .field("value", &"<redacted>")
            .field("value_from", &self.value_from)
            .finish()
    }
}

/// Source of a value: exactly one of `secretKeyRef`, `configMapKeyRef`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ValueFrom {
    /// A key of a Secret in the object's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key_ref: Option<KeyRef>,
    /// A key of a ConfigMap in the object's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map_key_ref: Option<KeyRef>,
}

/// A key of a Secret or ConfigMap (Kubernetes' `SecretKeySelector`/`ConfigMapKeySelector`).
#[derive(
    Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KeyRef {
    /// Name of the Secret or ConfigMap.
    pub name: String,
    /// The key.
    pub key: String,
    /// When true, a missing object or key yields an empty value instead of blocking the
    /// container; default false.
    #[serde(default)]
    pub optional: bool,
}

/// A container port, optionally published on the host (Kubernetes' `ContainerPort`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ContainerPort {
    /// Port inside the container, 1–65535.
    pub container_port: u16,
    /// Port on the host, 1–65535; absent: the port is not published.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_port: Option<u16>,
    /// Host address to bind; default all addresses.
    #[serde(default, rename = "hostIP", skip_serializing_if = "Option::is_none")]
    pub host_ip: Option<String>,
    /// `TCP` (default) or `UDP`; lower case is accepted too.
    #[serde(default)]
    pub protocol: Protocol,
}

/// Transport protocol of a port.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    JsonSchema,
)]
pub enum Protocol {
    /// TCP (default).
    #[default]
    #[serde(alias = "tcp")]
    TCP,
    /// UDP.
    #[serde(alias = "udp")]
    UDP,
}

impl Protocol {
    /// Lower-case name as the engine writes it (`tcp`, `udp`).
    pub fn engine_name(self) -> &'static str {
        match self {
            Protocol::TCP => "tcp",
            Protocol::UDP => "udp",
        }
    }
}

/// One mount: exactly one of `volume`, `hostPath`, `tmpfs`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Mount {
    /// Absolute path inside the container.
    pub mount_path: String,
    /// Mount read-only; default false.
    #[serde(default)]
    pub read_only: bool,
    /// Name of a berth `Volume` object in the same namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume: Option<String>,
    /// A host directory or file (Kubernetes' `hostPath` volume).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_path: Option<HostPathMount>,
    /// A tmpfs (memory-backed) mount.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tmpfs: Option<TmpfsMount>,
}

/// A bind mount of a host path.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HostPathMount {
    /// Absolute path on the host.
    pub path: String,
    /// What must be at `path` (same meaning as Kubernetes' `hostPath.type`); default: no check.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub path_type: Option<HostPathType>,
}

/// Check made on a host path before the container is created (Kubernetes' `HostPathType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum HostPathType {
    /// Must be an existing directory.
    Directory,
    /// Created (mode 0755) if absent.
    DirectoryOrCreate,
    /// Must be an existing file.
    File,
    /// Created empty (mode 0644) if absent.
    FileOrCreate,
    /// Must be an existing UNIX socket.
    Socket,
}

/// A tmpfs mount.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TmpfsMount {
    /// Size limit as a Kubernetes quantity (`64Mi`); default: the engine's (half the RAM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_limit: Option<String>,
}

/// Attachment to a berth `Network`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NetworkAttachment {
    /// Name of a berth `Network` object in the same namespace.
    pub name: String,
    /// Extra DNS names of this container on that network.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    /// Fixed IPv4 address (needs an `ipam` subnet on the network).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv4_address: Option<String>,
}

/// A file copied into the container before it starts.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct File {
    /// Absolute path inside the container; parent directories are created.
    pub path: String,
    /// Content (UTF-8 text). Exclusive with `valueFrom`.
    #[serde(default)]
    pub content: String,
    /// Take the content from a key of a Secret or ConfigMap in the object's namespace (the
    /// Kubernetes source only, as for `env[].valueFrom`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_from: Option<ValueFrom>,
    /// Permission bits as an octal string, e.g. `"0644"` (default) or `"0755"`. A string, so that
    /// YAML 1.1 and 1.2 readers agree on it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// Owner user ID; default 0.
    #[serde(default)]
    pub uid: u32,
    /// Owner group ID; default 0.
    #[serde(default)]
    pub gid: u32,
}

impl std::fmt::Debug for File {
    /// Never prints the content: it may come from a Secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("File")
            .field("path", &self.path)
            .field("content", &format_args!("<{} bytes>", self.content.len()))
            .field("value_from", &self.value_from)
            .field("mode", &self.mode)
            .field("uid", &self.uid)
            .field("gid", &self.gid)
            .finish()
    }
}

impl File {
    /// Permission bits after defaulting (`0o644`); `None` when `mode` is not octal ≤ 0o7777.
    pub fn mode_bits(&self) -> Option<u32> {
        match &self.mode {
            None => Some(0o644),
            Some(m) => {
                let digits = m.strip_prefix("0o").unwrap_or(m);
                if digits.is_empty() || digits.len() > 5 {
                    return None;
                }
                u32::from_str_radix(digits, 8).ok().filter(|v| *v <= 0o7777)
            }
        }
    }
}

/// How a spec change replaces running replicas: same shape and meaning as Kubernetes
/// Deployment's `strategy`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateStrategy {
    /// `RollingUpdate` (default) or `Recreate`.
    #[serde(default, rename = "type")]
    pub type_: UpdateStrategyType,
    /// Bounds of a rolling update; only with `type: RollingUpdate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rolling_update: Option<RollingUpdate>,
}

/// Update strategy type (Kubernetes Deployment's `strategy.type`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum UpdateStrategyType {
    /// Replace replicas a few at a time, keeping at least `replicas - maxUnavailable` available.
    #[default]
    RollingUpdate,
    /// Stop every old replica, then create every new one (a gap in service; never two versions
    /// at once).
    Recreate,
}

/// Bounds of a rolling update (Kubernetes Deployment's `strategy.rollingUpdate`). Each is a
/// number of replicas or a percentage of `replicas` written `"25%"`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RollingUpdate {
    /// Replicas that may be unavailable during the update; a percentage rounds down; default
    /// `25%`; at most `100%`. When both this and `maxSurge` come to 0, 1 is used (as
    /// Kubernetes does).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_unavailable: Option<IntOrString>,
    /// Extra replicas that may run during the update; a percentage rounds up (above 100 % is
    /// allowed); default `25%`, but 0 for a container that mounts a volume or host path
    /// read-write (two copies of a database on one data directory corrupt it) or shares a
    /// network namespace (`networkMode` `host` or `container:<name>`: two copies would bind the
    /// same ports). With a fixed `hostPort` it is 0 and may not be set to more (two copies
    /// cannot bind the port). Above 0, the update is start-first: each new replica starts and
    /// becomes available before an old one stops. At 0 it is stop-first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_surge: Option<IntOrString>,
}

/// An absolute number or a percentage of `total`, as Kubernetes scales `IntOrString`
/// (`"25%"` of 3 is 0.75: 1 rounding up, 0 rounding down).
///
/// # Errors
/// A negative number, or a string that is not `<digits>%`.
pub fn scaled_int_or_percent(v: &IntOrString, total: u32, round_up: bool) -> Result<u32, String> {
    match v {
        IntOrString::Int(n) if *n >= 0 => Ok(*n as u32),
        IntOrString::Int(n) => Err(format!("expected 0 or more, got {n}")),
        IntOrString::String(s) => {
            let pct = s
                .strip_suffix('%')
                .and_then(|n| n.parse::<u32>().ok())
                .ok_or_else(|| {
                    format!("expected a number or a percentage like \"25%\", got {s:?}")
                })?;
            let scaled = u64::from(pct) * u64::from(total);
            Ok(if round_up {
                scaled.div_ceil(100)
            } else {
                scaled / 100
            } as u32)
        }
    }
}

/// Restart policy (same meaning as Kubernetes' `restartPolicy`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum RestartPolicy {
    /// Start the container again whenever it is not running (default).
    #[default]
    Always,
    /// Start it again only when it exited with a non-zero code.
    OnFailure,
    /// Never start it again once it exited.
    Never,
}

/// Image pull policy (same meaning as Kubernetes' `imagePullPolicy`).
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    JsonSchema,
)]
pub enum PullPolicy {
    /// Pull before every create; and the agent re-resolves the tag against the registry every
    /// resync period: a container not running the image the tag now names is recreated.
    Always,
    /// Pull only when the image is not present (default).
    #[default]
    IfNotPresent,
    /// Never pull; a missing image is an error.
    Never,
}

/// A file holding registry credentials in Docker's config format, the same content as a
/// Kubernetes `kubernetes.io/dockerconfigjson` Secret:
/// `{"auths": {"registry.example:5000": {"auth": "<base64 of user:password>"}}}`. Entries may
/// also give `username` and `password`, or an `identitytoken`; `credHelpers` and `credsStore`
/// name `docker-credential-<helper>` programs, as in `~/.docker/config.json`. The file is read
/// at each pull, so it can be rotated without touching the manifest.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ImagePullSecret {
    /// Absolute path of the file on the host where the agent runs.
    pub file: String,
}

/// Resource limits.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Resources {
    /// Upper bounds.
    #[serde(default)]
    pub limits: ResourceLimits,
}

/// CPU and memory upper bounds, in Kubernetes quantity syntax.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResourceLimits {
    /// CPUs, e.g. `500m` (half a CPU) or `2`; sent to the engine as `NanoCpus`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<String>,
    /// Memory, e.g. `256Mi` or `1G`; sent to the engine as bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
}

/// `networkMode`: which network namespace a container joins. On the wire a string, parsed once
/// here: `bridge`, `host`, `none`, `container:<name>`; anything else is kept as written
/// ([`NetworkMode::Other`], which Docker would take for a user-defined network's name and
/// validation rejects) so that the error can name it.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum NetworkMode {
    /// The default: attach to `networks` (Docker's default bridge when there are none).
    #[default]
    Bridge,
    /// The host's network namespace.
    Host,
    /// A namespace with only a loopback interface.
    None,
    /// The namespace of another container: in a manifest the name of a Container object (its
    /// replica 0); once resolved, the engine name (or ID) of that container.
    Container(String),
    /// Anything else, as written.
    Other(String),
}

impl NetworkMode {
    /// Parses the wire form; never fails (see [`NetworkMode::Other`]).
    pub fn parse(s: &str) -> NetworkMode {
        match s {
            "bridge" => NetworkMode::Bridge,
            "host" => NetworkMode::Host,
            "none" => NetworkMode::None,
            s => match s.strip_prefix("container:") {
                Some(name) => NetworkMode::Container(name.to_string()),
                None => NetworkMode::Other(s.to_string()),
            },
        }
    }

    /// True for the modes that share a namespace another container or the host also uses
    /// (`host`, `container:<name>`).
    pub fn is_shared(&self) -> bool {
        matches!(self, NetworkMode::Host | NetworkMode::Container(_))
    }
}

impl std::fmt::Display for NetworkMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NetworkMode::Bridge => f.write_str("bridge"),
            NetworkMode::Host => f.write_str("host"),
            NetworkMode::None => f.write_str("none"),
            NetworkMode::Container(name) => write!(f, "container:{name}"),
            NetworkMode::Other(s) => f.write_str(s),
        }
    }
}

impl From<&str> for NetworkMode {
    fn from(s: &str) -> Self {
        NetworkMode::parse(s)
    }
}

impl From<String> for NetworkMode {
    fn from(s: String) -> Self {
        NetworkMode::parse(&s)
    }
}

impl Serialize for NetworkMode {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for NetworkMode {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = std::borrow::Cow::<'de, str>::deserialize(deserializer)?;
        Ok(NetworkMode::parse(&s))
    }
}

#[cfg(test)]
mod network_mode_tests {
    use super::*;

    /// The wire form round-trips through the enum unchanged, anything unknown included, and the
    /// schema stays a plain string (the CRDs do not change).
    #[test]
    fn network_mode_wire_form_and_schema() {
        for (wire, mode) in [
            ("bridge", NetworkMode::Bridge),
            ("host", NetworkMode::Host),
            ("none", NetworkMode::None),
            ("container:db", NetworkMode::Container("db".into())),
            ("container:", NetworkMode::Container(String::new())),
            ("backend", NetworkMode::Other("backend".into())),
        ] {
            let parsed: NetworkMode =
                serde_json::from_value(serde_json::json!(wire)).expect("parses");
            assert_eq!(parsed, mode);
            assert_eq!(serde_json::to_value(&mode).expect("json"), wire);
        }
        let schema = serde_json::to_value(schemars::schema_for!(ContainerSpec)).expect("schema");
        assert_eq!(
            schema["properties"]["networkMode"],
            serde_json::json!({"type": ["string", "null"], "description": "Network namespace: `bridge` (default; attach to `networks`), `host`, `none`, or\n`container:<name>` to share the namespace of replica 0 of Container `<name>` (same\nnamespace). Only `bridge` may be combined with `networks` and published `ports`."})
        );
    }
}
