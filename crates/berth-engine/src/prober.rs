//! [`Prober`]: runs Kubernetes-style liveness, readiness and startup probes for running
//! containers, off the agent loop.
//!
//! One task per (container, probe kind). Semantics follow the kubelet:
//! - the startup probe runs first; liveness and readiness start only after it succeeded;
//!   `failureThreshold` startup failures mark the container not live (it is restarted);
//! - liveness: `failureThreshold` consecutive failures mark it not live;
//! - readiness: not ready until `successThreshold` consecutive successes; not ready again after
//!   `failureThreshold` consecutive failures.
//!
//! Results are read by the agent after each observe ([`Prober::status`]); every change of a
//! result sends a "relist now" message on the channel given to [`Prober::new`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_api::{NetworkMode, Probe};
use berth_core::desired::Probes;
use berth_core::observed::ProbeStatus;
use bollard::Docker;
use bollard::exec::StartExecResults;
use bollard::models::ExecConfig;
use futures_util::StreamExt;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// Where the prober finds a container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeTarget {
    /// Engine ID (probes are keyed by it).
    pub id: String,
    /// Engine name, for logs.
    pub name: String,
    /// The probes to run.
    pub probes: Probes,
}

struct Running {
    probes: Probes,
    tasks: Vec<JoinHandle<()>>,
}

/// Runs probes; cheap to clone.
#[derive(Clone)]
pub struct Prober {
    docker: Docker,
    http: reqwest::Client,
    status: Arc<Mutex<HashMap<String, ProbeStatus>>>,
    running: Arc<Mutex<HashMap<String, Running>>>,
    changed: mpsc::Sender<()>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Startup,
    Liveness,
    Readiness,
}

impl Prober {
    /// A prober using `docker` for exec probes; `changed` receives a message whenever a result
    /// changes.
    pub fn new(docker: Docker, changed: mpsc::Sender<()>) -> Self {
        Prober {
            docker,
            http: reqwest::Client::builder()
                .no_proxy()
                .build()
                .unwrap_or_default(),
            status: Arc::default(),
            running: Arc::default(),
            changed,
        }
    }

    /// Current results for container `id`, if it is probed.
    pub fn status(&self, id: &str) -> Option<ProbeStatus> {
        self.status.lock().ok()?.get(id).cloned()
    }

    /// Makes the probed set equal `targets` (running containers with probes): starts tasks for
    /// new ones, stops tasks of containers that are gone or whose probes changed.
    pub fn sync(&self, targets: &[ProbeTarget]) {
        let Ok(mut running) = self.running.lock() else {
            return;
        };
        running.retain(|id, r| {
            let keep = targets.iter().any(|t| &t.id == id && t.probes == r.probes);
            if !keep {
                r.tasks.iter().for_each(JoinHandle::abort);
                if let Ok(mut s) = self.status.lock() {
                    s.remove(id);
                }
            }
            keep
        });
        for t in targets {
            if t.probes.is_empty() || running.contains_key(&t.id) {
                continue;
            }
            running.insert(t.id.clone(), self.start(t));
        }
    }

    /// Forgets the results of `id` and probes it from scratch (after a restart).
    pub fn reset(&self, id: &str) {
        if let Ok(mut running) = self.running.lock()
            && let Some(r) = running.remove(id)
        {
            r.tasks.iter().for_each(JoinHandle::abort);
        }
        if let Ok(mut s) = self.status.lock() {
            s.remove(id);
        }
    }

    fn start(&self, t: &ProbeTarget) -> Running {
        let initial = ProbeStatus {
            started: t.probes.startup.is_none(),
            ready: t.probes.readiness.as_ref().map(|_| false),
            live: true,
            message: None,
        };
        if let Ok(mut s) = self.status.lock() {
            s.insert(t.id.clone(), initial.clone());
        }
        let (started_tx, started_rx) = watch::channel(initial.started);
        let mut tasks = Vec::new();
        for (kind, probe) in [
            (Kind::Startup, &t.probes.startup),
            (Kind::Liveness, &t.probes.liveness),
            (Kind::Readiness, &t.probes.readiness),
        ] {
            let Some(probe) = probe.clone() else { continue };
            let me = self.clone();
            let (id, name) = (t.id.clone(), t.name.clone());
            let mut started_rx = started_rx.clone();
            let started_tx = started_tx.clone();
            tasks.push(tokio::spawn(async move {
                if kind != Kind::Startup {
                    // Liveness and readiness wait for the startup probe.
                    while !*started_rx.borrow_and_update() {
                        if started_rx.changed().await.is_err() {
                            return;
                        }
                    }
                }
                me.run(kind, &id, &name, &probe, &started_tx).await;
            }));
        }
        Running {
            probes: t.probes.clone(),
            tasks,
        }
    }

    async fn run(
        &self,
        kind: Kind,
        id: &str,
        name: &str,
        probe: &Probe,
        started: &watch::Sender<bool>,
    ) {
        tokio::time::sleep(Duration::from_secs(u64::from(probe.initial_delay()))).await;
        let (mut successes, mut failures) = (0u32, 0u32);
        let mut period = tokio::time::interval(Duration::from_secs(u64::from(probe.period())));
        period.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            period.tick().await;
            let result = tokio::time::timeout(
                Duration::from_secs(u64::from(probe.timeout())),
                self.attempt(id, probe),
            )
            .await
            .unwrap_or_else(|_| {
                Err(Miss::Failed(format!(
                    "timed out after {}s",
                    probe.timeout()
                )))
            });
            let result = match result {
                Ok(()) => Ok(()),
                Err(Miss::Failed(m)) => Err(m),
                Err(Miss::Unknown(m)) => {
                    // The engine could not be asked: no result (kubelet throws away a prober
                    // error), so an engine outage never restarts a container.
                    tracing::debug!(container = name, error = %m, "probe result unknown: the engine did not answer");
                    continue;
                }
            };
            match &result {
                Ok(()) => {
                    successes += 1;
                    failures = 0;
                }
                Err(_) => {
                    failures += 1;
                    successes = 0;
                }
            }
            let message = result.err();
            let changed = self.update(id, |s| match kind {
                Kind::Startup if successes >= 1 && !s.started => {
                    s.started = true;
                    true
                }
                Kind::Startup | Kind::Liveness
                    if failures >= probe.failure_threshold() && s.live =>
                {
                    s.live = false;
                    s.message = message
                        .clone()
                        .map(|m| format!("{m} ({failures} failures in a row)"));
                    true
                }
                Kind::Readiness
                    if successes >= probe.success_threshold() && s.ready != Some(true) =>
                {
                    s.ready = Some(true);
                    true
                }
                Kind::Readiness
                    if failures >= probe.failure_threshold() && s.ready != Some(false) =>
                {
                    s.ready = Some(false);
                    s.message = message.clone();
                    true
                }
                _ => false,
            });
            if changed {
                let what = match kind {
                    Kind::Startup => "startup",
                    Kind::Liveness => "liveness",
                    Kind::Readiness => "readiness",
                };
                tracing::info!(
                    container = name,
                    probe = what,
                    ok = message.is_none(),
                    detail = message.as_deref().unwrap_or(""),
                    "probe result changed"
                );
                let _ = self.changed.try_send(());
            }
            if kind == Kind::Startup && successes >= 1 {
                let _ = started.send(true);
                return;
            }
            if matches!(kind, Kind::Startup | Kind::Liveness)
                && failures >= probe.failure_threshold()
            {
                // Not live: the agent restarts the container and resets this prober.
                return;
            }
        }
    }

    fn update(&self, id: &str, f: impl FnOnce(&mut ProbeStatus) -> bool) -> bool {
        match self.status.lock() {
            Ok(mut s) => s.get_mut(id).is_some_and(f),
            Err(_) => false,
        }
    }

    async fn attempt(&self, id: &str, probe: &Probe) -> Result<(), Miss> {
        if let Some(exec) = &probe.exec {
            return self.exec(id, &exec.command).await;
        }
        if let Some(h) = &probe.http_get {
            let host = match &h.host {
                Some(host) => host.clone(),
                None => self.address(id).await?,
            };
            let path = h.path.as_deref().unwrap_or("/");
            let url = format!(
                "http://{host}:{}{}{path}",
                h.port,
                if path.starts_with('/') { "" } else { "/" }
            );
            let mut req = self.http.get(&url);
            for hd in &h.http_headers {
                req = req.header(&hd.name, &hd.value);
            }
            let resp = req
                .send()
                .await
                .map_err(|e| Miss::Failed(format!("GET {url}: {e}")))?;
            let code = resp.status().as_u16();
            return if (200..400).contains(&code) {
                Ok(())
            } else {
                Err(Miss::Failed(format!("GET {url}: HTTP {code}")))
            };
        }
        if let Some(t) = &probe.tcp_socket {
            let host = match &t.host {
                Some(host) => host.clone(),
                None => self.address(id).await?,
            };
            return tokio::net::TcpStream::connect((host.as_str(), t.port))
                .await
                .map(|_| ())
                .map_err(|e| Miss::Failed(format!("connect {host}:{}: {e}", t.port)));
        }
        Err(Miss::Failed("probe has no handler".into()))
    }

    /// The container's IP address (127.0.0.1 for `networkMode: host`; the shared container's
    /// address for `container:<id>`).
    async fn address(&self, id: &str) -> Result<String, Miss> {
        let mut target = id.to_string();
        for _ in 0..3 {
            let info = self
                .docker
                .inspect_container(&target, None)
                .await
                .map_err(|e| Miss::engine("inspect", e))?;
            let mode = info
                .host_config
                .as_ref()
                .and_then(|h| h.network_mode.as_deref())
                .map(NetworkMode::parse);
            match mode {
                Some(NetworkMode::Host) => return Ok("127.0.0.1".into()),
                Some(NetworkMode::Container(other)) => {
                    target = other;
                    continue;
                }
                _ => {}
            }
            let ip = info
                .network_settings
                .and_then(|s| s.networks)
                .and_then(|n| {
                    n.into_values()
                        .filter_map(|e| e.ip_address)
                        .find(|ip| !ip.is_empty())
                });
            return ip.ok_or_else(|| Miss::Failed("the container has no IP address".to_string()));
        }
        Err(Miss::Failed("networkMode chain too long".into()))
    }

    async fn exec(&self, id: &str, command: &[String]) -> Result<(), Miss> {
        let exec = self
            .docker
            .create_exec(
                id,
                ExecConfig {
                    cmd: Some(command.to_vec()),
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| Miss::engine("exec", e))?;
        if let StartExecResults::Attached { mut output, .. } = self
            .docker
            .start_exec(&exec.id, None)
            .await
            .map_err(|e| Miss::engine("exec", e))?
        {
            while output.next().await.is_some() {}
        }
        let code = self
            .docker
            .inspect_exec(&exec.id)
            .await
            .map_err(|e| Miss::engine("exec", e))?
            .exit_code;
        match code {
            Some(0) => Ok(()),
            Some(c) => Err(Miss::Failed(format!(
                "{} exited with code {c}",
                command.join(" ")
            ))),
            None => Err(Miss::Failed("exec did not finish".into())),
        }
    }
}

/// Why one probe attempt did not succeed.
#[derive(Debug)]
enum Miss {
    /// The probe ran and failed: counts towards `failureThreshold`.
    Failed(String),
    /// The engine could not be asked (unreachable, or it failed with a 5xx): no result at all.
    Unknown(String),
}

impl Miss {
    /// An engine call failed: an answer about the container (4xx, e.g. "not running") is a
    /// failed probe; no answer or an engine fault (5xx) is an unknown result.
    fn engine(what: &str, e: bollard::errors::Error) -> Self {
        match &e {
            bollard::errors::Error::DockerResponseServerError { status_code, .. }
                if *status_code < 500 =>
            {
                Miss::Failed(format!("{what}: {e}"))
            }
            _ => Miss::Unknown(format!("{what}: {e}")),
        }
    }
}
