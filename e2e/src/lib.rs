#![forbid(unsafe_code)]
//! Harness for berth's end-to-end tests on the real Docker Engine.
//!
//! Each test gets its own [`Env`]: a temporary manifest directory, a unique namespace and a
//! unique berth instance name (so that parallel tests never see, let alone remove, each
//! other's objects). Dropping the `Env` stops its agent and removes everything labelled with
//! its instance, plus any unlabelled object the test created under its namespace prefix.
//!
//! Images come from `e2e/images/build.sh` (no registry is reachable here).

pub mod inproc;
pub mod proxy;
pub mod registry;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::models::ContainerSummary;
use bollard::query_parameters::{
    InspectContainerOptions, ListContainersOptionsBuilder, ListNetworksOptionsBuilder,
    ListVolumesOptionsBuilder, RemoveContainerOptionsBuilder,
};

/// Small image for most tests.
pub const BUSYBOX: &str = "berth-test/busybox:latest";
/// Same as [`BUSYBOX`] with one file changed (another image ID).
pub const BUSYBOX_V2: &str = "berth-test/busybox:v2";
/// Debian bookworm with PostgreSQL, Redis, nginx, curl.
pub const SERVICES: &str = "berth-test/services:bookworm";

/// `Env::new(name, path of the berth binary)`, the binary being this package's
/// `berth-e2e-cli` (only integration tests know its path).
#[macro_export]
macro_rules! test_env {
    ($name:expr) => {
        $crate::Env::new(
            $name,
            std::path::PathBuf::from(::std::env!("CARGO_BIN_EXE_berth-e2e-cli")),
        )
    };
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Builds the test images with `e2e/images/build.sh WHICH` (`busybox` or `services`) once per
/// test process; the script is idempotent and takes no time when they exist.
pub fn ensure_images(which: &str) {
    use std::sync::{Mutex, OnceLock};
    static DONE: OnceLock<Mutex<Vec<String>>> = OnceLock::new();
    let done = DONE.get_or_init(|| Mutex::new(Vec::new()));
    let mut done = done.lock().unwrap_or_else(|e| e.into_inner());
    if done.iter().any(|d| d == which) {
        return;
    }
    let status = Command::new("bash")
        .arg(repo_root().join("e2e/images/build.sh"))
        .arg(which)
        .stdout(Stdio::null())
        .status()
        .expect("run e2e/images/build.sh");
    assert!(status.success(), "e2e/images/build.sh {which} failed");
    done.push(which.to_string());
}

/// A running `berth agent` process whose log goes to a file.
pub struct Agent {
    child: Child,
    log: PathBuf,
}

impl Agent {
    /// The agent's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `kill -9`.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and wait.
    pub fn stop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.kill9();
    }

    /// The process ID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Peak resident memory of the process so far (`VmHWM`), in bytes.
    pub fn peak_rss(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        let kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()?;
        Some(kib * 1024)
    }

    /// True while the process runs.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits until the log contains `needle`.
    pub async fn wait_log(&self, needle: &str, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.log().contains(needle) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        anyhow::bail!("agent log never contained {needle:?}; log:\n{}", self.log())
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// One test's world.
pub struct Env {
    /// Unique namespace for the test's objects (also the berth instance name).
    pub ns: String,
    /// The manifest directory.
    pub dir: tempfile::TempDir,
    /// Engine client for assertions.
    pub docker: Docker,
    bin: PathBuf,
    logs: tempfile::TempDir,
    agent_seq: std::sync::atomic::AtomicU32,
}

impl Env {
    /// A fresh environment named after the test (`name` must be a short DNS label).
    pub async fn new(name: &str, bin: PathBuf) -> Env {
        let docker = Docker::connect_with_defaults()
            .expect("docker client")
            .negotiate_version()
            .await
            .expect("the Docker Engine must be running for e2e tests");
        for image in [BUSYBOX, BUSYBOX_V2] {
            docker.inspect_image(image).await.unwrap_or_else(|_| {
                panic!("image {image} missing: run `bash e2e/images/build.sh busybox`")
            });
        }
        let ns = format!("e2e-{name}");
        let env = Env {
            ns,
            dir: tempfile::tempdir().expect("tempdir"),
            docker,
            bin,
            logs: tempfile::tempdir().expect("tempdir"),
            agent_seq: std::sync::atomic::AtomicU32::new(0),
        };
        env.cleanup().await;
        env
    }

    /// Path of a manifest file.
    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    /// Writes a manifest file (parent directories created).
    pub fn write(&self, file: &str, text: &str) {
        let p = self.path(file);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::write(p, text).expect("write manifest");
    }

    /// Removes a manifest file.
    pub fn remove(&self, file: &str) {
        std::fs::remove_file(self.path(file)).expect("rm manifest");
    }

    /// A berth command for this environment's instance.
    pub fn berth(&self) -> Command {
        let mut c = Command::new(&self.bin);
        c.arg("--instance").arg(&self.ns);
        c.env("RUST_LOG", "info");
        c
    }

    /// `berth --socket SOCKET ARGS…` (the local API of an agent serving on `SOCKET`): exit code,
    /// stdout and stderr.
    pub fn local(&self, socket: &Path, args: &[&str]) -> (i32, String, String) {
        let out = self
            .berth()
            .arg("--socket")
            .arg(socket)
            .args(args)
            .output()
            .expect("run berth");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// The `berth` binary under test.
    pub fn bin(&self) -> &Path {
        &self.bin
    }

    /// `berth apply` on the manifest directory.
    pub fn apply(&self) -> Output {
        self.berth()
            .arg("apply")
            .arg(self.dir.path())
            .output()
            .expect("run berth apply")
    }

    /// `berth diff` on the manifest directory.
    pub fn diff(&self) -> Output {
        self.berth()
            .arg("diff")
            .arg(self.dir.path())
            .output()
            .expect("run berth diff")
    }

    /// Starts `berth agent` on the manifest directory (2 s resync).
    pub fn agent(&self) -> Agent {
        self.agent_with(&[])
    }

    /// Starts `berth agent` with extra agent flags.
    pub fn agent_with(&self, extra: &[&str]) -> Agent {
        self.agent_with_env(extra, &[])
    }

    /// Starts `berth agent` with extra agent flags and environment variables.
    pub fn agent_with_env(&self, extra: &[&str], vars: &[(&str, &std::ffi::OsStr)]) -> Agent {
        let seq = self
            .agent_seq
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let log = self.logs.path().join(format!("agent-{seq}.log"));
        let file = std::fs::File::create(&log).expect("log file");
        let child = self
            .berth()
            // No metrics endpoint unless a test asks for one (agents run in parallel).
            .args([
                "--log-format",
                "text",
                "agent",
                "--resync-seconds",
                "2",
                "--metrics-address",
                "off",
            ])
            .args(extra)
            .arg("--manifests")
            .arg(self.dir.path())
            .env("NO_COLOR", "1")
            .envs(vars.iter().copied())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("start berth agent");
        Agent { child, log }
    }

    /// A Container manifest in this namespace.
    pub fn container(&self, name: &str, image: &str, extra: &str) -> String {
        format!(
            "apiVersion: berth.dev/v1alpha1\nkind: Container\nmetadata:\n  name: {name}\n  namespace: {ns}\nspec:\n  image: {image}\n  pullPolicy: IfNotPresent\n  command: [sleep, \"3600\"]\n  stopGracePeriodSeconds: 1\n{extra}",
            ns = self.ns
        )
    }

    /// A Container manifest in this namespace built from the context `ctx` (`spec.build`),
    /// without `image` (the default tag).
    pub fn built(&self, name: &str, ctx: &Path) -> String {
        format!(
            "apiVersion: berth.dev/v1alpha1\nkind: Container\nmetadata:\n  name: {name}\n  namespace: {ns}\nspec:\n  build:\n    context: {ctx}\n  stopGracePeriodSeconds: 1\n",
            ns = self.ns,
            ctx = ctx.display()
        )
    }

    /// A Network manifest in this namespace.
    pub fn network(&self, name: &str, extra: &str) -> String {
        format!(
            "apiVersion: berth.dev/v1alpha1\nkind: Network\nmetadata:\n  name: {name}\n  namespace: {ns}\n{extra}",
            ns = self.ns
        )
    }

    /// A Volume manifest in this namespace.
    pub fn volume(&self, name: &str, extra: &str) -> String {
        format!(
            "apiVersion: berth.dev/v1alpha1\nkind: Volume\nmetadata:\n  name: {name}\n  namespace: {ns}\n{extra}",
            ns = self.ns
        )
    }

    /// Engine name of replica 0 of container object `name`.
    pub fn cname(&self, name: &str) -> String {
        format!("{}_{name}_0", self.ns)
    }

    /// Engine name of network/volume object `name`.
    pub fn oname(&self, name: &str) -> String {
        format!("{}_{name}", self.ns)
    }

    fn label_filter(&self) -> HashMap<String, Vec<String>> {
        HashMap::from([(
            "label".to_string(),
            vec![format!("berth.dev/instance={}", self.ns)],
        )])
    }

    /// This instance's containers (all states), by engine name.
    pub async fn containers(&self) -> HashMap<String, ContainerSummary> {
        let opts = ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&self.label_filter())
            .build();
        self.docker
            .list_containers(Some(opts))
            .await
            .expect("list containers")
            .into_iter()
            .map(|c| {
                let name = c
                    .names
                    .as_ref()
                    .and_then(|n| n.first())
                    .cloned()
                    .unwrap_or_default();
                (name.trim_start_matches('/').to_string(), c)
            })
            .collect()
    }

    /// Engine ID of a container (any owner), if it exists.
    pub async fn container_id(&self, name: &str) -> Option<String> {
        self.docker
            .inspect_container(name, None::<InspectContainerOptions>)
            .await
            .ok()
            .and_then(|c| c.id)
    }

    /// True when the named container exists and runs.
    pub async fn running(&self, name: &str) -> bool {
        self.docker
            .inspect_container(name, None::<InspectContainerOptions>)
            .await
            .ok()
            .and_then(|c| c.state)
            .and_then(|s| s.running)
            .unwrap_or(false)
    }

    /// Names of this instance's networks.
    pub async fn networks(&self) -> Vec<String> {
        let opts = ListNetworksOptionsBuilder::default()
            .filters(&self.label_filter())
            .build();
        let mut v: Vec<String> = self
            .docker
            .list_networks(Some(opts))
            .await
            .expect("list networks")
            .into_iter()
            .filter_map(|n| n.name)
            .collect();
        v.sort();
        v
    }

    /// Names of all volumes whose name starts with this namespace and `_`.
    pub async fn volumes(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .docker
            .list_volumes(None::<bollard::query_parameters::ListVolumesOptions>)
            .await
            .expect("list volumes")
            .volumes
            .unwrap_or_default()
            .into_iter()
            .map(|v| v.name)
            .filter(|n| n.starts_with(&format!("{}_", self.ns)))
            .collect();
        v.sort();
        v
    }

    /// Polls `check` every 100 ms until it returns true or `timeout` passes; returns the time it took.
    pub async fn until<F, Fut>(&self, what: &str, timeout: Duration, mut check: F) -> Duration
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let start = Instant::now();
        loop {
            if check().await {
                return start.elapsed();
            }
            if start.elapsed() > timeout {
                panic!("timed out after {timeout:?} waiting for: {what}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Runs `docker` CLI with args; returns stdout (panics on failure).
    pub fn docker_cli(&self, args: &[&str]) -> String {
        let out = Command::new("docker")
            .args(args)
            .output()
            .expect("docker cli");
        assert!(
            out.status.success(),
            "docker {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Runs `docker` CLI with args; `None` when it fails.
    pub fn try_docker_cli(&self, args: &[&str]) -> Option<String> {
        let out = Command::new("docker").args(args).output().ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// Removes everything of this instance and every object named after its namespace.
    pub async fn cleanup(&self) {
        cleanup(&self.docker, &self.ns).await;
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let docker = self.docker.clone();
        let ns = self.ns.clone();
        // Drop cannot await; clean up on a helper thread with its own runtime.
        let _ = std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                rt.block_on(cleanup(&docker, &ns));
            }
        })
        .join();
    }
}

/// Removes every object labelled with instance `ns` or named with the `ns_` prefix, and the
/// images berth built for instance `ns` (after the containers that use them).
pub async fn cleanup(docker: &Docker, ns: &str) {
    cleanup_objects(docker, ns).await;
    let filters = HashMap::from([(
        "label".to_string(),
        vec![format!("berth.dev/instance={ns}")],
    )]);
    let opts = bollard::query_parameters::ListImagesOptionsBuilder::default()
        .filters(&filters)
        .build();
    for img in docker.list_images(Some(opts)).await.unwrap_or_default() {
        let _ = docker
            .remove_image(
                &img.id,
                Some(
                    bollard::query_parameters::RemoveImageOptionsBuilder::default()
                        .force(true)
                        .build(),
                ),
                None,
            )
            .await;
    }
}

async fn cleanup_objects(docker: &Docker, ns: &str) {
    let prefix = format!("{ns}_");
    {
        let opts = ListContainersOptionsBuilder::default().all(true).build();
        for c in docker.list_containers(Some(opts)).await.unwrap_or_default() {
            let ours = c
                .labels
                .as_ref()
                .and_then(|l| l.get("berth.dev/instance"))
                .is_some_and(|i| *i == ns)
                || c.names.as_ref().is_some_and(|n| {
                    n.iter()
                        .any(|n| n.trim_start_matches('/').starts_with(&prefix))
                });
            if ours && let Some(id) = &c.id {
                let _ = docker
                    .remove_container(
                        id,
                        Some(RemoveContainerOptionsBuilder::default().force(true).build()),
                    )
                    .await;
            }
        }
        let nets = docker
            .list_networks(Some(ListNetworksOptionsBuilder::default().build()))
            .await
            .unwrap_or_default();
        for n in nets {
            let labelled = n
                .labels
                .as_ref()
                .and_then(|l| l.get("berth.dev/instance"))
                .is_some_and(|i| i == ns);
            if labelled || n.name.as_ref().is_some_and(|n| n.starts_with(&prefix)) {
                let _ = docker
                    .remove_network(n.id.as_deref().unwrap_or_default())
                    .await;
            }
        }
        let vols = docker
            .list_volumes(Some(ListVolumesOptionsBuilder::default().build()))
            .await
            .ok()
            .and_then(|v| v.volumes)
            .unwrap_or_default();
        for v in vols {
            if v.labels.get("berth.dev/instance").is_some_and(|i| i == ns)
                || v.name.starts_with(&prefix)
            {
                let _ = docker
                    .remove_volume(
                        &v.name,
                        None::<bollard::query_parameters::RemoveVolumeOptions>,
                    )
                    .await;
            }
        }
    }
}

/// `GET path` on a TCP address (HTTP/1.0): (status code, body).
pub fn http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let code = out.split_whitespace().nth(1)?.parse().ok()?;
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
    Some((code, body))
}

/// Text of a process output, for assertion messages.
pub fn text(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
