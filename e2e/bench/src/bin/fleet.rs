#![forbid(unsafe_code)]
//! `fleet`: many berth agents against one Kubernetes API server, on one machine.
//!
//! ```text
//! cargo run --release -p berth-bench --bin fleet -- [--quick]
//! ```
//!
//! The fake Kubernetes API server of the tests (`berth_sources::fake_api`: LIST, WATCH with
//! resourceVersion replay and `timeoutSeconds`, GET, server-side-apply PATCH of `status.hosts[]`
//! per field manager, POST) is served over HTTP on loopback, one listener per agent so that
//! every request is attributed. It holds N `Container` custom resources across namespaces;
//! `berth agent --kube` processes (release build, one `--instance`, node name and label set
//! each, no manifest directory) run them on the one Docker Engine of this machine, each through
//! a small proxy that gives every simulated host container names of its own (see
//! `fleet/proxy.rs`: berth's engine names are the same on every host).
//!
//! The workload: hosts in groups of five (label `fleet.berth.dev/group`); one object per group
//! selects its group (5 hosts), one object per 2.5 hosts selects one host by
//! `kubernetes.io/hostname`, every other object selects a pool no host is in. Full run: 100
//! agents, 1,000 objects in 50 namespaces, 140 containers; `--quick`: 10 agents, 100 objects,
//! 14 containers. Measured in one run:
//!
//! 1. cold converge of the fleet and the API requests it took per agent;
//! 2. changes, one at a time, to the objects that target 5 hosts: time from the write of the
//!    custom resource to the first and to the last targeted host starting the new container (engine
//!    `start` events carrying the new spec hash), and the status writes that change caused
//!    (by targeted and by other hosts), and whether the aggregate conditions ended right;
//! 3. idle: API requests per agent per minute by kind, open watches and connections, each
//!    agent's RSS and CPU with every object in its cache.
//!
//! Writes `results.csv`, `results.md` and `latency.svg` into `--out` (default `target/fleet`),
//! prints the markdown, and removes every container it created (instances `fleet-*`) and every
//! agent process, also on failure and on Ctrl-C.

#[allow(dead_code)]
#[path = "../stats.rs"]
mod stats;
#[allow(dead_code)]
#[path = "../tools.rs"]
mod tools;
#[allow(dead_code)]
#[path = "../workload.rs"]
mod workload;

#[path = "../fleet/api.rs"]
mod api;
#[path = "../fleet/proxy.rs"]
mod proxy;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use berth_sources::fake_api::FakeApi;
use bollard::Docker;
use bollard::query_parameters::{
    EventsOptionsBuilder, ListContainersOptionsBuilder, RemoveContainerOptionsBuilder,
};
use clap::Parser;
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

use api::{ApiServer, Class, Hit};
use proxy::NameProxy;
use stats::{Row, Summary, secs};

const CONTAINERS: &str = "/apis/berth.dev/v1alpha1/containers";
const INSTANCE_PREFIX: &str = "fleet-";
const GROUP_SIZE: usize = 5;
const LABEL_GROUP: &str = "fleet.berth.dev/group";
const LABEL_ZONE: &str = "fleet.berth.dev/zone";
const LABEL_POOL: &str = "fleet.berth.dev/pool";

/// Command line.
#[derive(Parser, Debug)]
#[command(
    name = "fleet",
    about = "many berth agents against one (fake) Kubernetes API server"
)]
struct Args {
    /// 10 agents, 100 objects, 5 changes, 30 s idle (what CI runs, under 3 minutes).
    #[arg(long)]
    quick: bool,
    /// Output directory (relative paths are taken from the workspace root).
    #[arg(long, default_value = "target/fleet")]
    out: PathBuf,
    /// The berth binary (default: `cargo build --release -p berth` and use that).
    #[arg(long)]
    berth: Option<PathBuf>,
    /// Number of agents instead of the mode's.
    #[arg(long)]
    agents: Option<usize>,
    /// Number of custom resources instead of the mode's.
    #[arg(long)]
    objects: Option<usize>,
    /// Number of changes instead of the mode's.
    #[arg(long)]
    changes: Option<usize>,
    /// Seconds of idle measurement instead of the mode's.
    #[arg(long)]
    idle_seconds: Option<u64>,
}

/// Sizes of a run.
#[derive(Debug, Clone)]
struct Config {
    agents: usize,
    objects: usize,
    namespaces: usize,
    changes: usize,
    idle: Duration,
    converge_timeout: Duration,
}

impl Config {
    fn new(a: &Args) -> Config {
        let (agents, objects, namespaces, changes, idle) = if a.quick {
            (10, 100, 10, 5, 30)
        } else {
            // 300 s: one full period of the watches' 290 s timeout and of the Host heartbeat.
            (100, 1000, 50, 20, 300)
        };
        let agents = a.agents.unwrap_or(agents).max(1);
        Config {
            agents,
            objects: a.objects.unwrap_or(objects).max(1),
            namespaces,
            changes: a.changes.unwrap_or(changes),
            idle: Duration::from_secs(a.idle_seconds.unwrap_or(idle)),
            converge_timeout: Duration::from_secs(120 + 6 * agents as u64),
        }
    }
}

fn instance(i: usize) -> String {
    format!("{INSTANCE_PREFIX}{i:03}")
}

/// One custom resource of the workload and the agents it targets.
#[derive(Debug, Clone)]
struct Object {
    namespace: String,
    name: String,
    selector: BTreeMap<String, String>,
    targets: BTreeSet<usize>,
}

impl Object {
    fn status_path(&self) -> String {
        format!(
            "/apis/berth.dev/v1alpha1/namespaces/{}/containers/{}/status",
            self.namespace, self.name
        )
    }

    /// The custom resource at revision `rev` (an environment variable: a spec change).
    fn json(&self, rev: usize) -> Value {
        json!({"apiVersion": "berth.dev/v1alpha1", "kind": "Container",
               "metadata": {"name": self.name, "namespace": self.namespace},
               "spec": {"image": workload::IMAGE, "pullPolicy": "Never",
                        "command": ["sleep", "3600"], "init": true,
                        "env": [{"name": "FLEET_REV", "value": rev.to_string()}],
                        "hostSelector": {"matchLabels": self.selector}}})
    }
}

fn groups(cfg: &Config) -> usize {
    cfg.agents.div_ceil(GROUP_SIZE)
}

fn agent_labels(i: usize) -> Vec<(String, String)> {
    vec![
        (LABEL_GROUP.into(), format!("g{:02}", i / GROUP_SIZE)),
        (LABEL_ZONE.into(), format!("z{}", i % 4)),
    ]
}

/// The workload: see the module docs.
fn workload(cfg: &Config) -> Vec<Object> {
    let groups = groups(cfg).min(cfg.objects);
    let singles = (cfg.agents * 2 / 5).min(cfg.objects - groups);
    (0..cfg.objects)
        .map(|j| {
            let (selector, targets): (BTreeMap<String, String>, BTreeSet<usize>) = if j < groups {
                (
                    [(LABEL_GROUP.to_string(), format!("g{j:02}"))].into(),
                    (j * GROUP_SIZE..((j + 1) * GROUP_SIZE).min(cfg.agents)).collect(),
                )
            } else if j < groups + singles {
                let host = (j - groups) * cfg.agents / singles.max(1);
                (
                    [("kubernetes.io/hostname".to_string(), instance(host))].into(),
                    [host].into(),
                )
            } else {
                (
                    [(LABEL_POOL.to_string(), "standby".to_string())].into(),
                    BTreeSet::new(),
                )
            };
            Object {
                namespace: format!("fleet-ns-{:02}", j % cfg.namespaces),
                name: format!("app-{j:04}"),
                selector,
                targets,
            }
        })
        .collect()
}

/// The agent processes and their engine proxies.
#[derive(Default)]
struct Fleet {
    children: Vec<Child>,
    pids: Vec<u32>,
    proxies: Vec<NameProxy>,
    logs: Vec<PathBuf>,
}

impl Fleet {
    /// Fails when an agent has exited, with the end of its log.
    fn check_alive(&mut self) -> anyhow::Result<()> {
        for (i, c) in self.children.iter_mut().enumerate() {
            if let Ok(Some(status)) = c.try_wait() {
                let log = std::fs::read_to_string(&self.logs[i]).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(15).collect();
                bail!(
                    "agent {} exited ({status}); its log ends:\n{}",
                    instance(i),
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                );
            }
        }
        Ok(())
    }

    /// Stops every agent (SIGKILL: berth leaves containers running; the cleanup removes them).
    async fn stop(&mut self) {
        for c in &mut self.children {
            let _ = c.start_kill();
        }
        for c in &mut self.children {
            let _ = c.wait().await;
        }
        self.children.clear();
        self.proxies.clear();
        for i in 0..self.pids.len() {
            let _ = std::fs::remove_file(format!("/run/berth/{}.lock", instance(i)));
        }
    }
}

fn kubeconfig(port: u16) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: fleet\n  cluster:\n    server: http://127.0.0.1:{port}\ncontexts:\n- name: fleet\n  context:\n    cluster: fleet\n    user: fleet\ncurrent-context: fleet\nusers:\n- name: fleet\n  user: {{}}\n"
    )
}

fn engine_socket() -> PathBuf {
    std::env::var("DOCKER_HOST")
        .ok()
        .and_then(|h| h.strip_prefix("unix://").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("/var/run/docker.sock"))
}

async fn start_agents(
    cfg: &Config,
    berth: &Path,
    server: &ApiServer,
    dir: &Path,
    logs: &Path,
    fleet: &mut Fleet,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(logs)?;
    let upstream = engine_socket();
    for i in 0..cfg.agents {
        let name = instance(i);
        let kc = dir.join(format!("{name}.kubeconfig"));
        std::fs::write(&kc, kubeconfig(server.ports[i]))?;
        let proxy = NameProxy::start(
            &dir.join(format!("{name}.docker.sock")),
            &upstream,
            &format!("{name}."),
        )?;
        let log = logs.join(format!("{name}.log"));
        let mut cmd = Command::new(berth);
        cmd.args(["--instance", &name, "--node-name", &name]);
        for (k, v) in agent_labels(i) {
            cmd.arg("--node-label").arg(format!("{k}={v}"));
        }
        cmd.arg("--socket")
            .arg(dir.join(format!("{name}.sock")))
            .args([
                "agent",
                "--kube",
                "--metrics-address",
                "off",
                "--kubeconfig",
            ])
            .arg(&kc)
            .env("DOCKER_HOST", proxy.docker_host())
            .env("RUST_LOG", "warn")
            .env_remove("KUBECONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .kill_on_drop(true);
        let child = cmd
            .spawn()
            .with_context(|| format!("start {}", berth.display()))?;
        fleet.pids.push(child.id().unwrap_or(0));
        fleet.children.push(child);
        fleet.proxies.push(proxy);
        fleet.logs.push(log);
    }
    Ok(())
}

/// A container start seen on the engine: (when, instance, namespace, name, spec hash).
type Start = (Instant, String, String, String, String);

async fn follow_starts(docker: &Docker) -> mpsc::UnboundedReceiver<Start> {
    let (tx, rx) = mpsc::unbounded_channel();
    let docker = docker.clone();
    tokio::spawn(async move {
        let filters = HashMap::from([
            ("type", vec!["container"]),
            ("event", vec!["start"]),
            ("label", vec!["berth.dev/managed-by=berth"]),
        ]);
        let mut stream = docker.events(Some(
            EventsOptionsBuilder::default().filters(&filters).build(),
        ));
        while let Some(Ok(ev)) = stream.next().await {
            let mut a = ev.actor.and_then(|a| a.attributes).unwrap_or_default();
            let mut take = |k: &str| a.remove(k).unwrap_or_default();
            let start = (
                Instant::now(),
                take("berth.dev/instance"),
                take("berth.dev/namespace"),
                take("berth.dev/name"),
                take("berth.dev/spec-hash"),
            );
            if tx.send(start).is_err() {
                return;
            }
        }
    });
    // Let the events request reach the engine before anything starts.
    tokio::time::sleep(Duration::from_millis(300)).await;
    rx
}

/// Running fleet containers: (instance, namespace, name) → spec hash.
async fn fleet_containers(
    docker: &Docker,
) -> anyhow::Result<BTreeMap<(String, String, String), String>> {
    let filters = HashMap::from([("label", vec!["berth.dev/managed-by=berth"])]);
    let list = docker
        .list_containers(Some(
            ListContainersOptionsBuilder::default()
                .filters(&filters)
                .build(),
        ))
        .await
        .context("list containers")?;
    let mut out = BTreeMap::new();
    for c in list {
        let l = c.labels.unwrap_or_default();
        let get = |k: &str| l.get(k).cloned().unwrap_or_default();
        let inst = get("berth.dev/instance");
        if inst.starts_with(INSTANCE_PREFIX) {
            out.insert(
                (inst, get("berth.dev/namespace"), get("berth.dev/name")),
                get("berth.dev/spec-hash"),
            );
        }
    }
    Ok(out)
}

/// Removes every container and network of the fleet's instances (and nothing else).
async fn clean(docker: &Docker) -> anyhow::Result<usize> {
    let filters = HashMap::from([("label", vec!["berth.dev/managed-by=berth"])]);
    let list = docker
        .list_containers(Some(
            ListContainersOptionsBuilder::default()
                .all(true)
                .filters(&filters)
                .build(),
        ))
        .await
        .context("list containers")?;
    let ours: Vec<String> = list
        .into_iter()
        .filter(|c| {
            c.labels
                .as_ref()
                .and_then(|l| l.get("berth.dev/instance"))
                .is_some_and(|i| i.starts_with(INSTANCE_PREFIX))
        })
        .filter_map(|c| c.id)
        .collect();
    let removed = futures_util::stream::iter(ours.iter().map(|id| {
        let opts = RemoveContainerOptionsBuilder::default().force(true).build();
        docker.remove_container(id, Some(opts))
    }))
    .buffer_unordered(16)
    .collect::<Vec<_>>()
    .await;
    let failed: Vec<String> = removed
        .into_iter()
        .filter_map(|r| r.err().map(|e| e.to_string()))
        .filter(|e| !e.contains("No such container"))
        .collect();
    let nets = docker
        .list_networks(Some(
            bollard::query_parameters::ListNetworksOptionsBuilder::default()
                .filters(&filters)
                .build(),
        ))
        .await
        .unwrap_or_default();
    for n in nets {
        let ours = n
            .labels
            .as_ref()
            .and_then(|l| l.get("berth.dev/instance"))
            .is_some_and(|i| i.starts_with(INSTANCE_PREFIX));
        if ours && let Some(id) = n.id {
            let _ = docker.remove_network(&id).await;
        }
    }
    if let Some(e) = failed.first() {
        bail!("{} fleet containers not removed: {e}", failed.len());
    }
    Ok(ours.len())
}

/// Everything measured.
#[derive(Default)]
struct Results {
    engine: String,
    containers: usize,
    converge: Duration,
    startup_hits: Vec<Hit>,
    changes: Vec<Change>,
    idle_hits: Vec<Hit>,
    idle_minutes: f64,
    open_watches: usize,
    open_connections: Vec<i64>,
    rss_mib: Vec<f64>,
    cpu_pct: Vec<f64>,
    changes_cpu_pct: Vec<f64>,
}

/// One change of a custom resource and what followed.
struct Change {
    targets: usize,
    first: Duration,
    all: Duration,
    writes_targeted: usize,
    writes_other: usize,
    writers: usize,
    aggregate_ok: bool,
}

async fn wait_converged(
    cfg: &Config,
    docker: &Docker,
    fleet: &mut Fleet,
    expected: usize,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + cfg.converge_timeout;
    let mut last = 0;
    loop {
        fleet.check_alive()?;
        let running = fleet_containers(docker).await?.len();
        if running != last {
            eprintln!("[fleet] {running}/{expected} containers running");
            last = running;
        }
        if running >= expected {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "the fleet did not converge in {:?}: {running}/{expected} containers running",
                cfg.converge_timeout
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Waits until no object status write (to `path`, if given) arrived for `quiet` (at most `cap`).
async fn wait_quiet(
    server: &ApiServer,
    mark: usize,
    path: Option<&str>,
    quiet: Duration,
    cap: Duration,
) {
    let start = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let last = server
            .hits_since(mark)
            .iter()
            .filter(|h| h.class == Class::ObjectStatus && path.is_none_or(|p| h.path == p))
            .map(|h| h.at)
            .max()
            .unwrap_or(start);
        if last.elapsed() >= quiet || start.elapsed() >= cap {
            return;
        }
    }
}

async fn one_change(
    docker: &Docker,
    server: &ApiServer,
    starts: &mut mpsc::UnboundedReceiver<Start>,
    o: &Object,
    rev: usize,
) -> anyhow::Result<Change> {
    let before = fleet_containers(docker).await?;
    let old: BTreeSet<String> = before
        .iter()
        .filter(|((_, ns, n), _)| *ns == o.namespace && *n == o.name)
        .map(|(_, h)| h.clone())
        .collect();
    while starts.try_recv().is_ok() {}
    let mark = server.mark();
    let t0 = Instant::now();
    server.fake.put(CONTAINERS, o.json(rev));
    let wanted: BTreeSet<String> = o.targets.iter().map(|t| instance(*t)).collect();
    let mut seen: BTreeMap<String, Instant> = BTreeMap::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while seen.len() < wanted.len() {
        let Ok(Some((at, inst, ns, name, hash))) =
            tokio::time::timeout_at(deadline, starts.recv()).await
        else {
            bail!(
                "{}/{}: only {}/{} targeted hosts started the new version within 120 s",
                o.namespace,
                o.name,
                seen.len(),
                wanted.len()
            );
        };
        if ns == o.namespace && name == o.name && wanted.contains(&inst) && !old.contains(&hash) {
            seen.entry(inst).or_insert(at);
        }
    }
    let first = seen.values().min().map_or(Duration::ZERO, |t| *t - t0);
    let all = seen.values().max().map_or(Duration::ZERO, |t| *t - t0);
    let path = o.status_path();
    wait_quiet(
        server,
        mark,
        Some(&path),
        Duration::from_secs(3),
        Duration::from_secs(60),
    )
    .await;
    let writes: Vec<Hit> = server
        .hits_since(mark)
        .into_iter()
        .filter(|h| h.class == Class::ObjectStatus && h.path == path)
        .collect();
    let writes_targeted = writes
        .iter()
        .filter(|h| o.targets.contains(&h.agent))
        .count();
    let writers = writes
        .iter()
        .map(|h| h.agent)
        .collect::<BTreeSet<_>>()
        .len();
    let stored = server
        .fake
        .get(CONTAINERS, &o.namespace, &o.name)
        .unwrap_or_default();
    let generation = stored["metadata"]["generation"].as_i64();
    let status = &stored["status"];
    let ready = status["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True");
    let hosts_current = status["hosts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|h| h["observedGeneration"].as_i64() == generation)
        .count();
    Ok(Change {
        targets: o.targets.len(),
        first,
        all,
        writes_targeted,
        writes_other: writes.len() - writes_targeted,
        writers,
        aggregate_ok: ready
            && status["observedGeneration"].as_i64() == generation
            && hosts_current == o.targets.len(),
    })
}

async fn run(args: &Args, cfg: &Config, docker: &Docker, fleet: &mut Fleet) -> anyhow::Result<()> {
    let root = tools::workspace_root();
    let out = if args.out.is_absolute() {
        args.out.clone()
    } else {
        root.join(&args.out)
    };
    std::fs::create_dir_all(&out)?;
    let berth = match &args.berth {
        Some(b) => b.clone(),
        None => tools::build_berth()?,
    };
    docker
        .inspect_image(workload::IMAGE)
        .await
        .with_context(|| {
            format!(
                "{} missing: run e2e/images/build.sh busybox",
                workload::IMAGE
            )
        })?;
    let v = docker.version().await.context("engine version")?;
    let mut res = Results {
        engine: format!(
            "Docker Engine {} (API {})",
            v.version.unwrap_or_default(),
            v.api_version.unwrap_or_default()
        ),
        ..Default::default()
    };
    let objects = workload(cfg);
    res.containers = objects.iter().map(|o| o.targets.len()).sum();
    let fake = FakeApi::default();
    for o in &objects {
        fake.put(CONTAINERS, o.json(0));
    }
    let server = ApiServer::start(fake, cfg.agents).await?;
    let mut starts = follow_starts(docker).await;
    let dir = tempfile::tempdir()?;
    eprintln!(
        "[fleet] {} agents, {} custom resources in {} namespaces, {} containers to run",
        cfg.agents, cfg.objects, cfg.namespaces, res.containers
    );
    let t0 = Instant::now();
    start_agents(cfg, &berth, &server, dir.path(), &out.join("logs"), fleet).await?;
    wait_converged(cfg, docker, fleet, res.containers).await?;
    res.converge = t0.elapsed();
    wait_quiet(
        &server,
        0,
        None,
        Duration::from_secs(5),
        Duration::from_secs(120),
    )
    .await;
    res.startup_hits = server.hits_since(0);
    eprintln!("[fleet] converged in {}", secs(res.converge.as_secs_f64()));

    let clk = tools::clk_tck();
    let cpu_of = |pids: &[u32]| -> Vec<Duration> {
        pids.iter()
            .map(|p| tools::proc_usage(*p, clk).map(|u| u.1).unwrap_or_default())
            .collect()
    };
    let cpu_changes0 = cpu_of(&fleet.pids);
    let changes0 = Instant::now();
    let multi: Vec<&Object> = objects.iter().filter(|o| o.targets.len() > 1).collect();
    for c in 0..cfg.changes {
        let Some(o) = multi.get(c % multi.len().max(1)) else {
            break;
        };
        fleet.check_alive()?;
        let ch = one_change(docker, &server, &mut starts, o, c + 1).await?;
        eprintln!(
            "[fleet] change {}/{}: all {} hosts in {}, {} status writes",
            c + 1,
            cfg.changes,
            ch.targets,
            secs(ch.all.as_secs_f64()),
            ch.writes_targeted + ch.writes_other
        );
        res.changes.push(ch);
    }

    let changes_took = changes0.elapsed().as_secs_f64();
    res.changes_cpu_pct = cpu_of(&fleet.pids)
        .iter()
        .zip(&cpu_changes0)
        .map(|(b, a)| b.saturating_sub(*a).as_secs_f64() / changes_took * 100.0)
        .collect();

    eprintln!("[fleet] idle for {} s", cfg.idle.as_secs());
    tokio::time::sleep(Duration::from_secs(3)).await;
    let cpu0 = cpu_of(&fleet.pids);
    let mark = server.mark();
    let idle0 = Instant::now();
    while idle0.elapsed() < cfg.idle {
        tokio::time::sleep(Duration::from_secs(1).min(cfg.idle)).await;
        fleet.check_alive()?;
    }
    let took = idle0.elapsed();
    res.idle_hits = server.hits_since(mark);
    res.idle_minutes = took.as_secs_f64() / 60.0;
    res.open_watches = server.fake.open_watches();
    res.open_connections = server.open_connections();
    for (i, p) in fleet.pids.iter().enumerate() {
        let (rss, cpu) = tools::proc_usage(*p, clk)?;
        res.rss_mib.push(rss as f64 / 1024.0 / 1024.0);
        res.cpu_pct
            .push((cpu.saturating_sub(cpu0[i])).as_secs_f64() / took.as_secs_f64() * 100.0);
    }
    report(cfg, &res, &out)
}

fn per_agent(hits: &[Hit], agents: usize, filter: impl Fn(&Hit) -> bool) -> Vec<f64> {
    let mut v = vec![0.0; agents];
    for h in hits.iter().filter(|h| filter(h)) {
        if let Some(x) = v.get_mut(h.agent) {
            *x += 1.0;
        }
    }
    v
}

fn rows(cfg: &Config, r: &Results) -> Vec<Row> {
    let n = cfg.agents;
    let row = |metric: &str, unit: &'static str, summary: Summary| Row {
        section: "fleet",
        metric: metric.to_string(),
        contender: "berth".into(),
        n,
        unit,
        summary,
    };
    let one = |x: f64| Summary::of(&[x]);
    let mut out = vec![
        row("objects", "count", one(cfg.objects as f64)),
        row("containers", "count", one(r.containers as f64)),
        row("converge_time", "s", one(r.converge.as_secs_f64())),
        row(
            "startup_requests",
            "calls",
            Summary::of(&per_agent(&r.startup_hits, n, |_| true)),
        ),
    ];
    let m = r.idle_minutes.max(1e-9);
    let idle: Vec<f64> = per_agent(&r.idle_hits, n, |_| true)
        .into_iter()
        .map(|x| x / m)
        .collect();
    out.push(row(
        "idle_requests_per_minute",
        "calls/min",
        Summary::of(&idle),
    ));
    for c in Class::ALL {
        let v: Vec<f64> = per_agent(&r.idle_hits, n, |h| h.class == c)
            .into_iter()
            .map(|x| x / m)
            .collect();
        if v.iter().any(|x| *x > 0.0) {
            out.push(row(
                &format!("idle_{}_per_minute", c.name()),
                "calls/min",
                Summary::of(&v),
            ));
        }
    }
    out.push(row("open_watches", "count", one(r.open_watches as f64)));
    out.push(row(
        "open_watches_per_agent",
        "count",
        one(r.open_watches as f64 / n as f64),
    ));
    let conns: Vec<f64> = r.open_connections.iter().map(|c| *c as f64).collect();
    out.push(row("open_connections", "count", Summary::of(&conns)));
    let ch = &r.changes;
    let f = |g: &dyn Fn(&Change) -> f64| ch.iter().map(g).collect::<Vec<f64>>();
    if !ch.is_empty() {
        out.push(row(
            "change_latency_first_host",
            "s",
            Summary::of(&f(&|c| c.first.as_secs_f64())),
        ));
        out.push(row(
            "change_latency_all_hosts",
            "s",
            Summary::of(&f(&|c| c.all.as_secs_f64())),
        ));
        out.push(row(
            "targeted_hosts",
            "count",
            Summary::of(&f(&|c| c.targets as f64)),
        ));
        out.push(row(
            "status_writes_per_change",
            "calls",
            Summary::of(&f(&|c| (c.writes_targeted + c.writes_other) as f64)),
        ));
        out.push(row(
            "status_writes_per_targeted_host",
            "calls",
            Summary::of(&f(&|c| c.writes_targeted as f64 / c.targets.max(1) as f64)),
        ));
        out.push(row(
            "status_writes_by_other_hosts",
            "calls",
            Summary::of(&f(&|c| c.writes_other as f64)),
        ));
        out.push(row(
            "status_writers",
            "count",
            Summary::of(&f(&|c| c.writers as f64)),
        ));
        out.push(row(
            "aggregate_correct",
            "ratio",
            one(ch.iter().filter(|c| c.aggregate_ok).count() as f64 / ch.len() as f64),
        ));
    }
    out.push(row("rss", "MiB", Summary::of(&r.rss_mib)));
    out.push(row("idle_cpu", "%", Summary::of(&r.cpu_pct)));
    if !r.changes_cpu_pct.is_empty() {
        out.push(row("changes_cpu", "%", Summary::of(&r.changes_cpu_pct)));
    }
    out
}

fn markdown(cfg: &Config, r: &Results, rows: &[Row]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "### Fleet: {} agents, {} custom resources in {} namespaces, {} containers\n",
        cfg.agents, cfg.objects, cfg.namespaces, r.containers
    );
    let _ = writeln!(
        s,
        "{} UTC, {}, {} CPUs; one fake API server on loopback HTTP, one shared engine. \
         Changes: {}; idle window {:.0} s.\n",
        stats::utc_now(),
        r.engine,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        r.changes.len(),
        r.idle_minutes * 60.0
    );
    let _ = writeln!(s, "| figure | unit | median | p95 | min–max |");
    let _ = writeln!(s, "|---|---|---|---|---|");
    for row in rows {
        let m = &row.summary;
        let v = |x: f64| {
            if row.unit == "s" {
                secs(x)
            } else {
                format!("{x:.2}")
                    .trim_end_matches('0')
                    .trim_end_matches('.')
                    .to_string()
            }
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {}–{} |",
            row.metric,
            row.unit,
            v(m.median),
            v(m.p95),
            v(m.min),
            v(m.max)
        );
    }
    s
}

fn chart(path: &Path, changes: &[Change]) -> anyhow::Result<()> {
    use plotters::prelude::*;
    let e =
        |e: DrawingAreaErrorKind<std::io::Error>| anyhow::anyhow!("draw {}: {e:?}", path.display());
    let ymax = changes
        .iter()
        .map(|c| c.all.as_secs_f64())
        .fold(0.5, f64::max)
        * 1.15;
    let xmax = changes.len().max(1) as f64 + 0.5;
    let root = SVGBackend::new(path, (900, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(e)?;
    let mut c = ChartBuilder::on(&root)
        .caption(
            "custom resource changed → new container running on its hosts",
            ("sans-serif", 20),
        )
        .margin(18)
        .x_label_area_size(45)
        .y_label_area_size(65)
        .build_cartesian_2d(0.5f64..xmax, 0f64..ymax)
        .map_err(e)?;
    c.configure_mesh()
        .x_desc("change")
        .y_desc("seconds")
        .axis_desc_style(("sans-serif", 16))
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(e)?;
    type Series = (&'static str, RGBColor, fn(&Change) -> f64);
    let series: [Series; 2] = [
        ("first host", RGBColor(0x2c, 0xa0, 0x2c), |c| {
            c.first.as_secs_f64()
        }),
        ("every targeted host", RGBColor(0x1f, 0x77, 0xb4), |c| {
            c.all.as_secs_f64()
        }),
    ];
    for (label, color, get) in series {
        let pts: Vec<(f64, f64)> = changes
            .iter()
            .enumerate()
            .map(|(i, ch)| (i as f64 + 1.0, get(ch)))
            .collect();
        c.draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))
            .map_err(e)?
            .label(label)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 24, y)], color.stroke_width(3))
            });
        c.draw_series(pts.into_iter().map(|p| Circle::new(p, 4, color.filled())))
            .map_err(e)?;
    }
    c.configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .label_font(("sans-serif", 15))
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()
        .map_err(e)?;
    root.present().map_err(e)?;
    Ok(())
}

fn report(cfg: &Config, r: &Results, out: &Path) -> anyhow::Result<()> {
    let rows = rows(cfg, r);
    let md = markdown(cfg, r, &rows);
    std::fs::write(out.join("results.csv"), stats::csv(&rows))?;
    std::fs::write(out.join("results.md"), &md)?;
    chart(&out.join("latency.svg"), &r.changes)?;
    println!("{md}");
    eprintln!(
        "[fleet] wrote {}/{{results.csv,results.md,latency.svg}}",
        out.display()
    );
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    let cfg = Config::new(&args);
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("fleet: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async {
        let docker = Docker::connect_with_defaults()
            .context("connect to the Docker Engine")?
            .negotiate_version()
            .await
            .context("negotiate the engine API version (is dockerd running?)")?;
        let left = clean(&docker).await?;
        if left > 0 {
            eprintln!("[fleet] removed {left} containers left by an earlier run");
        }
        let mut fleet = Fleet::default();
        // SIGTERM as well as Ctrl-C: the default action would end the harness without stopping
        // its agents (they would keep running, each with its API listener and engine proxy
        // gone).
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("install the SIGTERM handler")?;
        let r = tokio::select! {
            r = run(&args, &cfg, &docker, &mut fleet) => r,
            _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
            _ = term.recv() => Err(anyhow::anyhow!("terminated (SIGTERM)")),
        };
        fleet.stop().await;
        match clean(&docker).await {
            Ok(n) => eprintln!("[fleet] removed {n} containers"),
            Err(e) => eprintln!("[fleet] cleanup: {e:#}"),
        }
        r
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fleet: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workload_targets_few_hosts() {
        let cfg = Config::new(&Args::parse_from(["fleet"]));
        let w = workload(&cfg);
        assert_eq!(w.len(), 1000);
        let running: usize = w.iter().map(|o| o.targets.len()).sum();
        assert_eq!(running, 140);
        assert_eq!(w.iter().filter(|o| o.targets.len() == 5).count(), 20);
        let namespaces: BTreeSet<&str> = w.iter().map(|o| o.namespace.as_str()).collect();
        assert_eq!(namespaces.len(), 50);
        // Every single-host object targets a distinct host, which carries the selected label.
        let singles: Vec<usize> = w
            .iter()
            .filter(|o| o.targets.len() == 1)
            .flat_map(|o| o.targets.iter().copied())
            .collect();
        assert_eq!(singles.iter().collect::<BTreeSet<_>>().len(), singles.len());
        for o in w.iter().filter(|o| o.targets.len() == 5) {
            for t in &o.targets {
                let labels: BTreeMap<String, String> = agent_labels(*t).into_iter().collect();
                assert!(o.selector.iter().all(|(k, v)| labels.get(k) == Some(v)));
            }
        }
        let quick = workload(&Config::new(&Args::parse_from(["fleet", "--quick"])));
        assert_eq!(quick.iter().map(|o| o.targets.len()).sum::<usize>(), 14);
    }
}
