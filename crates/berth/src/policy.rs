//! The security policy's I/O (the rules themselves are pure: `berth_core::policy`): reading
//! the policy file (`--policy FILE`, `BERTH_POLICY`), the facts about this host that the rules
//! need (the engine's sockets, where each declared host path leads once its symlinks are
//! resolved), and watching the file so that the agent re-evaluates every object when it
//! changes, without a restart.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use berth_api::Manifest;
use berth_core::policy::{ENGINE_SOCKETS, HostFacts, Policy};
use tokio::sync::watch;

/// Largest policy file read.
const MAX_POLICY_BYTES: u64 = 1024 * 1024;

/// Reads the policy file; `None`: the defaults (directory `privileged`, Kubernetes
/// `baseline`, no host path allowed).
///
/// # Errors
/// The file cannot be read, is not a regular file of at most 1 MiB, or does not hold a policy
/// (the message names the file, and the position and field where the YAML says so).
pub fn load(path: Option<&Path>) -> anyhow::Result<Policy> {
    let Some(path) = path else {
        return Ok(Policy::default());
    };
    let meta = std::fs::metadata(path)
        .with_context(|| format!("read the policy file {}", path.display()))?;
    if !meta.is_file() || meta.len() > MAX_POLICY_BYTES {
        anyhow::bail!(
            "policy file {}: expected a regular file of at most 1 MiB",
            path.display()
        );
    }
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("read the policy file {}", path.display()))?;
    parse(&path.display().to_string(), &text)
}

/// Parses policy YAML; `file` names it in errors.
///
/// # Errors
/// Not a policy: unknown keys, an unknown profile, a relative allowlist path, a value of the
/// wrong type (`readOnly: "false"`); one line, `FILE:LINE:COLUMN: field: expected …`, as a
/// manifest's errors.
pub fn parse(file: &str, text: &str) -> anyhow::Result<Policy> {
    // An empty file is far more often a save caught half-way (or an editor's truncation) than
    // a wish for the defaults, which would relax a stricter policy at once: it is an error, so
    // the policy in force stays. `{}` asks for the defaults.
    if text.trim().is_empty() {
        anyhow::bail!(
            "{file}: the policy file is empty; write {{}} for the default profiles (the policy in force stays)"
        );
    }
    Ok(berth_sources::decode::decode_config(file, text)?)
}

/// `path` with its symlinks resolved on this host, also a dangling one (a link to a socket
/// that is not there now may be there later); the part below the deepest existing directory is
/// kept as written (a `DirectoryOrCreate` path may not exist yet).
pub fn resolve_host_path(path: &str) -> String {
    resolve(Path::new(path), 0)
}

fn resolve(p: &Path, depth: u32) -> String {
    if let Ok(real) = std::fs::canonicalize(p) {
        return real.display().to_string();
    }
    if depth < 32
        && let Ok(target) = std::fs::read_link(p)
    {
        let target = match p.parent() {
            Some(parent) if target.is_relative() => parent.join(target),
            _ => target,
        };
        return resolve(&target, depth + 1);
    }
    match (p.parent(), p.file_name()) {
        (Some(parent), Some(name)) => {
            let mut out = PathBuf::from(resolve(parent, depth + 1));
            out.push(name);
            out.display().to_string()
        }
        _ => p.display().to_string(),
    }
}

/// The facts the rules need about `manifests` on this host.
pub fn host_facts<'a>(
    manifests: impl IntoIterator<Item = &'a Manifest>,
    policy: &Policy,
) -> HostFacts {
    let mut facts = HostFacts::default();
    let docker_host = std::env::var("DOCKER_HOST").ok();
    let sockets = ENGINE_SOCKETS
        .iter()
        .map(|s| s.to_string())
        .chain(docker_host.and_then(|h| h.strip_prefix("unix://").map(str::to_string)));
    for s in sockets {
        let real = resolve_host_path(&s);
        if real != s {
            facts.engine_sockets.push(real);
        }
        facts.engine_sockets.push(s);
    }
    let mut paths: Vec<String> = policy
        .host_path_allowlist
        .iter()
        .map(|a| a.path.clone())
        .collect();
    for m in manifests {
        match m {
            Manifest::Container { spec, .. } => paths.extend(
                spec.mounts
                    .iter()
                    .filter_map(|m| m.host_path.as_ref().map(|h| h.path.clone())),
            ),
            Manifest::Volume { spec, .. } => paths.extend(spec.driver_opts.get("device").cloned()),
            Manifest::Network { .. } => {}
        }
    }
    for p in paths {
        let real = resolve_host_path(&p);
        facts.resolved.insert(p, real);
    }
    facts
}

/// Watches the policy file (polled every second: a policy is one small file, and polling also
/// follows an editor's rename-over-write and a file that appears later). Each new valid policy
/// is published; an invalid one is logged and the last valid one stays.
pub fn watch(path: PathBuf, first: Policy) -> watch::Receiver<Policy> {
    let (tx, rx) = watch::channel(first);
    tokio::spawn(async move {
        let mut last_text: Option<String> = std::fs::read_to_string(&path).ok();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            let text = std::fs::read_to_string(&path).ok();
            if text == last_text {
                continue;
            }
            last_text = text;
            match load(Some(&path)) {
                Ok(p) => {
                    tracing::info!(policy = %path.display(), "policy changed; every object is evaluated again");
                    if tx.send(p).is_err() {
                        return;
                    }
                }
                Err(e) => tracing::error!(
                    error = format!("{e:#}"),
                    "policy file not applied; the previous policy stays in force"
                ),
            }
        }
    });
    rx
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_core::policy::Profile;

    #[test]
    fn the_issue_sample_parses_and_mistakes_are_named() {
        let p = parse(
            "policy.yaml",
            "sources:\n  directory: {profile: privileged}\n  kubernetes:\n    profile: baseline\n    namespaces: {berth-system: privileged, sandbox: restricted}\nhostPathAllowlist: [{path: /srv/site, readOnly: true}]\n",
        )
        .expect("valid");
        use berth_core::policy::Source;
        assert_eq!(
            p.profile(Source::Kubernetes, "sandbox"),
            Profile::Restricted
        );
        assert_eq!(p.profile(Source::Kubernetes, "other"), Profile::Baseline);
        assert_eq!(p.profile(Source::Directory, "x"), Profile::Privileged);
        assert!(p.host_path_allowlist[0].read_only);
        let e = parse("policy.yaml", "sources:\n  directory: {profile: root}\n")
            .expect_err("bad profile");
        assert!(format!("{e:#}").contains("policy.yaml"), "{e:#}");
        let e = parse("policy.yaml", "hostPathAllowlist: [{path: srv}]\n").expect_err("relative");
        assert!(
            format!("{e:#}").contains("hostPathAllowlist[0].path"),
            "{e:#}"
        );
        assert_eq!(parse("p", "{}\n").expect("{}"), Policy::default());
        // An empty file (a save caught half-way) keeps the policy in force: an error.
        let e = parse("p.yaml", " \n").expect_err("empty");
        assert!(
            format!("{e:#}").contains("p.yaml: the policy file is empty"),
            "{e:#}"
        );
    }

    /// The policy file is read as strictly as a manifest, and its mistakes are printed as a
    /// manifest's: once, one line, `FILE:LINE:COLUMN: field: expected …`, in the file's words
    /// (no library message, no "error" inside, no snippet).
    #[test]
    fn policy_file_types_are_strict_and_errors_are_located_in_its_words() {
        let cases = [
            (
                "hostPathAllowlist:\n  - {path: /srv/site, readOnly: \"false\"}\n",
                "p.yaml:2:33: hostPathAllowlist[0].readOnly: expected true or false, got the string \"false\"; write true or false without quotes",
            ),
            (
                "sources:\n  directory: {profile: baseline, extra: 1}\n",
                "p.yaml:2:34: sources.directory.extra: unknown field \"extra\"; expected one of: profile",
            ),
            (
                "sourcez: {}\n",
                "p.yaml:1:1: sourcez: unknown field \"sourcez\"; expected one of: sources, hostPathAllowlist",
            ),
            (
                "sources:\n  kubernetes:\n    namespaces: {sandbox: root}\n",
                "p.yaml:3:27: sources.kubernetes.namespaces.sandbox: unknown value \"root\"; expected one of: privileged, baseline, restricted",
            ),
            (
                "hostPathAllowlist: [{path: srv}]\n",
                "p.yaml:1:28: hostPathAllowlist[0].path: expected an absolute path like /srv/site, got \"srv\"",
            ),
            (
                "hostPathAllowlist: [{path: /srv, readOnly: yes}]\n",
                "p.yaml:1:44: hostPathAllowlist[0].readOnly: expected true or false, got the string \"yes\"; write true or false without quotes",
            ),
        ];
        for (text, want) in cases {
            let e = format!("{:#}", parse("p.yaml", text).expect_err(text));
            assert_eq!(e, want, "{text}");
            assert!(!e.contains('\n') && !e.contains("error"), "{e}");
        }
    }

    #[test]
    fn symlinks_are_resolved_on_the_host() {
        let d = tempfile::tempdir().expect("tmp");
        let target = d.path().join("real");
        std::fs::create_dir(&target).expect("mkdir");
        std::os::unix::fs::symlink(&target, d.path().join("link")).expect("symlink");
        let real = std::fs::canonicalize(&target)
            .expect("canon")
            .display()
            .to_string();
        let link = d.path().join("link").display().to_string();
        assert_eq!(resolve_host_path(&link), real);
        assert_eq!(
            resolve_host_path(&format!("{link}/not/yet")),
            format!("{real}/not/yet")
        );
        let dangling = d.path().join("sock");
        std::os::unix::fs::symlink("/nowhere/docker.sock", &dangling).expect("symlink");
        assert_eq!(
            resolve_host_path(&dangling.display().to_string()),
            "/nowhere/docker.sock"
        );
    }
}
