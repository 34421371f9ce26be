//! Prometheus metrics (prometheus-client), updated by the agent's [`crate::observe::Observer`]
//! and encoded by the `/metrics` handler. Names follow Prometheus' conventions (base units,
//! `_total` for counters, `_seconds` for durations) and kubelet's where it has the metric.

use std::sync::Mutex;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use berth_api::ObjectKey;
use berth_core::{Action, Intent, PlannedAction};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

use crate::observe::{ObjectView, state_of};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindState {
    kind: String,
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Object {
    namespace: String,
    name: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Trigger {
    trigger: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PassResult {
    trigger: String,
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Operation {
    operation: String,
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationKind {
    operation: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Result_ {
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Version {
    version: String,
}

fn duration_histogram() -> Histogram {
    // 1 ms to ~65 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

/// The agent's metrics and their registry.
pub struct Metrics {
    registry: Mutex<Registry>,
    objects: Family<KindState, Gauge>,
    restarts: Family<Object, Counter>,
    passes: Family<PassResult, Counter>,
    pass_duration: Family<Trigger, Histogram, fn() -> Histogram>,
    operations: Family<Operation, Counter>,
    operation_duration: Family<OperationKind, Histogram, fn() -> Histogram>,
    pulls: Family<Result_, Counter>,
    builds: Family<Result_, Counter>,
    replaced: Counter,
    rollbacks: Counter,
    last_sync: Gauge<f64, AtomicU64>,
    sources_ready: Gauge,
    engine_reachable: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Self {
        let m = Metrics {
            registry: Mutex::new(Registry::default()),
            objects: Family::default(),
            restarts: Family::default(),
            passes: Family::default(),
            pass_duration: Family::new_with_constructor(duration_histogram),
            operations: Family::default(),
            operation_duration: Family::new_with_constructor(duration_histogram),
            pulls: Family::default(),
            builds: Family::default(),
            replaced: Counter::default(),
            rollbacks: Counter::default(),
            last_sync: Gauge::default(),
            sources_ready: Gauge::default(),
            engine_reachable: Gauge::default(),
        };
        if let Ok(mut r) = m.registry.lock() {
            r.register(
                "berth_objects",
                "Declared objects on this host by kind and state (Ready, Progressing, Degraded)",
                m.objects.clone(),
            );
            r.register(
                "berth_container_restarts",
                "Restarts of containers by the agent (crashes, failed liveness probes, unhealthy)",
                m.restarts.clone(),
            );
            r.register(
                "berth_passes",
                "Reconcile passes by trigger and result (ok, or error when the engine could not be observed)",
                m.passes.clone(),
            );
            r.register(
                "berth_pass_duration_seconds",
                "Time to observe and plan one pass, by trigger",
                m.pass_duration.clone(),
            );
            r.register(
                "berth_engine_operations",
                "Engine operations (plan actions) by operation and result",
                m.operations.clone(),
            );
            r.register(
                "berth_engine_operation_duration_seconds",
                "Duration of engine operations by operation",
                m.operation_duration.clone(),
            );
            r.register(
                "berth_image_pulls",
                "Image ensure/pull operations by result",
                m.pulls.clone(),
            );
            r.register(
                "berth_builds",
                "Image builds (spec.build) by result",
                m.builds.clone(),
            );
            r.register(
                "berth_rolling_update_replicas",
                "Replicas replaced by a rolling update (start-first promotions)",
                m.replaced.clone(),
            );
            r.register(
                "berth_rollbacks",
                "Replicas restored by a rollback",
                m.rollbacks.clone(),
            );
            r.register(
                "berth_last_successful_sync_timestamp_seconds",
                "Unix time of the last pass that observed the engine and planned",
                m.last_sync.clone(),
            );
            r.register(
                "berth_sources_ready",
                "1 once every source delivered its first complete set",
                m.sources_ready.clone(),
            );
            r.register(
                "berth_engine_reachable",
                "1 while the Docker Engine answers, 0 while the agent waits for it",
                m.engine_reachable.clone(),
            );
            r.register(
                "berth_build",
                "berth's version",
                Info::new(Version {
                    version: env!("CARGO_PKG_VERSION").to_string(),
                }),
            );
        }
        m
    }

    /// The registry in Prometheus' text format (OpenMetrics).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Ok(r) = self.registry.lock() {
            let _ = prometheus_client::encoding::text::encode(&mut out, &r);
        }
        out
    }

    /// A pass ran (`ok`: the engine was observed and a plan made).
    pub fn pass(&self, trigger: &str, took: Duration, ok: bool) {
        self.passes
            .get_or_create(&PassResult {
                trigger: trigger.to_string(),
                result: if ok { "ok" } else { "error" }.into(),
            })
            .inc();
        self.pass_duration
            .get_or_create(&Trigger {
                trigger: trigger.to_string(),
            })
            .observe(took.as_secs_f64());
    }

    /// A restart of one of `key`'s containers was planned.
    pub fn restart(&self, key: &ObjectKey) {
        self.restarts
            .get_or_create(&Object {
                namespace: key.namespace.clone(),
                name: key.name.clone(),
            })
            .inc();
    }

    /// An engine operation finished.
    pub fn operation(&self, a: &PlannedAction, ok: bool, took: Duration) {
        let operation = operation_name(&a.action).to_string();
        let result = if ok { "success" } else { "failure" }.to_string();
        self.operations
            .get_or_create(&Operation {
                operation: operation.clone(),
                result: result.clone(),
            })
            .inc();
        self.operation_duration
            .get_or_create(&OperationKind { operation })
            .observe(took.as_secs_f64());
        match (&a.action, &a.intent) {
            (Action::EnsureImage { .. }, _) => {
                self.pulls.get_or_create(&Result_ { result }).inc();
            }
            (Action::BuildImage { .. }, _) => {
                self.builds.get_or_create(&Result_ { result }).inc();
            }
            (_, Intent::Promote) if ok => {
                self.replaced.inc();
            }
            (_, Intent::RollBackRestore) if ok => {
                self.rollbacks.inc();
            }
            _ => {}
        }
    }

    /// Sets the object gauges from a view's objects.
    pub fn objects(&self, objects: &[ObjectView]) {
        self.objects.clear();
        for kind in ["Container", "Network", "Volume"] {
            for state in ["Ready", "Progressing", "Degraded"] {
                let n = objects
                    .iter()
                    .filter(|o| o.kind == kind && state_of(o).as_str() == state)
                    .count();
                self.objects
                    .get_or_create(&KindState {
                        kind: kind.into(),
                        state: state.into(),
                    })
                    .set(n as i64);
            }
        }
    }

    /// Whether the Docker Engine answers.
    pub fn engine_reachable(&self, up: bool) {
        self.engine_reachable.set(i64::from(up));
    }

    /// A pass observed the engine and planned: sources are ready, the sync time is now.
    pub fn synced(&self) {
        self.sources_ready.set(1);
        self.engine_reachable.set(1);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        self.last_sync.set(now.as_secs_f64());
    }
}

/// The operation label of an action (`pull_image`, `create_container`, …).
pub fn operation_name(action: &Action) -> &'static str {
    match action {
        Action::EnsureImage { .. } => "ensure_image",
        Action::BuildImage { .. } => "build_image",
        Action::CreateNetwork { .. } => "create_network",
        Action::RemoveNetwork { .. } => "remove_network",
        Action::CreateVolume { .. } => "create_volume",
        Action::RemoveVolume { .. } => "remove_volume",
        Action::RemoveContainer { .. } => "remove_container",
        Action::CreateContainer { .. } => "create_container",
        Action::RestartContainer { .. } => "restart_container",
        Action::StopContainer { .. } => "stop_container",
        Action::RenameContainer { .. } => "rename_container",
        Action::UnpauseContainer { .. } => "unpause_container",
        Action::StartContainer { .. } => "start_container",
    }
}
