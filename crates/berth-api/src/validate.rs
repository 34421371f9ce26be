//! Validation of single objects (no cross-object checks; those live in `berth-core`).
//!
//! Every error names the field by its path as written in YAML (`spec.ports[1].hostPort`), so that
//! a source can turn the path into a file position.

use std::collections::BTreeMap;

use crate::{
    Build, ContainerSpec, KeyRef, LabelSelector, ManifestMetadata, NetworkMode, NetworkSpec,
    ValueFrom, VolumeSpec, quantity, selector,
};

/// One invalid field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// Path of the field as written in YAML, e.g. `spec.mounts[0].mountPath`.
    pub path: String,
    /// What was expected.
    pub message: String,
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

struct Errors(Vec<FieldError>);

impl Errors {
    fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError {
            path: path.into(),
            message: message.into(),
        });
    }
}

/// `updateStrategy`, `minReadySeconds` and `progressDeadlineSeconds` (Kubernetes Deployment's
/// rules).
fn check_update_strategy(e: &mut Errors, spec: &ContainerSpec) {
    if let Some(us) = &spec.update_strategy
        && let Some(ru) = &us.rolling_update
    {
        if us.type_ == crate::UpdateStrategyType::Recreate {
            e.push(
                "spec.updateStrategy.rollingUpdate",
                "allowed only with type RollingUpdate",
            );
        }
        let mut zero = 0;
        for (field, v) in [
            ("maxUnavailable", &ru.max_unavailable),
            ("maxSurge", &ru.max_surge),
        ] {
            let Some(v) = v else { continue };
            let path = format!("spec.updateStrategy.rollingUpdate.{field}");
            let percent = matches!(v, crate::IntOrString::String(_));
            let fixed_port = spec.ports.iter().any(|p| p.host_port.is_some());
            let fixed_ip = spec.networks.iter().any(|n| n.ipv4_address.is_some());
            match crate::scaled_int_or_percent(v, 100, false) {
                Ok(0) => zero += 1,
                Ok(pct) if field == "maxUnavailable" && percent && pct > 100 => {
                    e.push(path, format!("expected a percentage of at most 100%, got {pct}%"));
                }
                Ok(_) if field == "maxSurge" && fixed_port => e.push(
                    path,
                    "must be 0 (or left out) with a fixed hostPort: two copies cannot bind the same port, so updates are stop-first",
                ),
                Ok(_) if field == "maxSurge" && fixed_ip => e.push(
                    path,
                    "must be 0 (or left out) with a fixed networks[].ipv4Address: two copies cannot hold the same address, so updates are stop-first",
                ),
                Ok(_) => {}
                Err(why) => e.push(path, why),
            }
        }
        if zero == 2 {
            e.push(
                "spec.updateStrategy.rollingUpdate.maxUnavailable",
                "may not be 0 when maxSurge is 0 (the update could never make progress)",
            );
        }
    }
    if let (Some(deadline), min_ready) = (
        spec.progress_deadline_seconds,
        spec.min_ready_seconds.unwrap_or(0),
    ) && deadline <= min_ready
    {
        e.push(
            "spec.progressDeadlineSeconds",
            format!("expected more than minReadySeconds ({min_ready}), got {deadline}"),
        );
    }
}

/// True for a DNS-1123 label: 1–63 of `[a-z0-9-]`, starting and ending alphanumeric.
pub fn is_dns1123_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// True for a DNS-1123 subdomain: dot-separated labels, at most 253 characters.
pub fn is_dns1123_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_dns1123_label)
}

/// True for a name the engine accepts for a container: `[a-zA-Z0-9][a-zA-Z0-9_.-]*`.
pub fn is_engine_name(s: &str) -> bool {
    let mut bytes = s.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphanumeric())
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-')
}

/// Checks `metadata`: name is a DNS-1123 subdomain, namespace a DNS-1123 label.
pub fn validate_metadata(m: &ManifestMetadata) -> Vec<FieldError> {
    let mut e = Errors(Vec::new());
    if !is_dns1123_subdomain(&m.name) {
        e.push(
            "metadata.name",
            format!(
                "expected a DNS-1123 subdomain (lower-case letters, digits, '-' and '.', at most 253 characters), got {:?}",
                m.name
            ),
        );
    }
    if let Some(ns) = &m.namespace
        && !is_dns1123_label(ns)
    {
        e.push(
            "metadata.namespace",
            format!(
                "expected a DNS-1123 label (lower-case letters, digits and '-', at most 63 characters), got {ns:?}"
            ),
        );
    }
    e.0
}

fn check_build(e: &mut Errors, build: &Build) {
    if build.context.trim().is_empty() {
        e.push(
            "spec.build.context",
            "expected a directory (relative to the manifest file's directory), got an empty string",
        );
    }
    if let Some(file) = &build.dockerfile {
        let escapes = file.split('/').any(|c| c == "..");
        if file.trim().is_empty() || file.starts_with('/') || escapes {
            e.push(
                "spec.build.dockerfile",
                format!("expected a path relative to the context and inside it, like Dockerfile or docker/app.Dockerfile, got {file:?}"),
            );
        }
    }
    for name in build.args.keys() {
        let mut chars = name.chars();
        let ok = chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !ok {
            e.push(
                format!("spec.build.args.{name}"),
                format!("expected a build argument name like VERSION ([A-Za-z_][A-Za-z0-9_]*), got {name:?}"),
            );
        }
    }
    if let Some(target) = &build.target {
        let mut chars = target.chars();
        let ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
            && chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
        if !ok {
            e.push(
                "spec.build.target",
                format!("expected a build stage name ([a-zA-Z][a-zA-Z0-9_.-]*), got {target:?}"),
            );
        }
    }
}

fn check_labels(e: &mut Errors, path: &str, labels: &BTreeMap<String, String>) {
    for key in labels.keys() {
        if key.starts_with("berth.dev/") {
            e.push(
                format!("{path}.{key}"),
                "label keys under berth.dev/ are reserved for berth",
            );
        } else if key.is_empty() {
            e.push(path, "label keys must not be empty");
        }
    }
}

fn check_selector(e: &mut Errors, selector: Option<&LabelSelector>) {
    if let Some(sel) = selector {
        for (path, message) in selector::check(sel) {
            e.push(format!("spec.hostSelector.{path}"), message);
        }
    }
}

fn check_key_ref(e: &mut Errors, path: &str, r: &KeyRef) {
    if !is_dns1123_subdomain(&r.name) {
        e.push(
            format!("{path}.name"),
            format!(
                "expected the name of a Secret or ConfigMap, got {:?}",
                r.name
            ),
        );
    }
    let key_ok = !r.key.is_empty()
        && r.key.len() <= 253
        && r.key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if !key_ok {
        e.push(
            format!("{path}.key"),
            format!(
                "expected a key of letters, digits, '-', '_' and '.', got {:?}",
                r.key
            ),
        );
    }
}

fn check_value_from(e: &mut Errors, path: &str, v: &ValueFrom) {
    match (&v.secret_key_ref, &v.config_map_key_ref) {
        (Some(r), None) => check_key_ref(e, &format!("{path}.secretKeyRef"), r),
        (None, Some(r)) => check_key_ref(e, &format!("{path}.configMapKeyRef"), r),
        _ => e.push(
            path,
            "expected exactly one of secretKeyRef, configMapKeyRef",
        ),
    }
}

/// Checks a `Network` spec.
pub fn validate_network(spec: &NetworkSpec) -> Vec<FieldError> {
    let mut e = Errors(Vec::new());
    check_external(
        &mut e,
        spec.external,
        spec.external_name.as_ref(),
        &[
            ("driver", spec.driver.is_some()),
            ("internal", spec.internal),
            ("attachable", spec.attachable),
            ("enableIPv6", spec.enable_ipv6),
            ("ipam", spec.ipam.is_some()),
            ("options", !spec.options.is_empty()),
            ("labels", !spec.labels.is_empty()),
        ],
    );
    check_selector(&mut e, spec.host_selector.as_ref());
    if let Some(ipam) = &spec.ipam {
        for (i, c) in ipam.config.iter().enumerate() {
            if !is_cidr(&c.subnet) {
                e.push(
                    format!("spec.ipam.config[{i}].subnet"),
                    format!("expected a CIDR such as 10.88.0.0/24, got {:?}", c.subnet),
                );
            }
            if let Some(g) = &c.gateway {
                if g.parse::<std::net::IpAddr>().is_err() {
                    e.push(
                        format!("spec.ipam.config[{i}].gateway"),
                        format!("expected an IP address, got {g:?}"),
                    );
                } else if cidr_contains(&c.subnet, g) == Some(false) {
                    e.push(
                        format!("spec.ipam.config[{i}].gateway"),
                        format!("the gateway {g} is outside the subnet {}", c.subnet),
                    );
                }
            }
            if let Some(r) = &c.ip_range
                && !is_cidr(r)
            {
                e.push(
                    format!("spec.ipam.config[{i}].ipRange"),
                    format!("expected a CIDR, got {r:?}"),
                );
            }
        }
    }
    check_labels(&mut e, "spec.labels", &spec.labels);
    e.0
}

/// Linux capability names (capabilities(7), Linux 6.x), without the `CAP_` prefix.
const CAPABILITIES: [&str; 41] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// A capability as Docker accepts it: `ALL`, or a name with or without `CAP_`, any case.
pub fn is_capability(s: &str) -> bool {
    let up = s.to_ascii_uppercase();
    let name = up.strip_prefix("CAP_").unwrap_or(&up);
    name == "ALL" || CAPABILITIES.contains(&name)
}

/// Linux signal names (signal(7)), without the `SIG` prefix.
const SIGNALS: [&str; 34] = [
    "HUP", "INT", "QUIT", "ILL", "TRAP", "ABRT", "IOT", "BUS", "FPE", "KILL", "USR1", "SEGV",
    "USR2", "PIPE", "ALRM", "TERM", "STKFLT", "CHLD", "CLD", "CONT", "STOP", "TSTP", "TTIN",
    "TTOU", "URG", "XCPU", "XFSZ", "VTALRM", "PROF", "WINCH", "IO", "POLL", "PWR", "SYS",
];

/// A stop signal as the engine accepts it: a number 1–64, or a name with or without `SIG`
/// (`SIGTERM`, `TERM`, `SIGRTMIN+3`, `SIGRTMAX-2`).
pub fn is_signal(s: &str) -> bool {
    if let Ok(n) = s.parse::<u8>() {
        return (1..=64).contains(&n);
    }
    let name = s.strip_prefix("SIG").unwrap_or(s);
    if SIGNALS.contains(&name) {
        return true;
    }
    for (base, sign) in [("RTMIN", '+'), ("RTMAX", '-')] {
        if let Some(rest) = name.strip_prefix(base) {
            if rest.is_empty() {
                return true;
            }
            return rest
                .strip_prefix(sign)
                .and_then(|n| n.parse::<u8>().ok())
                .is_some_and(|n| (1..=30).contains(&n));
        }
    }
    false
}

/// A host name for `/etc/hosts`: 1–253 characters of letters, digits, `-`, `_` and `.`, no
/// empty label, none longer than 63.
pub fn is_host_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// `ip` lies inside `cidr` (both valid, same family).
fn cidr_contains(cidr: &str, ip: &str) -> Option<bool> {
    use std::net::IpAddr;
    let (net, bits) = cidr.split_once('/')?;
    let bits: u32 = bits.parse().ok()?;
    match (net.parse::<IpAddr>().ok()?, ip.parse::<IpAddr>().ok()?) {
        (IpAddr::V4(n), IpAddr::V4(a)) => {
            let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
            Some(u32::from(n) & mask == u32::from(a) & mask)
        }
        (IpAddr::V6(n), IpAddr::V6(a)) => {
            let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
            Some(u128::from(n) & mask == u128::from(a) & mask)
        }
        _ => Some(false),
    }
}

fn is_cidr(s: &str) -> bool {
    match s.split_once('/') {
        Some((addr, bits)) => match (addr.parse::<std::net::IpAddr>(), bits.parse::<u8>()) {
            (Ok(std::net::IpAddr::V4(_)), Ok(b)) => b <= 32,
            (Ok(std::net::IpAddr::V6(_)), Ok(b)) => b <= 128,
            _ => false,
        },
        None => false,
    }
}

/// Checks a `Volume` spec.
pub fn validate_volume(spec: &VolumeSpec) -> Vec<FieldError> {
    let mut e = Errors(Vec::new());
    check_external(
        &mut e,
        spec.external,
        spec.external_name.as_ref(),
        &[
            ("driver", spec.driver.is_some()),
            ("driverOpts", !spec.driver_opts.is_empty()),
            ("labels", !spec.labels.is_empty()),
            (
                "reclaimPolicy",
                spec.reclaim_policy != crate::ReclaimPolicy::Retain,
            ),
        ],
    );
    check_selector(&mut e, spec.host_selector.as_ref());
    check_labels(&mut e, "spec.labels", &spec.labels);
    e.0
}

/// Checks a `Container` spec (image reference, ports, mounts, files, quantities, names…).
pub fn validate_container(spec: &ContainerSpec) -> Vec<FieldError> {
    let mut e = Errors(Vec::new());
    match &spec.image {
        None if spec.build.is_none() => e.push(
            "spec.image",
            "expected an image reference (required unless spec.build is given)",
        ),
        None => {}
        Some(image) if image.trim().is_empty() => e.push(
            "spec.image",
            "expected an image reference, got an empty string",
        ),
        Some(image) => {
            if let Err(err) = crate::image_ref::parse(image) {
                e.push(
                    "spec.image",
                    format!(
                        "expected an image reference like name:tag or name@sha256:digest, got {image:?} ({err})"
                    ),
                );
            } else if spec.build.is_some() && image.contains('@') {
                e.push(
                    "spec.image",
                    format!("with spec.build, expected a tag for the built image (name:tag), got the digest reference {image:?}"),
                );
            }
        }
    }
    if let Some(build) = &spec.build {
        check_build(&mut e, build);
    }
    if spec.replica_count() > crate::MAX_REPLICAS {
        e.push(
            "spec.replicas",
            format!(
                "expected at most {} replicas on one host, got {}",
                crate::MAX_REPLICAS,
                spec.replica_count()
            ),
        );
    }
    check_update_strategy(&mut e, spec);
    for (i, secret) in spec.image_pull_secrets.iter().enumerate() {
        if !secret.file.starts_with('/') {
            e.push(
                format!("spec.imagePullSecrets[{i}].file"),
                format!("expected an absolute path, got {:?}", secret.file),
            );
        }
    }
    if let Some(name) = &spec.container_name {
        if spec.replica_count() > 1 {
            e.push(
                "spec.containerName",
                "containerName is allowed only with replicas 0 or 1 (engine names must be unique)",
            );
        }
        if !is_engine_name(name) {
            e.push(
                "spec.containerName",
                format!("expected [a-zA-Z0-9][a-zA-Z0-9_.-]*, got {name:?}"),
            );
        }
    }
    for (i, v) in spec.env.iter().enumerate() {
        if v.name.is_empty() || v.name.contains('=') || v.name.contains('\0') {
            e.push(
                format!("spec.env[{i}].name"),
                "expected a non-empty variable name without '=' or NUL characters",
            );
        }
        if v.value.contains('\0') {
            e.push(
                format!("spec.env[{i}].value"),
                "a NUL character cannot be passed in an environment variable",
            );
        }
        if let Some(from) = &v.value_from {
            if !v.value.is_empty() {
                e.push(
                    format!("spec.env[{i}].valueFrom"),
                    "expected either value or valueFrom, not both",
                );
            }
            check_value_from(&mut e, &format!("spec.env[{i}].valueFrom"), from);
        }
    }
    for (field, value) in [("workingDir", &spec.working_dir)] {
        if let Some(v) = value
            && !v.starts_with('/')
        {
            e.push(
                format!("spec.{field}"),
                format!("expected an absolute path, got {v:?}"),
            );
        }
    }
    let mut published = BTreeMap::new();
    for (i, p) in spec.ports.iter().enumerate() {
        if p.container_port == 0 {
            e.push(
                format!("spec.ports[{i}].containerPort"),
                "expected 1–65535, got 0",
            );
        }
        if p.host_port == Some(0) {
            e.push(
                format!("spec.ports[{i}].hostPort"),
                "expected 1–65535, got 0",
            );
        }
        if let Some(ip) = &p.host_ip
            && ip.parse::<std::net::IpAddr>().is_err()
        {
            e.push(
                format!("spec.ports[{i}].hostIP"),
                format!("expected an IP address, got {ip:?}"),
            );
        }
        if let Some(hp) = p.host_port {
            if spec.replica_count() > 1 {
                e.push(
                    format!("spec.ports[{i}].hostPort"),
                    "a hostPort can be bound by one replica only; use replicas 1 or drop hostPort",
                );
            }
            if let Some(j) = published.insert((hp, p.protocol, p.host_ip.clone()), i) {
                e.push(
                    format!("spec.ports[{i}].hostPort"),
                    format!("host port {hp} is already published by spec.ports[{j}]"),
                );
            }
        }
    }
    for (i, m) in spec.mounts.iter().enumerate() {
        let path = format!("spec.mounts[{i}]");
        if !m.mount_path.starts_with('/') {
            e.push(
                format!("{path}.mountPath"),
                format!("expected an absolute path, got {:?}", m.mount_path),
            );
        }
        let sources = [m.volume.is_some(), m.host_path.is_some(), m.tmpfs.is_some()];
        if sources.iter().filter(|s| **s).count() != 1 {
            e.push(
                path.clone(),
                "expected exactly one of volume, hostPath, tmpfs",
            );
        }
        if let Some(v) = &m.volume
            && !is_dns1123_subdomain(v)
        {
            e.push(
                format!("{path}.volume"),
                format!("expected the name of a Volume object, got {v:?}"),
            );
        }
        if let Some(h) = &m.host_path
            && !h.path.starts_with('/')
        {
            e.push(
                format!("{path}.hostPath.path"),
                format!("expected an absolute path, got {:?}", h.path),
            );
        }
        if let Some(t) = &m.tmpfs
            && let Some(size) = &t.size_limit
            && let Err(err) = quantity::parse_bytes(size)
        {
            e.push(format!("{path}.tmpfs.sizeLimit"), err.to_string());
        }
        // As Kubernetes: a mountPath must be unique (the engine refuses a duplicate mount point).
        let at = |p: &str| p.trim_end_matches('/').to_string();
        if spec.mounts[..i]
            .iter()
            .any(|o| at(&o.mount_path) == at(&m.mount_path))
        {
            e.push(
                format!("{path}.mountPath"),
                format!(
                    "{:?} is mounted twice; each mountPath must be unique",
                    m.mount_path
                ),
            );
        }
    }
    for (i, n) in spec.networks.iter().enumerate() {
        if !is_dns1123_subdomain(&n.name) {
            e.push(
                format!("spec.networks[{i}].name"),
                format!("expected the name of a Network object, got {:?}", n.name),
            );
        }
        if let Some(ip) = &n.ipv4_address
            && ip.parse::<std::net::Ipv4Addr>().is_err()
        {
            e.push(
                format!("spec.networks[{i}].ipv4Address"),
                format!("expected an IPv4 address, got {ip:?}"),
            );
        }
        if n.ipv4_address.is_some() && spec.replica_count() > 1 {
            e.push(
                format!("spec.networks[{i}].ipv4Address"),
                "a fixed address can be held by one replica only; use replicas 1 or drop ipv4Address",
            );
        }
        if spec.networks[..i].iter().any(|o| o.name == n.name) {
            e.push(
                format!("spec.networks[{i}].name"),
                format!("network {:?} is listed twice", n.name),
            );
        }
    }
    for (i, f) in spec.files.iter().enumerate() {
        if !f.path.starts_with('/') || f.path.ends_with('/') || f.path.split('/').any(|c| c == "..")
        {
            e.push(
                format!("spec.files[{i}].path"),
                format!(
                    "expected an absolute file path without '..', got {:?}",
                    f.path
                ),
            );
        }
        if f.mode_bits().is_none() {
            e.push(
                format!("spec.files[{i}].mode"),
                format!(
                    "expected an octal string such as \"0644\", got {:?}",
                    f.mode.as_deref().unwrap_or_default()
                ),
            );
        }
        if let Some(from) = &f.value_from {
            if !f.content.is_empty() {
                e.push(
                    format!("spec.files[{i}].valueFrom"),
                    "expected either content or valueFrom, not both",
                );
            }
            check_value_from(&mut e, &format!("spec.files[{i}].valueFrom"), from);
        }
        if spec.files[..i].iter().any(|o| o.path == f.path) {
            e.push(
                format!("spec.files[{i}].path"),
                format!("file {:?} is listed twice", f.path),
            );
        }
    }
    if spec.read_only_root_filesystem && !spec.files.is_empty() {
        e.push(
            "spec.files",
            "files cannot be copied into a container with readOnlyRootFilesystem (the engine refuses)",
        );
    }
    if let Some(r) = &spec.resources {
        if let Some(cpu) = &r.limits.cpu
            && let Err(err) = quantity::parse_nano_cpus(cpu)
        {
            e.push("spec.resources.limits.cpu", err.to_string());
        }
        if let Some(mem) = &r.limits.memory
            && let Err(err) = quantity::parse_bytes(mem)
        {
            e.push("spec.resources.limits.memory", err.to_string());
        }
    }
    if let Some(sig) = &spec.stop_signal
        && !is_signal(sig)
    {
        e.push(
            "spec.stopSignal",
            format!(
                "expected a Linux signal name like SIGTERM (or TERM, SIGRTMIN+3) or a number from 1 to 64, got {sig:?}"
            ),
        );
    }
    for (field, caps) in [("capAdd", &spec.cap_add), ("capDrop", &spec.cap_drop)] {
        for (i, c) in caps.iter().enumerate() {
            if !is_capability(c) {
                e.push(
                    format!("spec.{field}[{i}]"),
                    format!(
                        "expected a Linux capability such as NET_ADMIN or CAP_NET_ADMIN (or ALL), got {c:?}"
                    ),
                );
            }
        }
    }
    for (i, h) in spec.extra_hosts.iter().enumerate() {
        let ok = h.split_once(':').is_some_and(|(name, ip)| {
            is_host_name(name) && (ip == "host-gateway" || ip.parse::<std::net::IpAddr>().is_ok())
        });
        if !ok {
            e.push(
                format!("spec.extraHosts[{i}]"),
                format!(
                    "expected hostname:ip (a host name of letters, digits, '-', '_' and '.', then an IP address or host-gateway), got {h:?}"
                ),
            );
        }
    }
    if let Some(h) = &spec.health_check {
        match h.test.first().map(String::as_str) {
            Some("CMD") | Some("CMD-SHELL") if h.test.len() > 1 => {}
            Some("NONE") if h.test.len() == 1 => {}
            _ => e.push(
                "spec.healthCheck.test",
                "expected [\"CMD\", prog, args...], [\"CMD-SHELL\", command] or [\"NONE\"]",
            ),
        }
        for (field, value) in [
            ("interval", &h.interval),
            ("timeout", &h.timeout),
            ("startPeriod", &h.start_period),
            ("startInterval", &h.start_interval),
        ] {
            if let Some(v) = value
                && let Err(err) = crate::parse_duration(v)
            {
                e.push(format!("spec.healthCheck.{field}"), err);
            }
        }
    }
    for (i, d) in spec.depends_on.iter().enumerate() {
        if !is_dns1123_subdomain(&d.name) {
            e.push(
                format!("spec.dependsOn[{i}].name"),
                format!("expected the name of a Container object, got {:?}", d.name),
            );
        }
        if spec.depends_on[..i].iter().any(|o| o.name == d.name) {
            e.push(
                format!("spec.dependsOn[{i}].name"),
                format!("{:?} is listed twice", d.name),
            );
        }
    }
    for (field, probe) in [
        ("livenessProbe", &spec.liveness_probe),
        ("readinessProbe", &spec.readiness_probe),
        ("startupProbe", &spec.startup_probe),
    ] {
        let Some(pr) = probe else { continue };
        let handlers = [
            pr.exec.is_some(),
            pr.http_get.is_some(),
            pr.tcp_socket.is_some(),
        ];
        if handlers.iter().filter(|h| **h).count() != 1 {
            e.push(
                format!("spec.{field}"),
                "expected exactly one of exec, httpGet, tcpSocket",
            );
        }
        if pr.exec.as_ref().is_some_and(|x| x.command.is_empty()) {
            e.push(
                format!("spec.{field}.exec.command"),
                "expected a non-empty command",
            );
        }
        if pr.http_get.as_ref().is_some_and(|h| h.port == 0)
            || pr.tcp_socket.as_ref().is_some_and(|t| t.port == 0)
        {
            e.push(format!("spec.{field}"), "expected a port from 1 to 65535");
        }
        if field != "readinessProbe" && pr.success_threshold.is_some_and(|t| t != 1) {
            e.push(
                format!("spec.{field}.successThreshold"),
                "must be 1 for liveness and startup probes (as in Kubernetes)",
            );
        }
    }
    if let Some(mode) = &spec.network_mode {
        match mode {
            NetworkMode::Bridge => {}
            NetworkMode::Host | NetworkMode::None => {
                if !spec.networks.is_empty() {
                    e.push("spec.networks", format!("networks cannot be combined with networkMode {mode}"));
                }
                if *mode == NetworkMode::None && spec.ports.iter().any(|p| p.host_port.is_some()) {
                    e.push("spec.ports", "published ports need a network; networkMode is none");
                }
            }
            NetworkMode::Container(name) if is_dns1123_subdomain(name) => {
                if !spec.networks.is_empty() {
                    e.push("spec.networks", "networks cannot be combined with networkMode container:<name>");
                }
                if !spec.ports.is_empty() {
                    e.push("spec.ports", "ports belong to the container whose network namespace is shared");
                }
                if spec.hostname.is_some() {
                    e.push("spec.hostname", "hostname cannot be set with networkMode container:<name>");
                }
            }
            NetworkMode::Container(_) | NetworkMode::Other(_) => e.push(
                "spec.networkMode",
                format!("expected bridge, host, none or container:<name of a Container object>, got {:?}", mode.to_string()),
            ),
        }
    }
    check_host_access(&mut e, spec);
    check_runtime(&mut e, spec);
    check_labels(&mut e, "spec.labels", &spec.labels);
    check_selector(&mut e, spec.host_selector.as_ref());
    e.0
}

/// Resource names Docker accepts for `--ulimit` (setrlimit(2) without `RLIMIT_`).
const ULIMITS: [&str; 15] = [
    "core",
    "cpu",
    "data",
    "fsize",
    "locks",
    "memlock",
    "msgqueue",
    "nice",
    "nofile",
    "nproc",
    "rss",
    "rtprio",
    "rttime",
    "sigpending",
    "stack",
];

/// A sysctl name: dot- (or slash-) separated segments of letters, digits, `_` and `-`.
pub fn is_sysctl_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split(['.', '/']).all(|seg| {
            !seg.is_empty()
                && seg
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        })
}

/// `devices`, `seccompProfile`, `appArmorProfile`, `sysctls`: what the host grants.
fn check_host_access(e: &mut Errors, spec: &ContainerSpec) {
    for (i, d) in spec.devices.iter().enumerate() {
        for (field, v) in [
            ("hostPath", Some(&d.host_path)),
            ("containerPath", d.container_path.as_ref()),
        ] {
            if let Some(v) = v
                && (!v.starts_with('/') || v.split('/').any(|c| c == ".."))
            {
                e.push(
                    format!("spec.devices[{i}].{field}"),
                    format!("expected an absolute path like /dev/ttyUSB0, got {v:?}"),
                );
            }
        }
        if let Some(p) = &d.permissions {
            let mut seen = String::new();
            let ok = !p.is_empty()
                && p.chars().all(|c| {
                    let fresh = "rwm".contains(c) && !seen.contains(c);
                    seen.push(c);
                    fresh
                });
            if !ok {
                e.push(
                    format!("spec.devices[{i}].permissions"),
                    format!("expected a combination of r, w and m (like rwm or r), got {p:?}"),
                );
            }
        }
    }
    let profiles = [
        (
            "seccompProfile",
            spec.seccomp_profile
                .as_ref()
                .map(|p| (p.type_, &p.localhost_profile)),
        ),
        (
            "appArmorProfile",
            spec.app_armor_profile
                .as_ref()
                .map(|p| (p.type_, &p.localhost_profile)),
        ),
    ];
    for (field, profile) in profiles {
        let Some((kind, local)) = profile else {
            continue;
        };
        match (kind, local) {
            (crate::ProfileType::Localhost, None) => e.push(
                format!("spec.{field}.localhostProfile"),
                "expected the profile (required with type Localhost)",
            ),
            (crate::ProfileType::Localhost, Some(l))
                if field == "seccompProfile" && !l.starts_with('/') =>
            {
                e.push(
                    format!("spec.{field}.localhostProfile"),
                    format!("expected the absolute path of a seccomp profile (JSON) on the host, got {l:?}"),
                );
            }
            (crate::ProfileType::Localhost, Some(l)) if l.trim().is_empty() => e.push(
                format!("spec.{field}.localhostProfile"),
                "expected the name of an AppArmor profile loaded on the host, got an empty string",
            ),
            (crate::ProfileType::Localhost, Some(_)) => {}
            (_, Some(_)) => e.push(
                format!("spec.{field}.localhostProfile"),
                "allowed only with type Localhost",
            ),
            (_, None) => {}
        }
    }
    for (name, value) in &spec.sysctls {
        if !is_sysctl_name(name) {
            e.push(
                format!("spec.sysctls.{name}"),
                format!("expected a kernel parameter name like net.ipv4.ip_forward, got {name:?}"),
            );
        } else if value.contains(['\0', '\n']) {
            e.push(
                format!("spec.sysctls.{name}"),
                "the value must not contain a newline or NUL character",
            );
        }
    }
}

/// `shmSize`, `ulimits`, `dns*`, `logging`.
fn check_runtime(e: &mut Errors, spec: &ContainerSpec) {
    if let Some(size) = &spec.shm_size
        && let Err(err) = quantity::parse_bytes(size)
    {
        e.push("spec.shmSize", err.to_string());
    }
    for (i, u) in spec.ulimits.iter().enumerate() {
        if !ULIMITS.contains(&u.name.as_str()) {
            e.push(
                format!("spec.ulimits[{i}].name"),
                format!("expected one of {}, got {:?}", ULIMITS.join(", "), u.name),
            );
        }
        if spec.ulimits[..i].iter().any(|o| o.name == u.name) {
            e.push(
                format!("spec.ulimits[{i}].name"),
                format!("{:?} is listed twice", u.name),
            );
        }
        let unlimited = |v: i64| v == -1;
        for (field, v) in [("soft", u.soft), ("hard", u.hard)] {
            if v < -1 {
                e.push(
                    format!("spec.ulimits[{i}].{field}"),
                    format!("expected 0 or more (or -1 for unlimited), got {v}"),
                );
            }
        }
        if !unlimited(u.hard) && (unlimited(u.soft) || u.soft > u.hard) {
            e.push(
                format!("spec.ulimits[{i}].soft"),
                format!(
                    "expected at most the hard limit ({}), got {}",
                    u.hard, u.soft
                ),
            );
        }
    }
    for (i, ip) in spec.dns.iter().enumerate() {
        if ip.parse::<std::net::IpAddr>().is_err() {
            e.push(
                format!("spec.dns[{i}]"),
                format!("expected the IP address of a DNS server, got {ip:?}"),
            );
        }
    }
    for (i, d) in spec.dns_search.iter().enumerate() {
        if !is_host_name(d.trim_end_matches('.')) {
            e.push(
                format!("spec.dnsSearch[{i}]"),
                format!("expected a domain name like example.com, got {d:?}"),
            );
        }
    }
    for (i, o) in spec.dns_options.iter().enumerate() {
        if o.is_empty() || o.contains(char::is_whitespace) {
            e.push(
                format!("spec.dnsOptions[{i}]"),
                format!("expected a resolver option like ndots:2 or rotate, got {o:?}"),
            );
        }
    }
    if let Some(l) = &spec.logging {
        if let Some(d) = &l.driver {
            let ok = !d.is_empty()
                && d.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.:/".contains(&b));
            if !ok {
                e.push(
                    "spec.logging.driver",
                    format!("expected a logging driver name like json-file, local or journald, got {d:?}"),
                );
            }
        }
        if l.driver.as_deref() == Some("none") && !l.options.is_empty() {
            e.push("spec.logging.options", "the none driver takes no options");
        }
    }
}

/// `external`: only the engine name may be given besides it.
fn check_external(
    e: &mut Errors,
    external: bool,
    external_name: Option<&String>,
    configured: &[(&str, bool)],
) {
    if !external {
        if external_name.is_some() {
            e.push("spec.externalName", "allowed only with external: true");
        }
        return;
    }
    if let Some(n) = external_name
        && !is_engine_name(n)
    {
        e.push(
            "spec.externalName",
            format!("expected an engine name ([a-zA-Z0-9][a-zA-Z0-9_.-]*), got {n:?}"),
        );
    }
    for (field, set) in configured {
        if *set {
            e.push(
                format!("spec.{field}"),
                "an external object is not berth's to configure; leave it out (or drop external)",
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ContainerPort, File, IntOrString, Mount};

    fn spec() -> ContainerSpec {
        ContainerSpec {
            image: Some("busybox:latest".into()),
            ..Default::default()
        }
    }

    #[test]
    fn what_the_engine_would_refuse_is_caught() {
        let s: ContainerSpec = serde_json::from_value(serde_json::json!({
            "image": "busybox:latest",
            "capAdd": ["NET_ADMIN", "cap_sys_time", "ALL", "NET_FOO"],
            "capDrop": ["all"],
            "stopSignal": "SIGFOO",
            "env": [{"name": "A\u{0}B", "value": "x"}],
            "extraHosts": ["db:10.0.0.1", "host.docker.internal:host-gateway", "my host:10.0.0.2", "v6:::1", "x:nowhere"],
        }))
        .expect("decodes");
        let paths: Vec<String> = validate_container(&s).into_iter().map(|e| e.path).collect();
        assert_eq!(
            paths,
            vec![
                "spec.env[0].name",
                "spec.stopSignal",
                "spec.capAdd[3]",
                "spec.extraHosts[2]",
                "spec.extraHosts[4]",
            ]
        );
        for ok in [
            "SIGTERM",
            "TERM",
            "9",
            "SIGRTMIN+3",
            "SIGRTMAX-1",
            "SIGRTMIN",
        ] {
            assert!(is_signal(ok), "{ok}");
        }
        for bad in ["SIGFOO", "0", "65", "SIGRTMIN+31", "SIG"] {
            assert!(!is_signal(bad), "{bad}");
        }
        let n: NetworkSpec = serde_json::from_value(serde_json::json!({
            "ipam": {"config": [{"subnet": "10.88.0.0/24", "gateway": "10.89.0.1"},
                                {"subnet": "10.90.0.0/16", "gateway": "10.90.255.254"}]}
        }))
        .expect("decodes");
        let errs = validate_network(&n);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(errs[0].path, "spec.ipam.config[0].gateway");
        assert!(errs[0].message.contains("outside the subnet 10.88.0.0/24"));
    }

    #[test]
    fn minimal_container_is_valid() {
        assert_eq!(validate_container(&spec()), vec![]);
    }

    #[test]
    fn image_pull_secrets_decode_and_need_absolute_paths() {
        let s: ContainerSpec = serde_json::from_value(serde_json::json!({
            "image": "registry.example:5000/app:1",
            "imagePullSecrets": [{"file": "/etc/berth/auth.json"}, {"file": "auth.json"}],
        }))
        .expect("decodes");
        assert_eq!(s.image_pull_secrets[0].file, "/etc/berth/auth.json");
        let paths: Vec<String> = validate_container(&s).into_iter().map(|e| e.path).collect();
        assert_eq!(paths, vec!["spec.imagePullSecrets[1].file"]);
    }

    #[test]
    fn build_makes_image_optional_and_is_checked() {
        let s: ContainerSpec = serde_json::from_value(serde_json::json!({
            "build": {"context": "./backend", "dockerfile": "docker/Dockerfile",
                      "args": {"VERSION": "1.2", "bad-name": "x"}, "target": "runtime"},
        }))
        .expect("decodes");
        let paths: Vec<String> = validate_container(&s).into_iter().map(|e| e.path).collect();
        assert_eq!(paths, vec!["spec.build.args.bad-name"]);
        let mut s = s;
        s.build = Some(crate::Build {
            context: " ".into(),
            dockerfile: Some("/abs/Dockerfile".into()),
            target: Some("-x".into()),
            ..Default::default()
        });
        s.image = Some(
            "app@sha256:0123456789012345678901234567890123456789012345678901234567890123".into(),
        );
        let paths: Vec<String> = validate_container(&s).into_iter().map(|e| e.path).collect();
        assert_eq!(
            paths,
            vec![
                "spec.image",
                "spec.build.context",
                "spec.build.dockerfile",
                "spec.build.target"
            ]
        );
        s.build = None;
        s.image = None;
        let e = validate_container(&s);
        assert_eq!(e[0].path, "spec.image");
        assert!(e[0].message.contains("required unless spec.build"), "{e:?}");
    }

    #[test]
    fn errors_name_the_field() {
        let mut s = spec();
        s.image = Some("UPPER CASE".into());
        s.replicas = Some(2);
        s.container_name = Some("fixed".into());
        s.ports = vec![ContainerPort {
            container_port: 80,
            host_port: Some(8080),
            ..Default::default()
        }];
        s.mounts = vec![Mount {
            mount_path: "relative".into(),
            ..Default::default()
        }];
        s.files = vec![File {
            path: "/etc/x".into(),
            content: String::new(),
            mode: Some("644x".into()),
            ..Default::default()
        }];
        let paths: Vec<String> = validate_container(&s).into_iter().map(|e| e.path).collect();
        assert_eq!(
            paths,
            vec![
                "spec.image",
                "spec.containerName",
                "spec.ports[0].hostPort",
                "spec.mounts[0].mountPath",
                "spec.mounts[0]",
                "spec.files[0].mode",
            ]
        );
    }

    #[test]
    fn update_strategy_decodes_int_or_percent_and_is_checked() {
        let s: ContainerSpec = serde_json::from_value(serde_json::json!({
            "image": "app:1",
            "replicas": 4,
            "updateStrategy": {"rollingUpdate": {"maxSurge": "50%", "maxUnavailable": 1}},
            "minReadySeconds": 5,
            "progressDeadlineSeconds": 60,
        }))
        .expect("decodes");
        assert_eq!(validate_container(&s), vec![]);
        let ru = s
            .update_strategy
            .as_ref()
            .and_then(|u| u.rolling_update.as_ref())
            .expect("rollingUpdate");
        assert_eq!(
            crate::scaled_int_or_percent(ru.max_surge.as_ref().expect("surge"), 4, true),
            Ok(2)
        );
        assert_eq!(
            crate::scaled_int_or_percent(&IntOrString::String("25%".into()), 3, true),
            Ok(1),
            "rounds up"
        );
        assert_eq!(
            crate::scaled_int_or_percent(&IntOrString::String("25%".into()), 3, false),
            Ok(0),
            "rounds down"
        );

        let bad: ContainerSpec = serde_json::from_value(serde_json::json!({
            "image": "app:1",
            "updateStrategy": {"type": "Recreate", "rollingUpdate": {"maxSurge": "x%", "maxUnavailable": "150%"}},
            "minReadySeconds": 30,
            "progressDeadlineSeconds": 30,
        }))
        .expect("decodes");
        let errors = validate_container(&bad);
        let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            vec![
                "spec.updateStrategy.rollingUpdate",
                "spec.updateStrategy.rollingUpdate.maxUnavailable",
                "spec.updateStrategy.rollingUpdate.maxSurge",
                "spec.progressDeadlineSeconds",
            ],
            "{errors:?}"
        );
        let surge_with_port: ContainerSpec = serde_json::from_value(serde_json::json!({
            "image": "app:1",
            "ports": [{"containerPort": 80, "hostPort": 8080}],
            "updateStrategy": {"rollingUpdate": {"maxSurge": "200%", "maxUnavailable": 0}},
        }))
        .expect("decodes");
        let errors = validate_container(&surge_with_port);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].message.contains("fixed hostPort"), "{errors:?}");
        let surge_with_ip: ContainerSpec = serde_json::from_value(serde_json::json!({
            "image": "app:1",
            "networks": [{"name": "front", "ipv4Address": "10.88.0.10"}],
            "updateStrategy": {"rollingUpdate": {"maxSurge": 1}},
        }))
        .expect("decodes");
        let errors = validate_container(&surge_with_ip);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].path, "spec.updateStrategy.rollingUpdate.maxSurge");
        assert!(errors[0].message.contains("ipv4Address"), "{errors:?}");
        let ip_replicas: ContainerSpec = serde_json::from_value(serde_json::json!({
            "image": "app:1",
            "replicas": 2,
            "networks": [{"name": "front", "ipv4Address": "10.88.0.10"}],
        }))
        .expect("decodes");
        let errors = validate_container(&ip_replicas);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].path, "spec.networks[0].ipv4Address");
        let zero: ContainerSpec = serde_json::from_value(serde_json::json!({
            "image": "app:1",
            "updateStrategy": {"rollingUpdate": {"maxSurge": 0, "maxUnavailable": "0%"}},
        }))
        .expect("decodes");
        assert!(
            validate_container(&zero)[0]
                .message
                .contains("may not be 0 when maxSurge is 0")
        );
    }

    #[test]
    fn reserved_labels_are_rejected() {
        let mut s = spec();
        s.labels.insert("berth.dev/name".into(), "x".into());
        assert_eq!(validate_container(&s)[0].path, "spec.labels.berth.dev/name");
    }

    #[test]
    fn names() {
        assert!(is_dns1123_subdomain("web.blog-1"));
        assert!(!is_dns1123_subdomain("Web"));
        assert!(!is_dns1123_subdomain("a_b"));
        assert!(is_dns1123_label("default"));
        assert!(!is_dns1123_label("a.b"));
        assert!(is_engine_name("blog_db-1"));
        assert!(!is_engine_name("-x"));
    }
}

#[cfg(test)]
mod health_tests {
    use super::*;
    use crate::{Dependency, HealthCheck};

    #[test]
    fn durations_parse_like_compose() {
        assert_eq!(
            crate::parse_duration("1m30s"),
            Ok(std::time::Duration::from_secs(90))
        );
        assert_eq!(
            crate::parse_duration("500ms"),
            Ok(std::time::Duration::from_millis(500))
        );
        assert!(crate::parse_duration("10").is_err());
        assert!(
            crate::parse_duration("99999999999y").is_err_and(|e| e.contains("expected a duration")),
            "out of humantime's range"
        );
        assert!(
            crate::parse_duration("25h").is_err_and(|e| e.contains("at most 24h")),
            "above the limit"
        );
        assert_eq!(
            crate::parse_duration("24h"),
            Ok(std::time::Duration::from_secs(86400))
        );
    }

    #[test]
    fn health_dependency_and_network_mode_are_checked() {
        let spec = ContainerSpec {
            image: Some("busybox".into()),
            health_check: Some(HealthCheck {
                test: vec!["true".into()],
                interval: Some("2 fortnights and a bit".into()),
                ..Default::default()
            }),
            depends_on: vec![
                Dependency {
                    name: "db".into(),
                    ..Default::default()
                },
                Dependency {
                    name: "db".into(),
                    ..Default::default()
                },
            ],
            network_mode: Some("container:".into()),
            ..Default::default()
        };
        let paths: Vec<String> = validate_container(&spec)
            .into_iter()
            .map(|e| e.path)
            .collect();
        assert_eq!(
            paths,
            vec![
                "spec.healthCheck.test",
                "spec.healthCheck.interval",
                "spec.dependsOn[1].name",
                "spec.networkMode"
            ]
        );
    }
}

#[cfg(test)]
mod host_access_tests {
    use super::*;

    #[test]
    fn host_access_and_runtime_fields_are_checked() {
        let s: ContainerSpec = serde_json::from_value(serde_json::json!({
            "image": "busybox:latest",
            "privileged": true,
            "hostPID": true,
            "hostIPC": true,
            "devices": [
                {"hostPath": "/dev/fuse"},
                {"hostPath": "dev/x", "permissions": "rwx"},
            ],
            "seccompProfile": {"type": "Localhost"},
            "appArmorProfile": {"type": "RuntimeDefault", "localhostProfile": "p"},
            "allowPrivilegeEscalation": false,
            "sysctls": {"net.core.somaxconn": "1024", "bad name": "1"},
            "shmSize": "64XB",
            "tty": true,
            "stdin": true,
            "ulimits": [
                {"name": "nofile", "soft": 1024, "hard": 2048},
                {"name": "nproc", "soft": 10, "hard": 5},
                {"name": "files", "soft": 1, "hard": 1},
            ],
            "dns": ["192.0.2.1", "dns.example"],
            "dnsSearch": ["example.com", "bad domain"],
            "dnsOptions": ["ndots:2", ""],
            "logging": {"driver": "json file", "options": {"max-size": "1m"}},
        }))
        .expect("the fields parse");
        assert!(s.privileged && s.host_pid && s.host_ipc && s.tty && s.stdin);
        let paths: Vec<String> = validate_container(&s).into_iter().map(|e| e.path).collect();
        assert_eq!(
            paths,
            [
                "spec.devices[1].hostPath",
                "spec.devices[1].permissions",
                "spec.seccompProfile.localhostProfile",
                "spec.appArmorProfile.localhostProfile",
                "spec.sysctls.bad name",
                "spec.shmSize",
                "spec.ulimits[1].soft",
                "spec.ulimits[2].name",
                "spec.dns[1]",
                "spec.dnsSearch[1]",
                "spec.dnsOptions[1]",
                "spec.logging.driver",
            ]
        );
        let round: ContainerSpec =
            serde_json::from_value(serde_json::to_value(&s).expect("json")).expect("back");
        assert_eq!(round, s, "serialises under the same names");
    }

    #[test]
    fn external_objects_take_no_configuration() {
        let n: NetworkSpec = serde_json::from_value(serde_json::json!({
            "external": true, "externalName": "proxy", "driver": "bridge"
        }))
        .expect("parse");
        let errs = validate_network(&n);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(errs[0].path, "spec.driver");
        let v: VolumeSpec = serde_json::from_value(serde_json::json!({
            "externalName": "data"
        }))
        .expect("parse");
        assert_eq!(validate_volume(&v)[0].path, "spec.externalName");
        let v: VolumeSpec = serde_json::from_value(serde_json::json!({
            "external": true, "externalName": "bad name"
        }))
        .expect("parse");
        assert_eq!(validate_volume(&v)[0].path, "spec.externalName");
    }
}
