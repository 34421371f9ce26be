//! The agent loop: level-triggered passes of observe → plan → execute → record.
//!
//! A pass runs when the desired state changes, when an engine event arrives, when the periodic
//! relist timer fires, or when a retry falls due. Why a pass runs is logged, never passed to
//! `plan`. Nothing runs before every source (manifest directory, Kubernetes) delivered its first
//! complete set.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use berth_api::ObjectKey;
use berth_core::backoff::{Backoff, RetryBook};
use berth_core::conditions::host_states;
use berth_core::merge::{Conflict, Declaration, Merged, merge, targeted};
use berth_core::pass::Pass;
use berth_core::resolve::resolve_for;
use berth_core::{Action, DesiredState, Intent, Owner, Plan, WaitReason};
use berth_engine::{DockerEngine, Engine, Outcome, ProbeTarget, Prober, execute};
use berth_sources::directory::{DirectorySource, Snapshot};
use berth_sources::kube::{KubeSource, KubeSourceConfig};
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use rand::Rng;
use tokio::sync::watch;

use crate::cli::AgentArgs;
use crate::host::HostIdentity;
use crate::images::{always_images, log_refresh, refresh_images};
use crate::status::{StatusInput, StatusWriter, happenings};

/// A second pass this long after a burst of engine events, for engines whose list lags their
/// events (Docker 20.10 reports `die` while the list still says `running`).
const EVENT_RECHECK: Duration = Duration::from_millis(500);

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
pub struct Reconciler<E: Engine = DockerEngine> {
    /// The engine.
    pub engine: E,
    /// Backoff state.
    pub book: RetryBook,
    /// Engine actions at once.
    pub parallelism: usize,
    /// CrashLoopBackOff delays.
    pub crash_backoff: Backoff,
    /// Runs probes (the agent); `None` for one-shot commands, which do not wait for probes.
    pub prober: Option<Prober>,
}

impl<E: Engine> Reconciler<E> {
    /// One pass, executed to the end. Errors only when the engine cannot be observed (then
    /// nothing is planned). The agent loop uses [`Reconciler::prepare`] and
    /// [`Reconciler::record`] instead, so that slow actions do not hold up other objects.
    pub async fn pass(&mut self, desired: &DesiredState) -> anyhow::Result<PassReport> {
        let plan = self.prepare(desired, &BTreeSet::new()).await?;
        let outcomes = if plan.is_empty() {
            vec![]
        } else {
            execute(&self.engine, &plan, self.parallelism).await
        };
        self.record(&plan, &outcomes);
        Ok(PassReport { plan, outcomes })
    }

    /// Observes and plans, leaving out the owners in `busy` (their earlier actions are still
    /// running); counts the restarts the plan makes.
    pub async fn prepare(
        &mut self,
        desired: &DesiredState,
        busy: &BTreeSet<Owner>,
    ) -> anyhow::Result<Plan> {
        Ok(self.prepare_observed(desired, busy).await?.1)
    }

    /// [`Reconciler::prepare`], also returning the observed state the plan was made from (with
    /// probe results), from which the agent reports status.
    pub async fn prepare_observed(
        &mut self,
        desired: &DesiredState,
        busy: &BTreeSet<Owner>,
    ) -> anyhow::Result<(berth_core::ObservedState, Plan)> {
        let observed = self.observe(desired).await?;
        let now = now_instant();
        let pass = berth_core::pass::pass(
            desired,
            &observed,
            &mut self.book,
            busy,
            self.crash_backoff,
            now,
        );
        log_pass(&pass, now);
        self.record_undone_replacements(desired, &observed, &pass.plan, now);
        Ok((observed, pass.plan))
    }

    /// One relist of the engine, with the local images of `pullPolicy: Always` tags and the
    /// prober's latest results.
    pub async fn observe(
        &self,
        desired: &DesiredState,
    ) -> anyhow::Result<berth_core::ObservedState> {
        let mut observed = Engine::observe(&self.engine, &desired.instance)
            .await
            .context("observe the engine")?;
        let always = always_images(desired);
        if !always.is_empty() {
            observed.image_ids = self
                .engine
                .local_image_ids(always.keys().map(String::as_str))
                .await;
        }
        if let Some(prober) = &self.prober {
            attach_probe_results(prober, desired, &mut observed);
        }
        Ok(observed)
    }

    /// A previous container renamed back (a replacement undone) while the new spec has no
    /// back-off yet — its new container started but stopped before the update was done:
    /// counts as a failure of the new spec, so that it is retried after a back-off rather than
    /// at once (which would stop the restored container again).
    fn record_undone_replacements(
        &mut self,
        desired: &DesiredState,
        observed: &berth_core::ObservedState,
        plan: &Plan,
        now: Instant,
    ) {
        for a in &plan.actions {
            let Action::RenameContainer { id, to, .. } = &a.action else {
                continue;
            };
            let Some(dc) = desired.containers.get(&a.owner.key) else {
                continue;
            };
            let restored_old = observed
                .containers
                .iter()
                .find(|c| &c.id == id)
                .is_some_and(|c| c.hash.as_deref() != Some(dc.hash.as_str()));
            // A rollback at the progress deadline is marked in the rollout book instead.
            let deadline_rollback = self
                .book
                .rollouts
                .get(&a.owner.key)
                .is_some_and(|e| e.rolled_back && e.hash == dc.hash);
            if a.intent == Intent::RollBackRestore
                && restored_old
                && !deadline_rollback
                && self.book.blocked_until(&a.owner, &dc.hash, now).is_none()
            {
                let e = self.book.record_failure(
                    a.owner.clone(),
                    &dc.hash,
                    now,
                    berth_core::Failure::new(
                        berth_core::FailureKind::ReplacementStopped,
                        format!("the new container {to} stopped before the update was done; the previous container was restored"),
                    ),
                    jittered,
                );
                tracing::warn!(owner = %a.owner, attempts = e.attempts, retry_in = ?e.not_before.saturating_duration_since(now), "replacement failed; previous container restored");
            }
        }
    }

    /// Records the outcomes of an executed plan: failures back off, successes clear them.
    pub fn record(&mut self, plan: &Plan, outcomes: &[Outcome]) {
        if let Some(prober) = &self.prober {
            for (a, o) in plan.actions.iter().zip(outcomes) {
                if let (Action::RestartContainer { id, .. }, Ok(())) = (&a.action, &o.result) {
                    prober.reset(id);
                }
            }
        }
        let mut failed: BTreeSet<&Owner> = BTreeSet::new();
        for o in outcomes {
            let a = &plan.actions[o.id];
            if let Err(e) = &o.result
                && failed.insert(&a.owner)
            {
                let entry = self.book.record_failure(
                    a.owner.clone(),
                    &a.hash,
                    now_instant(),
                    e.clone(),
                    jittered,
                );
                tracing::warn!(owner = %a.owner, attempts = entry.attempts, retry_in = ?entry.not_before.saturating_duration_since(now_instant()), error = %e, "object failed; backing off");
            }
        }
        for a in &plan.actions {
            if !failed.contains(&a.owner) {
                self.book.clear_failures(&a.owner, &a.hash);
            }
        }
    }
}

/// Logs what a pass decided besides its plan: rolled-back updates and restarts.
fn log_pass(pass: &Pass, now: Instant) {
    for rb in &pass.rolled_back {
        tracing::warn!(
            object = %rb.key,
            spec_hash = %rb.hash,
            new_replicas_available = rb.available,
            progress_deadline = ?rb.deadline,
            reason = "RolledBack",
            "rolling update made no progress within progressDeadlineSeconds; rolling back to the previous containers"
        );
    }
    for r in &pass.restarts {
        let why = if r.unhealthy {
            "restarting unhealthy container"
        } else {
            "restarting exited container"
        };
        tracing::info!(owner = %r.owner, restart_count = r.attempts, next_restart_not_before = ?r.not_before.saturating_duration_since(now), "{why}");
    }
}

/// Copies the prober's results into the observed containers and points the prober at the
/// running containers that have probes. A container the prober has not seen yet counts as
/// just started (not ready, live).
fn attach_probe_results(
    prober: &Prober,
    desired: &DesiredState,
    observed: &mut berth_core::ObservedState,
) {
    let mut targets = Vec::new();
    for c in &mut observed.containers {
        let Some(dc) = c.key.as_ref().and_then(|k| desired.containers.get(k)) else {
            continue;
        };
        if dc.probes.is_empty()
            || c.state != berth_core::RunState::Running
            || c.hash.as_deref() != Some(&dc.hash)
        {
            continue;
        }
        c.probe = Some(
            prober
                .status(&c.id)
                .unwrap_or(berth_core::observed::ProbeStatus {
                    started: dc.probes.startup.is_none(),
                    ready: dc.probes.readiness.as_ref().map(|_| false),
                    live: true,
                    message: None,
                }),
        );
        targets.push(ProbeTarget {
            id: c.id.clone(),
            name: c.name.clone(),
            probes: dc.probes.clone(),
        });
    }
    prober.sync(&targets);
}

/// What makes a "not converging" log line new: owner, reason and message — except for
/// backoffs, whose messages count attempts and would repeat the line on every pass.
fn log_key(w: &berth_core::plan::Waiting) -> (Owner, WaitReason, String) {
    let message = if w.reason.is_backoff() {
        String::new()
    } else {
        w.message.clone()
    };
    (w.owner.clone(), w.reason, message)
}

/// The current instant from tokio's clock, so that paused-time tests control it.
fn now_instant() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// Failure backoff (1 s doubling to 300 s) with ±20 % jitter, so that many failing objects do
/// not retry in lockstep.
fn jittered(attempts: u32) -> Duration {
    let base = Backoff::FAILURE.delay(attempts);
    base.mul_f64(rand::rng().random_range(0.8..1.2))
}

/// Objects in force and where they come from.
fn in_force(merged: &Merged) -> BTreeMap<ObjectKey, String> {
    merged
        .objects
        .iter()
        .map(|(k, d)| (k.clone(), d.origin.clone()))
        .collect()
}

/// Builds a Kubernetes client: `kubeconfig` if given, else `KUBECONFIG` / `~/.kube/config`,
/// else the in-cluster service account.
///
/// # Errors
/// When no configuration can be found or read.
pub async fn kube_client(kubeconfig: Option<&Path>) -> anyhow::Result<kube::Client> {
    let config = match kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path)
                .with_context(|| format!("read kubeconfig {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await
                .with_context(|| format!("use kubeconfig {}", path.display()))?
        }
        None => kube::Config::infer()
            .await
            .context("find a Kubernetes configuration (kubeconfig or in-cluster)")?,
    };
    kube::Client::try_from(config).context("build the Kubernetes client")
}

/// Runs the agent until SIGINT/SIGTERM. Containers keep running after it stops.
pub async fn run(instance: &str, host: &HostIdentity, args: AgentArgs) -> anyhow::Result<()> {
    // One agent per instance and machine (held until the process ends).
    let _lock = crate::lock::acquire(instance)?;
    let client = if args.kube {
        Some(kube_client(args.kubeconfig.as_deref()).await?)
    } else {
        None
    };
    run_with(instance, host, args, client, shutdown_signal()?).await
}

/// The agent's sources: the manifest directory and/or the Kubernetes cluster, each publishing
/// full sets, merged here (one set per source; an object declared by both is a conflict).
struct Sources {
    dir: Option<watch::Receiver<Option<Arc<Snapshot>>>>,
    kube: Option<watch::Receiver<Option<Arc<Snapshot>>>>,
    /// The last merge's objects, so that a conflict keeps the version applied before.
    previous: BTreeMap<ObjectKey, Declaration>,
    last_conflicts: Vec<Conflict>,
}

async fn changed(rx: &mut Option<watch::Receiver<Option<Arc<Snapshot>>>>) -> bool {
    match rx {
        Some(rx) => rx.changed().await.is_ok(),
        None => std::future::pending().await,
    }
}

impl Sources {
    /// True once every configured source delivered its first complete set.
    fn ready(&self) -> bool {
        [&self.dir, &self.kube]
            .into_iter()
            .flatten()
            .all(|rx| rx.borrow().is_some())
    }

    /// Waits for a change of any source; false when a source stopped.
    async fn changed(&mut self) -> bool {
        tokio::select! {
            ok = changed(&mut self.dir) => ok,
            ok = changed(&mut self.kube) => ok,
        }
    }

    fn current(rx: &mut Option<watch::Receiver<Option<Arc<Snapshot>>>>) -> Option<Arc<Snapshot>> {
        rx.as_mut().and_then(|rx| rx.borrow_and_update().clone())
    }

    /// The desired state of `instance` from the sources' current sets: the merge (for status)
    /// and its resolution, marked incomplete (no removals) when a source's set is incomplete or
    /// an object is in conflict between sources with no version applied before.
    fn desired(&mut self, instance: &str, host: &HostIdentity) -> (Merged, DesiredState) {
        let mut why: Vec<String> = [&self.dir, &self.kube]
            .into_iter()
            .flatten()
            .filter_map(|rx| rx.borrow().as_ref().and_then(|s| s.incomplete.clone()))
            .collect();
        let merged = self.merged(host);
        let unresolved: Vec<String> = merged
            .conflicts
            .iter()
            .filter(|c| !merged.objects.contains_key(&c.key))
            .map(|c| c.key.to_string())
            .collect();
        if !unresolved.is_empty() {
            why.push(format!(
                "in conflict between sources with no version applied before: {}",
                unresolved.join(", ")
            ));
        }
        let mut desired = resolve_for(instance, merged.objects.values().map(|d| &d.manifest));
        desired.incomplete = (!why.is_empty()).then(|| why.join("; "));
        (merged, desired)
    }

    /// Merges the sources' current sets, keeping only objects that target this host.
    fn merged(&mut self, host: &HostIdentity) -> Merged {
        let dir = Self::current(&mut self.dir);
        let kube = Self::current(&mut self.kube);
        let declarations = [&dir, &kube]
            .into_iter()
            .flatten()
            .flat_map(|s| s.objects.values().cloned());
        let merged = merge(&self.previous, targeted(declarations, &host.labels));
        self.previous = merged.objects.clone();
        if merged.conflicts != self.last_conflicts {
            for c in &merged.conflicts {
                tracing::warn!(conflict = %c, "object declared by more than one source; neither new version applied");
            }
            self.last_conflicts = merged.conflicts.clone();
        }
        merged
    }
}

/// [`run`] with an injected Kubernetes client (tests use a fake API server) and shutdown signal.
///
/// # Errors
/// When the engine is unreachable at start, a source cannot start, or a source stops.
pub async fn run_with(
    instance: &str,
    host: &HostIdentity,
    args: AgentArgs,
    client: Option<kube::Client>,
    mut shutdown: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>,
) -> anyhow::Result<()> {
    let engine = DockerEngine::connect().await?;
    let version = engine.version().await?;
    tracing::info!(
        engine = %version,
        instance,
        host = %host.name,
        manifests = ?args.manifests,
        kube = client.is_some(),
        "berth agent starting"
    );
    let dir = match &args.manifests {
        Some(path) => {
            if !path.is_dir() {
                anyhow::bail!(
                    "manifest directory {} does not exist or is not a directory",
                    path.display()
                );
            }
            Some(
                DirectorySource::new(path)
                    .watch(Duration::from_millis(args.debounce_ms), args.resync())
                    .context("watch the manifest directory")?,
            )
        }
        None => None,
    };
    let kube = client.clone().map(|c| {
        KubeSource::new(
            c,
            KubeSourceConfig {
                namespaces: args.namespaces.clone(),
                ..Default::default()
            },
        )
        .watch()
    });
    let (kube_rx, kube_view) = match kube {
        Some((rx, view)) => (Some(rx), Some(view)),
        None => (None, None),
    };
    let mut sources = Sources {
        dir,
        kube: kube_rx,
        previous: BTreeMap::new(),
        last_conflicts: Vec::new(),
    };
    let status = match (&client, kube_view) {
        (Some(c), Some(view)) if !args.no_status => {
            let capacity = engine
                .client()
                .info()
                .await
                .ok()
                .map(|i| berth_api::HostCapacity {
                    cpu: i.ncpu.unwrap_or(0).max(0) as u32,
                    memory_bytes: i.mem_total.unwrap_or(0).max(0) as u64,
                });
            let writer = StatusWriter::new(
                c.clone(),
                host.clone(),
                view,
                args.lease_namespace.clone(),
                version.clone(),
                capacity,
            );
            tracing::info!(
                field_manager = writer.field_manager(),
                "writing status back to the cluster"
            );
            Some(writer.spawn())
        }
        _ => None,
    };
    let mut events = engine.events(instance);
    let (probe_tx, mut probe_rx) = tokio::sync::mpsc::channel(16);
    let prober = Prober::new(engine.client().clone(), probe_tx);
    let mut rec = Reconciler {
        prober: Some(prober),
        engine,
        book: RetryBook::default(),
        parallelism: args.parallelism,
        crash_backoff: Backoff {
            initial: Duration::from_secs(args.crash_backoff_initial_seconds),
            cap: Duration::from_secs(args.crash_backoff_cap_seconds),
        },
    };

    // Nothing is planned (so nothing removed) before every source's first complete set.
    while !sources.ready() {
        tokio::select! {
            ok = sources.changed() => if !ok { anyhow::bail!("a source stopped") },
            _ = &mut shutdown => return Ok(()),
        }
    }
    let (mut merged, mut desired) = sources.desired(instance, host);
    tracing::info!(objects = merged.objects.len(), "sources read");
    let mut watch = crate::watchers::Watchers::start(instance, host, &args).await;

    let mut relist = tokio::time::interval(args.resync());
    relist.tick().await;
    // `pullPolicy: Always` tags are re-resolved in the background (registries can be slow), at
    // start and then periodically; a moved tag is followed in the pass that the result triggers.
    let mut refresh_timer = tokio::time::interval(args.image_refresh());
    let (refreshed_tx, mut refreshed) = tokio::sync::mpsc::channel(1);
    let mut refreshing = false;
    let mut refresh_errors: BTreeMap<String, String> = BTreeMap::new();
    let mut reason = "start";
    let mut last_waiting: BTreeSet<(Owner, WaitReason, String)> = BTreeSet::new();
    // Plans being carried out in the background, and the owners they hold. A slow action
    // (a long stop grace period, a big pull) holds up only its own objects: passes go on for
    // everything else.
    type Execution = (Arc<Plan>, Vec<Outcome>, Instant);
    let mut executing: FuturesUnordered<tokio::task::JoinHandle<Execution>> =
        FuturesUnordered::new();
    let mut busy: BTreeMap<Owner, usize> = BTreeMap::new();
    let mut recheck: Option<Instant> = None;
    let mut idle_tick = false;
    loop {
        crate::notify::stall_hook().await;
        watch.beat();
        let started = now_instant();
        let busy_now: BTreeSet<Owner> = busy.keys().cloned().collect();
        // A watchdog tick only proves the loop alive; it plans nothing.
        let prepared = if std::mem::take(&mut idle_tick) {
            None
        } else {
            Some(rec.prepare_observed(&desired, &busy_now).await)
        };
        match prepared {
            None => {}
            Some(Ok((observed, plan))) => {
                watch.pass(
                    reason, started, &merged, &desired, &observed, &plan, &rec.book,
                );
                if let Some(task) = &status {
                    task.input.send_replace(StatusInput {
                        kube: sources.kube.as_ref().and_then(|rx| rx.borrow().clone()),
                        conflicts: merged
                            .conflicts
                            .iter()
                            .map(|c| (c.key.clone(), c.to_string()))
                            .collect(),
                        in_force: in_force(&merged),
                        states: host_states(&desired, &observed, &plan, &rec.book),
                    });
                }
                // Log each (owner, reason) once when it appears, not on every pass.
                let waiting: BTreeSet<(Owner, WaitReason, String)> =
                    plan.waiting.iter().map(log_key).collect();
                for w in &plan.waiting {
                    if w.reason.logged() && !last_waiting.contains(&log_key(w)) {
                        tracing::warn!(owner = %w.owner, reason = w.reason.as_str(), message = %w.message, "not converging");
                    }
                }
                last_waiting = waiting;
                if plan.is_empty() {
                    tracing::debug!(reason, took = ?started.elapsed(), "pass: converged");
                } else {
                    tracing::info!(reason, actions = plan.actions.len(), "pass: executing");
                    let owners: BTreeSet<Owner> =
                        plan.actions.iter().map(|a| a.owner.clone()).collect();
                    for o in owners {
                        *busy.entry(o).or_default() += 1;
                    }
                    let (engine, parallelism, plan) =
                        (rec.engine.clone(), rec.parallelism, Arc::new(plan));
                    executing.push(tokio::spawn(async move {
                        let outcomes = execute(&engine, &plan, parallelism).await;
                        (plan, outcomes, started)
                    }));
                }
            }
            Some(Err(e)) => {
                watch.pass_failed(reason, started, &format!("{e:#}"));
                tracing::error!(
                    error = format!("{e:#}"),
                    reason,
                    "pass failed; retrying on the next trigger"
                )
            }
        }
        let retry_at = rec.book.next_due(now_instant());
        let retry = async {
            match retry_at {
                Some(t) => tokio::time::sleep_until(t.into()).await,
                None => std::future::pending().await,
            }
        };
        let recheck_at = recheck;
        let recheck_due = async {
            match recheck_at {
                Some(t) => tokio::time::sleep_until(t.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            Some(done) = executing.next(), if !executing.is_empty() => {
                match done {
                    Ok((plan, outcomes, started)) => {
                        rec.record(&plan, &outcomes);
                        watch.executed(&plan, &outcomes);
                        if let Some(task) = &status {
                            for h in happenings(&plan, &outcomes, &in_force(&merged)) {
                                let _ = task.events.send(h);
                            }
                        }
                        let owners: BTreeSet<&Owner> = plan.actions.iter().map(|a| &a.owner).collect();
                        for o in owners {
                            if let Some(n) = busy.get_mut(o) {
                                *n -= 1;
                                if *n == 0 {
                                    busy.remove(o);
                                }
                            }
                        }
                        tracing::info!(
                            actions = plan.actions.len(),
                            failed = outcomes.iter().filter(|o| o.result.is_err()).count(),
                            took = ?started.elapsed(),
                            "pass executed"
                        );
                    }
                    Err(e) => {
                        // A panicked execution: forget what it held; the next pass re-plans.
                        tracing::error!(error = %e, "plan execution task failed");
                        busy.clear();
                    }
                }
                reason = "actions finished";
            }
            ok = sources.changed() => {
                if !ok { anyhow::bail!("a source stopped"); }
                (merged, desired) = sources.desired(instance, host);
                reason = "desired state changed";
            }
            ev = events.recv() => {
                if ev.is_none() { anyhow::bail!("engine event stream stopped"); }
                while events.try_recv().is_ok() {}
                reason = "engine event";
                // Some engines (20.10) publish `die` before a list shows the container exited:
                // look again shortly after every burst of events.
                recheck = Some(now_instant() + EVENT_RECHECK);
            }
            _ = recheck_due => {
                recheck = None;
                reason = "engine event recheck";
            }
            _ = probe_rx.recv() => {
                while probe_rx.try_recv().is_ok() {}
                reason = "probe result";
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
            _ = watch.watchdog_tick() => idle_tick = true,
            _ = &mut shutdown => {
                tracing::info!("berth agent stopping; containers keep running");
                return Ok(());
            }
        }
    }
}

/// SIGINT or SIGTERM. SIGHUP is logged and does not stop the agent (the manifest directory
/// source re-reads the directory on it; the cluster source is watched live anyway).
///
/// # Errors
/// When the signal handlers cannot be installed.
pub fn shutdown_signal()
-> anyhow::Result<std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("install SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("install SIGINT handler")?;
    let mut hup = signal(SignalKind::hangup()).context("install SIGHUP handler")?;
    Ok(Box::pin(async move {
        loop {
            tokio::select! {
                _ = term.recv() => return,
                _ = int.recv() => return,
                _ = hup.recv() => tracing::info!("SIGHUP received: re-reading the sources; the agent keeps running"),
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    //! The agent's retry timing with a fake engine and paused tokio time.

    use std::sync::Mutex;

    use berth_api::{ContainerSpec, Manifest, ManifestMetadata};
    use berth_core::labels;
    use berth_core::{ObservedContainer, ObservedState, RunState};
    use berth_engine::{EngineError, Runtime};

    use super::*;

    /// An engine whose containers exit with code 1 right after every start while `crashing`.
    #[derive(Default)]
    struct CrashingEngine {
        state: Mutex<ObservedState>,
        crashing: Mutex<bool>,
        starts: Mutex<Vec<Instant>>,
    }

    impl Runtime for CrashingEngine {
        async fn execute(&self, action: &Action) -> Result<(), EngineError> {
            let mut st = self.state.lock().expect("lock");
            match action {
                Action::CreateContainer {
                    name, labels: l, ..
                } => st.containers.push(ObservedContainer {
                    id: format!("id-{name}"),
                    name: name.clone(),
                    key: labels::key_from_labels(l),
                    replica: labels::replica_from_labels(l),
                    hash: l.get(labels::SPEC_HASH).cloned(),
                    state: RunState::Created,
                    exit_code: None,
                    networks: Default::default(),
                    health: None,
                    network_mode: None,
                    image_id: None,
                    probe: None,
                }),
                Action::StartContainer { name, .. } => {
                    self.starts.lock().expect("lock").push(now_instant());
                    let crashing = *self.crashing.lock().expect("lock");
                    for c in st.containers.iter_mut().filter(|c| &c.name == name) {
                        (c.state, c.exit_code) = if crashing {
                            (RunState::Exited, Some(1))
                        } else {
                            (RunState::Running, None)
                        };
                    }
                }
                _ => {}
            }
            Ok(())
        }
    }

    impl Engine for CrashingEngine {
        async fn observe(&self, _instance: &str) -> Result<ObservedState, EngineError> {
            Ok(self.state.lock().expect("lock").clone())
        }

        async fn local_image_ids<'a>(
            &'a self,
            _refs: impl Iterator<Item = &'a str> + Send + 'a,
        ) -> BTreeMap<String, String> {
            BTreeMap::new()
        }
    }

    fn desired() -> DesiredState {
        let m = Manifest::Container {
            metadata: ManifestMetadata {
                name: "crash".into(),
                ..Default::default()
            },
            spec: Box::new(ContainerSpec {
                image: Some("busybox".into()),
                ..Default::default()
            }),
        };
        berth_core::resolve::resolve([&m])
    }

    /// Runs passes the way the agent loop does: one now, then whenever a retry falls due (or
    /// at once when none is due, as the engine's "die" event would trigger).
    async fn run_until(
        rec: &mut Reconciler<CrashingEngine>,
        desired: &DesiredState,
        starts: usize,
    ) {
        rec.pass(desired).await.expect("pass");
        while rec.engine.starts.lock().expect("lock").len() < starts {
            if let Some(due) = rec.book.next_due(now_instant()) {
                tokio::time::sleep_until(due.into()).await;
            }
            rec.pass(desired).await.expect("pass");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn crash_loop_backoff_sequence_and_reset_after_ten_minutes() {
        let mut rec = Reconciler {
            engine: CrashingEngine {
                crashing: Mutex::new(true),
                ..Default::default()
            },
            book: RetryBook::default(),
            parallelism: 4,
            crash_backoff: Backoff::CRASH_LOOP,
            prober: None,
        };
        let desired = desired();
        // First start, an immediate first restart, then 7 backed-off restarts.
        run_until(&mut rec, &desired, 9).await;
        let starts = rec.engine.starts.lock().expect("lock").clone();
        let gaps: Vec<u64> = starts.windows(2).map(|w| (w[1] - w[0]).as_secs()).collect();
        assert_eq!(gaps, vec![0, 10, 20, 40, 80, 160, 300, 300]);

        // The next restart succeeds and the container runs for 10 minutes: the count resets,
        // so a later crash is restarted at once and then after 10 s again.
        *rec.engine.crashing.lock().expect("lock") = false;
        run_until(&mut rec, &desired, 10).await;
        tokio::time::sleep(Duration::from_secs(601)).await;
        rec.pass(&desired).await.expect("pass");
        *rec.engine.crashing.lock().expect("lock") = true;
        for c in rec.engine.state.lock().expect("lock").containers.iter_mut() {
            (c.state, c.exit_code) = (RunState::Exited, Some(1));
        }
        run_until(&mut rec, &desired, 12).await;
        let starts = rec.engine.starts.lock().expect("lock").clone();
        let n = starts.len();
        assert_eq!(
            (starts[n - 2] - starts[n - 3]).as_secs(),
            601,
            "restarted at once after the reset"
        );
        assert_eq!(
            (starts[n - 1] - starts[n - 2]).as_secs(),
            10,
            "backoff starts again at 10 s"
        );
    }
}

#[cfg(test)]
mod source_tests {
    use super::*;
    use berth_api::{Manifest, ManifestMetadata, VolumeSpec};

    fn snap(origin: &str, driver: &str) -> Arc<Snapshot> {
        let manifest = Manifest::Volume {
            metadata: ManifestMetadata {
                name: "data".into(),
                ..Default::default()
            },
            spec: VolumeSpec {
                driver: Some(driver.into()),
                ..Default::default()
            },
        };
        Arc::new(Snapshot {
            objects: [(
                manifest.key(),
                Declaration {
                    manifest,
                    origin: origin.into(),
                },
            )]
            .into(),
            ..Default::default()
        })
    }

    /// An object declared by both the directory and the cluster is a conflict: reported, and the
    /// version applied before stays in force; it never flips between the two.
    #[test]
    fn conflict_between_sources_keeps_the_previous_version() {
        let host = HostIdentity::from_cli(Some("h"), &[]);
        let (dir_tx, dir_rx) = watch::channel(Some(snap("data.yaml:1:1", "local")));
        let (kube_tx, kube_rx) = watch::channel(None);
        let mut sources = Sources {
            dir: Some(dir_rx),
            kube: Some(kube_rx),
            previous: BTreeMap::new(),
            last_conflicts: Vec::new(),
        };
        assert!(
            !sources.ready(),
            "not ready before every source delivered a set"
        );
        kube_tx.send_replace(Some(Arc::new(Snapshot::default())));
        assert!(sources.ready());
        let first = sources.merged(&host);
        assert_eq!(first.objects.len(), 1);
        assert!(first.conflicts.is_empty());

        kube_tx.send_replace(Some(snap("kube:Volume/default/data", "nfs")));
        dir_tx.send_replace(Some(snap("data.yaml:1:1", "other")));
        let second = sources.merged(&host);
        assert_eq!(second.conflicts.len(), 1);
        assert_eq!(
            second.conflicts[0].origins,
            vec!["data.yaml:1:1", "kube:Volume/default/data"]
        );
        assert_eq!(
            second.objects, first.objects,
            "the version applied before stays"
        );

        kube_tx.send_replace(Some(Arc::new(Snapshot::default())));
        let third = sources.merged(&host);
        assert!(third.conflicts.is_empty());
        assert!(matches!(
            &third.objects.values().next().map(|d| &d.manifest),
            Some(Manifest::Volume { spec, .. }) if spec.driver.as_deref() == Some("other")
        ));
    }
}
