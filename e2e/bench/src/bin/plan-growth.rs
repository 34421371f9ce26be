#![forbid(unsafe_code)]
//! `plan-growth`: how the pure core's cost grows with the number of containers.
//!
//! ```text
//! cargo run --release -p berth-bench --bin plan-growth [-- --sizes 100,1000,10000 --rounds 5]
//! ```
//!
//! The workload is a host with N containers in N/10 namespaces; each namespace holds a network,
//! a volume, a database (volume, health check), six apps that depend on it (`Healthy`) and a
//! three-replica web front end (start-first rolling updates) that depends on an app. In one
//! namespace in ten the web front end's image has just changed and its rolling update is one
//! step in (one replica replaced, the next one's surge container running). Measured per size,
//! one call at a time, with the sizes alternating round by round so that machine drift cancels:
//!
//! - **decode**: every namespace's YAML file decoded and validated (`berth_sources::decode`),
//!   what `berth apply` and an agent start do;
//! - **resolve**: `resolve_for` of every object (references, engine names, spec hashes);
//! - **observe rollouts**: `RolloutBook::observe` (run before every plan);
//! - **plan**: `plan()` against the engine state with the updates in progress.
//!
//! Time is the median of the calls (min–max beside it); allocations are counted by a counting
//! global allocator (`stats_alloc`) and are the same on every call. The growth ratio is
//! t(10 N) / t(N): 10 for linear cost, about 11–13 for n log n at these sizes, 100 for quadratic.
//! The ratios are the claim; absolute times depend on the machine.

use std::alloc::System;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use berth_api::Manifest;
use berth_core::backoff::RetryBook;
use berth_core::labels;
use berth_core::{
    Action, DesiredState, ObservedContainer, ObservedNetwork, ObservedState, ObservedVolume, Plan,
    RunState,
};
use clap::Parser;
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[allow(dead_code)] // shared with the main harness, which uses more of it
#[path = "../stats.rs"]
mod stats;
use stats::Summary;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// berth instance of the simulated host.
const INSTANCE: &str = "bench";
/// Containers per namespace (1 database + 6 apps + 3 web replicas).
const PER_NAMESPACE: usize = 10;

/// Command line.
#[derive(Parser, Debug)]
#[command(
    name = "plan-growth",
    about = "growth of decode, resolve and plan() with N"
)]
struct Args {
    /// Container counts (multiples of 10).
    #[arg(long, value_delimiter = ',', default_values_t = [100, 1000, 10000])]
    sizes: Vec<usize>,
    /// Rounds (each round measures every size, in rotated order).
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Write the markdown table and a CSV here too (relative to the current directory).
    #[arg(long)]
    out: Option<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.sizes.is_empty() || args.sizes.iter().any(|n| *n < PER_NAMESPACE) {
        bail!("--sizes: expected container counts of at least {PER_NAMESPACE}");
    }
    let mut sizes = args.sizes.clone();
    sizes.sort_unstable();
    sizes.dedup();
    let hosts: Vec<Host> = sizes
        .iter()
        .map(|n| Host::build(*n))
        .collect::<Result<_, _>>()?;
    let mut samples: BTreeMap<(usize, Stage), Vec<Duration>> = BTreeMap::new();
    let mut allocs: BTreeMap<(usize, Stage), (u64, u64)> = BTreeMap::new();
    for round in 0..args.rounds.max(1) {
        for i in 0..hosts.len() {
            let host = &hosts[(i + round) % hosts.len()];
            // Small sizes get more calls per round so that each one's median is stable.
            let reps = (20_000 / host.n).clamp(1, 50);
            for stage in Stage::ALL {
                for _ in 0..reps {
                    let (took, count) = host.run(stage)?;
                    samples.entry((host.n, stage)).or_default().push(took);
                    allocs.insert((host.n, stage), count);
                }
            }
        }
    }
    let md = render(&hosts, &samples, &allocs);
    print!("{md}");
    if let Some(out) = &args.out {
        std::fs::create_dir_all(out).with_context(|| format!("create {}", out.display()))?;
        std::fs::write(out.join("plan-growth.md"), &md)?;
        std::fs::write(out.join("plan-growth.csv"), csv(&samples, &allocs))?;
    }
    Ok(())
}

/// What is measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Stage {
    Decode,
    Resolve,
    Observe,
    Plan,
}

impl Stage {
    const ALL: [Stage; 4] = [Stage::Decode, Stage::Resolve, Stage::Observe, Stage::Plan];
    fn id(self) -> &'static str {
        match self {
            Stage::Decode => "decode",
            Stage::Resolve => "resolve",
            Stage::Observe => "observe_rollouts",
            Stage::Plan => "plan",
        }
    }
    fn title(self) -> &'static str {
        match self {
            Stage::Decode => "decode + validate (YAML)",
            Stage::Resolve => "resolve",
            Stage::Observe => "observe rollouts",
            Stage::Plan => "plan()",
        }
    }
}

/// One simulated host of size `n`: its manifest files, desired state and engine state.
struct Host {
    n: usize,
    files: Vec<(String, String)>,
    manifests: Vec<Manifest>,
    desired: DesiredState,
    observed: ObservedState,
    book: RetryBook,
    now: Instant,
    /// Actions of the measured plan (a sanity figure: the updates' next steps).
    actions: usize,
}

impl Host {
    fn build(n: usize) -> anyhow::Result<Host> {
        let namespaces = n / PER_NAMESPACE;
        let now = Instant::now();
        // Converge the old version, then change one web front end in ten and take the first
        // step of its rolling update.
        let old = files(namespaces, |_| 1);
        let mut sim = Sim::default();
        let manifests_old = decode_all(&old)?;
        let desired_old = berth_core::resolve::resolve_for(INSTANCE, &manifests_old);
        let mut book = RetryBook::default();
        for _ in 0..10 {
            book.rollouts.observe(&desired_old, &sim.state(), now);
            let p = berth_core::plan(&desired_old, &sim.state(), &book, now);
            if p.is_empty() {
                break;
            }
            sim.apply(&p);
        }
        let files = files(namespaces, |ns| if ns % 10 == 0 { 2 } else { 1 });
        let manifests = decode_all(&files)?;
        let desired = berth_core::resolve::resolve_for(INSTANCE, &manifests);
        book.rollouts.observe(&desired, &sim.state(), now);
        let first = berth_core::plan(&desired, &sim.state(), &book, now);
        sim.apply(&first);
        let observed = sim.state();
        book.rollouts.observe(&desired, &observed, now);
        let measured = berth_core::plan(&desired, &observed, &book, now);
        if observed.containers.len() < n {
            bail!(
                "N={n}: only {} containers after converging",
                observed.containers.len()
            );
        }
        if namespaces >= 10 && (first.is_empty() || measured.is_empty()) {
            bail!("N={n}: no rolling update in progress");
        }
        Ok(Host {
            n,
            files,
            manifests,
            desired,
            observed,
            book,
            now,
            actions: measured.actions.len(),
        })
    }

    /// One call of `stage`: its duration and (allocations, bytes allocated).
    fn run(&self, stage: Stage) -> anyhow::Result<(Duration, (u64, u64))> {
        // `observe` updates the book: each call gets a fresh copy (made before the clock starts).
        let mut book = (stage == Stage::Observe).then(|| self.book.clone());
        let region = Region::new(GLOBAL);
        let t0 = Instant::now();
        match stage {
            Stage::Decode => {
                std::hint::black_box(decode_all(&self.files)?);
            }
            Stage::Resolve => {
                std::hint::black_box(berth_core::resolve::resolve_for(INSTANCE, &self.manifests));
            }
            Stage::Observe => {
                if let Some(book) = book.as_mut() {
                    std::hint::black_box(book.rollouts.observe(
                        &self.desired,
                        &self.observed,
                        self.now,
                    ));
                }
            }
            Stage::Plan => {
                std::hint::black_box(berth_core::plan(
                    &self.desired,
                    &self.observed,
                    &self.book,
                    self.now,
                ));
            }
        }
        let took = t0.elapsed();
        let s = region.change();
        drop(book);
        Ok((took, (s.allocations as u64, s.bytes_allocated as u64)))
    }
}

fn decode_all(files: &[(String, String)]) -> anyhow::Result<Vec<Manifest>> {
    let mut out = Vec::new();
    for (name, text) in files {
        match berth_sources::decode::decode(name, text) {
            Ok(objs) => out.extend(objs.into_iter().map(|l| l.manifest)),
            Err(e) => bail!("{name}: {}", e[0]),
        }
    }
    Ok(out)
}

/// The manifest files: one per namespace; `version(ns)` is the web front end's image version.
fn files(namespaces: usize, version: impl Fn(usize) -> u32) -> Vec<(String, String)> {
    (0..namespaces)
        .map(|ns| {
            let name = format!("ns{ns:05}");
            (format!("{name}.yaml"), namespace_yaml(&name, version(ns)))
        })
        .collect()
}

fn namespace_yaml(ns: &str, web_version: u32) -> String {
    let head = |kind: &str, name: &str| {
        format!(
            "---\napiVersion: berth.dev/v1alpha1\nkind: {kind}\nmetadata: {{name: {name}, namespace: {ns}}}\n"
        )
    };
    let mut s = String::new();
    s += &head("Network", "net");
    s += "spec: {driver: bridge}\n";
    s += &head("Volume", "data");
    s += "spec: {driver: local}\n";
    s += &head("Container", "db");
    s += "spec:\n  image: berth-test/services:bookworm\n  pullPolicy: Never\n  command: [postgres]\n  env: [{name: PGDATA, value: /data/pg}]\n  mounts: [{mountPath: /data, volume: data}]\n  networks: [{name: net, aliases: [db]}]\n  healthCheck: {test: [CMD, pg_isready], interval: 5s}\n";
    for a in 1..=6 {
        s += &head("Container", &format!("app-{a}"));
        let _ = write!(
            s,
            "spec:\n  image: berth-test/busybox:latest\n  pullPolicy: Never\n  args: [sleep, \"86400\"]\n  env: [{{name: ROLE, value: app{a}}}, {{name: DB, value: \"db:5432\"}}]\n  ports: [{{containerPort: 8080}}]\n  resources: {{limits: {{cpu: 250m, memory: 64Mi}}}}\n  networks: [{{name: net}}]\n  dependsOn: [{{name: db, condition: Healthy}}]\n"
        );
    }
    s += &head("Container", "web");
    let _ = write!(
        s,
        "spec:\n  image: berth-test/busybox:v{web_version}\n  pullPolicy: Never\n  args: [httpd, -f]\n  replicas: 3\n  updateStrategy: {{type: RollingUpdate, rollingUpdate: {{maxSurge: 1, maxUnavailable: 0}}}}\n  networks: [{{name: net, aliases: [web]}}]\n  dependsOn: [{{name: app-1}}]\n"
    );
    s
}

/// A model of the engine that applies plans (IDs are counters; containers start at once and
/// report healthy when they have a health check).
#[derive(Default)]
struct Sim {
    next: u64,
    containers: BTreeMap<String, ObservedContainer>,
    networks: BTreeMap<String, ObservedNetwork>,
    volumes: BTreeMap<String, ObservedVolume>,
    healthchecked: std::collections::BTreeSet<String>,
}

impl Sim {
    fn id(&mut self) -> String {
        self.next += 1;
        format!("{:064x}", self.next)
    }

    fn state(&self) -> ObservedState {
        ObservedState {
            containers: self.containers.values().cloned().collect(),
            networks: self.networks.values().cloned().collect(),
            volumes: self.volumes.values().cloned().collect(),
            ..Default::default()
        }
    }

    fn by_id(&mut self, id: &str) -> Option<&mut ObservedContainer> {
        self.containers.values_mut().find(|c| c.id == id)
    }

    fn apply(&mut self, p: &Plan) {
        for a in &p.actions {
            match &a.action {
                Action::EnsureImage { .. } | Action::BuildImage { .. } => {}
                Action::CreateNetwork {
                    name, labels: l, ..
                } => {
                    let id = self.id();
                    self.networks.insert(
                        name.clone(),
                        ObservedNetwork {
                            id,
                            name: name.clone(),
                            key: labels::key_from_labels(l),
                            hash: l.get(labels::SPEC_HASH).cloned(),
                        },
                    );
                }
                Action::RemoveNetwork { name, .. } => {
                    self.networks.remove(name);
                }
                Action::CreateVolume {
                    name, labels: l, ..
                } => {
                    self.volumes.insert(
                        name.clone(),
                        ObservedVolume {
                            name: name.clone(),
                            key: labels::key_from_labels(l),
                            hash: l.get(labels::SPEC_HASH).cloned(),
                            delete_when_orphaned: false,
                        },
                    );
                }
                Action::RemoveVolume { name } => {
                    self.volumes.remove(name);
                }
                Action::RemoveContainer { name, .. } => {
                    self.containers.remove(name);
                }
                Action::CreateContainer {
                    name,
                    config,
                    labels: l,
                } => {
                    let id = self.id();
                    let networks = config
                        .networks
                        .iter()
                        .filter_map(|a| {
                            let n = self.networks.get(&a.network)?;
                            Some((a.network.clone(), n.id.clone()))
                        })
                        .collect();
                    if config.health_check.is_some() {
                        self.healthchecked.insert(id.clone());
                    }
                    self.containers.insert(
                        name.clone(),
                        ObservedContainer {
                            id,
                            name: name.clone(),
                            key: labels::key_from_labels(l),
                            replica: labels::replica_from_labels(l),
                            hash: l.get(labels::SPEC_HASH).cloned(),
                            state: RunState::Created,
                            exit_code: None,
                            networks,
                            health: None,
                            network_mode: None,
                            image_id: None,
                            probe: None,
                        },
                    );
                }
                Action::StartContainer { name, .. } => {
                    if let Some(c) = self.containers.get_mut(name) {
                        c.state = RunState::Running;
                    }
                    self.mark_health(name);
                }
                Action::RestartContainer { id, .. } | Action::UnpauseContainer { id, .. } => {
                    if let Some(c) = self.by_id(id) {
                        c.state = RunState::Running;
                    }
                }
                Action::StopContainer { id, .. } => {
                    if let Some(c) = self.by_id(id) {
                        (c.state, c.exit_code) = (RunState::Exited, Some(143));
                    }
                }
                Action::RenameContainer { from, to, .. } => {
                    if let Some(mut c) = self.containers.remove(from) {
                        c.name = to.clone();
                        self.containers.insert(to.clone(), c);
                    }
                }
            }
        }
    }

    fn mark_health(&mut self, name: &str) {
        let checked = self
            .containers
            .get(name)
            .is_some_and(|c| self.healthchecked.contains(&c.id));
        if let Some(c) = self.containers.get_mut(name) {
            c.health = checked.then_some(berth_core::observed::Health::Healthy);
        }
    }
}

fn fmt_time(d: f64) -> String {
    if d >= 1.0 {
        format!("{d:.2} s")
    } else if d >= 1e-3 {
        format!("{:.1} ms", d * 1e3)
    } else {
        format!("{:.0} µs", d * 1e6)
    }
}

fn fmt_count(x: u64) -> String {
    if x >= 10_000_000 {
        format!("{:.0} M", x as f64 / 1e6)
    } else if x >= 10_000 {
        format!("{:.0} k", x as f64 / 1e3)
    } else {
        x.to_string()
    }
}

fn render(
    hosts: &[Host],
    samples: &BTreeMap<(usize, Stage), Vec<Duration>>,
    allocs: &BTreeMap<(usize, Stage), (u64, u64)>,
) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "### plan growth ({} cores; {}; run at {} UTC)\n",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        if cfg!(debug_assertions) {
            "debug build"
        } else {
            "release build"
        },
        stats::utc_now()
    );
    let _ = writeln!(
        s,
        "Host: N containers in N/10 namespaces (network, volume, database with a health check, 6 apps depending on it, a 3-replica web front end); a rolling update one step in for 1 namespace in 10.\n"
    );
    for h in hosts {
        let _ = writeln!(
            s,
            "- N={}: {} objects, {} engine containers, the measured plan has {} actions",
            h.n,
            h.manifests.len(),
            h.observed.containers.len(),
            h.actions
        );
    }
    let _ = writeln!(
        s,
        "\n| stage | N | calls | time (median, min–max) | per container | allocations | bytes allocated | time growth ×10 N | allocation growth ×10 N |"
    );
    let _ = writeln!(s, "|---|---:|---:|---|---|---:|---:|---:|---:|");
    for stage in Stage::ALL {
        let mut prev: Option<(usize, f64, u64)> = None;
        for h in hosts {
            let Some(v) = samples.get(&(h.n, stage)) else {
                continue;
            };
            let (allocations, bytes) = allocs.get(&(h.n, stage)).copied().unwrap_or_default();
            let sum = Summary::of_durations(v);
            let (t, lo, hi) = (sum.median, sum.min, sum.max);
            let growth = |a: f64, b: f64| format!("{:.1}×", a / b);
            let (tg, ag) = match prev {
                Some((pn, pt, pa)) if h.n == pn * 10 => {
                    (growth(t, pt), growth(allocations as f64, pa as f64))
                }
                _ => ("".into(), "".into()),
            };
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} ({}–{}) | {} | {} | {} | {} | {} |",
                stage.title(),
                h.n,
                v.len(),
                fmt_time(t),
                fmt_time(lo),
                fmt_time(hi),
                fmt_time(t / h.n as f64),
                fmt_count(allocations),
                fmt_count(bytes),
                tg,
                ag
            );
            prev = Some((h.n, t, allocations));
        }
    }
    s
}

fn csv(
    samples: &BTreeMap<(usize, Stage), Vec<Duration>>,
    allocs: &BTreeMap<(usize, Stage), (u64, u64)>,
) -> String {
    let mut s = String::from("stage,n,calls,median_s,min_s,max_s,allocations,bytes_allocated\n");
    for ((n, stage), v) in samples {
        let (a, b) = allocs.get(&(*n, *stage)).copied().unwrap_or_default();
        let sum = Summary::of_durations(v);
        let _ = writeln!(
            s,
            "{},{n},{},{},{},{},{a},{b}",
            stage.id(),
            v.len(),
            sum.median,
            sum.min,
            sum.max
        );
    }
    s
}
