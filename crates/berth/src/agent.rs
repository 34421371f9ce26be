//! The agent loop: level-triggered passes of observe → plan → execute → record.
//!
//! A pass runs when the desired state changes, when an engine event arrives, when the periodic
//! relist timer fires, or when a retry falls due. Why a pass runs is a [`Trigger`], logged, never
//! passed to `plan`. Nothing runs before every source (manifest directory, Kubernetes) delivered
//! its first complete set.
//!
//! The loop is an `Agent`: it waits for a `Wake` (one variant per event source), turns it into a
//! [`Trigger`] in one method per source, and runs a pass.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use berth_api::ObjectKey;
use berth_core::backoff::{Backoff, RetryBook};
use berth_core::conditions::host_states;
use berth_core::merge::{Conflict, Declaration, Merged, Origin, merge};
use berth_core::pass::Pass;
use berth_core::policy::{Policy, Refusal, Source, admit};
use berth_core::resolve::resolve_for;
use berth_core::{Action, DesiredState, Intent, Owner, Plan, WaitReason, Waiting};
use berth_engine::{
    DockerEngine, Engine, ImageRefresh, Outcome, ProbeTarget, Prober, Progress, execute,
    execute_observed,
};
use berth_sources::directory::{DirectorySource, Snapshot};
use berth_sources::kube::{KubeSource, KubeSourceConfig, KubeView};
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use rand::Rng;
use tokio::sync::watch;

use crate::cli::AgentArgs;
use crate::engine_link::EngineLink;
use crate::host::HostIdentity;
use crate::images::{always_images, log_refresh, refresh_images};
use crate::status::{StatusInput, StatusTask, StatusWriter, happenings};

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
        self.pass_observed(desired, |_, _| {}).await
    }

    /// [`Reconciler::pass`], telling `observe` the plan's actions as they start and end
    /// (`berth apply`'s progress line).
    pub async fn pass_observed(
        &mut self,
        desired: &DesiredState,
        mut observe: impl FnMut(&Plan, Progress) + Send,
    ) -> anyhow::Result<PassReport> {
        let plan = self.prepare(desired, &BTreeSet::new()).await?;
        let outcomes = if plan.is_empty() {
            vec![]
        } else {
            execute_observed(&self.engine, &plan, self.parallelism, |p| observe(&plan, p)).await
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
        let tags = crate::builds::build_tags(desired);
        if !tags.is_empty() {
            observed.built_images = self.engine.built_images(tags).await;
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
                    // Each undone attempt stopped the old container: as slow as a crash loop.
                    |n| jittered_with(Backoff::CRASH_LOOP, n),
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
            // A failed build backs off every replica waiting for its image.
            if let (Action::BuildImage { users, .. }, Err(e)) = (&a.action, &o.result) {
                for (owner, hash) in users {
                    if failed.insert(owner) {
                        self.book.record_failure(
                            owner.clone(),
                            hash,
                            now_instant(),
                            e.clone(),
                            jittered,
                        );
                    }
                }
            }
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

/// The current instant from tokio's clock, so that paused-time tests control it.
fn now_instant() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// Failure backoff (1 s doubling to 300 s) with ±20 % jitter, so that many failing objects do
/// not retry in lockstep.
fn jittered(attempts: u32) -> Duration {
    jittered_with(Backoff::FAILURE, attempts)
}

/// `backoff`'s delay before the attempt after `attempts`, ±20 %.
fn jittered_with(backoff: Backoff, attempts: u32) -> Duration {
    backoff
        .delay(attempts)
        .mul_f64(rand::rng().random_range(0.8..1.2))
}

/// Objects in force and where they come from.
fn in_force(merged: &Merged) -> BTreeMap<ObjectKey, Origin> {
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
    /// The security policy in force, and its file's watch (a change re-evaluates every object).
    policy: Policy,
    policy_rx: Option<watch::Receiver<Policy>>,
    /// The last merge's refusals (logged when they change).
    refused: Vec<Refusal>,
    /// Refusals new since the last [`Sources::take_fresh`] (each worth an Event).
    fresh: Vec<Refusal>,
}

/// An Event on each custom resource newly refused by the policy.
fn refusal_events(sources: &mut Sources, status: Option<&crate::status::StatusTask>) {
    let fresh = sources.take_fresh();
    let Some(task) = status else { return };
    for r in fresh.into_iter().filter(|r| r.source == Source::Kubernetes) {
        let _ = task.events.send(crate::status::Happening {
            key: r.key.clone(),
            reason: crate::status::EventReason::Waiting(WaitReason::PolicyViolation),
            note: r.to_string(),
        });
    }
}

async fn policy_changed(rx: &mut Option<watch::Receiver<Policy>>) -> bool {
    match rx {
        Some(rx) => rx.changed().await.is_ok(),
        None => std::future::pending().await,
    }
}

async fn changed(rx: &mut Option<watch::Receiver<Option<Arc<Snapshot>>>>) -> bool {
    match rx {
        Some(rx) => rx.changed().await.is_ok(),
        None => std::future::pending().await,
    }
}

impl Sources {
    /// Starts the configured sources: the manifest directory's watch and the cluster's
    /// watchers (with the view the status writer reads).
    ///
    /// # Errors
    /// When the manifest directory is missing or cannot be watched.
    fn start(
        args: &AgentArgs,
        client: Option<kube::Client>,
    ) -> anyhow::Result<(Sources, Option<KubeView>)> {
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
        let kube = client.map(|c| {
            KubeSource::new(
                c,
                KubeSourceConfig {
                    namespaces: args.namespaces.clone(),
                    ..Default::default()
                },
            )
            .watch()
        });
        let (kube, view) = match kube {
            Some((rx, view)) => (Some(rx), Some(view)),
            None => (None, None),
        };
        let policy = crate::policy::load(args.policy.as_deref())?;
        let policy_rx = args
            .policy
            .clone()
            .map(|p| crate::policy::watch(p, policy.clone()));
        let sources = Sources {
            dir,
            kube,
            previous: BTreeMap::new(),
            last_conflicts: Vec::new(),
            policy,
            policy_rx,
            refused: Vec::new(),
            fresh: Vec::new(),
        };
        Ok((sources, view))
    }

    /// True once every configured source delivered its first complete set.
    fn ready(&self) -> bool {
        [&self.dir, &self.kube]
            .into_iter()
            .flatten()
            .all(|rx| rx.borrow().is_some())
    }

    /// Waits for a change of any source; false when a source stopped.
    async fn changed(&mut self) -> bool {
        let (ok, policy) = tokio::select! {
            ok = changed(&mut self.dir) => (ok, false),
            ok = changed(&mut self.kube) => (ok, false),
            ok = policy_changed(&mut self.policy_rx) => (ok, true),
        };
        if policy && let Some(rx) = &mut self.policy_rx {
            self.policy = rx.borrow_and_update().clone();
        }
        ok
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
        desired.refused = self
            .refused
            .iter()
            .map(|r| (r.key.clone(), r.to_string()))
            .collect();
        (merged, desired)
    }

    /// Refusals new since the last call (for Events).
    fn take_fresh(&mut self) -> Vec<Refusal> {
        std::mem::take(&mut self.fresh)
    }

    /// Merges the sources' current sets, keeping only objects that target this host.
    fn merged(&mut self, host: &HostIdentity) -> Merged {
        let dir = Self::current(&mut self.dir);
        let kube = Self::current(&mut self.kube);
        // Each source's objects that target this host, judged by the policy: a refused object
        // keeps the version applied before (if any) and never reaches the plan.
        let tagged: Vec<(Source, Declaration)> =
            [(Source::Directory, &dir), (Source::Kubernetes, &kube)]
                .into_iter()
                .flat_map(|(source, snap)| {
                    snap.iter()
                        .flat_map(|s| s.objects.values().cloned())
                        .filter(|d| berth_api::targets(d.manifest.host_selector(), &host.labels))
                        .map(move |d| (source, d))
                        .collect::<Vec<_>>()
                })
                .collect();
        // Host facts (where host paths lead) of the new and the previous versions: both are
        // judged, and a symlink may have changed since the last look.
        let facts = crate::policy::host_facts(
            tagged
                .iter()
                .map(|(_, d)| &d.manifest)
                .chain(self.previous.values().map(|d| &d.manifest)),
            &self.policy,
        );
        let (admitted, refused) = admit(&self.previous, tagged, &self.policy, &facts);
        if refused != self.refused {
            // Each refusal that appears or changes, once (the plan's PolicyViolation wait is
            // not logged again as "not converging").
            let fresh: Vec<Refusal> = refused
                .iter()
                .filter(|r| !self.refused.contains(r))
                .cloned()
                .collect();
            for r in &fresh {
                log_refusal(r);
            }
            self.fresh.extend(fresh);
            self.refused = refused;
        }
        let mut merged = merge(&self.previous, admitted);
        self.previous = merged.objects.clone();
        // What was refused, as declared (the local API shows it as the object's spec).
        merged.refused = self
            .refused
            .iter()
            .filter_map(|r| {
                let snap = match r.source {
                    Source::Directory => &dir,
                    Source::Kubernetes => &kube,
                };
                let d = snap.as_ref()?.objects.get(&r.key)?;
                Some((r.key.clone(), d.clone()))
            })
            .collect();
        if merged.conflicts != self.last_conflicts {
            for c in &merged.conflicts {
                tracing::warn!(conflict = %c, "object declared by more than one source; neither new version applied");
            }
            self.last_conflicts = merged.conflicts.clone();
        }
        merged
    }
}

/// Logs a refusal: the object, its source and profile, the fields and rules violated, and the
/// whole message (each violation at its `file:line:column`).
fn log_refusal(r: &Refusal) {
    let join = |f: fn(&berth_core::policy::Violation) -> &str| {
        r.violations.iter().map(f).collect::<Vec<_>>().join(", ")
    };
    tracing::warn!(
        object = %r.key,
        reason = "PolicyViolation",
        source = r.source.as_str(),
        profile = r.profile.as_str(),
        fields = join(|v| v.field.as_str()),
        rules = join(|v| v.rule.as_str()),
        message = %r,
        "refused by the security policy"
    );
}

/// Why a pass runs. Logged (field `reason`), shown by the local API and counted in the metrics
/// (label `trigger`), never passed to `plan`: a pass is level-triggered and plans from the whole
/// desired and observed state, whatever woke it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// The first pass, once every source delivered its first complete set.
    Start,
    /// A source (manifest directory, cluster) published a new set.
    SourceUpdate,
    /// The engine reported an event for one of this instance's objects.
    EngineEvent,
    /// The second look [`EVENT_RECHECK`] after a burst of engine events.
    EngineEventRecheck,
    /// The prober reported a changed result.
    ProbeResult,
    /// A plan carried out in the background finished.
    ActionsFinished,
    /// The periodic relist (`--resync-seconds`).
    Resync,
    /// A back-off (failure retry or restart) fell due.
    RetryDue,
    /// The image refresh timer fired; the re-resolution runs in the background.
    ImageRefreshTimer,
    /// A background re-resolution found a present `pullPolicy: Always` tag naming another image.
    ImageTagMoved,
    /// A background re-resolution pulled a `pullPolicy: Always` image that was missing.
    ImagePulled,
    /// A background re-resolution finished with no tag moved.
    ImagesReResolved,
    /// The engine did not answer the last pass; the next attempt of its back-off fell due.
    EngineRetry,
}

impl Trigger {
    /// The words logged, shown and counted for this trigger.
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Start => "start",
            Trigger::SourceUpdate => "desired state changed",
            Trigger::EngineEvent => "engine event",
            Trigger::EngineEventRecheck => "engine event recheck",
            Trigger::ProbeResult => "probe result",
            Trigger::ActionsFinished => "actions finished",
            Trigger::Resync => "periodic relist",
            Trigger::RetryDue => "retry due",
            Trigger::ImageRefreshTimer => "image refresh timer",
            Trigger::ImageTagMoved => "image tag moved",
            Trigger::ImagePulled => "image pulled",
            Trigger::ImagesReResolved => "images re-resolved",
            Trigger::EngineRetry => "engine retry",
        }
    }
}

impl std::fmt::Display for Trigger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The injected shutdown signal (SIGINT/SIGTERM in the binary, anything in tests).
pub type Shutdown = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// A plan carried out in the background: the plan, its outcomes, when its pass started.
type Execution = (Arc<Plan>, Vec<Outcome>, Instant);

/// What woke the loop: one variant per event source.
enum Wake {
    /// A background execution ended (or its task panicked).
    Executed(Result<Execution, tokio::task::JoinError>),
    /// A source published a set; false when a source stopped.
    SourcesChanged(bool),
    /// An engine event; false when the event stream stopped.
    EngineEvent(bool),
    /// The recheck after a burst of engine events fell due.
    Recheck,
    /// A probe result changed.
    Probe,
    /// The periodic relist timer.
    Resync,
    /// The image refresh timer.
    RefreshTimer,
    /// A background image re-resolution finished.
    Refreshed(Vec<(String, Result<ImageRefresh, String>)>),
    /// A back-off fell due.
    RetryDue,
    /// The next attempt to reach an engine that did not answer fell due.
    EngineRetry,
    /// The systemd watchdog tick: proves the loop alive, plans nothing.
    Watchdog,
    /// SIGINT/SIGTERM.
    Shutdown,
}

/// What the loop does after a wake.
enum Next {
    /// Run a pass, for this reason.
    Pass(Trigger),
    /// Iterate (liveness, watchdog) without a pass.
    Idle,
    /// Stop the agent; containers keep running.
    Stop,
}

/// The background re-resolution of `pullPolicy: Always` tags (registries can be slow): at start
/// and then periodically; a moved tag is followed in the pass that the result triggers.
struct ImageRefresher {
    timer: tokio::time::Interval,
    done_tx: tokio::sync::mpsc::Sender<Vec<(String, Result<ImageRefresh, String>)>>,
    done: tokio::sync::mpsc::Receiver<Vec<(String, Result<ImageRefresh, String>)>>,
    running: bool,
    /// The last error per reference, so that each distinct error is logged once.
    errors: BTreeMap<String, String>,
}

/// The agent loop's state between passes: the sources and what they declare, the reconciler
/// (engine, retry book, prober), the plans being carried out and the owners they hold, the
/// timers and channels that wake the loop, and its observers (local API, metrics, systemd,
/// cluster status).
struct Agent {
    instance: String,
    host: HostIdentity,
    sources: Sources,
    merged: Merged,
    desired: DesiredState,
    /// `desired` with the build hashes of this pass (contexts read before each pass); `None`
    /// when nothing is built.
    built: Option<DesiredState>,
    rec: Reconciler,
    /// Whether the engine answers; its back-off while it does not.
    link: EngineLink,
    status: Option<StatusTask>,
    watch: crate::watchers::Watchers,
    events: tokio::sync::mpsc::Receiver<()>,
    probes: tokio::sync::mpsc::Receiver<()>,
    relist: tokio::time::Interval,
    images: ImageRefresher,
    /// Plans being carried out in the background. A slow action (a long stop grace period, a
    /// big pull) holds up only its own objects: passes go on for everything else.
    executing: FuturesUnordered<tokio::task::JoinHandle<Execution>>,
    /// Owners with actions in `executing`, and how many of those plans hold each.
    busy: BTreeMap<Owner, usize>,
    /// When to look again after a burst of engine events.
    recheck: Option<Instant>,
    /// Waiting reasons logged by the last pass, so that each is logged once when it appears.
    last_waiting: BTreeSet<(Owner, WaitReason, String)>,
}

/// [`run`] with an injected Kubernetes client (tests use a fake API server) and shutdown signal.
///
/// # Errors
/// When a source cannot start or stops. An unreachable engine is waited for, at start and
/// mid-run (see [`crate::engine_link`]).
pub async fn run_with(
    instance: &str,
    host: &HostIdentity,
    args: AgentArgs,
    client: Option<kube::Client>,
    mut shutdown: Shutdown,
) -> anyhow::Result<()> {
    match Agent::start(instance, host, &args, client, &mut shutdown).await? {
        Some(agent) => agent.run(&mut shutdown).await,
        None => Ok(()),
    }
}

impl Agent {
    /// Starts the observers (local API, metrics, systemd), waits for the engine (capped
    /// back-off, without end; not ready meanwhile), starts the sources, the cluster status
    /// writer and the prober, and waits for every source's first complete set: nothing is
    /// planned (so nothing removed) before that. `None` when the shutdown signal came first.
    async fn start(
        instance: &str,
        host: &HostIdentity,
        args: &AgentArgs,
        client: Option<kube::Client>,
        shutdown: &mut Shutdown,
    ) -> anyhow::Result<Option<Agent>> {
        let mut watch = crate::watchers::Watchers::start(instance, host, args).await;
        let mut link = EngineLink::new();
        let engine = tokio::select! {
            engine = link.connect(|link| {
                watch.beat();
                watch.engine(link.outage(now_instant()));
            }) => engine,
            _ = &mut *shutdown => return Ok(None),
        };
        watch.engine(None);
        let version = engine.version().await.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "cannot read the engine's version");
            "unknown".into()
        });
        tracing::info!(
            engine = %version,
            instance,
            host = %host.name,
            manifests = ?args.manifests,
            kube = client.is_some(),
            "berth agent starting"
        );
        let (mut sources, kube_view) = Sources::start(args, client.clone())?;
        let status = match (client, kube_view) {
            (Some(c), Some(view)) if !args.no_status => {
                Some(status_writer(&engine, c, host, view, args, version).await)
            }
            _ => None,
        };
        let events = engine.events(instance);
        let (probe_tx, probes) = tokio::sync::mpsc::channel(16);
        let prober = Prober::new(engine.client().clone(), probe_tx);
        let rec = Reconciler {
            prober: Some(prober),
            engine,
            book: RetryBook::default(),
            parallelism: args.parallelism,
            crash_backoff: Backoff {
                initial: Duration::from_secs(args.crash_backoff_initial_seconds),
                cap: Duration::from_secs(args.crash_backoff_cap_seconds),
            },
        };
        while !sources.ready() {
            tokio::select! {
                ok = sources.changed() => if !ok { anyhow::bail!("a source stopped") },
                _ = &mut *shutdown => return Ok(None),
            }
        }
        let (merged, desired) = sources.desired(instance, host);
        refusal_events(&mut sources, status.as_ref());
        tracing::info!(objects = merged.objects.len(), "sources read");
        let mut relist = tokio::time::interval(args.resync());
        relist.tick().await;
        let (done_tx, done) = tokio::sync::mpsc::channel(1);
        Ok(Some(Agent {
            instance: instance.to_string(),
            host: host.clone(),
            sources,
            merged,
            desired,
            built: None,
            rec,
            link,
            status,
            watch,
            events,
            probes,
            relist,
            images: ImageRefresher {
                timer: tokio::time::interval(args.image_refresh()),
                done_tx,
                done,
                running: false,
                errors: BTreeMap::new(),
            },
            executing: FuturesUnordered::new(),
            busy: BTreeMap::new(),
            recheck: None,
            last_waiting: BTreeSet::new(),
        }))
    }

    /// The loop: a pass, then wait for the next reason for one, until the shutdown signal.
    ///
    /// # Errors
    /// When a source or the engine event stream stops.
    async fn run(mut self, shutdown: &mut Shutdown) -> anyhow::Result<()> {
        let mut next = Next::Pass(Trigger::Start);
        loop {
            crate::notify::stall_hook().await;
            self.watch.beat();
            match next {
                Next::Pass(trigger) => self.pass(trigger).await,
                Next::Idle => {}
                Next::Stop => {
                    tracing::info!("berth agent stopping; containers keep running");
                    return Ok(());
                }
            }
            let wake = self.wait(shutdown).await;
            next = self.on_wake(wake)?;
        }
    }

    /// One pass: observe and plan (leaving out the owners whose actions are still running),
    /// report, and start carrying out the plan in the background.
    async fn pass(&mut self, trigger: Trigger) {
        let started = now_instant();
        let busy: BTreeSet<Owner> = self.busy.keys().cloned().collect();
        // Build contexts are read before each pass (a changed file is a changed desired
        // state); the digests reach the pure core as data.
        self.built = match crate::builds::with_contexts(&self.desired).await {
            std::borrow::Cow::Borrowed(_) => None,
            std::borrow::Cow::Owned(d) => Some(d),
        };
        let desired = self.built.as_ref().unwrap_or(&self.desired);
        match self.rec.prepare_observed(desired, &busy).await {
            Ok((observed, plan)) => {
                if self.link.answered(now_instant()) {
                    self.watch.engine(None);
                }
                self.report(trigger, started, &observed, &plan);
                if plan.is_empty() {
                    tracing::debug!(reason = %trigger, took = ?started.elapsed(), "pass: converged");
                } else {
                    tracing::info!(reason = %trigger, actions = plan.actions.len(), "pass: executing");
                    self.execute(plan, started);
                }
            }
            // The engine could not be observed: nothing is planned, so nothing is removed (a
            // failed list is not "nothing exists"). The outage is logged once; the next
            // attempt follows the link's back-off, and the first pass that observes again is a
            // full resync.
            Err(e) => {
                let error = format!("{e:#}");
                self.watch.pass_failed(trigger.as_str(), started, &error);
                let retry_in = self.link.failed(&error, now_instant());
                self.watch.engine(self.link.outage(now_instant()));
                tracing::debug!(error, reason = %trigger, ?retry_in, "pass failed: the engine was not observed");
            }
        }
    }

    /// Reports a planned pass: to the observers, to the cluster status writer, and in the log
    /// (each waiting (owner, reason) once when it appears, not on every pass).
    fn report(
        &mut self,
        trigger: Trigger,
        started: Instant,
        observed: &berth_core::ObservedState,
        plan: &Plan,
    ) {
        let desired = self.built.as_ref().unwrap_or(&self.desired);
        self.watch.pass(
            trigger.as_str(),
            started,
            &self.merged,
            desired,
            observed,
            plan,
            &self.rec.book,
        );
        if let Some(task) = &self.status {
            task.input.send_replace(StatusInput {
                kube: self
                    .sources
                    .kube
                    .as_ref()
                    .and_then(|rx| rx.borrow().clone()),
                conflicts: self
                    .merged
                    .conflicts
                    .iter()
                    .map(|c| (c.key.clone(), c.to_string()))
                    .collect(),
                in_force: in_force(&self.merged),
                states: host_states(desired, observed, plan, &self.rec.book),
            });
        }
        let waiting: BTreeSet<(Owner, WaitReason, String)> =
            plan.waiting.iter().map(Waiting::identity).collect();
        for w in &plan.waiting {
            if w.reason.logged() && !self.last_waiting.contains(&w.identity()) {
                tracing::warn!(owner = %w.owner, reason = w.reason.as_str(), message = %w.message, "not converging");
            }
        }
        self.last_waiting = waiting;
    }

    /// Carries out `plan` in the background, holding its owners until it ends.
    fn execute(&mut self, plan: Plan, started: Instant) {
        let owners: BTreeSet<Owner> = plan.actions.iter().map(|a| a.owner.clone()).collect();
        for o in owners {
            *self.busy.entry(o).or_default() += 1;
        }
        let (engine, parallelism, plan) = (
            self.rec.engine.clone(),
            self.rec.parallelism,
            Arc::new(plan),
        );
        self.executing.push(tokio::spawn(async move {
            let outcomes = execute(&engine, &plan, parallelism).await;
            (plan, outcomes, started)
        }));
    }

    /// Waits for the next event of any source of wakes.
    async fn wait(&mut self, shutdown: &mut Shutdown) -> Wake {
        // While the engine does not answer, only the link's back-off retries (a due object
        // retry would otherwise fail again at once, in a tight loop).
        let retry_at = if self.link.is_down() {
            None
        } else {
            self.rec.book.next_due(now_instant())
        };
        let engine_retry_at = self.link.retry_at();
        let recheck_at = self.recheck;
        tokio::select! {
            Some(done) = self.executing.next(), if !self.executing.is_empty() => Wake::Executed(done),
            ok = self.sources.changed() => Wake::SourcesChanged(ok),
            ev = self.events.recv() => Wake::EngineEvent(ev.is_some()),
            _ = sleep_until(recheck_at) => Wake::Recheck,
            _ = self.probes.recv() => Wake::Probe,
            _ = self.relist.tick() => Wake::Resync,
            _ = self.images.timer.tick() => Wake::RefreshTimer,
            Some(results) = self.images.done.recv() => Wake::Refreshed(results),
            _ = sleep_until(retry_at) => Wake::RetryDue,
            _ = sleep_until(engine_retry_at) => Wake::EngineRetry,
            _ = self.watch.watchdog_tick() => Wake::Watchdog,
            _ = &mut *shutdown => Wake::Shutdown,
        }
    }

    /// Handles a wake; says whether a pass follows and why.
    ///
    /// # Errors
    /// When a source or the engine event stream stopped.
    fn on_wake(&mut self, wake: Wake) -> anyhow::Result<Next> {
        let trigger = match wake {
            Wake::Executed(done) => self.executed(done),
            Wake::SourcesChanged(ok) => {
                if !ok {
                    anyhow::bail!("a source stopped");
                }
                (self.merged, self.desired) = self.sources.desired(&self.instance, &self.host);
                refusal_events(&mut self.sources, self.status.as_ref());
                Trigger::SourceUpdate
            }
            Wake::EngineEvent(ok) => {
                if !ok {
                    anyhow::bail!("engine event stream stopped");
                }
                while self.events.try_recv().is_ok() {}
                // Some engines (20.10) publish `die` before a list shows the container exited:
                // look again shortly after every burst of events.
                self.recheck = Some(now_instant() + EVENT_RECHECK);
                Trigger::EngineEvent
            }
            Wake::Recheck => {
                self.recheck = None;
                Trigger::EngineEventRecheck
            }
            Wake::Probe => {
                while self.probes.try_recv().is_ok() {}
                Trigger::ProbeResult
            }
            Wake::Resync => {
                // The periodic relist judges the sources' sets again: the policy's host facts
                // (symlinks under host paths) can change without any manifest changing.
                (self.merged, self.desired) = self.sources.desired(&self.instance, &self.host);
                Trigger::Resync
            }
            Wake::RefreshTimer => {
                self.refresh_images();
                Trigger::ImageRefreshTimer
            }
            Wake::Refreshed(results) => {
                self.images.running = false;
                log_refresh(&results, &mut self.images.errors).unwrap_or(Trigger::ImagesReResolved)
            }
            Wake::RetryDue => Trigger::RetryDue,
            Wake::EngineRetry => Trigger::EngineRetry,
            Wake::Watchdog => return Ok(Next::Idle),
            Wake::Shutdown => return Ok(Next::Stop),
        };
        Ok(Next::Pass(trigger))
    }

    /// A background execution ended: records its outcomes (back-offs), reports them (observers,
    /// cluster Events) and releases its owners.
    fn executed(&mut self, done: Result<Execution, tokio::task::JoinError>) -> Trigger {
        let (plan, outcomes, started) = match done {
            Ok(execution) => execution,
            Err(e) => {
                // A panicked execution: forget what it held; the next pass re-plans.
                tracing::error!(error = %e, "plan execution task failed");
                self.busy.clear();
                return Trigger::ActionsFinished;
            }
        };
        self.rec.record(&plan, &outcomes);
        self.watch.executed(&plan, &outcomes);
        if let Some(task) = &self.status {
            for h in happenings(&plan, &outcomes, &in_force(&self.merged)) {
                let _ = task.events.send(h);
            }
        }
        let owners: BTreeSet<&Owner> = plan.actions.iter().map(|a| &a.owner).collect();
        for o in owners {
            if let Some(n) = self.busy.get_mut(o) {
                *n -= 1;
                if *n == 0 {
                    self.busy.remove(o);
                }
            }
        }
        tracing::info!(
            actions = plan.actions.len(),
            failed = outcomes.iter().filter(|o| o.result.is_err()).count(),
            took = ?started.elapsed(),
            "pass executed"
        );
        Trigger::ActionsFinished
    }

    /// Starts a background re-resolution of the `pullPolicy: Always` tags, unless one is
    /// running or there are none.
    fn refresh_images(&mut self) {
        let images = always_images(&self.desired);
        if !self.images.running && !images.is_empty() {
            self.images.running = true;
            let (engine, tx) = (self.rec.engine.clone(), self.images.done_tx.clone());
            tokio::spawn(async move {
                let _ = tx.send(refresh_images(engine, images).await).await;
            });
        }
    }
}

/// Sleeps until `at`; forever when `None`.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t.into()).await,
        None => std::future::pending().await,
    }
}

/// Starts the task that writes status, conditions and Events back to the cluster.
async fn status_writer(
    engine: &DockerEngine,
    client: kube::Client,
    host: &HostIdentity,
    view: KubeView,
    args: &AgentArgs,
    version: String,
) -> StatusTask {
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
        client,
        host.clone(),
        view,
        args.lease_namespace.clone(),
        version,
        capacity,
    );
    tracing::info!(
        field_manager = writer.field_manager(),
        "writing status back to the cluster"
    );
    writer.spawn()
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
            spec: std::sync::Arc::new(ContainerSpec {
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

    fn snap(origin: Origin, driver: &str) -> Arc<Snapshot> {
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
            objects: [(manifest.key(), Declaration::new(manifest, origin))].into(),
            ..Default::default()
        })
    }

    /// An object declared by both the directory and the cluster is a conflict: reported, and the
    /// version applied before stays in force; it never flips between the two.
    #[test]
    fn conflict_between_sources_keeps_the_previous_version() {
        let host = HostIdentity::from_cli(Some("h"), &[]);
        let (dir_tx, dir_rx) = watch::channel(Some(snap(Origin::file("data.yaml", 1), "local")));
        let (kube_tx, kube_rx) = watch::channel(None);
        let mut sources = Sources {
            dir: Some(dir_rx),
            kube: Some(kube_rx),
            previous: BTreeMap::new(),
            last_conflicts: Vec::new(),
            policy: Policy::default(),
            policy_rx: None,
            refused: Vec::new(),
            fresh: Vec::new(),
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

        kube_tx.send_replace(Some(snap(
            Origin::Cluster {
                kind: "Volume".into(),
                namespace: "default".into(),
                name: "data".into(),
            },
            "nfs",
        )));
        dir_tx.send_replace(Some(snap(Origin::file("data.yaml", 1), "other")));
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

    /// The policy in the merge: a custom resource asking for the host network is refused
    /// under the default policy (Kubernetes `baseline`) and reported as `PolicyViolation`; the
    /// version applied before stays; a namespace override to `privileged` admits it.
    #[test]
    fn the_policy_refuses_before_the_merge_and_keeps_the_previous_version() {
        let host = HostIdentity::from_cli(Some("h"), &[]);
        let web = |mode: Option<&str>| {
            let manifest = Manifest::Container {
                metadata: ManifestMetadata {
                    name: "web".into(),
                    namespace: Some("team".into()),
                    ..Default::default()
                },
                spec: std::sync::Arc::new(berth_api::ContainerSpec {
                    image: Some("busybox".into()),
                    network_mode: mode.map(berth_api::NetworkMode::parse),
                    ..Default::default()
                }),
            };
            Arc::new(Snapshot {
                objects: [(
                    manifest.key(),
                    Declaration::new(
                        manifest,
                        Origin::Cluster {
                            kind: "Container".into(),
                            namespace: "team".into(),
                            name: "web".into(),
                        },
                    ),
                )]
                .into(),
                ..Default::default()
            })
        };
        let (kube_tx, kube_rx) = watch::channel(Some(web(None)));
        let mut sources = Sources {
            dir: None,
            kube: Some(kube_rx),
            previous: BTreeMap::new(),
            last_conflicts: Vec::new(),
            policy: Policy::default(),
            policy_rx: None,
            refused: Vec::new(),
            fresh: Vec::new(),
        };
        let (merged, desired) = sources.desired("default", &host);
        assert_eq!(merged.objects.len(), 1);
        assert!(desired.refused.is_empty());
        kube_tx.send_replace(Some(web(Some("host"))));
        let (merged, desired) = sources.desired("default", &host);
        let key = ObjectKey::new(berth_api::Kind::Container, "team", "web");
        assert!(
            desired.refused[&key].contains("spec.networkMode"),
            "{:?}",
            desired.refused
        );
        assert!(
            matches!(&merged.objects[&key].manifest, Manifest::Container { spec, .. } if spec.network_mode.is_none()),
            "the version applied before stays"
        );
        assert_eq!(sources.take_fresh().len(), 1, "one Event");
        sources
            .policy
            .sources
            .kubernetes
            .namespaces
            .insert("team".into(), berth_core::policy::Profile::Privileged);
        let (merged, desired) = sources.desired("default", &host);
        assert!(desired.refused.is_empty());
        assert!(
            matches!(&merged.objects[&key].manifest, Manifest::Container { spec, .. } if spec.network_mode.is_some())
        );
    }
}
