//! Service keys that ask the host for access or tune the runtime: `privileged`, `devices`,
//! `pid`, `ipc`, `security_opt`, `sysctls`, `shm_size`, `tty`, `stdin_open`, `ulimits`,
//! `dns`, `dns_search`, `dns_opt`, `logging` → the same-named berth Container fields.

use berth_api::{
    AppArmorProfile, ContainerSpec, Device, Logging, ProfileType, SeccompProfile, Ulimit,
};

use super::FindingKind::{Invalid, Unsupported};
use super::load::Ctx;
use super::map::{boolean, keyed, memory, strings, text};
use super::tree::{Node, Value};

/// The service keys this module maps.
pub(super) const KEYS: &[&str] = &[
    "privileged",
    "devices",
    "pid",
    "ipc",
    "security_opt",
    "sysctls",
    "shm_size",
    "tty",
    "stdin_open",
    "ulimits",
    "dns",
    "dns_search",
    "dns_opt",
    "logging",
];

/// Maps service key `name` (one of [`KEYS`]) with value `v` onto `spec`.
pub(super) fn apply(ctx: &mut Ctx<'_>, name: &str, v: &Node, key: &str, spec: &mut ContainerSpec) {
    match name {
        "privileged" => spec.privileged = boolean(ctx, v, key),
        "devices" => spec.devices = devices(ctx, v, key),
        "pid" => spec.host_pid = host_mode(ctx, v, key, "pid"),
        "ipc" => spec.host_ipc = host_mode(ctx, v, key, "ipc"),
        "security_opt" => security_opt(ctx, v, key, spec),
        "sysctls" => {
            spec.sysctls = keyed(ctx, v, key)
                .into_iter()
                .map(|(k, v)| (k, v.unwrap_or_default()))
                .collect();
        }
        "shm_size" => spec.shm_size = text(ctx, v, key).map(memory),
        "tty" => spec.tty = boolean(ctx, v, key),
        "stdin_open" => spec.stdin = boolean(ctx, v, key),
        "ulimits" => spec.ulimits = ulimits(ctx, v, key),
        "dns" => spec.dns = strings(ctx, v, key),
        "dns_search" => spec.dns_search = strings(ctx, v, key),
        "dns_opt" => spec.dns_options = strings(ctx, v, key),
        "logging" => spec.logging = logging(ctx, v, key),
        _ => {}
    }
}

/// `pid: host` / `ipc: host`; an empty value is the engine's default. Other modes (sharing
/// another container's or service's namespace, `shareable`, `private`) are not berth's.
fn host_mode(ctx: &mut Ctx<'_>, v: &Node, key: &str, what: &str) -> bool {
    match text(ctx, v, key).as_deref() {
        None | Some("") => false,
        Some("host") => true,
        Some(other) => {
            ctx.finding(
                Unsupported,
                v,
                key,
                format!("{what} {other:?}: berth supports {what}: host (hostPID/hostIPC) or the engine's default"),
            );
            false
        }
    }
}

/// `devices: ["/dev/x", "/dev/x:/dev/y", "/dev/x:/dev/y:rw"]` or the long syntax
/// `{source, target, permissions}`.
fn devices(ctx: &mut Ctx<'_>, v: &Node, key: &str) -> Vec<Device> {
    let Value::Seq(items) = &v.value else {
        ctx.finding(
            Invalid,
            v,
            key,
            format!("expected a list, got {}", v.kind_name()),
        );
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let k = format!("{key}[{i}]");
        if let Some(entries) = item.as_map() {
            let mut d = Device::default();
            for (ek, ev) in entries {
                let kk = format!("{k}.{}", ek.name);
                match ek.name.as_str() {
                    "source" => d.host_path = text(ctx, ev, &kk).unwrap_or_default(),
                    "target" => d.container_path = text(ctx, ev, &kk),
                    "permissions" => d.permissions = text(ctx, ev, &kk),
                    _ => ctx.finding(
                        Invalid,
                        ev,
                        &kk,
                        "unknown key; expected source, target or permissions",
                    ),
                }
            }
            out.push(d);
            continue;
        }
        let Some(s) = text(ctx, item, &k) else {
            continue;
        };
        let mut parts = s.splitn(3, ':');
        let host_path = parts.next().unwrap_or_default().to_string();
        let second = parts.next().map(str::to_string);
        let third = parts.next().map(str::to_string);
        // `/dev/x:rwm` (no container path) is Docker's short form too.
        let (container_path, permissions) = match (second, third) {
            (Some(p), None) if !p.starts_with('/') => (None, Some(p)),
            (c, p) => (c, p),
        };
        out.push(Device {
            host_path,
            container_path,
            permissions,
        });
    }
    out
}

/// `security_opt`: `no-new-privileges[:true|false]`, `seccomp[:=]unconfined|<file>`,
/// `apparmor[:=]unconfined|<profile>`. SELinux labels and the rest are not berth's.
fn security_opt(ctx: &mut Ctx<'_>, v: &Node, key: &str, spec: &mut ContainerSpec) {
    let Value::Seq(items) = &v.value else {
        ctx.finding(
            Invalid,
            v,
            key,
            format!("expected a list, got {}", v.kind_name()),
        );
        return;
    };
    for (i, item) in items.iter().enumerate() {
        let k = format!("{key}[{i}]");
        let Some(opt) = text(ctx, item, &k) else {
            continue;
        };
        let (name, value) = match opt.split_once(['=', ':']) {
            Some((n, v)) => (n, Some(v)),
            None => (opt.as_str(), None),
        };
        let profile = |value: &str| match value {
            "unconfined" => (ProfileType::Unconfined, None),
            "runtime/default" | "docker-default" | "default" => (ProfileType::RuntimeDefault, None),
            other => (ProfileType::Localhost, Some(other.to_string())),
        };
        match (name, value) {
            ("no-new-privileges", None | Some("true")) => {
                spec.allow_privilege_escalation = Some(false)
            }
            ("no-new-privileges", Some("false")) => spec.allow_privilege_escalation = Some(true),
            ("seccomp", Some(v)) => {
                let (type_, local) = profile(v);
                // A profile file is relative to the project directory, as in Compose.
                let local = local.map(|p| super::map::host_path_of(ctx, item, &p));
                spec.seccomp_profile = Some(SeccompProfile {
                    type_,
                    localhost_profile: local,
                });
            }
            ("apparmor", Some(v)) => {
                let (type_, local) = profile(v);
                spec.app_armor_profile = Some(AppArmorProfile {
                    type_,
                    localhost_profile: local,
                });
            }
            ("label", _) => ctx.finding(
                Unsupported,
                item,
                &k,
                "SELinux labels are not supported by berth",
            ),
            _ => ctx.finding(
                Invalid,
                item,
                &k,
                format!(
                    "expected no-new-privileges, seccomp=PROFILE or apparmor=PROFILE, got {opt:?}"
                ),
            ),
        }
    }
}

/// `ulimits: {nofile: {soft: 1024, hard: 2048}, nproc: 65535}`.
fn ulimits(ctx: &mut Ctx<'_>, v: &Node, key: &str) -> Vec<Ulimit> {
    let Some(entries) = v.as_map() else {
        ctx.finding(
            Invalid,
            v,
            key,
            format!("expected a mapping, got {}", v.kind_name()),
        );
        return Vec::new();
    };
    let mut out = Vec::new();
    for (k, ev) in entries {
        let kk = format!("{key}.{}", k.name);
        let int = |ctx: &mut Ctx<'_>, n: &Node, at: &str| match &n.value {
            Value::Int(i) => Some(*i),
            Value::Str(s) => s.trim().parse().ok().or_else(|| {
                ctx.finding(Invalid, n, at, format!("expected a number, got {s:?}"));
                None
            }),
            _ => {
                ctx.finding(
                    Invalid,
                    n,
                    at,
                    format!("expected a number, got {}", n.kind_name()),
                );
                None
            }
        };
        let (soft, hard) = match ev.as_map() {
            Some(_) => {
                let soft = ev
                    .get("soft")
                    .and_then(|n| int(ctx, n, &format!("{kk}.soft")));
                let hard = ev
                    .get("hard")
                    .and_then(|n| int(ctx, n, &format!("{kk}.hard")));
                if soft.is_none() || hard.is_none() {
                    ctx.finding(Invalid, ev, &kk, "expected soft and hard");
                }
                (soft, hard)
            }
            None => {
                let n = int(ctx, ev, &kk);
                (n, n)
            }
        };
        if let (Some(soft), Some(hard)) = (soft, hard) {
            out.push(Ulimit {
                name: k.name.clone(),
                soft,
                hard,
            });
        }
    }
    out
}

/// `logging: {driver, options}`.
fn logging(ctx: &mut Ctx<'_>, v: &Node, key: &str) -> Option<Logging> {
    let Some(entries) = v.as_map() else {
        ctx.finding(
            Invalid,
            v,
            key,
            format!("expected a mapping, got {}", v.kind_name()),
        );
        return None;
    };
    let mut out = Logging::default();
    for (k, ev) in entries {
        let kk = format!("{key}.{}", k.name);
        match k.name.as_str() {
            "driver" => out.driver = text(ctx, ev, &kk),
            "options" => {
                out.options = keyed(ctx, ev, &kk)
                    .into_iter()
                    .map(|(a, b)| (a, b.unwrap_or_default()))
                    .collect();
            }
            _ => ctx.finding(Invalid, ev, &kk, "unknown key; expected driver or options"),
        }
    }
    Some(out)
}
