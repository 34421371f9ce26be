//! Security policy per source: what a declaration may ask of the host.
//!
//! A pure function, [`Policy::check`]: (source, namespace, object, host facts) → the
//! [`Violation`]s of the profile that source and namespace get. The profiles are named and
//! defined after Kubernetes' Pod Security Standards (PSS), mapped onto Docker's fields; every
//! [`Rule`] names the PSS control it mirrors ([`Rule::pss`]). [`admit`] applies the policy to
//! the sources' full sets before [`crate::merge::merge`]: a refused object never reaches
//! `plan`, and the version applied before (if any) stays in force — the model is the
//! last-known-good rule for files that do not parse.
//!
//! Facts about the host (where the engine's sockets are, where a `hostPath` leads once its
//! symlinks are resolved) are I/O; the caller collects them into [`HostFacts`].

use std::collections::BTreeMap;

use berth_api::{ContainerSpec, Manifest, ObjectKey, ProfileType, VolumeSpec};
use serde::Deserialize;

use crate::merge::{Declaration, Origin};

/// A profile, after Kubernetes' Pod Security Standards.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, serde::Serialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    /// Anything (PSS `privileged`).
    #[default]
    Privileged,
    /// No known privilege escalation (PSS `baseline`).
    Baseline,
    /// Hardened (PSS `restricted`): baseline plus the restricted rules.
    Restricted,
}

impl Profile {
    /// `privileged`, `baseline` or `restricted`.
    pub fn as_str(self) -> &'static str {
        match self {
            Profile::Privileged => "privileged",
            Profile::Baseline => "baseline",
            Profile::Restricted => "restricted",
        }
    }
}

/// Which source declared an object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Source {
    /// The manifest directory (or a Compose file), written by the host's administrator.
    Directory,
    /// The Kubernetes source (custom resources).
    Kubernetes,
}

impl Source {
    /// `directory` or `kubernetes`, as in the policy file.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Directory => "directory",
            Source::Kubernetes => "kubernetes",
        }
    }
}

/// The policy file (`--policy FILE`, `BERTH_POLICY`). Without one, [`Policy::default`]: the
/// directory `privileged`, Kubernetes `baseline`, no host path allowed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Policy {
    /// The profile of each source.
    #[serde(default)]
    pub sources: SourcePolicies,
    /// Host paths that `baseline` and `restricted` may still mount (a path and everything
    /// below it); with `readOnly: true` only read-only.
    #[serde(default)]
    pub host_path_allowlist: Vec<AllowedHostPath>,
}

/// `sources:` of the policy file.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourcePolicies {
    /// The manifest directory; default `privileged`.
    #[serde(default = "DirectoryPolicy::default")]
    pub directory: DirectoryPolicy,
    /// The Kubernetes source; default `baseline`.
    #[serde(default)]
    pub kubernetes: KubernetesPolicy,
}

/// `sources.directory`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectoryPolicy {
    /// Default `privileged`: the host's administrator wrote it.
    #[serde(default)]
    pub profile: Profile,
}

/// `sources.kubernetes`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubernetesPolicy {
    /// Default `baseline`.
    #[serde(default = "baseline")]
    pub profile: Profile,
    /// Per-namespace overrides.
    #[serde(default)]
    pub namespaces: BTreeMap<String, Profile>,
}

fn baseline() -> Profile {
    Profile::Baseline
}

impl Default for KubernetesPolicy {
    fn default() -> Self {
        KubernetesPolicy {
            profile: Profile::Baseline,
            namespaces: BTreeMap::new(),
        }
    }
}

/// One entry of `hostPathAllowlist`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AllowedHostPath {
    /// Absolute host path; everything below it is allowed too.
    #[serde(deserialize_with = "absolute_path")]
    pub path: String,
    /// Only read-only mounts; default false. `true` or `false` only: a quoted `"false"` is
    /// an error, as in a manifest (a string that reads as a boolean is a mistake to point at,
    /// not a value to guess).
    #[serde(default, deserialize_with = "strict_bool")]
    pub read_only: bool,
}

/// A boolean written as `true` or `false`, not as a string.
fn strict_bool<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    struct V;
    impl serde::de::Visitor<'_> for V {
        type Value = bool;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("true or false")
        }
        fn visit_bool<E>(self, v: bool) -> Result<bool, E> {
            Ok(v)
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<bool, E> {
            Err(E::custom(format!(
                "expected true or false, got the string {v:?}; write true or false without quotes"
            )))
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<bool, E> {
            Err(E::custom(format!("expected true or false, got {v}")))
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<bool, E> {
            Err(E::custom(format!("expected true or false, got {v}")))
        }
    }
    d.deserialize_any(V)
}

/// An absolute path (`/srv/site`).
fn absolute_path<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let path = String::deserialize(d)?;
    if path.starts_with('/') {
        Ok(path)
    } else {
        Err(serde::de::Error::custom(format!(
            "expected an absolute path like /srv/site, got {path:?}"
        )))
    }
}

/// What the host says about paths (collected by the caller, with I/O).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostFacts {
    /// The engine's sockets (Docker, containerd, Podman), with symlinks resolved, plus the
    /// well-known paths as written.
    pub engine_sockets: Vec<String>,
    /// Each declared host path (and allowlist path) with its symlinks resolved on this host;
    /// a path that is absent is compared as written.
    pub resolved: BTreeMap<String, String>,
}

/// Well-known engine socket paths, judged even when the host has none of them.
pub const ENGINE_SOCKETS: [&str; 6] = [
    "/var/run/docker.sock",
    "/run/docker.sock",
    "/run/containerd/containerd.sock",
    "/var/run/containerd/containerd.sock",
    "/run/podman/podman.sock",
    "/run/docker/plugins",
];

/// A rule of a profile, each mirroring a Pod Security Standards control.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Rule {
    /// `privileged: true`.
    Privileged,
    /// `networkMode: host`, `hostPID`, `hostIPC`.
    HostNamespaces,
    /// A `hostPath` mount (or a `local` volume that binds a host path) outside the allowlist,
    /// or read-write where the allowlist says read-only.
    HostPathVolumes,
    /// A host path that is, contains, or leads (through symlinks) to an engine socket —
    /// refused even when allowlisted.
    EngineSocket,
    /// `devices`.
    Devices,
    /// `capAdd` beyond Docker's default set minus `NET_RAW`.
    Capabilities,
    /// `seccompProfile: Unconfined`.
    Seccomp,
    /// `appArmorProfile: Unconfined`.
    AppArmor,
    /// A sysctl outside Kubernetes' safe set.
    Sysctls,
    /// A probe's `host` pointing elsewhere.
    HostProbes,
    /// restricted: `user` must be set and not root.
    RunAsNonRoot,
    /// restricted: `allowPrivilegeEscalation: false`.
    PrivilegeEscalation,
    /// restricted: `capDrop: [ALL]`, `capAdd` only `NET_BIND_SERVICE`.
    CapabilitiesRestricted,
    /// restricted: `readOnlyRootFilesystem: true` (writable paths are declared mounts).
    ReadOnlyRootFilesystem,
}

impl Rule {
    /// The rule's name, as in messages and the README.
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::Privileged => "Privileged",
            Rule::HostNamespaces => "HostNamespaces",
            Rule::HostPathVolumes => "HostPathVolumes",
            Rule::EngineSocket => "EngineSocket",
            Rule::Devices => "Devices",
            Rule::Capabilities => "Capabilities",
            Rule::Seccomp => "Seccomp",
            Rule::AppArmor => "AppArmor",
            Rule::Sysctls => "Sysctls",
            Rule::HostProbes => "HostProbes",
            Rule::RunAsNonRoot => "RunAsNonRoot",
            Rule::PrivilegeEscalation => "PrivilegeEscalation",
            Rule::CapabilitiesRestricted => "CapabilitiesRestricted",
            Rule::ReadOnlyRootFilesystem => "ReadOnlyRootFilesystem",
        }
    }

    /// The Pod Security Standards control it mirrors (profile and control name).
    pub fn pss(self) -> &'static str {
        match self {
            Rule::Privileged => "baseline: Privileged Containers",
            Rule::HostNamespaces => "baseline: Host Namespaces",
            Rule::HostPathVolumes => "baseline: HostPath Volumes",
            Rule::EngineSocket => {
                "baseline: HostPath Volumes (the engine socket is root on the host)"
            }
            Rule::Devices => "baseline: Privileged Containers (devices are host access)",
            Rule::Capabilities => "baseline: Capabilities",
            Rule::Seccomp => "baseline: Seccomp",
            Rule::AppArmor => "baseline: AppArmor",
            Rule::Sysctls => "baseline: Sysctls",
            Rule::HostProbes => "baseline: Host Probes / Lifecycle Hooks",
            Rule::RunAsNonRoot => "restricted: Running as Non-root user",
            Rule::PrivilegeEscalation => "restricted: Privilege Escalation",
            Rule::CapabilitiesRestricted => "restricted: Capabilities",
            Rule::ReadOnlyRootFilesystem => {
                "none (berth's restricted rule: read-only root file system)"
            }
        }
    }

    /// The least profile that has the rule.
    pub fn profile(self) -> Profile {
        match self {
            Rule::RunAsNonRoot
            | Rule::PrivilegeEscalation
            | Rule::CapabilitiesRestricted
            | Rule::ReadOnlyRootFilesystem => Profile::Restricted,
            _ => Profile::Baseline,
        }
    }
}

/// One field a profile refuses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// Where the field is written (`file:line:column`), for objects of files; set by [`admit`]
    /// from the declaration's field positions (`None` from [`Policy::check`], and for custom
    /// resources, which have no file).
    pub at: Option<Origin>,
    /// The field, as written in YAML (`spec.mounts[0].hostPath.path`).
    pub field: String,
    /// The rule.
    pub rule: Rule,
    /// What is refused (field values only, never an environment value or file content).
    pub message: String,
}

impl Violation {
    /// What is refused and why, without the position and field: `capability SYS_ADMIN is not
    /// allowed (…) (rule Capabilities, Pod Security Standards baseline: Capabilities)`.
    pub fn explain(&self) -> String {
        format!(
            "{} (rule {}, Pod Security Standards {})",
            self.message,
            self.rule.as_str(),
            self.rule.pss()
        )
    }
}

impl std::fmt::Display for Violation {
    /// `file:line:column: field: explanation` (the position only for objects of files).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(at) = &self.at {
            write!(f, "{at}: ")?;
        }
        write!(f, "{}: {}", self.field, self.explain())
    }
}

/// An object the policy refuses, with every violation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The object.
    pub key: ObjectKey,
    /// Its source.
    pub source: Source,
    /// The profile it got.
    pub profile: Profile,
    /// Every violation, in field order.
    pub violations: Vec<Violation>,
    /// True when the version applied before stays in force.
    pub kept_previous: bool,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "refused by the {} profile of the {} source: ",
            self.profile.as_str(),
            self.source.as_str()
        )?;
        for (i, v) in self.violations.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{v}")?;
        }
        if self.kept_previous {
            f.write_str("; the version applied before stays in force")?;
        }
        Ok(())
    }
}

/// Kubernetes' safe sysctls (allowed by PSS baseline).
pub const SAFE_SYSCTLS: [&str; 12] = [
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
    "net.ipv4.tcp_rmem",
    "net.ipv4.tcp_wmem",
];

/// Capabilities `baseline` lets a container add: Docker's default set minus `NET_RAW` (PSS
/// baseline's list, and Nomad's Docker driver default).
pub const BASELINE_CAPABILITIES: [&str; 13] = [
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

fn capability(c: &str) -> String {
    let up = c.to_ascii_uppercase();
    up.strip_prefix("CAP_").unwrap_or(&up).to_string()
}

/// `path` equals `dir` or lies below it (both absolute, compared by components).
fn within(path: &str, dir: &str) -> bool {
    let dir = dir.trim_end_matches('/');
    dir.is_empty() || path == dir || path.starts_with(&format!("{dir}/"))
}

impl Policy {
    /// The profile of `source` for objects of `namespace`.
    pub fn profile(&self, source: Source, namespace: &str) -> Profile {
        match source {
            Source::Directory => self.sources.directory.profile,
            Source::Kubernetes => self
                .sources
                .kubernetes
                .namespaces
                .get(namespace)
                .copied()
                .unwrap_or(self.sources.kubernetes.profile),
        }
    }

    /// The violations of `manifest` under the profile of `source` and its namespace.
    pub fn check(&self, source: Source, manifest: &Manifest, host: &HostFacts) -> Vec<Violation> {
        let namespace = manifest.key().namespace;
        let profile = self.profile(source, &namespace);
        if profile == Profile::Privileged {
            return Vec::new();
        }
        let mut out = match manifest {
            Manifest::Container { spec, .. } => self.container(spec, host),
            Manifest::Volume { spec, .. } => self.volume(spec, host),
            Manifest::Network { .. } => Vec::new(),
        };
        out.retain(|v| v.rule.profile() <= profile);
        out
    }

    /// Every rule of every profile for a Container (filtered by profile in [`Policy::check`]).
    fn container(&self, spec: &ContainerSpec, host: &HostFacts) -> Vec<Violation> {
        let mut v = Vec::new();
        namespaces(&mut v, spec);
        for (i, m) in spec.mounts.iter().enumerate() {
            if let Some(h) = &m.host_path {
                for (rule, message) in self.host_path(&h.path, m.read_only, host) {
                    push(
                        &mut v,
                        format!("spec.mounts[{i}].hostPath.path"),
                        rule,
                        message,
                    );
                }
            }
        }
        for (i, d) in spec.devices.iter().enumerate() {
            let message = format!("host device {:?} is not allowed", d.host_path);
            push(
                &mut v,
                format!("spec.devices[{i}].hostPath"),
                Rule::Devices,
                message,
            );
        }
        capabilities(&mut v, spec);
        confinement(&mut v, spec);
        probes(&mut v, spec);
        restricted(&mut v, spec);
        v
    }

    /// A `local` volume whose options bind a host path is a host path.
    fn volume(&self, spec: &VolumeSpec, host: &HostFacts) -> Vec<Violation> {
        let bind = spec
            .driver_opts
            .get("o")
            .is_some_and(|o| o.split(',').any(|x| x == "bind" || x == "rbind"));
        let local = spec.driver.as_deref().is_none_or(|d| d == "local");
        match spec.driver_opts.get("device") {
            Some(device) if bind && local => {
                let read_only = spec
                    .driver_opts
                    .get("o")
                    .is_some_and(|o| o.split(',').any(|x| x == "ro"));
                self.host_path(device, read_only, host)
                    .into_iter()
                    .map(|(rule, message)| Violation {
                        at: None,
                        field: "spec.driverOpts.device".into(),
                        rule,
                        message,
                    })
                    .collect()
            }
            _ => Vec::new(),
        }
    }

    /// The engine-socket and allowlist rules for one host path.
    fn host_path(&self, path: &str, read_only: bool, host: &HostFacts) -> Vec<(Rule, String)> {
        let mut out = Vec::new();
        let resolved = host.resolved.get(path).map_or(path, String::as_str);
        let leads = if resolved == path {
            String::new()
        } else {
            format!(" (through symlinks: {resolved})")
        };
        let sockets = ENGINE_SOCKETS
            .iter()
            .copied()
            .chain(host.engine_sockets.iter().map(String::as_str));
        let socket_name = |p: &str| {
            p.rsplit('/')
                .next()
                .is_some_and(|n| matches!(n, "docker.sock" | "containerd.sock" | "podman.sock"))
        };
        let mut hit = socket_name(path) || socket_name(resolved);
        for s in sockets {
            hit |= within(s, path) || within(s, resolved);
        }
        if hit {
            out.push((Rule::EngineSocket, format!("host path {path:?}{leads} is or contains the container engine's socket (root on the host)")));
        }
        let allowed = self.host_path_allowlist.iter().find(|a| {
            let dir = host
                .resolved
                .get(&a.path)
                .map_or(a.path.as_str(), String::as_str);
            within(path, &a.path) && within(resolved, dir)
        });
        match allowed {
            None => out.push((Rule::HostPathVolumes, format!("host path {path:?}{leads} is not in the policy's hostPathAllowlist"))),
            Some(a) if a.read_only && !read_only => out.push((Rule::HostPathVolumes, format!("host path {path:?} is allowed read-only only (hostPathAllowlist {:?}); set readOnly: true", a.path))),
            Some(_) => {}
        }
        out
    }
}

fn push(v: &mut Vec<Violation>, field: impl Into<String>, rule: Rule, message: impl Into<String>) {
    v.push(Violation {
        at: None,
        field: field.into(),
        rule,
        message: message.into(),
    });
}

/// `privileged`, `networkMode: host`, `hostPID`, `hostIPC`.
fn namespaces(v: &mut Vec<Violation>, spec: &ContainerSpec) {
    if spec.privileged {
        push(
            v,
            "spec.privileged",
            Rule::Privileged,
            "a privileged container is not allowed",
        );
    }
    if spec.network_mode == Some(berth_api::NetworkMode::Host) {
        push(
            v,
            "spec.networkMode",
            Rule::HostNamespaces,
            "the host's network namespace (networkMode: host) is not allowed",
        );
    }
    if spec.host_pid {
        push(
            v,
            "spec.hostPID",
            Rule::HostNamespaces,
            "the host's PID namespace is not allowed",
        );
    }
    if spec.host_ipc {
        push(
            v,
            "spec.hostIPC",
            Rule::HostNamespaces,
            "the host's IPC namespace is not allowed",
        );
    }
}

/// `capAdd` (baseline and restricted) and `capDrop` (restricted).
fn capabilities(v: &mut Vec<Violation>, spec: &ContainerSpec) {
    for (i, c) in spec.cap_add.iter().enumerate() {
        if !BASELINE_CAPABILITIES.contains(&capability(c).as_str()) {
            let message = format!(
                "capability {c} is not allowed (baseline allows Docker's default set without NET_RAW: {})",
                BASELINE_CAPABILITIES.join(", ")
            );
            push(v, format!("spec.capAdd[{i}]"), Rule::Capabilities, message);
        }
        if capability(c) != "NET_BIND_SERVICE" {
            let message = format!(
                "capability {c} is not allowed (restricted allows adding only NET_BIND_SERVICE)"
            );
            push(
                v,
                format!("spec.capAdd[{i}]"),
                Rule::CapabilitiesRestricted,
                message,
            );
        }
    }
    if !spec.cap_drop.iter().any(|c| capability(c) == "ALL") {
        push(
            v,
            "spec.capDrop",
            Rule::CapabilitiesRestricted,
            "must drop ALL capabilities",
        );
    }
}

/// Seccomp, AppArmor and sysctls.
fn confinement(v: &mut Vec<Violation>, spec: &ContainerSpec) {
    if spec
        .seccomp_profile
        .as_ref()
        .is_some_and(|p| p.type_ == ProfileType::Unconfined)
    {
        push(
            v,
            "spec.seccompProfile.type",
            Rule::Seccomp,
            "an unconfined seccomp profile is not allowed",
        );
    }
    if spec
        .app_armor_profile
        .as_ref()
        .is_some_and(|p| p.type_ == ProfileType::Unconfined)
    {
        push(
            v,
            "spec.appArmorProfile.type",
            Rule::AppArmor,
            "an unconfined AppArmor profile is not allowed",
        );
    }
    for name in spec.sysctls.keys() {
        if !SAFE_SYSCTLS.contains(&name.as_str()) {
            let message = format!(
                "sysctl {name} is not in Kubernetes' safe set ({})",
                SAFE_SYSCTLS.join(", ")
            );
            push(v, format!("spec.sysctls.{name}"), Rule::Sysctls, message);
        }
    }
}

/// A probe's `host` pointing elsewhere.
fn probes(v: &mut Vec<Violation>, spec: &ContainerSpec) {
    for (field, probe) in [
        ("livenessProbe", &spec.liveness_probe),
        ("readinessProbe", &spec.readiness_probe),
        ("startupProbe", &spec.startup_probe),
    ] {
        let Some(p) = probe else { continue };
        let hosts = [
            ("httpGet", p.http_get.as_ref().and_then(|h| h.host.as_ref())),
            (
                "tcpSocket",
                p.tcp_socket.as_ref().and_then(|t| t.host.as_ref()),
            ),
        ];
        for (kind, h) in hosts {
            if let Some(h) = h.filter(|h| !h.is_empty() && !is_local(h)) {
                let message = format!("a probe of another host ({h}) is not allowed");
                push(
                    v,
                    format!("spec.{field}.{kind}.host"),
                    Rule::HostProbes,
                    message,
                );
            }
        }
    }
}

/// The restricted profile's own rules: non-root user, no privilege escalation, read-only root.
fn restricted(v: &mut Vec<Violation>, spec: &ContainerSpec) {
    let root = spec.user.as_deref().is_none_or(|u| {
        let name = u.split(':').next().unwrap_or_default();
        name.is_empty() || name == "0" || name == "root"
    });
    if root {
        push(
            v,
            "spec.user",
            Rule::RunAsNonRoot,
            "must run as a non-root user (set user to a non-zero uid or a user name other than root)",
        );
    }
    if spec.allow_privilege_escalation != Some(false) {
        push(
            v,
            "spec.allowPrivilegeEscalation",
            Rule::PrivilegeEscalation,
            "must be false",
        );
    }
    if !spec.read_only_root_filesystem {
        push(
            v,
            "spec.readOnlyRootFilesystem",
            Rule::ReadOnlyRootFilesystem,
            "must be true (writable paths are declared mounts: volume or tmpfs)",
        );
    }
}

fn is_local(h: &str) -> bool {
    matches!(h, "localhost" | "127.0.0.1" | "::1")
}

/// Applies `policy` to each source's declarations: a refused object is left out, or replaced
/// by the version in `previous` (the last merge's result) when there is one, so that it never
/// reaches `plan` and what runs stays. Returns the admitted declarations (for
/// [`crate::merge::merge`]) and the refusals, sorted by object.
pub fn admit(
    previous: &BTreeMap<ObjectKey, Declaration>,
    declarations: impl IntoIterator<Item = (Source, Declaration)>,
    policy: &Policy,
    host: &HostFacts,
) -> (Vec<Declaration>, Vec<Refusal>) {
    let mut admitted = Vec::new();
    let mut refused = Vec::new();
    for (source, d) in declarations {
        let mut violations = policy.check(source, &d.manifest, host);
        if violations.is_empty() {
            admitted.push(d);
            continue;
        }
        if let Origin::File { .. } = d.origin {
            for v in &mut violations {
                v.at = Some(d.origin_of(&v.field));
            }
        }
        let key = d.manifest.key();
        // The version applied before stays only while the policy still admits it (a policy
        // change, or a host path whose symlink now points elsewhere, re-judges it too): what
        // runs keeps running, but nothing the policy forbids is created again.
        let kept = previous
            .get(&key)
            .filter(|p| policy.check(source, &p.manifest, host).is_empty())
            .cloned();
        refused.push(Refusal {
            profile: policy.profile(source, &key.namespace),
            key,
            source,
            violations,
            kept_previous: kept.is_some(),
        });
        admitted.extend(kept);
    }
    refused.sort_by(|a, b| a.key.cmp(&b.key));
    (admitted, refused)
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_api::{
        AppArmorProfile, Device, HostPathMount, HttpGetAction, ManifestMetadata, Mount, Probe,
        SeccompProfile,
    };

    fn container(f: impl Fn(&mut ContainerSpec)) -> Manifest {
        let mut spec = ContainerSpec {
            image: Some("busybox".into()),
            ..Default::default()
        };
        f(&mut spec);
        Manifest::Container {
            metadata: ManifestMetadata {
                name: "c".into(),
                namespace: Some("ns".into()),
                ..Default::default()
            },
            spec: std::sync::Arc::new(spec),
        }
    }

    /// A spec that every profile accepts (restricted's rules all met).
    fn compliant(s: &mut ContainerSpec) {
        s.user = Some("1000".into());
        s.allow_privilege_escalation = Some(false);
        s.cap_drop = vec!["ALL".into()];
        s.read_only_root_filesystem = true;
    }

    fn host_path(path: &str, read_only: bool) -> Mount {
        Mount {
            mount_path: "/m".into(),
            read_only,
            host_path: Some(HostPathMount {
                path: path.into(),
                path_type: None,
            }),
            ..Default::default()
        }
    }

    fn policy(directory: Profile) -> Policy {
        Policy {
            sources: SourcePolicies {
                directory: DirectoryPolicy { profile: directory },
                ..Default::default()
            },
            host_path_allowlist: vec![
                AllowedHostPath {
                    path: "/srv/site".into(),
                    read_only: true,
                },
                AllowedHostPath {
                    path: "/srv/data".into(),
                    read_only: false,
                },
            ],
        }
    }

    /// Done-when 3: every rule against the three profiles, with the Pod Security Standards
    /// control it mirrors. Each row: the case, the change to a compliant spec, the field and
    /// the rule refused (None: allowed), for baseline and for restricted; privileged allows
    /// everything.
    #[test]
    #[allow(clippy::type_complexity)]
    fn every_rule_against_the_profiles() {
        let socket_link = HostFacts {
            engine_sockets: vec!["/var/run/docker.sock".into()],
            resolved: [
                (
                    "/srv/site/engine".to_string(),
                    "/run/docker.sock".to_string(),
                ),
                ("/srv/data/escape".to_string(), "/".to_string()),
            ]
            .into(),
        };
        let hp = |p: &'static str, ro: bool| {
            move |s: &mut ContainerSpec| s.mounts = vec![host_path(p, ro)]
        };
        let table: Vec<(
            &str,
            Box<dyn Fn(&mut ContainerSpec)>,
            Option<(&str, Rule, &str)>,
            Option<(&str, Rule)>,
        )> = vec![
            ("compliant", Box::new(|_| {}), None, None),
            (
                "privileged",
                Box::new(|s| s.privileged = true),
                Some((
                    "spec.privileged",
                    Rule::Privileged,
                    "baseline: Privileged Containers",
                )),
                Some(("spec.privileged", Rule::Privileged)),
            ),
            (
                "host network",
                Box::new(|s| s.network_mode = Some(berth_api::NetworkMode::Host)),
                Some((
                    "spec.networkMode",
                    Rule::HostNamespaces,
                    "baseline: Host Namespaces",
                )),
                Some(("spec.networkMode", Rule::HostNamespaces)),
            ),
            (
                "host PID",
                Box::new(|s| s.host_pid = true),
                Some((
                    "spec.hostPID",
                    Rule::HostNamespaces,
                    "baseline: Host Namespaces",
                )),
                Some(("spec.hostPID", Rule::HostNamespaces)),
            ),
            (
                "host IPC",
                Box::new(|s| s.host_ipc = true),
                Some((
                    "spec.hostIPC",
                    Rule::HostNamespaces,
                    "baseline: Host Namespaces",
                )),
                Some(("spec.hostIPC", Rule::HostNamespaces)),
            ),
            (
                "hostPath /",
                Box::new(hp("/", true)),
                Some((
                    "spec.mounts[0].hostPath.path",
                    Rule::EngineSocket,
                    "baseline: HostPath Volumes (the engine socket is root on the host)",
                )),
                Some(("spec.mounts[0].hostPath.path", Rule::EngineSocket)),
            ),
            (
                "hostPath /etc",
                Box::new(hp("/etc", true)),
                Some((
                    "spec.mounts[0].hostPath.path",
                    Rule::HostPathVolumes,
                    "baseline: HostPath Volumes",
                )),
                Some(("spec.mounts[0].hostPath.path", Rule::HostPathVolumes)),
            ),
            (
                "allowlisted read-only",
                Box::new(hp("/srv/site/www", true)),
                None,
                None,
            ),
            (
                "allowlisted, read-write where read-only",
                Box::new(hp("/srv/site", false)),
                Some((
                    "spec.mounts[0].hostPath.path",
                    Rule::HostPathVolumes,
                    "baseline: HostPath Volumes",
                )),
                Some(("spec.mounts[0].hostPath.path", Rule::HostPathVolumes)),
            ),
            (
                "allowlisted read-write",
                Box::new(hp("/srv/data", false)),
                None,
                None,
            ),
            (
                "allowlisted path, symlink out of it",
                Box::new(hp("/srv/data/escape", false)),
                Some((
                    "spec.mounts[0].hostPath.path",
                    Rule::EngineSocket,
                    "baseline: HostPath Volumes (the engine socket is root on the host)",
                )),
                Some(("spec.mounts[0].hostPath.path", Rule::EngineSocket)),
            ),
            (
                "engine socket",
                Box::new(hp("/var/run/docker.sock", true)),
                Some((
                    "spec.mounts[0].hostPath.path",
                    Rule::EngineSocket,
                    "baseline: HostPath Volumes (the engine socket is root on the host)",
                )),
                Some(("spec.mounts[0].hostPath.path", Rule::EngineSocket)),
            ),
            (
                "engine socket through an allowlisted symlink",
                Box::new(hp("/srv/site/engine", true)),
                Some((
                    "spec.mounts[0].hostPath.path",
                    Rule::EngineSocket,
                    "baseline: HostPath Volumes (the engine socket is root on the host)",
                )),
                Some(("spec.mounts[0].hostPath.path", Rule::EngineSocket)),
            ),
            (
                "engine socket under another name",
                Box::new(hp("/opt/x/docker.sock", true)),
                Some((
                    "spec.mounts[0].hostPath.path",
                    Rule::EngineSocket,
                    "baseline: HostPath Volumes (the engine socket is root on the host)",
                )),
                Some(("spec.mounts[0].hostPath.path", Rule::EngineSocket)),
            ),
            (
                "a directory holding the socket",
                Box::new(hp("/run", true)),
                Some((
                    "spec.mounts[0].hostPath.path",
                    Rule::EngineSocket,
                    "baseline: HostPath Volumes (the engine socket is root on the host)",
                )),
                Some(("spec.mounts[0].hostPath.path", Rule::EngineSocket)),
            ),
            (
                "device",
                Box::new(|s| {
                    s.devices = vec![Device {
                        host_path: "/dev/fuse".into(),
                        ..Default::default()
                    }]
                }),
                Some((
                    "spec.devices[0].hostPath",
                    Rule::Devices,
                    "baseline: Privileged Containers (devices are host access)",
                )),
                Some(("spec.devices[0].hostPath", Rule::Devices)),
            ),
            (
                "capAdd SYS_ADMIN",
                Box::new(|s| s.cap_add = vec!["SYS_ADMIN".into()]),
                Some((
                    "spec.capAdd[0]",
                    Rule::Capabilities,
                    "baseline: Capabilities",
                )),
                Some(("spec.capAdd[0]", Rule::Capabilities)),
            ),
            (
                "capAdd NET_RAW",
                Box::new(|s| s.cap_add = vec!["cap_net_raw".into()]),
                Some((
                    "spec.capAdd[0]",
                    Rule::Capabilities,
                    "baseline: Capabilities",
                )),
                Some(("spec.capAdd[0]", Rule::Capabilities)),
            ),
            (
                "capAdd CHOWN",
                Box::new(|s| s.cap_add = vec!["CHOWN".into()]),
                None,
                Some(("spec.capAdd[0]", Rule::CapabilitiesRestricted)),
            ),
            (
                "capAdd NET_BIND_SERVICE",
                Box::new(|s| s.cap_add = vec!["NET_BIND_SERVICE".into()]),
                None,
                None,
            ),
            (
                "seccomp unconfined",
                Box::new(|s| {
                    s.seccomp_profile = Some(SeccompProfile {
                        type_: ProfileType::Unconfined,
                        localhost_profile: None,
                    })
                }),
                Some((
                    "spec.seccompProfile.type",
                    Rule::Seccomp,
                    "baseline: Seccomp",
                )),
                Some(("spec.seccompProfile.type", Rule::Seccomp)),
            ),
            (
                "seccomp localhost",
                Box::new(|s| {
                    s.seccomp_profile = Some(SeccompProfile {
                        type_: ProfileType::Localhost,
                        localhost_profile: Some("/p.json".into()),
                    })
                }),
                None,
                None,
            ),
            (
                "apparmor unconfined",
                Box::new(|s| {
                    s.app_armor_profile = Some(AppArmorProfile {
                        type_: ProfileType::Unconfined,
                        localhost_profile: None,
                    })
                }),
                Some((
                    "spec.appArmorProfile.type",
                    Rule::AppArmor,
                    "baseline: AppArmor",
                )),
                Some(("spec.appArmorProfile.type", Rule::AppArmor)),
            ),
            (
                "unsafe sysctl",
                Box::new(|s| {
                    s.sysctls.insert("kernel.msgmax".into(), "1".into());
                }),
                Some((
                    "spec.sysctls.kernel.msgmax",
                    Rule::Sysctls,
                    "baseline: Sysctls",
                )),
                Some(("spec.sysctls.kernel.msgmax", Rule::Sysctls)),
            ),
            (
                "safe sysctl",
                Box::new(|s| {
                    s.sysctls
                        .insert("net.ipv4.ip_unprivileged_port_start".into(), "0".into());
                }),
                None,
                None,
            ),
            (
                "probe of another host",
                Box::new(|s| {
                    s.liveness_probe = Some(Probe {
                        http_get: Some(HttpGetAction {
                            port: 80,
                            host: Some("10.0.0.1".into()),
                            ..Default::default()
                        }),
                        ..Default::default()
                    })
                }),
                Some((
                    "spec.livenessProbe.httpGet.host",
                    Rule::HostProbes,
                    "baseline: Host Probes / Lifecycle Hooks",
                )),
                Some(("spec.livenessProbe.httpGet.host", Rule::HostProbes)),
            ),
            (
                "root user",
                Box::new(|s| s.user = Some("0:0".into())),
                None,
                Some(("spec.user", Rule::RunAsNonRoot)),
            ),
            (
                "image's user",
                Box::new(|s| s.user = None),
                None,
                Some(("spec.user", Rule::RunAsNonRoot)),
            ),
            (
                "privilege escalation",
                Box::new(|s| s.allow_privilege_escalation = None),
                None,
                Some(("spec.allowPrivilegeEscalation", Rule::PrivilegeEscalation)),
            ),
            (
                "capabilities kept",
                Box::new(|s| s.cap_drop.clear()),
                None,
                Some(("spec.capDrop", Rule::CapabilitiesRestricted)),
            ),
            (
                "writable root",
                Box::new(|s| s.read_only_root_filesystem = false),
                None,
                Some(("spec.readOnlyRootFilesystem", Rule::ReadOnlyRootFilesystem)),
            ),
        ];
        for (case, change, baseline, restricted) in &table {
            let m = container(|s| {
                compliant(s);
                change(s);
            });
            assert!(
                policy(Profile::Privileged)
                    .check(Source::Directory, &m, &socket_link)
                    .is_empty(),
                "{case}: privileged allows anything"
            );
            let got = policy(Profile::Baseline).check(Source::Directory, &m, &socket_link);
            match baseline {
                None => assert!(got.is_empty(), "{case}: baseline allows: {got:?}"),
                Some((field, rule, pss)) => {
                    assert!(
                        got.iter().any(|v| v.field == *field && v.rule == *rule),
                        "{case}: baseline refuses {field} by {rule:?}: {got:?}"
                    );
                    assert_eq!(rule.pss(), *pss, "{case}");
                }
            }
            let got = policy(Profile::Restricted).check(Source::Directory, &m, &socket_link);
            match restricted {
                None => assert!(got.is_empty(), "{case}: restricted allows: {got:?}"),
                Some((field, rule)) => assert!(
                    got.iter().any(|v| v.field == *field && v.rule == *rule),
                    "{case}: restricted refuses {field} by {rule:?}: {got:?}"
                ),
            }
        }
        for r in [
            Rule::RunAsNonRoot,
            Rule::PrivilegeEscalation,
            Rule::CapabilitiesRestricted,
        ] {
            assert!(r.pss().starts_with("restricted: "), "{r:?}");
        }
    }

    #[test]
    fn a_local_volume_binding_a_host_path_is_a_host_path() {
        let vol = Manifest::Volume {
            metadata: ManifestMetadata {
                name: "v".into(),
                ..Default::default()
            },
            spec: VolumeSpec {
                driver_opts: [
                    ("type".to_string(), "none".to_string()),
                    ("o".to_string(), "bind".to_string()),
                    ("device".to_string(), "/".to_string()),
                ]
                .into(),
                ..Default::default()
            },
        };
        let v = policy(Profile::Baseline).check(Source::Directory, &vol, &HostFacts::default());
        assert!(
            v.iter().any(|v| v.field == "spec.driverOpts.device"),
            "{v:?}"
        );
    }

    #[test]
    fn defaults_and_namespace_overrides() {
        let p = Policy::default();
        assert_eq!(p.profile(Source::Directory, "x"), Profile::Privileged);
        assert_eq!(p.profile(Source::Kubernetes, "x"), Profile::Baseline);
        let host_net = container(|s| s.network_mode = Some(berth_api::NetworkMode::Host));
        assert!(
            p.check(Source::Directory, &host_net, &HostFacts::default())
                .is_empty()
        );
        assert_eq!(
            p.check(Source::Kubernetes, &host_net, &HostFacts::default())
                .len(),
            1
        );
        let mut p = p;
        p.sources
            .kubernetes
            .namespaces
            .insert("ns".into(), Profile::Privileged);
        assert!(
            p.check(Source::Kubernetes, &host_net, &HostFacts::default())
                .is_empty()
        );
    }

    /// A refused object keeps its previous version in force; without one it is left out. The
    /// message names field, rule, profile and source, and never an environment value.
    #[test]
    fn admit_keeps_the_version_applied_before() {
        let with = |mode: Option<&str>| Declaration {
            manifest: container(|s| {
                s.network_mode = mode.map(berth_api::NetworkMode::parse);
                s.env = vec![berth_api::EnvVar {
                    name: "PASSWORD".into(),
                    value: "hunter2".into(),
                    value_from: None,
                }];
            }),
            origin: crate::merge::Origin::Cluster {
                kind: "Container".into(),
                namespace: "ns".into(),
                name: "c".into(),
            },
            fields: Default::default(),
        };
        let p = Policy::default();
        let (ok, refused) = admit(
            &BTreeMap::new(),
            [(Source::Kubernetes, with(None))],
            &p,
            &HostFacts::default(),
        );
        assert_eq!(ok.len(), 1);
        assert!(refused.is_empty());
        let previous: BTreeMap<ObjectKey, Declaration> =
            ok.into_iter().map(|d| (d.manifest.key(), d)).collect();
        let (ok, refused) = admit(
            &previous,
            [(Source::Kubernetes, with(Some("host")))],
            &p,
            &HostFacts::default(),
        );
        assert_eq!(
            ok,
            previous.values().cloned().collect::<Vec<_>>(),
            "previous stays"
        );
        let msg = refused[0].to_string();
        assert!(
            msg.contains("spec.networkMode")
                && msg.contains("HostNamespaces")
                && msg.contains("baseline")
                && msg.contains("kubernetes"),
            "{msg}"
        );
        assert!(
            msg.contains("the version applied before stays in force"),
            "{msg}"
        );
        assert!(!msg.contains("hunter2"), "{msg}");
        let (ok, refused) = admit(
            &BTreeMap::new(),
            [(Source::Kubernetes, with(Some("host")))],
            &p,
            &HostFacts::default(),
        );
        assert!(ok.is_empty());
        assert!(!refused[0].kept_previous);

        // A previous version that the policy refuses too (admitted under a laxer policy) is
        // not kept: nothing the policy forbids is created again.
        let previous: BTreeMap<ObjectKey, Declaration> = [with(Some("host"))]
            .into_iter()
            .map(|d| (d.manifest.key(), d))
            .collect();
        let mut changed = with(Some("host"));
        if let Manifest::Container { spec, .. } = &mut changed.manifest {
            let spec = std::sync::Arc::make_mut(spec);
            spec.args = Some(vec!["edited".into()]);
        }
        let (ok, refused) = admit(
            &previous,
            [(Source::Kubernetes, changed)],
            &p,
            &HostFacts::default(),
        );
        assert!(ok.is_empty(), "{ok:?}");
        assert!(!refused[0].kept_previous);
    }
}
