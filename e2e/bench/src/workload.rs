//! The workload: N identical small containers (busybox `sleep`) on one network, written as berth
//! manifests (one file per container, so an edit touches one file) and as the equivalent
//! Compose file.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;

/// The test image (built by `e2e/images/build.sh busybox`).
pub const IMAGE: &str = "berth-test/busybox:latest";
/// berth instance the bench uses; berth only touches objects of its own instance.
pub const INSTANCE: &str = "bench";
/// berth namespace of the workload.
pub const NAMESPACE: &str = "bench";
/// Compose project name.
pub const COMPOSE_PROJECT: &str = "berthbench";
/// Label put on the raw-engine baseline's objects.
pub const RAW_LABEL: &str = "dev.berth.bench.raw";
/// Engine network name of the raw baseline.
pub const RAW_NETWORK: &str = "berthbench-raw";
/// The command every container runs. tini (`init: true`) as PID 1 makes a stop take
/// milliseconds instead of the 10 s grace period (busybox `sleep` as PID 1 ignores SIGTERM).
pub const COMMAND: [&str; 2] = ["sleep", "86400"];

/// Name of container `i` (the berth object name and the Compose service name).
pub fn container(i: usize) -> String {
    format!("c{i:03}")
}

/// Engine name berth gives container `i`.
pub fn berth_engine_name(i: usize) -> String {
    format!("{NAMESPACE}_{}_0", container(i))
}

/// The berth manifest of container `i`; `edit` adds an environment variable (a spec change).
pub fn berth_container(i: usize, edit: Option<usize>) -> String {
    let mut s = format!(
        "apiVersion: berth.dev/v1alpha1\nkind: Container\nmetadata:\n  name: {}\n  namespace: {NAMESPACE}\nspec:\n  image: {IMAGE}\n  pullPolicy: Never\n  args: [\"{}\", \"{}\"]\n  init: true\n  networks:\n    - {{name: net}}\n",
        container(i),
        COMMAND[0],
        COMMAND[1]
    );
    if let Some(e) = edit {
        let _ = writeln!(s, "  env:\n    - {{name: BENCH_EDIT, value: \"{e}\"}}");
    }
    s
}

/// Writes the berth manifests of `n` containers into `dir` (emptied first).
pub fn write_berth(dir: &Path, n: usize) -> anyhow::Result<()> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("empty {}", dir.display()))?;
    }
    std::fs::create_dir_all(dir)?;
    std::fs::write(
        dir.join("network.yaml"),
        format!(
            "apiVersion: berth.dev/v1alpha1\nkind: Network\nmetadata:\n  name: net\n  namespace: {NAMESPACE}\nspec:\n  driver: bridge\n"
        ),
    )?;
    for i in 0..n {
        std::fs::write(
            dir.join(format!("{}.yaml", container(i))),
            berth_container(i, None),
        )?;
    }
    Ok(())
}

/// The Compose file equivalent to [`write_berth`]'s manifests.
pub fn compose_file(n: usize) -> String {
    let mut s = String::from("name: berthbench\nservices:\n");
    for i in 0..n {
        let _ = write!(
            s,
            "  {}:\n    image: {IMAGE}\n    pull_policy: never\n    command: [\"{}\", \"{}\"]\n    init: true\n    networks: [net]\n",
            container(i),
            COMMAND[0],
            COMMAND[1]
        );
    }
    s.push_str("networks:\n  net:\n    driver: bridge\n");
    s
}

/// Writes `compose.yaml` for `n` containers into `dir` (emptied first); returns its path.
pub fn write_compose(dir: &Path, n: usize) -> anyhow::Result<std::path::PathBuf> {
    if dir.exists() {
        std::fs::remove_dir_all(dir)?;
    }
    std::fs::create_dir_all(dir)?;
    let f = dir.join("compose.yaml");
    std::fs::write(&f, compose_file(n))?;
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifests_name_one_network_and_the_image() {
        let m = berth_container(7, None);
        assert!(m.contains("name: c007"));
        assert!(m.contains("pullPolicy: Never"));
        assert!(!m.contains("BENCH_EDIT"));
        assert!(berth_container(7, Some(3)).contains("value: \"3\""));
        let c = compose_file(2);
        assert!(c.contains("  c000:") && c.contains("  c001:") && !c.contains("c002"));
        assert_eq!(berth_engine_name(7), "bench_c007_0");
    }
}
