//! The agent loop: level-triggered passes of observe → plan → execute → record.
//!
//! A pass runs when the desired state changes, when an engine event arrives, when the periodic
//! relist timer fires, or when a retry falls due. Why a pass runs is logged, never passed to
//! `plan`. Nothing runs before the manifest directory delivered its first complete set.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use anyhow::Context;
use berth_core::backoff::{Backoff, RetryBook};
use berth_core::plan::Waiting;
use berth_core::resolve::resolve_for;
use berth_core::{Action, DesiredState, Owner, Plan, plan};
use berth_engine::{DockerEngine, Outcome, execute};
use berth_sources::directory::DirectorySource;
use rand::Rng;

use crate::cli::AgentArgs;
use crate::images::{always_images, log_refresh, observe, refresh_images};

/// How long a restarted container must run before its CrashLoopBackOff count is forgotten
/// (Kubernetes: 10 minutes).
const CRASH_RESET: Duration = Duration::from_secs(600);

/// Result of one pass.
#[derive(Debug, Default)]
pub struct PassReport {
    /// The plan that was executed.
    pub plan: Plan,
    /// One outcome per planned action.
    pub outcomes: Vec<Outcome>,
}

impl PassReport {
    /// True when some action failed or was skipped.
    pub fn failed(&self) -> bool {
        self.outcomes.iter().any(|o| o.result.is_err())
    }
}

/// Observes, plans and executes; keeps the retry book between passes.
pub struct Reconciler {
    /// The engine.
    pub engine: DockerEngine,
    /// Backoff state.
    pub book: RetryBook,
    /// Engine actions at once.
    pub parallelism: usize,
    /// CrashLoopBackOff delays.
    pub crash_backoff: Backoff,
}

impl Reconciler {
    /// One pass. Errors only when the engine cannot be observed (then nothing is planned).
    pub async fn pass(&mut self, desired: &DesiredState) -> anyhow::Result<PassReport> {
        let observed = observe(&self.engine, desired).await?;
        let now = Instant::now();
        self.book
            .expire_restarts(now, CRASH_RESET, |owner, hash| wanted(desired, owner, hash));
        let plan = plan(desired, &observed, &self.book, now);
        if plan.is_empty() {
            return Ok(PassReport {
                plan,
                outcomes: vec![],
            });
        }
        for a in &plan.actions {
            let why = match &a.action {
                Action::StartContainer { restart: true, .. } => "restarting exited container",
                Action::RestartContainer { .. } => "restarting unhealthy container",
                _ => continue,
            };
            let e = self
                .book
                .record_restart(a.owner.clone(), &a.hash, now, self.crash_backoff);
            tracing::info!(owner = %a.owner, restart_count = e.attempts, next_restart_not_before = ?e.not_before.saturating_duration_since(now), "{why}");
        }
        let outcomes = execute(&self.engine, &plan, self.parallelism).await;
        let mut failed: BTreeSet<&Owner> = BTreeSet::new();
        for o in &outcomes {
            let a = &plan.actions[o.id];
            if let Err(e) = &o.result
                && failed.insert(&a.owner)
            {
                let entry = self.book.record_failure(
                    a.owner.clone(),
                    &a.hash,
                    Instant::now(),
                    e.clone(),
                    jittered,
                );
                tracing::warn!(owner = %a.owner, attempts = entry.attempts, retry_in = ?entry.not_before.saturating_duration_since(Instant::now()), error = %e, "object failed; backing off");
            }
        }
        for a in &plan.actions {
            if !failed.contains(&a.owner) {
                self.book.clear_failures(&a.owner);
            }
        }
        Ok(PassReport { plan, outcomes })
    }
}

/// True when the desired state still wants `owner` at `hash` (its retry entry stays relevant).
fn wanted(desired: &DesiredState, owner: &Owner, hash: &str) -> bool {
    let key = &owner.key;
    desired.containers.get(key).is_some_and(|c| c.hash == hash)
        || desired.networks.get(key).is_some_and(|n| n.hash == hash)
        || desired.volumes.get(key).is_some_and(|v| v.hash == hash)
}

/// Failure backoff (1 s doubling to 300 s) with ±20 % jitter, so that many failing objects do
/// not retry in lockstep.
fn jittered(attempts: u32) -> Duration {
    let base = Backoff::FAILURE.delay(attempts);
    base.mul_f64(rand::rng().random_range(0.8..1.2))
}

/// Runs the agent until SIGINT/SIGTERM. Containers keep running after it stops.
pub async fn run(instance: &str, args: AgentArgs) -> anyhow::Result<()> {
    let engine = DockerEngine::connect().await?;
    let version = engine.version().await?;
    tracing::info!(engine = %version, instance, manifests = %args.manifests.display(), "berth agent starting");
    if !args.manifests.is_dir() {
        anyhow::bail!(
            "manifest directory {} does not exist or is not a directory",
            args.manifests.display()
        );
    }
    let mut source = DirectorySource::new(&args.manifests)
        .watch(Duration::from_millis(args.debounce_ms), args.resync())
        .context("watch the manifest directory")?;
    let mut events = engine.events();
    let mut rec = Reconciler {
        engine,
        book: RetryBook::default(),
        parallelism: args.parallelism,
        crash_backoff: Backoff {
            initial: Duration::from_secs(args.crash_backoff_initial_seconds),
            cap: Duration::from_secs(args.crash_backoff_cap_seconds),
        },
    };
    let mut shutdown = shutdown_signal()?;

    // Nothing is planned (so nothing removed) before the first complete read.
    let first = loop {
        if let Some(s) = source.borrow_and_update().clone() {
            break s;
        }
        tokio::select! {
            r = source.changed() => r.context("manifest source stopped")?,
            _ = &mut shutdown => return Ok(()),
        }
    };
    let mut desired = resolve_for(instance, first.manifests());
    tracing::info!(objects = first.objects.len(), "manifest directory read");

    let mut relist = tokio::time::interval(args.resync());
    relist.tick().await;
    // `pullPolicy: Always` tags are re-resolved in the background (registries can be slow), at
    // start and then periodically; a moved tag is followed in the pass that the result triggers.
    let mut refresh_timer = tokio::time::interval(args.image_refresh());
    let (refreshed_tx, mut refreshed) = tokio::sync::mpsc::channel(1);
    let mut refreshing = false;
    let mut refresh_errors: BTreeMap<String, String> = BTreeMap::new();
    let mut reason = "start";
    let mut last_waiting: Vec<Waiting> = Vec::new();
    loop {
        let started = Instant::now();
        match rec.pass(&desired).await {
            Ok(report) => {
                if !report.plan.is_empty() {
                    tracing::info!(
                        reason,
                        actions = report.plan.actions.len(),
                        failed = report.outcomes.iter().filter(|o| o.result.is_err()).count(),
                        took = ?started.elapsed(),
                        "pass executed"
                    );
                } else {
                    tracing::debug!(reason, took = ?started.elapsed(), "pass: converged");
                }
                let waiting: Vec<Waiting> = report
                    .plan
                    .waiting
                    .into_iter()
                    .map(|mut w| {
                        w.until = None;
                        w
                    })
                    .collect();
                if waiting != last_waiting {
                    for w in &waiting {
                        tracing::warn!(owner = %w.owner, reason = w.reason, message = %w.message, "not converging");
                    }
                    last_waiting = waiting;
                }
            }
            Err(e) => tracing::error!(
                error = format!("{e:#}"),
                reason,
                "pass failed; retrying on the next trigger"
            ),
        }
        let retry_at = rec.book.next_due(Instant::now());
        let retry = async {
            match retry_at {
                Some(t) => tokio::time::sleep_until(t.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = source.changed() => {
                if r.is_err() { anyhow::bail!("manifest source stopped"); }
                if let Some(s) = source.borrow_and_update().clone() {
                    desired = resolve_for(instance, s.manifests());
                }
                reason = "manifests changed";
            }
            ev = events.recv() => {
                if ev.is_none() { anyhow::bail!("engine event stream stopped"); }
                while events.try_recv().is_ok() {}
                reason = "engine event";
            }
            _ = relist.tick() => reason = "periodic relist",
            _ = refresh_timer.tick() => {
                let images = always_images(&desired);
                if !refreshing && !images.is_empty() {
                    refreshing = true;
                    let (engine, tx) = (rec.engine.clone(), refreshed_tx.clone());
                    tokio::spawn(async move {
                        let _ = tx.send(refresh_images(engine, images).await).await;
                    });
                }
                reason = "image refresh timer";
            }
            Some(results) = refreshed.recv() => {
                refreshing = false;
                reason = log_refresh(&results, &mut refresh_errors).unwrap_or("images re-resolved");
            }
            _ = retry => reason = "retry due",
            _ = &mut shutdown => {
                tracing::info!("berth agent stopping; containers keep running");
                return Ok(());
            }
        }
    }
}

fn shutdown_signal()
-> anyhow::Result<std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("install SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("install SIGINT handler")?;
    Ok(Box::pin(async move {
        tokio::select! {
            _ = term.recv() => {},
            _ = int.recv() => {},
        }
    }))
}
