//! Everything that watches the agent loop from outside — the local API, metrics and health
//! endpoints, systemd notifications — behind one handle the loop calls at a few points: after
//! each pass, after each executed plan, and at each iteration (liveness and watchdog).

use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_core::backoff::RetryBook;
use berth_core::conditions::host_states;
use berth_core::merge::Merged;
use berth_core::{DesiredState, ObservedState, Plan};
use berth_engine::Outcome;

use crate::api::{self, Liveness};
use crate::cli::AgentArgs;
use crate::host::HostIdentity;
use crate::metrics::Metrics;
use crate::notify::Notifier;
use crate::observe::Observer;

/// `/healthz` fails when the loop has not iterated for this long (it iterates at least every
/// `--resync-seconds`, and on every watchdog tick).
fn health_bound(args: &AgentArgs) -> Duration {
    Duration::from_secs(args.resync_seconds.max(1) * 2 + 30)
}

/// The loop's observers.
pub struct Watchers {
    observer: Observer,
    liveness: Liveness,
    notifier: Notifier,
    watchdog: Option<tokio::time::Interval>,
    last_ping: Instant,
    _servers: Vec<tokio::task::JoinHandle<()>>,
}

impl Watchers {
    /// Starts the local API socket and the metrics endpoint (a failure to bind either is
    /// logged; the agent keeps converging without it) and reads systemd's environment.
    pub async fn start(instance: &str, host: &HostIdentity, args: &AgentArgs) -> Self {
        let metrics = Arc::new(Metrics::new());
        let (observer, view) = Observer::new(instance, &host.name, metrics.clone());
        let liveness = Liveness::new(health_bound(args));
        let mut servers = Vec::new();
        let socket = api::socket_path(args.socket.as_deref(), instance);
        match api::serve_socket(&socket, view.clone(), metrics.clone(), liveness.clone()) {
            Ok(task) => {
                tracing::info!(socket = %socket.display(), "local API listening");
                servers.push(task);
            }
            Err(e) => tracing::error!(error = format!("{e:#}"), "no local API"),
        }
        if args.metrics_address != "off" {
            match api::serve_metrics(
                &args.metrics_address,
                view.clone(),
                metrics.clone(),
                liveness.clone(),
            )
            .await
            {
                Ok(task) => {
                    tracing::info!(address = %args.metrics_address, "metrics and health endpoints listening");
                    servers.push(task);
                }
                Err(e) => tracing::error!(error = format!("{e:#}"), "no metrics endpoint"),
            }
        }
        let notifier = Notifier::from_env();
        let watchdog = notifier.watchdog_every().map(|every| {
            tracing::info!(every = ?every, "systemd watchdog enabled");
            let mut t = tokio::time::interval(every);
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            t
        });
        Watchers {
            observer,
            liveness,
            notifier,
            watchdog,
            last_ping: Instant::now(),
            _servers: servers,
        }
    }

    /// The loop iterates: it is alive (`/healthz`), and pings the watchdog when due.
    pub fn beat(&mut self) {
        self.liveness.beat();
        if let Some(every) = self.notifier.watchdog_every()
            && crate::notify::ping_due(every, self.last_ping.elapsed())
        {
            self.notifier.watchdog();
            self.last_ping = Instant::now();
        }
    }

    /// Completes at the next watchdog tick (never without a watchdog), so that an idle loop
    /// still iterates and pings.
    pub async fn watchdog_tick(&mut self) {
        match &mut self.watchdog {
            Some(t) => {
                t.tick().await;
            }
            None => std::future::pending().await,
        }
    }

    /// A pass planned: publish the view, update metrics, tell systemd.
    #[allow(clippy::too_many_arguments)]
    pub fn pass(
        &mut self,
        trigger: &str,
        started: Instant,
        merged: &Merged,
        desired: &DesiredState,
        observed: &ObservedState,
        plan: &Plan,
        book: &RetryBook,
    ) {
        let states = host_states(desired, observed, plan, book);
        self.observer
            .pass(trigger, started, merged, desired, observed, plan, &states);
        let ready = states
            .values()
            .filter(|s| s.state == berth_api::HostObjectState::Ready)
            .count();
        let mut status = format!(
            "{} object(s), {ready} ready; last pass ({trigger}): ",
            states.len()
        );
        if plan.is_empty() {
            status.push_str("converged");
        } else {
            status.push_str(&format!("{} action(s)", plan.actions.len()));
        }
        self.notifier.passed(&status);
    }

    /// A pass could not observe the engine.
    pub fn pass_failed(&mut self, trigger: &str, started: Instant, error: &str) {
        self.observer.pass_failed(trigger, started, error);
        self.notifier
            .status(&format!("last pass ({trigger}) failed: {error}"));
    }

    /// Whether the engine answers (`Some((how long it has not, the latest error))` while it
    /// does not): published in the view and on `/readyz`, and told to systemd.
    pub fn engine(&mut self, outage: Option<(Duration, &str)>) {
        self.observer.engine(outage);
        if let Some((_, error)) = outage {
            self.notifier
                .status(&format!("waiting for the Docker Engine: {error}"));
        }
    }

    /// A plan finished executing.
    pub fn executed(&mut self, plan: &Plan, outcomes: &[Outcome]) {
        self.observer.executed(plan, outcomes);
    }
}
