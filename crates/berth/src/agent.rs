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
use berth_core::merge::{Conflict, Declaration, Merged, merge, targeted};
use berth_core::plan::Waiting;
use berth_core::resolve::resolve_for;
use berth_core::{Action, DesiredState, ObservedState, Owner, Plan, plan};
use berth_engine::{DockerEngine, Outcome, execute};
use berth_sources::directory::{DirectorySource, Snapshot};
use berth_sources::kube::{KubeSource, KubeSourceConfig};
use rand::Rng;
use tokio::sync::watch;

use crate::cli::AgentArgs;
use crate::host::HostIdentity;
use crate::status::{StatusInput, StatusWriter, happenings};
use berth_core::conditions::host_states;

/// How long a restarted container must run before its CrashLoopBackOff count is forgotten
/// (Kubernetes: 10 minutes).
const CRASH_RESET: Duration = Duration::from_secs(600);

/// Result of one pass.
#[derive(Debug, Default)]
pub struct PassReport {
    /// What the engine held when the plan was made.
    pub observed: ObservedState,
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
        let observed = self
            .engine
            .observe(&desired.instance)
            .await
            .context("observe the engine")?;
        let now = Instant::now();
        self.book
            .expire_restarts(now, CRASH_RESET, |owner, hash| wanted(desired, owner, hash));
        let plan = plan(desired, &observed, &self.book, now);
        if plan.is_empty() {
            return Ok(PassReport {
                observed,
                plan,
                outcomes: vec![],
            });
        }
        for a in &plan.actions {
            if let Action::StartContainer {
                restart: true,
                name,
            } = &a.action
            {
                let e = self
                    .book
                    .record_restart(a.owner.clone(), &a.hash, now, self.crash_backoff);
                tracing::info!(owner = %a.owner, container = %name, restart_count = e.attempts, "restarting exited container");
            }
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
        Ok(PassReport {
            observed,
            plan,
            outcomes,
        })
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

    // Nothing is planned (so nothing removed) before every source's first complete set.
    while !sources.ready() {
        tokio::select! {
            ok = sources.changed() => if !ok { anyhow::bail!("a source stopped") },
            _ = &mut shutdown => return Ok(()),
        }
    }
    let mut merged = sources.merged(host);
    let mut desired = resolve_for(instance, merged.objects.values().map(|d| &d.manifest));
    tracing::info!(objects = merged.objects.len(), "sources read");

    let mut relist = tokio::time::interval(args.resync());
    relist.tick().await;
    let mut reason = "start";
    let mut last_waiting: Vec<Waiting> = Vec::new();
    loop {
        let started = Instant::now();
        match rec.pass(&desired).await {
            Ok(report) => {
                if let Some(task) = &status {
                    let in_force: BTreeMap<ObjectKey, String> = merged
                        .objects
                        .iter()
                        .map(|(k, d)| (k.clone(), d.origin.clone()))
                        .collect();
                    for h in happenings(&report, &in_force) {
                        let _ = task.events.send(h);
                    }
                    task.input.send_replace(StatusInput {
                        kube: sources.kube.as_ref().and_then(|rx| rx.borrow().clone()),
                        conflicts: merged
                            .conflicts
                            .iter()
                            .map(|c| (c.key.clone(), c.to_string()))
                            .collect(),
                        in_force,
                        states: host_states(&desired, &report.observed, &report.plan),
                    });
                }
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
            ok = sources.changed() => {
                if !ok { anyhow::bail!("a source stopped"); }
                merged = sources.merged(host);
                desired = resolve_for(instance, merged.objects.values().map(|d| &d.manifest));
                reason = "desired state changed";
            }
            ev = events.recv() => {
                if ev.is_none() { anyhow::bail!("engine event stream stopped"); }
                while events.try_recv().is_ok() {}
                reason = "engine event";
            }
            _ = relist.tick() => reason = "periodic relist",
            _ = retry => reason = "retry due",
            _ = &mut shutdown => {
                tracing::info!("berth agent stopping; containers keep running");
                return Ok(());
            }
        }
    }
}

/// SIGINT or SIGTERM.
///
/// # Errors
/// When the signal handlers cannot be installed.
pub fn shutdown_signal()
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

#[cfg(test)]
mod tests {
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
