//! Compose services, networks and volumes → berth `Container`, `Network` and `Volume` objects.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use berth_core::merge::Origin;

use berth_api::{
    ContainerPort, ContainerSpec, Dependency, DependencyCondition, EnvVar, File, HealthCheck,
    HostPathMount, HostPathType, IntOrString, Ipam, IpamConfig, Manifest, ManifestMetadata, Mount,
    NetworkAttachment, NetworkMode, NetworkSpec, Protocol, PullPolicy, ResourceLimits, Resources,
    RestartPolicy, RollingUpdate, TmpfsMount, UpdateStrategy, UpdateStrategyType, VolumeSpec,
};

use super::FindingKind::{Invalid, Unsupported, Warning};
use super::load::{Ctx, normalize_keyed};
use super::tree::{Node, Value};
use crate::decode::Located;

/// Service keys of the Compose specification that berth does not implement (yet), with why.
const UNSUPPORTED_SERVICE_KEYS: &[(&str, &str)] = &[
    ("annotations", "no engine annotations in berth"),
    ("attach", "berth does not attach to logs"),
    ("blkio_config", "no block-IO limits in berth"),
    ("cgroup", "no cgroup namespace setting in berth"),
    ("cgroup_parent", "no cgroup parent in berth"),
    ("cpu_count", "only cpus / deploy.resources.limits.cpus"),
    ("cpu_percent", "only cpus / deploy.resources.limits.cpus"),
    ("cpu_shares", "only cpus / deploy.resources.limits.cpus"),
    ("cpu_period", "only cpus / deploy.resources.limits.cpus"),
    ("cpu_quota", "only cpus / deploy.resources.limits.cpus"),
    ("cpu_rt_runtime", "no real-time CPU settings in berth"),
    ("cpu_rt_period", "no real-time CPU settings in berth"),
    ("cpuset", "no CPU pinning in berth"),
    ("credential_spec", "Windows only"),
    (
        "develop",
        "develop/watch is a development-loop feature of Compose",
    ),
    ("device_cgroup_rules", "no device cgroup rules in berth"),
    ("domainname", "no domain name in berth's Container"),
    (
        "driver_opts",
        "no per-service network driver options in berth",
    ),
    (
        "external_links",
        "legacy links are not supported; use networks",
    ),
    ("gpus", "no GPUs in berth"),
    (
        "group_add",
        "no supplementary groups in berth's Container yet",
    ),
    ("isolation", "Windows only"),
    ("label_file", "no label files; use labels"),
    (
        "links",
        "legacy links are not supported; services reach each other by name on the project network",
    ),
    ("mac_address", "no MAC address in berth's Container"),
    ("mem_reservation", "only memory limits"),
    ("mem_swappiness", "only memory limits"),
    ("memswap_limit", "only memory limits"),
    ("models", "no AI models in berth"),
    ("oom_kill_disable", "no OOM settings in berth"),
    ("oom_score_adj", "no OOM settings in berth"),
    ("pids_limit", "no PID limit in berth's Container yet"),
    ("platform", "no platform selection in berth"),
    ("post_start", "no lifecycle hooks in berth"),
    ("pre_stop", "no lifecycle hooks in berth"),
    ("provider", "no service providers in berth"),
    ("runtime", "no runtime selection in berth"),
    ("storage_opt", "no storage options in berth"),
    ("use_api_socket", "berth does not mount the engine socket"),
    ("userns_mode", "no user namespace mode in berth"),
    ("uts", "no UTS mode in berth"),
    (
        "volumes_from",
        "berth mounts volumes by name; declare the volume and mount it",
    ),
];

/// Service keys berth maps (besides [`super::runtime::KEYS`]).
const SERVICE_KEYS: &[&str] = &[
    "image",
    "build",
    "entrypoint",
    "command",
    "environment",
    "env_file",
    "ports",
    "expose",
    "volumes",
    "tmpfs",
    "networks",
    "network_mode",
    "container_name",
    "hostname",
    "user",
    "working_dir",
    "labels",
    "restart",
    "healthcheck",
    "depends_on",
    "deploy",
    "scale",
    "stop_signal",
    "stop_grace_period",
    "init",
    "read_only",
    "cap_add",
    "cap_drop",
    "extra_hosts",
    "secrets",
    "configs",
    "pull_policy",
    "cpus",
    "mem_limit",
    "profiles",
    "extends",
];

/// The Compose service key closest to a misspelled `key` (at most two edits away).
fn closest_service_key(key: &str) -> Option<&'static str> {
    SERVICE_KEYS
        .iter()
        .chain(super::runtime::KEYS)
        .chain(UNSUPPORTED_SERVICE_KEYS.iter().map(|(k, _)| k))
        .map(|k| (strsim::levenshtein(key, k), *k))
        .filter(|(d, k)| *d <= 2 && *d < k.len())
        .min()
        .map(|(_, k)| k)
}

/// Top-level keys.
const TOP_KEYS: &[&str] = &[
    "version", "name", "services", "networks", "volumes", "secrets", "configs", "include",
];

pub(super) fn project(
    ctx: &mut Ctx<'_>,
    root: &Node,
    ns: &str,
    profiles: &BTreeSet<String>,
) -> Vec<Located> {
    let mut out = Vec::new();
    let Some(top) = root.as_map() else {
        if root.value != Value::Null {
            ctx.finding(
                Invalid,
                root,
                "(top level)",
                format!("expected a mapping, got {}", root.kind_name()),
            );
        } else {
            ctx.finding(Invalid, root, "(top level)", "the file holds no document; its previous objects are kept (delete the file to remove them)");
        }
        return out;
    };
    for (k, v) in top {
        match k.name.as_str() {
            "version" => ctx.key_finding(Warning, v, k, "version", "the attribute version is obsolete and ignored (as in Compose)"),
            "models" => ctx.key_finding(Unsupported, v, k, "models", "no AI models in berth"),
            n if n.starts_with("x-") || TOP_KEYS.contains(&n) => {}
            other => ctx.key_finding(Invalid, v, k, other, "unknown top-level key; expected services, networks, volumes, secrets, configs, include, name, version or x-…"),
        }
    }
    let services: Vec<(String, Node, u64)> = match root.get("services") {
        Some(Node {
            value: Value::Map(s),
            ..
        }) => s
            .iter()
            .map(|(k, v)| (k.name.clone(), v.clone(), k.line))
            .collect(),
        Some(Node {
            value: Value::Null, ..
        })
        | None => Vec::new(),
        Some(other) => {
            ctx.finding(
                Invalid,
                other,
                "services",
                format!("expected a mapping, got {}", other.kind_name()),
            );
            Vec::new()
        }
    };
    let active: BTreeMap<String, bool> = services
        .iter()
        .map(|(n, s, _)| {
            let p: Vec<String> = s
                .get("profiles")
                .map(|p| list_of_strings(ctx, p, &format!("services.{n}.profiles")))
                .unwrap_or_default();
            (
                n.clone(),
                p.is_empty()
                    || p.iter().any(|x| profiles.contains(x) || x == "*")
                    || profiles.contains("*"),
            )
        })
        .collect();
    let declared_networks: BTreeSet<String> = root
        .get("networks")
        .and_then(Node::as_map)
        .map(|m| m.iter().map(|(k, _)| k.name.clone()).collect())
        .unwrap_or_default();
    let declared_volumes: BTreeSet<String> = root
        .get("volumes")
        .and_then(Node::as_map)
        .map(|m| m.iter().map(|(k, _)| k.name.clone()).collect())
        .unwrap_or_default();
    let secrets = file_objects(ctx, root, "secrets");
    let configs = file_objects(ctx, root, "configs");
    let mut uses_default = false;
    let refs = Refs {
        networks: &declared_networks,
        volumes: &declared_volumes,
        secrets: &secrets,
        configs: &configs,
        active: &active,
    };
    let mut spots: BTreeMap<String, Spots> = BTreeMap::new();
    for (name, svc, line) in &services {
        if !active.get(name).copied().unwrap_or(false) {
            continue;
        }
        let mut at = Spots::default();
        if let Some((spec, default_net)) = service(ctx, name, svc, &refs, &mut at) {
            uses_default |= default_net;
            let mut l = located(
                Manifest::Container {
                    metadata: meta(name, ns),
                    spec: std::sync::Arc::new(spec),
                },
                svc,
                *line,
            );
            l.fields = at.positions(&svc.file);
            out.push(l);
        }
        spots.insert(name.clone(), at);
    }
    networks(ctx, root, ns, uses_default, &mut out);
    volumes(ctx, root, ns, &mut out);
    berth_checks(ctx, &out, &spots);
    out
}

/// berth's own checks on the result, reported at the Compose field that set the berth field
/// when it is known (else at the service, network or volume) — and not at all where a finding
/// already covers that field (a missing image is one problem, reported once, in Compose's words).
fn berth_checks(ctx: &mut Ctx<'_>, out: &[Located], spots: &BTreeMap<String, Spots>) {
    for l in out {
        let name = &l.manifest.metadata().name;
        for p in l.manifest.validate() {
            let section = match &l.manifest {
                Manifest::Container { .. } => "services",
                Manifest::Network { .. } => "networks",
                Manifest::Volume { .. } => "volumes",
            };
            let spot = match &l.manifest {
                Manifest::Container { .. } => spots.get(name).and_then(|s| s.of(&p.path)),
                _ => None,
            };
            let (file, line, column, key) = match (spot, &l.origin) {
                (Some((n, key)), _) => (n.file.to_string(), n.line, n.column, key.clone()),
                (None, Origin::File { path, line, .. }) => {
                    (path.clone(), *line, 3, format!("{section}.{name}"))
                }
                (None, o) => (o.to_string(), 0, 0, format!("{section}.{name}")),
            };
            // Compose's own words already cover it: a finding at that key or below it (a
            // service with an invalid key is checked once that is fixed).
            let covered = ctx.findings.iter().any(|f| {
                f.kind == Invalid
                    && f.key
                        .strip_prefix(key.as_str())
                        .is_some_and(|r| r.is_empty() || r.starts_with(['.', '[']))
            });
            if covered {
                continue;
            }
            ctx.findings.push(super::Finding {
                kind: Unsupported,
                file,
                line,
                column,
                key,
                message: format!(
                    "as berth {} {}: {}",
                    l.manifest.kind().as_str(),
                    p.path,
                    p.message
                ),
            });
        }
    }
}

struct Refs<'a> {
    networks: &'a BTreeSet<String>,
    volumes: &'a BTreeSet<String>,
    secrets: &'a BTreeMap<String, Option<String>>,
    configs: &'a BTreeMap<String, Option<String>>,
    active: &'a BTreeMap<String, bool>,
}

/// Where a service wrote what became each berth field: the berth path
/// (`spec.build.dockerfile`) → the Compose node and its key path
/// (`services.web.build.dockerfile`), so that berth's own checks of the result, and later
/// stages (the build context, the security policy), point at the Compose field.
#[derive(Default)]
struct Spots(BTreeMap<String, (Node, String)>);

/// Compose service keys → the berth field they set (others are recorded at their parent).
const SPOT_FIELDS: &[(&str, &str)] = &[
    ("image", "spec.image"),
    ("build", "spec.build"),
    ("entrypoint", "spec.command"),
    ("command", "spec.args"),
    ("environment", "spec.env"),
    ("ports", "spec.ports"),
    ("volumes", "spec.mounts"),
    ("networks", "spec.networks"),
    ("container_name", "spec.containerName"),
    ("hostname", "spec.hostname"),
    ("user", "spec.user"),
    ("working_dir", "spec.workingDir"),
    ("labels", "spec.labels"),
    ("restart", "spec.restartPolicy"),
    ("healthcheck", "spec.healthCheck"),
    ("depends_on", "spec.dependsOn"),
    ("scale", "spec.replicas"),
    ("stop_signal", "spec.stopSignal"),
    ("stop_grace_period", "spec.stopGracePeriodSeconds"),
    ("cap_add", "spec.capAdd"),
    ("cap_drop", "spec.capDrop"),
    ("extra_hosts", "spec.extraHosts"),
    ("pull_policy", "spec.pullPolicy"),
];

impl Spots {
    fn record(&mut self, field: String, at: &Node, key: &str) {
        self.0.insert(field, (at.clone(), key.to_string()));
    }

    /// A service key and, for a list that maps item by item, its items.
    fn record_key(&mut self, compose_key: &str, at: &Node, key: &str) {
        let Some((_, field)) = SPOT_FIELDS.iter().find(|(k, _)| *k == compose_key) else {
            return;
        };
        self.record((*field).to_string(), at, key);
        match (compose_key, &at.value) {
            ("cap_add" | "cap_drop", Value::Seq(items)) => {
                for (i, item) in items.iter().enumerate() {
                    self.record(format!("{field}[{i}]"), item, &format!("{key}[{i}]"));
                }
            }
            ("healthcheck", Value::Map(entries)) => {
                for (k, v) in entries {
                    let sub = match k.name.as_str() {
                        "start_period" => "startPeriod",
                        "start_interval" => "startInterval",
                        other => other,
                    };
                    self.record(format!("{field}.{sub}"), v, &format!("{key}.{}", k.name));
                }
            }
            _ => {}
        }
    }

    /// Where `field` (or its nearest recorded parent) was written.
    fn of(&self, field: &str) -> Option<&(Node, String)> {
        let mut f = field;
        loop {
            if let Some(s) = self.0.get(f) {
                return Some(s);
            }
            f = &f[..f.rfind(['.', '['])?];
        }
    }

    /// The positions written in `file`, as a declaration's field positions.
    fn positions(&self, file: &str) -> berth_core::merge::FieldPositions {
        berth_core::merge::FieldPositions::new(
            self.0
                .iter()
                .filter(|(_, (n, _))| &*n.file == file)
                .map(|(f, (n, _))| (f.clone(), (n.line, n.column)))
                .collect(),
        )
    }
}

fn meta(name: &str, ns: &str) -> ManifestMetadata {
    ManifestMetadata {
        name: name.to_string(),
        namespace: Some(ns.to_string()),
        ..Default::default()
    }
}

fn located(manifest: Manifest, at: &Node, key_line: u64) -> Located {
    Located {
        manifest,
        origin: Origin::file(
            at.file.to_string(),
            if key_line > 0 { key_line } else { at.line },
        ),
        fields: Default::default(),
    }
}

/// A scalar as text, or a finding.
pub(super) fn text(ctx: &mut Ctx<'_>, n: &Node, key: &str) -> Option<String> {
    let s = n.scalar();
    if s.is_none() {
        ctx.finding(
            Invalid,
            n,
            key,
            format!("expected a string, got {}", n.kind_name()),
        );
    }
    s
}

/// A list of scalars (a single scalar counts as a one-item list).
pub(super) fn strings(ctx: &mut Ctx<'_>, n: &Node, key: &str) -> Vec<String> {
    match &n.value {
        Value::Seq(items) => items
            .iter()
            .enumerate()
            .filter_map(|(i, x)| text(ctx, x, &format!("{key}[{i}]")))
            .collect(),
        Value::Null => Vec::new(),
        _ => text(ctx, n, key).into_iter().collect(),
    }
}

/// A list of strings (compose-spec `list_of_strings`, and `cap_add`…): a single string is an
/// error, as in Compose, not a one-item list.
fn list_of_strings(ctx: &mut Ctx<'_>, n: &Node, key: &str) -> Vec<String> {
    match &n.value {
        Value::Seq(items) => items
            .iter()
            .enumerate()
            .filter_map(|(i, x)| match &x.value {
                Value::Str(s) => Some(s.clone()),
                _ => {
                    let k = format!("{key}[{i}]");
                    ctx.finding(
                        Invalid,
                        x,
                        &k,
                        format!("expected a string, got {}", x.kind_name()),
                    );
                    None
                }
            })
            .collect(),
        Value::Null => Vec::new(),
        _ => {
            let got = n.kind_name();
            let example = n
                .scalar()
                .map(|s| format!(" (write [{s}])"))
                .unwrap_or_default();
            ctx.finding(
                Invalid,
                n,
                key,
                format!("expected a list of strings, got {got}{example}"),
            );
            Vec::new()
        }
    }
}

pub(super) fn boolean(ctx: &mut Ctx<'_>, n: &Node, key: &str) -> bool {
    match &n.value {
        Value::Bool(b) => *b,
        Value::Str(s) if s == "true" || s == "false" => s == "true",
        _ => {
            ctx.finding(
                Invalid,
                n,
                key,
                format!("expected true or false, got {}", n.kind_name()),
            );
            false
        }
    }
}

fn number(ctx: &mut Ctx<'_>, n: &Node, key: &str) -> Option<u32> {
    let v = match &n.value {
        Value::Int(i) => u32::try_from(*i).ok(),
        Value::Str(s) => s.trim().parse().ok(),
        _ => None,
    };
    if v.is_none() {
        ctx.finding(
            Invalid,
            n,
            key,
            format!(
                "expected a whole number of 0 or more, got {}",
                n.scalar()
                    .map_or_else(|| n.kind_name().to_string(), |s| format!("{s:?}"))
            ),
        );
    }
    v
}

/// A Compose duration (`1m30s`, `10s`, `500ms`) in whole seconds, rounded up.
fn seconds(ctx: &mut Ctx<'_>, n: &Node, key: &str) -> Option<u32> {
    let s = text(ctx, n, key)?;
    match humantime::parse_duration(&s) {
        Ok(d) => {
            Some(u32::try_from(d.as_secs() + u64::from(d.subsec_nanos() > 0)).unwrap_or(u32::MAX))
        }
        Err(_) => {
            ctx.finding(
                Invalid,
                n,
                key,
                format!("expected a duration like 10s or 1m30s, got {s:?}"),
            );
            None
        }
    }
}

/// Splits a command string the way Compose does (shell words, no shell).
fn shell_words(s: &str) -> Option<Vec<String>> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut has = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                has = true;
                loop {
                    match chars.next()? {
                        '\'' => break,
                        x => cur.push(x),
                    }
                }
            }
            '"' => {
                has = true;
                loop {
                    match chars.next()? {
                        '"' => break,
                        '\\' => {
                            let x = chars.next()?;
                            if !matches!(x, '"' | '\\' | '$' | '`') {
                                cur.push('\\');
                            }
                            cur.push(x);
                        }
                        x => cur.push(x),
                    }
                }
            }
            '\\' => {
                has = true;
                cur.push(chars.next()?);
            }
            c if c.is_whitespace() => {
                if has {
                    out.push(std::mem::take(&mut cur));
                    has = false;
                }
            }
            c => {
                has = true;
                cur.push(c);
            }
        }
    }
    if has {
        out.push(cur);
    }
    Some(out)
}

fn command(ctx: &mut Ctx<'_>, n: &Node, key: &str) -> Option<Vec<String>> {
    match &n.value {
        Value::Null => None,
        Value::Seq(_) => Some(strings(ctx, n, key)),
        Value::Str(s) => {
            let w = shell_words(s);
            if w.is_none() {
                ctx.finding(Invalid, n, key, "unterminated quote in the command string");
            }
            w
        }
        _ => {
            ctx.finding(
                Invalid,
                n,
                key,
                format!("expected a string or a list, got {}", n.kind_name()),
            );
            None
        }
    }
}

/// [`host_path`] for the other compose modules.
pub(super) fn host_path_of(ctx: &Ctx<'_>, at: &Node, p: &str) -> String {
    host_path(ctx, at, p)
}

/// Resolves a host path as Compose does: `~` is the home directory, a relative path is
/// relative to the directory of the file that wrote it.
fn host_path(ctx: &Ctx<'_>, at: &Node, p: &str) -> String {
    let path = if let Some(rest) = p.strip_prefix("~/") {
        Path::new(&ctx.lookup("HOME").unwrap_or_default()).join(rest)
    } else {
        ctx.dir_of(at).join(p)
    };
    // Lexical clean-up of `.` and `..` (the path may not exist yet).
    let mut clean = std::path::PathBuf::new();
    for c in path.components() {
        match c {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                clean.pop();
            }
            other => clean.push(other),
        }
    }
    let abs = if clean.is_absolute() {
        clean
    } else {
        std::env::current_dir().unwrap_or_default().join(clean)
    };
    abs.display().to_string()
}

#[allow(clippy::too_many_lines)]
fn service(
    ctx: &mut Ctx<'_>,
    name: &str,
    svc: &Node,
    refs: &Refs<'_>,
    spots: &mut Spots,
) -> Option<(ContainerSpec, bool)> {
    let base = format!("services.{name}");
    let Some(entries) = svc.as_map() else {
        ctx.finding(
            Invalid,
            svc,
            &base,
            format!("expected a mapping, got {}", svc.kind_name()),
        );
        return None;
    };
    if !berth_api::validate::is_dns1123_subdomain(name) {
        ctx.finding(Unsupported, svc, &base, format!("service name {name:?} must be lower-case letters, digits, '-' and '.' to be a berth Container name"));
    }
    let mut spec = ContainerSpec {
        restart_policy: RestartPolicy::Never,
        ..Default::default()
    };
    let mut env: Vec<(String, String)> = Vec::new();
    let mut env_files: Vec<(String, String)> = Vec::new();
    let mut networks: Option<Vec<NetworkAttachment>> = None;
    let mut replicas: Option<u32> = None;
    // Known keys that unknown ones seem to misspell.
    let mut meant: Vec<&str> = Vec::new();
    for (k, v) in entries {
        let key = format!("{base}.{}", k.name);
        let key = key.as_str();
        spots.record_key(&k.name, v, key);
        match k.name.as_str() {
            "image" => spec.image = text(ctx, v, key),
            "build" => spec.build = build(ctx, v, key, spots),
            "entrypoint" => spec.command = command(ctx, v, key),
            "command" => spec.args = command(ctx, v, key),
            "environment" => env.extend(environment(ctx, v, key)),
            "env_file" => env_files.extend(env_file(ctx, v, key)),
            "ports" => ports(ctx, v, key, &mut spec.ports),
            "expose" => {
                for (i, p) in strings(ctx, v, key).into_iter().enumerate() {
                    let (range, proto) = p
                        .split_once('/')
                        .map_or((p.as_str(), "tcp"), |(a, b)| (a, b));
                    match (port_range(range), protocol(proto)) {
                        (Some(r), Some(protocol)) => spec.ports.extend(r.map(|c| ContainerPort {
                            container_port: c,
                            protocol,
                            ..Default::default()
                        })),
                        _ => ctx.finding(
                            Invalid,
                            v,
                            &format!("{key}[{i}]"),
                            format!("expected PORT[-PORT][/PROTOCOL], got {p:?}"),
                        ),
                    }
                }
            }
            "volumes" => volumes_of(ctx, v, key, refs, &mut spec.mounts),
            "tmpfs" => {
                for t in strings(ctx, v, key) {
                    let (path, opts) = t.split_once(':').unwrap_or((&t, ""));
                    let size = opts
                        .split(',')
                        .find_map(|o| o.strip_prefix("size="))
                        .map(str::to_string);
                    spec.mounts.push(Mount {
                        mount_path: path.into(),
                        tmpfs: Some(TmpfsMount { size_limit: size }),
                        ..Default::default()
                    });
                }
            }
            "networks" => networks = Some(service_networks(ctx, v, key, refs)),
            "network_mode" => {
                if let Some(m) = text(ctx, v, key) {
                    match m.as_str() {
                        "bridge" | "host" | "none" => spec.network_mode = Some(NetworkMode::parse(&m)),
                        s if s.starts_with("service:") => spec.network_mode = Some(NetworkMode::Container(s[8..].to_string())),
                        _ => ctx.finding(Unsupported, v, key, format!("network_mode {m:?}: berth supports bridge, host, none and service:NAME")),
                    }
                }
            }
            "container_name" => spec.container_name = text(ctx, v, key),
            "hostname" => spec.hostname = text(ctx, v, key),
            "user" => spec.user = text(ctx, v, key),
            "working_dir" => spec.working_dir = text(ctx, v, key),
            "labels" => {
                for (lk, lv) in keyed(ctx, v, key) {
                    spec.labels.insert(lk, lv.unwrap_or_default());
                }
            }
            "restart" => {
                if let Some(r) = text(ctx, v, key) {
                    spec.restart_policy = match r.as_str() {
                        "no" => RestartPolicy::Never,
                        "always" => RestartPolicy::Always,
                        "unless-stopped" => {
                            ctx.finding(Warning, v, key, "unless-stopped runs as berth's Always: a container stopped by hand is started again (remove the service or set scale: 0 to stop it)");
                            RestartPolicy::Always
                        }
                        "on-failure" => RestartPolicy::OnFailure,
                        s if s.starts_with("on-failure:") => {
                            ctx.finding(Unsupported, v, key, "a maximum number of restarts: berth restarts with CrashLoopBackOff, without a limit; write on-failure");
                            RestartPolicy::OnFailure
                        }
                        _ => {
                            ctx.finding(Invalid, v, key, format!("expected no, always, on-failure[:N] or unless-stopped, got {r:?}"));
                            RestartPolicy::Never
                        }
                    };
                }
            }
            "healthcheck" => spec.health_check = healthcheck(ctx, v, key),
            "depends_on" => spec.depends_on = depends_on(ctx, v, key, refs),
            "deploy" => deploy(ctx, v, key, &mut spec, &mut replicas),
            "scale" => replicas = number(ctx, v, key),
            "stop_signal" => spec.stop_signal = text(ctx, v, key),
            "stop_grace_period" => spec.stop_grace_period_seconds = seconds(ctx, v, key),
            "init" => spec.init = boolean(ctx, v, key),
            "read_only" => spec.read_only_root_filesystem = boolean(ctx, v, key),
            "cap_add" => spec.cap_add = list_of_strings(ctx, v, key),
            "cap_drop" => spec.cap_drop = list_of_strings(ctx, v, key),
            "extra_hosts" => spec.extra_hosts = extra_hosts(ctx, v, key),
            "secrets" => files(ctx, v, key, refs.secrets, "/run/secrets/", &mut spec.files),
            "configs" => files(ctx, v, key, refs.configs, "/", &mut spec.files),
            "pull_policy" => {
                if let Some(p) = text(ctx, v, key) {
                    spec.pull_policy = match p.as_str() {
                        "always" => PullPolicy::Always,
                        "missing" | "if_not_present" => PullPolicy::IfNotPresent,
                        "never" => PullPolicy::Never,
                        // Compose builds and never pulls; berth builds when `build` is
                        // given and never pulls a built image.
                        "build" => PullPolicy::Never,
                        _ => {
                            ctx.finding(Invalid, v, key, format!("expected always, missing, never, if_not_present or build, got {p:?}"));
                            PullPolicy::IfNotPresent
                        }
                    };
                }
            }
            n if super::runtime::KEYS.contains(&n) => {
                super::runtime::apply(ctx, n, v, key, &mut spec)
            }
            "cpus" => limits(&mut spec).cpu = text(ctx, v, key),
            "mem_limit" => limits(&mut spec).memory = text(ctx, v, key).map(memory),
            "profiles" | "extends" => {}
            n if n.starts_with("x-") => {}
            n => match UNSUPPORTED_SERVICE_KEYS.iter().find(|(u, _)| *u == n) {
                Some((_, why)) => ctx.key_finding(Unsupported, v, k, key, *why),
                None => match closest_service_key(n) {
                    Some(close) => {
                        meant.push(close);
                        let msg = format!("unknown service key; did you mean {close}?");
                        ctx.key_finding(Invalid, v, k, key, msg);
                    }
                    None => ctx.key_finding(Invalid, v, k, key, "unknown service key"),
                },
            },
        }
    }
    // A misspelled image or build (`imagee`) is one problem, reported at its key above.
    if spec.image.is_none()
        && spec.build.is_none()
        && !meant.iter().any(|k| ["image", "build"].contains(k))
    {
        ctx.finding(
            Invalid,
            svc,
            &base,
            "a service needs an image (or build); neither is given",
        );
    }
    if let Some(r) = replicas {
        spec.replicas = Some(r);
    }
    // env_file first, environment overrides (Compose's precedence).
    let mut all: Vec<(String, String)> = Vec::new();
    for (k, v) in env_files.into_iter().chain(env) {
        all.retain(|(n, _)| *n != k);
        all.push((k, v));
    }
    spec.env = all
        .into_iter()
        .map(|(name, value)| EnvVar {
            name,
            value,
            value_from: None,
        })
        .collect();
    let mut uses_default = false;
    let nets = match networks {
        Some(n) => n,
        None if spec.network_mode.is_none()
            || spec.network_mode == Some(NetworkMode::Bridge)
                && svc.get("network_mode").is_none() =>
        {
            uses_default = true;
            vec![NetworkAttachment {
                name: "default".into(),
                ..Default::default()
            }]
        }
        None => Vec::new(),
    };
    // Reachable by service name on each of its networks, as in Compose.
    spec.networks = nets
        .into_iter()
        .map(|mut n| {
            if !n.aliases.iter().any(|a| a == name) {
                n.aliases.insert(0, name.to_string());
            }
            n
        })
        .collect();
    uses_default |= spec.networks.iter().any(|n| n.name == "default");
    Some((spec, uses_default))
}

/// `build: ./dir` or `build: {context, dockerfile, args, target}` → `spec.build`, the context
/// made absolute against the directory of the file that wrote it.
fn build(ctx: &mut Ctx<'_>, n: &Node, key: &str, spots: &mut Spots) -> Option<berth_api::Build> {
    let mut out = berth_api::Build {
        context: ".".into(),
        ..Default::default()
    };
    match &n.value {
        Value::Map(entries) => {
            for (k, v) in entries {
                let kk = format!("{key}.{}", k.name);
                if ["context", "dockerfile", "args", "target"].contains(&k.name.as_str()) {
                    spots.record(format!("spec.build.{}", k.name), v, &kk);
                }
                match k.name.as_str() {
                    "context" => out.context = text(ctx, v, &kk).unwrap_or_default(),
                    "dockerfile" => out.dockerfile = text(ctx, v, &kk),
                    "args" => {
                        for (a, val) in keyed(ctx, v, &kk) {
                            // A bare argument takes its value from the environment (Compose).
                            if let Some(val) = val.or_else(|| ctx.lookup(&a)) {
                                out.args.insert(a, val);
                            }
                        }
                    }
                    "target" => out.target = text(ctx, v, &kk),
                    "additional_contexts"
                    | "cache_from"
                    | "cache_to"
                    | "dockerfile_inline"
                    | "entitlements"
                    | "extra_hosts"
                    | "isolation"
                    | "labels"
                    | "network"
                    | "no_cache"
                    | "platforms"
                    | "privileged"
                    | "provenance"
                    | "pull"
                    | "sbom"
                    | "secrets"
                    | "shm_size"
                    | "ssh"
                    | "tags"
                    | "ulimits" => ctx.key_finding(
                        Unsupported,
                        v,
                        k,
                        &kk,
                        "berth's build has context, dockerfile, args and target",
                    ),
                    n if n.starts_with("x-") => {}
                    _ => ctx.key_finding(Invalid, v, k, &kk, "unknown build key"),
                }
            }
        }
        _ => {
            out.context = text(ctx, n, key)?;
            spots.record("spec.build.context".into(), n, key);
        }
    }
    if out.context.contains("://") || out.context.starts_with("git@") {
        ctx.finding(
            Unsupported,
            n,
            key,
            "a remote build context: berth builds from a directory on the host",
        );
        return None;
    }
    out.context = host_path(ctx, n, &out.context);
    Some(out)
}

fn limits(spec: &mut ContainerSpec) -> &mut ResourceLimits {
    &mut spec.resources.get_or_insert_with(Resources::default).limits
}

/// Compose memory (`512m`, `1g`, `1024k`, bytes) → a Kubernetes quantity.
pub(super) fn memory(s: String) -> String {
    let t = s.trim().to_lowercase();
    let t = t.strip_suffix('b').unwrap_or(&t).to_string();
    for (suffix, unit) in [("k", "Ki"), ("m", "Mi"), ("g", "Gi"), ("t", "Ti")] {
        if let Some(n) = t.strip_suffix(suffix) {
            return format!("{n}{unit}");
        }
    }
    s
}

/// A mapping or a `K=V` list as (key, value) pairs; `None` for a bare `K` / `K:` with null.
pub(super) fn keyed(ctx: &mut Ctx<'_>, n: &Node, key: &str) -> Vec<(String, Option<String>)> {
    let n = normalize_keyed(n, '=');
    match &n.value {
        Value::Map(entries) => entries
            .iter()
            .map(|(k, v)| {
                let value = match &v.value {
                    Value::Null => None,
                    _ => text(ctx, v, &format!("{key}.{}", k.name)),
                };
                (k.name.clone(), value)
            })
            .collect(),
        Value::Null => Vec::new(),
        // Left a list by `normalize_keyed`: an item is not a string.
        Value::Seq(items) => {
            for (i, item) in items.iter().enumerate() {
                if !matches!(item.value, Value::Str(_)) {
                    ctx.finding(
                        Invalid,
                        item,
                        &format!("{key}[{i}]"),
                        format!("expected a string KEY=VALUE, got {}", item.kind_name()),
                    );
                }
            }
            Vec::new()
        }
        _ => {
            ctx.finding(
                Invalid,
                &n,
                key,
                format!(
                    "expected a mapping or a list of KEY=VALUE, got {}",
                    n.kind_name()
                ),
            );
            Vec::new()
        }
    }
}

fn environment(ctx: &mut Ctx<'_>, n: &Node, key: &str) -> Vec<(String, String)> {
    keyed(ctx, n, key)
        .into_iter()
        // A bare name takes the variable from the environment; unset: left out (Compose).
        .filter_map(|(k, v)| match v {
            Some(v) => Some((k, v)),
            None => ctx.lookup(&k).map(|v| (k, v)),
        })
        .collect()
}

fn env_file(ctx: &mut Ctx<'_>, n: &Node, key: &str) -> Vec<(String, String)> {
    let items: Vec<Node> = match &n.value {
        Value::Seq(items) => items.clone(),
        _ => vec![n.clone()],
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let k = format!("{key}[{i}]");
        let (path, required) = match &item.value {
            Value::Map(_) => {
                let Some(p) = item.get("path").and_then(Node::scalar) else {
                    ctx.finding(Invalid, item, &k, "missing path");
                    continue;
                };
                let req = item
                    .get("required")
                    .map(|r| boolean(ctx, r, &format!("{k}.required")))
                    .unwrap_or(true);
                if let Some(f) = item.get("format") {
                    ctx.finding(
                        Unsupported,
                        f,
                        &format!("{k}.format"),
                        "only the default env-file format",
                    );
                }
                (p, req)
            }
            _ => match text(ctx, item, &k) {
                Some(p) => (p, true),
                None => continue,
            },
        };
        let full = ctx.dir_of(item).join(&path);
        if !full.exists() && !required {
            continue;
        }
        match ctx.read_text(&full) {
            Ok(t) => {
                let vars = ctx.vars.clone();
                match super::dotenv::parse(&t, &|v| vars.get(v).cloned()) {
                    Ok(v) => out.extend(v),
                    Err(e) => ctx.finding(
                        Invalid,
                        item,
                        &k,
                        format!("{}:{}: {}", (ctx.display)(&full), e.line, e.message),
                    ),
                }
            }
            Err(e) => ctx.finding(Invalid, item, &k, e),
        }
    }
    out
}

fn protocol(p: &str) -> Option<Protocol> {
    match p.to_lowercase().as_str() {
        "tcp" => Some(Protocol::TCP),
        "udp" => Some(Protocol::UDP),
        _ => None,
    }
}

fn port_range(s: &str) -> Option<std::ops::RangeInclusive<u16>> {
    let (a, b) = s.split_once('-').unwrap_or((s, s));
    let (a, b): (u16, u16) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
    (a > 0 && a <= b).then_some(a..=b)
}

fn ports(ctx: &mut Ctx<'_>, n: &Node, key: &str, out: &mut Vec<ContainerPort>) {
    let Value::Seq(items) = &n.value else {
        ctx.finding(
            Invalid,
            n,
            key,
            format!("expected a list, got {}", n.kind_name()),
        );
        return;
    };
    for (i, item) in items.iter().enumerate() {
        let k = format!("{key}[{i}]");
        if let Value::Map(entries) = &item.value {
            let mut port = ContainerPort::default();
            let mut published = None;
            for (ek, ev) in entries {
                let kk = format!("{k}.{}", ek.name);
                match ek.name.as_str() {
                    "target" => port.container_port = number(ctx, ev, &kk).and_then(|p| u16::try_from(p).ok()).unwrap_or(0),
                    "published" => published = text(ctx, ev, &kk),
                    "host_ip" => port.host_ip = text(ctx, ev, &kk),
                    "protocol" => match text(ctx, ev, &kk).as_deref().and_then(protocol) {
                        Some(p) => port.protocol = p,
                        None => ctx.finding(Unsupported, ev, &kk, "berth supports tcp and udp"),
                    },
                    "mode" => {
                        if ev.scalar().as_deref() != Some("host") && ev.scalar().as_deref() != Some("ingress") {
                            ctx.finding(Invalid, ev, &kk, "expected host or ingress");
                        }
                    }
                    "name" | "app_protocol" => {}
                    _ => ctx.key_finding(Invalid, ev, ek, &kk, "unknown key; expected target, published, host_ip, protocol, mode, name or app_protocol"),
                }
            }
            match published.as_deref().map(port_range) {
                Some(Some(r)) if r.start() == r.end() => port.host_port = Some(*r.start()),
                Some(_) => ctx.finding(Unsupported, item, &k, "a published port range for one target: berth publishes fixed ports"),
                None => ctx.finding(Unsupported, item, &k, "a port without a published host port (Compose picks a free one): berth publishes fixed ports; give published, or use expose"),
            }
            out.push(port);
            continue;
        }
        let Some(s) = item.scalar() else {
            ctx.finding(
                Invalid,
                item,
                &k,
                format!("expected a string or a mapping, got {}", item.kind_name()),
            );
            continue;
        };
        let (spec, proto) = s
            .rsplit_once('/')
            .map_or((s.as_str(), "tcp"), |(a, b)| (a, b));
        let Some(protocol) = protocol(proto) else {
            ctx.finding(
                Unsupported,
                item,
                &k,
                format!("protocol {proto:?}: berth supports tcp and udp"),
            );
            continue;
        };
        // [HOST_IP:][HOST_PORT:]CONTAINER_PORT; an IPv6 host address is written in brackets.
        let (ip, rest) = match spec.strip_prefix('[').and_then(|r| r.split_once("]:")) {
            Some((ip, rest)) => (Some(ip.to_string()), rest.to_string()),
            None => (None, spec.to_string()),
        };
        let parts: Vec<&str> = rest.split(':').collect();
        let (ip, host, container) = match (ip, parts.as_slice()) {
            (None, [c]) => (None, None, *c),
            (None, [h, c]) => (None, Some(*h), *c),
            (None, [ip, h, c]) => (Some(ip.to_string()), Some(*h), *c),
            (Some(ip), [h, c]) => (Some(ip), Some(*h), *c),
            _ => {
                ctx.finding(
                    Invalid,
                    item,
                    &k,
                    format!("expected [HOST_IP:][HOST_PORT:]CONTAINER_PORT[/PROTOCOL], got {s:?}"),
                );
                continue;
            }
        };
        let Some(cr) = port_range(container) else {
            ctx.finding(
                Invalid,
                item,
                &k,
                format!("container port {container:?}: expected a port or a range like 8000-8010"),
            );
            continue;
        };
        let hr = match host.filter(|h| !h.is_empty()) {
            None => {
                ctx.finding(Unsupported, item, &k, "a port without a host port (Compose picks a free one): berth publishes fixed ports; write HOST:CONTAINER, or use expose");
                continue;
            }
            Some(h) => match port_range(h) {
                Some(r) => r,
                None => {
                    ctx.finding(
                        Invalid,
                        item,
                        &k,
                        format!("host port {h:?}: expected a port or a range"),
                    );
                    continue;
                }
            },
        };
        if hr.clone().count() != cr.clone().count() {
            ctx.finding(Unsupported, item, &k, "host and container ranges of different lengths (Compose picks one free host port): berth publishes fixed ports");
            continue;
        }
        let ip = ip.filter(|i| !i.is_empty());
        out.extend(cr.zip(hr).map(|(c, h)| ContainerPort {
            container_port: c,
            host_port: Some(h),
            host_ip: ip.clone(),
            protocol,
        }));
    }
}

fn volumes_of(ctx: &mut Ctx<'_>, n: &Node, key: &str, refs: &Refs<'_>, out: &mut Vec<Mount>) {
    let Value::Seq(items) = &n.value else {
        ctx.finding(
            Invalid,
            n,
            key,
            format!("expected a list, got {}", n.kind_name()),
        );
        return;
    };
    for (i, item) in items.iter().enumerate() {
        let k = format!("{key}[{i}]");
        let (kind, source, target, read_only, create, size) = match &item.value {
            Value::Map(entries) => {
                let mut kind = None;
                let (mut source, mut target, mut ro, mut create, mut size) =
                    (None, None, false, true, None);
                for (ek, ev) in entries {
                    let kk = format!("{k}.{}", ek.name);
                    match ek.name.as_str() {
                        "type" => kind = text(ctx, ev, &kk),
                        "source" => source = text(ctx, ev, &kk),
                        "target" => target = text(ctx, ev, &kk),
                        "read_only" => ro = boolean(ctx, ev, &kk),
                        "bind" => {
                            for (bk, bv) in bv_entries(ev) {
                                match bk.as_str() {
                                    "create_host_path" => {
                                        create = boolean(ctx, &bv, &format!("{kk}.{bk}"))
                                    }
                                    other => ctx.finding(
                                        Unsupported,
                                        &bv,
                                        &format!("{kk}.{other}"),
                                        "only bind.create_host_path",
                                    ),
                                }
                            }
                        }
                        "tmpfs" => {
                            for (tk, tv) in bv_entries(ev) {
                                match tk.as_str() {
                                    "size" => size = tv.scalar().map(memory),
                                    other => ctx.finding(
                                        Unsupported,
                                        &tv,
                                        &format!("{kk}.{other}"),
                                        "only tmpfs.size",
                                    ),
                                }
                            }
                        }
                        "volume" => {
                            for (vk, vv) in bv_entries(ev) {
                                ctx.finding(
                                    Unsupported,
                                    &vv,
                                    &format!("{kk}.{vk}"),
                                    "no volume options in berth's mounts",
                                );
                            }
                        }
                        "consistency" => {}
                        other => ctx.key_finding(
                            Unsupported,
                            ev,
                            ek,
                            &kk,
                            format!("{other} is not supported on mounts"),
                        ),
                    }
                }
                (kind.unwrap_or_default(), source, target, ro, create, size)
            }
            _ => {
                let Some(s) = text(ctx, item, &k) else {
                    continue;
                };
                let parts: Vec<&str> = s.split(':').collect();
                let (src, dst, mode) = match parts.as_slice() {
                    [d] => (None, *d, ""),
                    [s, d] => (Some(*s), *d, ""),
                    [s, d, m] => (Some(*s), *d, *m),
                    _ => {
                        ctx.finding(
                            Invalid,
                            item,
                            &k,
                            format!("expected [SOURCE:]TARGET[:MODE], got {s:?}"),
                        );
                        continue;
                    }
                };
                let mut ro = false;
                for m in mode.split(',').filter(|m| !m.is_empty()) {
                    match m {
                        "ro" => ro = true,
                        "rw" => {}
                        other => ctx.finding(
                            Unsupported,
                            item,
                            &k,
                            format!("mount option {other:?}: berth supports ro and rw"),
                        ),
                    }
                }
                let kind = match src {
                    None => "volume",
                    Some(s) if s.starts_with(['.', '/', '~']) => "bind",
                    Some(_) => "volume",
                };
                (
                    kind.to_string(),
                    src.map(str::to_string),
                    Some(dst.to_string()),
                    ro,
                    true,
                    None,
                )
            }
        };
        let Some(target) = target else {
            ctx.finding(Invalid, item, &k, "missing target");
            continue;
        };
        let mut mount = Mount {
            mount_path: target,
            read_only,
            ..Default::default()
        };
        match (kind.as_str(), source) {
            ("bind", Some(src)) => {
                let path = host_path(ctx, item, &src);
                // Compose binds what exists (a file or a directory) and creates a missing
                // source as a directory. A file stays a file, so the type is stable.
                let path_type = if Path::new(&path).is_file() {
                    Some(HostPathType::File)
                } else {
                    create.then_some(HostPathType::DirectoryOrCreate)
                };
                mount.host_path = Some(HostPathMount { path, path_type });
            }
            ("volume", Some(src)) => {
                if !refs.volumes.contains(&src) {
                    ctx.finding(Invalid, item, &k, format!("service refers to undefined volume {src:?}: declare it under the top-level volumes"));
                }
                mount.volume = Some(src);
            }
            ("volume", None) => {
                ctx.finding(
                    Unsupported,
                    item,
                    &k,
                    "an anonymous volume: berth mounts named volumes; declare one and name it",
                );
                continue;
            }
            ("tmpfs", _) => mount.tmpfs = Some(TmpfsMount { size_limit: size }),
            (other, _) => {
                ctx.finding(
                    if matches!(other, "npipe" | "cluster" | "image") {
                        Unsupported
                    } else {
                        Invalid
                    },
                    item,
                    &k,
                    format!("mount type {other:?}: berth supports volume, bind and tmpfs"),
                );
                continue;
            }
        }
        out.push(mount);
    }
}

fn bv_entries(n: &Node) -> Vec<(String, Node)> {
    n.as_map()
        .map(|m| m.iter().map(|(k, v)| (k.name.clone(), v.clone())).collect())
        .unwrap_or_default()
}

fn service_networks(
    ctx: &mut Ctx<'_>,
    n: &Node,
    key: &str,
    refs: &Refs<'_>,
) -> Vec<NetworkAttachment> {
    let list: Vec<(String, Option<Node>, Node)> = match &n.value {
        Value::Seq(items) => items
            .iter()
            .filter_map(|i| i.scalar().map(|s| (s, None, i.clone())))
            .collect(),
        Value::Map(entries) => entries
            .iter()
            .map(|(k, v)| (k.name.clone(), Some(v.clone()), v.clone()))
            .collect(),
        _ => {
            ctx.finding(
                Invalid,
                n,
                key,
                format!("expected a list or a mapping, got {}", n.kind_name()),
            );
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for (name, opts, at) in list {
        let k = format!("{key}.{name}");
        if name != "default" && !refs.networks.contains(&name) {
            ctx.finding(Invalid, &at, &k, format!("service refers to undefined network {name:?}: declare it under the top-level networks"));
        }
        let mut att = NetworkAttachment {
            name: name.clone(),
            ..Default::default()
        };
        if let Some(opts) = opts.as_ref().and_then(Node::as_map) {
            for (ok, ov) in opts {
                let kk = format!("{k}.{}", ok.name);
                match ok.name.as_str() {
                    "aliases" => att.aliases = strings(ctx, ov, &kk),
                    "ipv4_address" => att.ipv4_address = text(ctx, ov, &kk),
                    "ipv6_address" | "link_local_ips" | "mac_address" | "driver_opts"
                    | "priority" | "gw_priority" | "interface_name" => {
                        ctx.key_finding(
                            Unsupported,
                            ov,
                            ok,
                            &kk,
                            "berth's network attachments have aliases and ipv4_address",
                        );
                    }
                    _ => ctx.key_finding(Invalid, ov, ok, &kk, "unknown key"),
                }
            }
        }
        out.push(att);
    }
    out
}

fn healthcheck(ctx: &mut Ctx<'_>, n: &Node, key: &str) -> Option<HealthCheck> {
    let entries = n.as_map()?;
    let mut hc = HealthCheck::default();
    for (k, v) in entries {
        let kk = format!("{key}.{}", k.name);
        match k.name.as_str() {
            "test" => {
                hc.test = match &v.value {
                    Value::Str(s) => vec!["CMD-SHELL".into(), s.clone()],
                    _ => strings(ctx, v, &kk),
                }
            }
            "interval" => hc.interval = text(ctx, v, &kk),
            "timeout" => hc.timeout = text(ctx, v, &kk),
            "start_period" => hc.start_period = text(ctx, v, &kk),
            "start_interval" => hc.start_interval = text(ctx, v, &kk),
            "retries" => hc.retries = number(ctx, v, &kk),
            "disable" => {
                if boolean(ctx, v, &kk) {
                    return Some(HealthCheck { test: vec!["NONE".into()], ..Default::default() });
                }
            }
            _ => ctx.key_finding(Invalid, v, k, &kk, "unknown key; expected test, interval, timeout, retries, start_period, start_interval or disable"),
        }
    }
    if hc.test.is_empty() {
        ctx.finding(Unsupported, n, key, "a healthcheck without test (Compose keeps the image's test with new timings): give test");
    }
    Some(hc)
}

fn depends_on(ctx: &mut Ctx<'_>, n: &Node, key: &str, refs: &Refs<'_>) -> Vec<Dependency> {
    let list: Vec<(String, Option<Node>, Node)> = match &n.value {
        Value::Seq(items) => items
            .iter()
            .filter_map(|i| i.scalar().map(|s| (s, None, i.clone())))
            .collect(),
        Value::Map(entries) => entries
            .iter()
            .map(|(k, v)| (k.name.clone(), Some(v.clone()), v.clone()))
            .collect(),
        _ => {
            ctx.finding(
                Invalid,
                n,
                key,
                format!("expected a list or a mapping, got {}", n.kind_name()),
            );
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for (name, opts, at) in list {
        let k = format!("{key}.{name}");
        let mut dep = Dependency {
            name: name.clone(),
            condition: DependencyCondition::Started,
        };
        let mut required = true;
        if let Some(opts) = opts.as_ref().and_then(Node::as_map) {
            for (ok, ov) in opts {
                let kk = format!("{k}.{}", ok.name);
                match ok.name.as_str() {
                    "condition" => {
                        dep.condition = match ov.scalar().as_deref() {
                            Some("service_started") => DependencyCondition::Started,
                            Some("service_healthy") => DependencyCondition::Healthy,
                            Some("service_completed_successfully") => {
                                DependencyCondition::Completed
                            }
                            _ => {
                                ctx.finding(Invalid, ov, &kk, "expected service_started, service_healthy or service_completed_successfully");
                                DependencyCondition::Started
                            }
                        }
                    }
                    "required" => required = boolean(ctx, ov, &kk),
                    "restart" => {
                        if boolean(ctx, ov, &kk) {
                            ctx.key_finding(
                                Unsupported,
                                ov,
                                ok,
                                &kk,
                                "berth does not restart a service when its dependency is updated",
                            );
                        }
                    }
                    _ => ctx.key_finding(
                        Invalid,
                        ov,
                        ok,
                        &kk,
                        "unknown key; expected condition, required or restart",
                    ),
                }
            }
        }
        match refs.active.get(&name) {
            None if !required => continue,
            None => ctx.finding(Invalid, &at, &k, format!("depends on undefined service {name:?}")),
            Some(false) if !required => continue,
            Some(false) => ctx.finding(Invalid, &at, &k, format!("depends on service {name:?}, which is not active: select its profile (COMPOSE_PROFILES in the project's .env)")),
            Some(true) if !required => ctx.finding(Unsupported, &at, &format!("{k}.required"), "an optional dependency: berth waits for every dependency"),
            Some(true) => {}
        }
        out.push(dep);
    }
    out
}

fn deploy(
    ctx: &mut Ctx<'_>,
    n: &Node,
    key: &str,
    spec: &mut ContainerSpec,
    replicas: &mut Option<u32>,
) {
    let Some(entries) = n.as_map() else { return };
    for (k, v) in entries {
        let kk = format!("{key}.{}", k.name);
        match k.name.as_str() {
            "replicas" => *replicas = number(ctx, v, &kk),
            "mode" => {
                if v.scalar().as_deref() != Some("replicated") {
                    ctx.key_finding(Unsupported, v, k, &kk, "only mode replicated");
                }
            }
            "update_config" => {
                let mut parallelism = 1u32;
                let mut start_first = false;
                for (uk, uv) in bv_entries(v) {
                    let uk_path = format!("{kk}.{uk}");
                    match uk.as_str() {
                        "parallelism" => parallelism = number(ctx, &uv, &uk_path).unwrap_or(1).max(1),
                        "order" => start_first = uv.scalar().as_deref() == Some("start-first"),
                        "monitor" => spec.min_ready_seconds = seconds(ctx, &uv, &uk_path),
                        other => ctx.finding(Unsupported, &uv, &format!("{kk}.{other}"), "berth's rolling updates have parallelism, order and monitor (→ minReadySeconds); a failed update rolls back at progressDeadlineSeconds"),
                    }
                }
                let n = IntOrString::Int(i32::try_from(parallelism).unwrap_or(i32::MAX));
                spec.update_strategy = Some(UpdateStrategy {
                    type_: UpdateStrategyType::RollingUpdate,
                    rolling_update: Some(if start_first {
                        RollingUpdate {
                            max_unavailable: Some(IntOrString::Int(0)),
                            max_surge: Some(n),
                        }
                    } else {
                        RollingUpdate {
                            max_unavailable: Some(n),
                            max_surge: Some(IntOrString::Int(0)),
                        }
                    }),
                });
            }
            "resources" => {
                for (rk, rv) in bv_entries(v) {
                    if rk != "limits" {
                        ctx.finding(
                            Unsupported,
                            &rv,
                            &format!("{kk}.{rk}"),
                            "only resource limits",
                        );
                        continue;
                    }
                    for (lk, lv) in bv_entries(&rv) {
                        let lp = format!("{kk}.limits.{lk}");
                        match lk.as_str() {
                            "cpus" => limits(spec).cpu = text(ctx, &lv, &lp),
                            "memory" => limits(spec).memory = text(ctx, &lv, &lp).map(memory),
                            _ => ctx.finding(Unsupported, &lv, &lp, "only cpus and memory limits"),
                        }
                    }
                }
            }
            "labels" | "placement" | "endpoint_mode" | "restart_policy" | "rollback_config" => {
                ctx.key_finding(Unsupported, v, k, &kk, "a Swarm deployment setting")
            }
            _ => ctx.key_finding(Invalid, v, k, &kk, "unknown key"),
        }
    }
}

fn extra_hosts(ctx: &mut Ctx<'_>, n: &Node, key: &str) -> Vec<String> {
    match &n.value {
        Value::Map(entries) => entries
            .iter()
            .flat_map(|(k, v)| {
                let ips = match &v.value {
                    Value::Seq(_) => strings(ctx, v, key),
                    _ => text(ctx, v, key).into_iter().collect(),
                };
                ips.into_iter()
                    .map(move |ip| format!("{}:{ip}", k.name))
                    .collect::<Vec<_>>()
            })
            .collect(),
        _ => strings(ctx, n, key)
            .into_iter()
            .map(|s| s.replacen('=', ":", 1))
            .collect(),
    }
}

/// Top-level secrets or configs: name → content (`None` when unusable, already reported).
fn file_objects(ctx: &mut Ctx<'_>, root: &Node, section: &str) -> BTreeMap<String, Option<String>> {
    let mut out = BTreeMap::new();
    let Some(entries) = root.get(section).and_then(Node::as_map) else {
        return out;
    };
    for (k, v) in entries {
        let key = format!("{section}.{}", k.name);
        let mut content = None;
        for (ek, ev) in bv_entries(v) {
            let kk = format!("{key}.{ek}");
            match ek.as_str() {
                "file" => {
                    let Some(p) = text(ctx, &ev, &kk) else {
                        continue;
                    };
                    let path = ctx.dir_of(&ev).join(p);
                    match ctx.read_text(&path) {
                        Ok(t) => content = Some(t),
                        Err(e) => ctx.finding(Invalid, &ev, &kk, e),
                    }
                }
                "environment" => {
                    let var = text(ctx, &ev, &kk).unwrap_or_default();
                    content = ctx.lookup(&var);
                    if content.is_none() {
                        ctx.finding(Invalid, &ev, &kk, format!("variable {var:?} is not set"));
                    }
                }
                "content" if section == "configs" => content = text(ctx, &ev, &kk),
                "name" | "labels" => {}
                "external" | "driver" | "driver_opts" | "template_driver" => ctx.finding(
                    Unsupported,
                    &ev,
                    &kk,
                    format!("{section} backed by files, environment variables or content only"),
                ),
                _ => ctx.finding(Invalid, &ev, &kk, "unknown key"),
            }
        }
        out.insert(k.name.clone(), content);
    }
    out
}

fn files(
    ctx: &mut Ctx<'_>,
    n: &Node,
    key: &str,
    known: &BTreeMap<String, Option<String>>,
    prefix: &str,
    out: &mut Vec<File>,
) {
    let Value::Seq(items) = &n.value else {
        ctx.finding(
            Invalid,
            n,
            key,
            format!("expected a list, got {}", n.kind_name()),
        );
        return;
    };
    for (i, item) in items.iter().enumerate() {
        let k = format!("{key}[{i}]");
        let mut file = File::default();
        let source = match &item.value {
            Value::Map(_) => {
                let mut source = None;
                for (ek, ev) in bv_entries(item) {
                    let kk = format!("{k}.{ek}");
                    match ek.as_str() {
                        "source" => source = text(ctx, &ev, &kk),
                        "target" => file.path = text(ctx, &ev, &kk).unwrap_or_default(),
                        "uid" => {
                            file.uid = text(ctx, &ev, &kk)
                                .and_then(|s| s.parse().ok())
                                .unwrap_or(0)
                        }
                        "gid" => {
                            file.gid = text(ctx, &ev, &kk)
                                .and_then(|s| s.parse().ok())
                                .unwrap_or(0)
                        }
                        "mode" => {
                            file.mode = match &ev.value {
                                Value::Int(m) => Some(format!("{m:04o}")),
                                Value::Str(s) => Some(s.clone()),
                                _ => {
                                    ctx.finding(
                                        Invalid,
                                        &ev,
                                        &kk,
                                        "expected an octal mode like 0440",
                                    );
                                    None
                                }
                            }
                        }
                        _ => ctx.finding(
                            Invalid,
                            &ev,
                            &kk,
                            "unknown key; expected source, target, uid, gid or mode",
                        ),
                    }
                }
                source
            }
            _ => text(ctx, item, &k),
        };
        let Some(source) = source else { continue };
        match known.get(&source) {
            None => ctx.finding(
                Invalid,
                item,
                &k,
                format!(
                    "refers to undefined {} {source:?}",
                    if prefix == "/" { "config" } else { "secret" }
                ),
            ),
            Some(None) => {}
            Some(Some(content)) => {
                if file.path.is_empty() {
                    file.path = format!("{prefix}{source}");
                } else if !file.path.starts_with('/') {
                    file.path = format!("{prefix}{}", file.path);
                }
                if prefix != "/" && file.mode.is_none() {
                    file.mode = Some("0444".into());
                }
                file.content = content.clone();
                out.push(file);
            }
        }
    }
}

fn networks(ctx: &mut Ctx<'_>, root: &Node, ns: &str, uses_default: bool, out: &mut Vec<Located>) {
    let entries: Vec<(String, Node, u64)> = root
        .get("networks")
        .and_then(Node::as_map)
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.name.clone(), v.clone(), k.line))
                .collect()
        })
        .unwrap_or_default();
    let mut has_default = false;
    for (name, v, line) in &entries {
        has_default |= name == "default";
        let key = format!("networks.{name}");
        let mut spec = NetworkSpec::default();
        for (k, ev) in bv_entries(v) {
            let kk = format!("{key}.{k}");
            match k.as_str() {
                "driver" => spec.driver = text(ctx, &ev, &kk),
                "driver_opts" => {
                    spec.options = keyed(ctx, &ev, &kk)
                        .into_iter()
                        .map(|(a, b)| (a, b.unwrap_or_default()))
                        .collect()
                }
                "attachable" => spec.attachable = boolean(ctx, &ev, &kk),
                "enable_ipv6" => spec.enable_ipv6 = boolean(ctx, &ev, &kk),
                "internal" => spec.internal = boolean(ctx, &ev, &kk),
                "labels" => {
                    spec.labels = keyed(ctx, &ev, &kk)
                        .into_iter()
                        .map(|(a, b)| (a, b.unwrap_or_default()))
                        .collect()
                }
                "ipam" => spec.ipam = Some(ipam(ctx, &ev, &kk)),
                "external" => spec.external = external(ctx, &ev, &kk, &mut spec.external_name),
                "name" => spec.external_name = text(ctx, &ev, &kk),
                "enable_ipv4" => {
                    ctx.finding(Unsupported, &ev, &kk, "berth's networks always have IPv4")
                }
                _ => ctx.finding(Invalid, &ev, &kk, "unknown key"),
            }
        }
        external_name_only(
            ctx,
            v,
            &key,
            spec.external,
            &spec.external_name,
            "networks <project>_<network>",
        );
        out.push(located(
            Manifest::Network {
                metadata: meta(name, ns),
                spec,
            },
            v,
            *line,
        ));
    }
    if uses_default && !has_default {
        out.push(Located {
            manifest: Manifest::Network {
                metadata: meta("default", ns),
                spec: NetworkSpec::default(),
            },
            origin: Origin::file(root.file.to_string(), 1),
            fields: Default::default(),
        });
    }
}

fn ipam(ctx: &mut Ctx<'_>, n: &Node, key: &str) -> Ipam {
    let mut out = Ipam::default();
    for (k, v) in bv_entries(n) {
        let kk = format!("{key}.{k}");
        match k.as_str() {
            "driver" => out.driver = text(ctx, &v, &kk),
            "config" => {
                if let Value::Seq(items) = &v.value {
                    for (i, c) in items.iter().enumerate() {
                        let mut cfg = IpamConfig::default();
                        for (ck, cv) in bv_entries(c) {
                            let ckk = format!("{kk}[{i}].{ck}");
                            match ck.as_str() {
                                "subnet" => cfg.subnet = text(ctx, &cv, &ckk).unwrap_or_default(),
                                "gateway" => cfg.gateway = text(ctx, &cv, &ckk),
                                "ip_range" => cfg.ip_range = text(ctx, &cv, &ckk),
                                _ => ctx.finding(
                                    Unsupported,
                                    &cv,
                                    &ckk,
                                    "berth's IPAM config has subnet, gateway and ip_range",
                                ),
                            }
                        }
                        out.config.push(cfg);
                    }
                }
            }
            _ => ctx.finding(Unsupported, &v, &kk, "berth's IPAM has driver and config"),
        }
    }
    out
}

fn volumes(ctx: &mut Ctx<'_>, root: &Node, ns: &str, out: &mut Vec<Located>) {
    let Some(entries) = root.get("volumes").and_then(Node::as_map) else {
        return;
    };
    for (k, v) in entries {
        let key = format!("volumes.{}", k.name);
        let mut spec = VolumeSpec::default();
        for (ek, ev) in bv_entries(v) {
            let kk = format!("{key}.{ek}");
            match ek.as_str() {
                "driver" => spec.driver = text(ctx, &ev, &kk),
                "driver_opts" => {
                    spec.driver_opts = keyed(ctx, &ev, &kk)
                        .into_iter()
                        .map(|(a, b)| (a, b.unwrap_or_default()))
                        .collect()
                }
                "labels" => {
                    spec.labels = keyed(ctx, &ev, &kk)
                        .into_iter()
                        .map(|(a, b)| (a, b.unwrap_or_default()))
                        .collect()
                }
                "external" => spec.external = external(ctx, &ev, &kk, &mut spec.external_name),
                "name" => spec.external_name = text(ctx, &ev, &kk),
                _ => ctx.finding(Invalid, &ev, &kk, "unknown key"),
            }
        }
        external_name_only(
            ctx,
            v,
            &key,
            spec.external,
            &spec.external_name,
            "volumes <project>_<volume>",
        );
        out.push(located(
            Manifest::Volume {
                metadata: meta(&k.name, ns),
                spec,
            },
            v,
            k.line,
        ));
    }
}

/// `external: true` (or the legacy `external: {name: …}`): the network or volume exists and is
/// not the project's; berth uses it and never creates or removes it (`spec.external`).
fn external(ctx: &mut Ctx<'_>, n: &Node, key: &str, name: &mut Option<String>) -> bool {
    if let Some(entries) = n.as_map() {
        for (k, v) in entries {
            match k.name.as_str() {
                "name" => *name = text(ctx, v, &format!("{key}.name")),
                _ => ctx.key_finding(
                    Invalid,
                    v,
                    k,
                    &format!("{key}.{}", k.name),
                    "unknown key; expected name",
                ),
            }
        }
        return true;
    }
    boolean(ctx, n, key)
}

/// `name:` without `external: true` asks for a project object with a fixed engine name.
fn external_name_only(
    ctx: &mut Ctx<'_>,
    at: &Node,
    key: &str,
    external: bool,
    name: &Option<String>,
    how: &str,
) {
    if !external && name.is_some() {
        let at = at.get("name").unwrap_or(at);
        ctx.finding(
            Unsupported,
            at,
            &format!("{key}.name"),
            format!("a fixed engine name for a project object: berth names its {how} (use external: true for an existing one)"),
        );
    }
}
