//! Status back to the cluster: per-object status entries, the `Host` object, the heartbeat
//! Lease and Kubernetes Events. Runs as its own task so that a slow API server never slows
//! the reconcile loop; the loop hands it the latest [`StatusInput`] after every pass.
//!
//! Every write is a server-side apply with the host's own field manager `berth-<host>`; what
//! to write (and whether to write at all) is decided by the pure
//! [`berth_core::conditions::status_update`]. A write's response is remembered, so a write is
//! not repeated while the watch that will bring it back is still on its way.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_api::{HostCapacity, HostObjectState, HostStatus, ObjectKey, ObjectStatus, targets};
use berth_core::WaitReason;
use berth_core::conditions::{HostState, counts, entry, status_update};
use berth_core::merge::Origin;
use berth_sources::directory::{ClusterMeta, Snapshot};
use berth_sources::kube::{KubeView, api_resource};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use serde_json::json;
use tokio::sync::{mpsc, watch};

use crate::host::HostIdentity;

/// How often the heartbeat Lease is renewed.
pub const LEASE_RENEW: Duration = Duration::from_secs(10);
/// Lease duration announced (a host is presumed gone after this without renewal).
pub const LEASE_DURATION_SECONDS: i32 = 40;
/// The `Host` status is rewritten at least this often (its `lastHeartbeatTime`).
pub const HOST_STATUS_EVERY: Duration = Duration::from_secs(300);

/// What the status task needs after a pass.
#[derive(Clone, Debug, Default)]
pub struct StatusInput {
    /// The Kubernetes source's current set (objects, generations, errors, conflicts).
    pub kube: Option<Arc<Snapshot>>,
    /// Objects in force after merging all sources, with their origin.
    pub in_force: BTreeMap<ObjectKey, Origin>,
    /// Objects declared by more than one source: key → message.
    pub conflicts: BTreeMap<ObjectKey, String>,
    /// This host's state of each desired object.
    pub states: BTreeMap<ObjectKey, HostState>,
}

/// Why an Event is recorded (on the custom resource, and in the local API's `events`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventReason {
    /// An engine object was created.
    Created,
    /// A container was replaced (changed spec, rolling update).
    Recreated,
    /// A container was started again after it exited.
    Restarted,
    /// A rolling update made no progress and the previous container was restored.
    RolledBack,
    /// An action failed.
    Failed,
    /// The object starts waiting (`CrashLoopBackOff`, `PolicyViolation`, …).
    Waiting(WaitReason),
}

impl EventReason {
    /// The Event's `reason` (CamelCase).
    pub fn as_str(self) -> &'static str {
        match self {
            EventReason::Created => "Created",
            EventReason::Recreated => "Recreated",
            EventReason::Restarted => "Restarted",
            EventReason::RolledBack => "RolledBack",
            EventReason::Failed => "Failed",
            EventReason::Waiting(w) => w.as_str(),
        }
    }

    /// `Warning` (else `Normal`): failures, rollbacks, and waiting reasons that leave the object
    /// `Degraded`.
    pub fn warning(self) -> bool {
        match self {
            EventReason::Failed | EventReason::RolledBack => true,
            EventReason::Created | EventReason::Recreated | EventReason::Restarted => false,
            EventReason::Waiting(w) => w.degraded(),
        }
    }
}

/// Something worth an Event.
#[derive(Clone, Debug)]
pub struct Happening {
    /// The object.
    pub key: ObjectKey,
    /// Why (its type, `Normal` or `Warning`, follows from it).
    pub reason: EventReason,
    /// Human-readable note (never a Secret value: actions print names and images only).
    pub note: String,
}

/// Handles to the status task.
pub struct StatusTask {
    /// Latest input.
    pub input: watch::Sender<StatusInput>,
    /// Events to publish.
    pub events: mpsc::UnboundedSender<Happening>,
}

/// RFC 3339 with whole seconds (`metav1.Time`).
pub fn now_rfc3339() -> String {
    let now = Timestamp::now();
    Timestamp::from_second(now.as_second())
        .map(|t| t.to_string())
        .unwrap_or_else(|_| now.to_string())
}

/// RFC 3339 with exactly six fractional digits (`metav1.MicroTime`).
pub fn now_micro() -> String {
    let now = Timestamp::now();
    let base = now_rfc3339();
    format!(
        "{}.{:06}Z",
        base.trim_end_matches('Z'),
        now.subsec_microsecond()
    )
}

/// The status writer's state.
pub struct StatusWriter {
    client: kube::Client,
    host: HostIdentity,
    view: KubeView,
    manager: String,
    lease_namespace: String,
    engine_version: String,
    capacity: Option<HostCapacity>,
    /// Status from our own last write per object, with its resourceVersion.
    written: BTreeMap<ObjectKey, (u64, ObjectStatus)>,
    last_host_status: Option<(HostStatus, Instant)>,
    host_object_written: bool,
    last_lease_error: Option<String>,
    recorder: Recorder,
}

impl StatusWriter {
    /// A writer for `host`, reading current statuses from `view`.
    pub fn new(
        client: kube::Client,
        host: HostIdentity,
        view: KubeView,
        lease_namespace: String,
        engine_version: String,
        capacity: Option<HostCapacity>,
    ) -> Self {
        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: "berth.dev/agent".into(),
                instance: Some(host.name.clone()),
            },
        );
        StatusWriter {
            manager: format!("berth-{}", host.name),
            client,
            host,
            view,
            lease_namespace,
            engine_version,
            capacity,
            written: BTreeMap::new(),
            last_host_status: None,
            host_object_written: false,
            last_lease_error: None,
            recorder,
        }
    }

    /// The field manager of this host's writes: `berth-<host>`.
    pub fn field_manager(&self) -> &str {
        &self.manager
    }

    fn params(&self) -> PatchParams {
        PatchParams::apply(&self.manager).force()
    }

    /// Starts the status task: evaluates after every new input and every `LEASE_RENEW`.
    pub fn spawn(mut self) -> StatusTask {
        let (input_tx, mut input_rx) = watch::channel(StatusInput::default());
        let (ev_tx, mut ev_rx) = mpsc::unbounded_channel::<Happening>();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(LEASE_RENEW);
            let mut have_input = false;
            loop {
                tokio::select! {
                    r = input_rx.changed() => {
                        if r.is_err() { break; }
                        have_input = true;
                    }
                    ev = ev_rx.recv() => {
                        let Some(ev) = ev else { break };
                        let input = input_rx.borrow().clone();
                        self.publish(&input, ev).await;
                        continue;
                    }
                    _ = tick.tick() => self.renew_lease().await,
                }
                if have_input {
                    let input = input_rx.borrow_and_update().clone();
                    self.write_statuses(&input).await;
                    self.write_host(&input).await;
                }
            }
        });
        StatusTask {
            input: input_tx,
            events: ev_tx,
        }
    }

    /// Renews the heartbeat Lease (`coordination.k8s.io/v1`, named like the host).
    pub async fn renew_lease(&mut self) {
        let api: Api<k8s_openapi::api::coordination::v1::Lease> =
            Api::namespaced(self.client.clone(), &self.lease_namespace);
        let lease = json!({
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": self.host.name, "namespace": self.lease_namespace,
                         "labels": {"app.kubernetes.io/managed-by": "berth"}},
            "spec": {"holderIdentity": self.host.name,
                     "leaseDurationSeconds": LEASE_DURATION_SECONDS,
                     "renewTime": now_micro()},
        });
        match api
            .patch(&self.host.name, &self.params(), &Patch::Apply(&lease))
            .await
        {
            Ok(_) => {
                if self.last_lease_error.take().is_some() {
                    tracing::info!(namespace = %self.lease_namespace, "heartbeat Lease renewed again");
                }
            }
            Err(e) => {
                let e = e.to_string();
                if self.last_lease_error.as_deref() != Some(e.as_str()) {
                    tracing::warn!(error = %e, namespace = %self.lease_namespace, "cannot renew the heartbeat Lease (logged once until it changes)");
                }
                self.last_lease_error = Some(e);
            }
        }
    }

    /// The objects of the cluster this host must report on, with the entry to write (`None`:
    /// remove this host's entry).
    fn wanted(&self, input: &StatusInput) -> BTreeMap<ObjectKey, (ClusterMeta, Option<HostState>)> {
        let mut out = BTreeMap::new();
        let Some(kube) = &input.kube else {
            return out;
        };
        for (key, decl) in &kube.objects {
            let Some(meta) = kube.cluster.get(key) else {
                continue;
            };
            if !targets(decl.manifest.host_selector(), &self.host.labels) {
                out.insert(key.clone(), (meta.clone(), None));
                continue;
            }
            let state = if let Some(msg) = input.conflicts.get(key) {
                HostState {
                    state: HostObjectState::Degraded,
                    reason: "Conflict".into(),
                    message: msg.clone(),
                    replicas: None,
                    ready_replicas: None,
                    restart_count: None,
                    last_exit_code: None,
                }
            } else if input.in_force.get(key).is_some_and(|o| !o.is_cluster()) {
                HostState {
                    state: HostObjectState::Degraded,
                    reason: "Conflict".into(),
                    message: format!(
                        "the version in force here comes from {}",
                        input.in_force[key]
                    ),
                    replicas: None,
                    ready_replicas: None,
                    restart_count: None,
                    last_exit_code: None,
                }
            } else if let Some(err) = kube
                .errors
                .iter()
                .find(|e| e.file == decl.origin.to_string())
            {
                HostState {
                    state: HostObjectState::Degraded,
                    reason: "InvalidSpec".into(),
                    message: err.to_string(),
                    replicas: None,
                    ready_replicas: None,
                    restart_count: None,
                    last_exit_code: None,
                }
            } else if let Some(s) = input.states.get(key) {
                s.clone()
            } else {
                continue;
            };
            out.insert(key.clone(), (meta.clone(), Some(state)));
        }
        out
    }

    fn current_status(&self, key: &ObjectKey) -> (u64, ObjectStatus) {
        let stored = self.view.get(key).map(|o| version_and_status(&o));
        match (stored, self.written.get(key)) {
            (Some(s), Some(w)) if w.0 > s.0 => w.clone(),
            (Some(s), _) => s,
            (None, Some(w)) => w.clone(),
            (None, None) => (0, ObjectStatus::default()),
        }
    }

    /// Writes the status entries that changed.
    pub async fn write_statuses(&mut self, input: &StatusInput) {
        let now = now_rfc3339();
        for (key, (meta, state)) in self.wanted(input) {
            let (_, current) = self.current_status(&key);
            let previous = current.hosts.iter().find(|e| e.name == self.host.name);
            let own = state
                .as_ref()
                .map(|s| entry(&self.host.name, meta.generation, s, previous, &now));
            let Some(status) = status_update(&self.host.name, meta.generation, own, &current, &now)
            else {
                continue;
            };
            let ar = api_resource(key.kind);
            let api: Api<DynamicObject> =
                Api::namespaced_with(self.client.clone(), &key.namespace, &ar);
            let patch = json!({
                "apiVersion": berth_api::API_VERSION,
                "kind": key.kind.as_str(),
                "status": status,
            });
            match api
                .patch_status(&key.name, &self.params(), &Patch::Apply(&patch))
                .await
            {
                Ok(o) => {
                    tracing::debug!(object = %key, "status written");
                    self.written.insert(key, version_and_status(&o));
                }
                Err(e) => tracing::warn!(object = %key, error = %e, "cannot write status"),
            }
        }
    }

    /// Creates or updates this host's `Host` object, and its status when it changed (or every
    /// [`HOST_STATUS_EVERY`]).
    pub async fn write_host(&mut self, input: &StatusInput) {
        let api: Api<berth_api::Host> = Api::all(self.client.clone());
        if !self.host_object_written {
            let host = json!({
                "apiVersion": berth_api::API_VERSION,
                "kind": "Host",
                "metadata": {"name": self.host.name, "labels": self.host.labels},
                "spec": {},
            });
            match api
                .patch(&self.host.name, &self.params(), &Patch::Apply(&host))
                .await
            {
                Ok(_) => self.host_object_written = true,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot write the Host object");
                    return;
                }
            }
        }
        let health = self.view.health();
        let ready = health.ready && health.last_error.is_none();
        let mut status = HostStatus {
            labels: self.host.labels.clone(),
            engine_version: Some(self.engine_version.clone()),
            agent_version: Some(env!("CARGO_PKG_VERSION").to_string()),
            capacity: self.capacity.clone(),
            last_heartbeat_time: None,
            objects: Some(counts(&input.states)),
            conditions: vec![berth_api::Condition {
                type_: "Ready".into(),
                status: if ready { "True" } else { "False" }.into(),
                reason: if ready {
                    "SourcesComplete"
                } else {
                    "SourceDegraded"
                }
                .into(),
                message: health.last_error.unwrap_or_default(),
                last_transition_time: String::new(),
                observed_generation: None,
            }],
        };
        let unchanged = self
            .last_host_status
            .as_ref()
            .is_some_and(|(s, at)| s == &status && at.elapsed() < HOST_STATUS_EVERY);
        if unchanged {
            return;
        }
        let mut sent = status.clone();
        let now = now_rfc3339();
        sent.last_heartbeat_time = Some(now.clone());
        if let Some(c) = sent.conditions.first_mut() {
            c.last_transition_time = now;
        }
        let patch = json!({"apiVersion": berth_api::API_VERSION, "kind": "Host", "status": sent});
        match api
            .patch_status(&self.host.name, &self.params(), &Patch::Apply(&patch))
            .await
        {
            Ok(_) => {
                status.last_heartbeat_time = None;
                self.last_host_status = Some((status, Instant::now()));
            }
            Err(e) => tracing::warn!(error = %e, "cannot write the Host status"),
        }
    }

    /// Publishes one Event on the custom resource it concerns.
    async fn publish(&self, input: &StatusInput, ev: Happening) {
        let Some(meta) = input.kube.as_ref().and_then(|k| k.cluster.get(&ev.key)) else {
            return;
        };
        let reference = ObjectReference {
            api_version: Some(berth_api::API_VERSION.into()),
            kind: Some(ev.key.kind.as_str().into()),
            name: Some(ev.key.name.clone()),
            namespace: Some(ev.key.namespace.clone()),
            uid: Some(meta.uid.clone()),
            ..Default::default()
        };
        let event = Event {
            type_: if ev.reason.warning() {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: ev.reason.as_str().into(),
            note: Some(format!("{}: {}", self.host.name, ev.note)),
            action: ev.reason.as_str().into(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&event, &reference).await {
            tracing::warn!(object = %ev.key, error = %e, "cannot publish an Event");
        }
    }
}

/// An object's resourceVersion (as a number; 0 when absent or not numeric) and its `status`
/// (default when absent or not in berth's shape).
fn version_and_status(o: &DynamicObject) -> (u64, ObjectStatus) {
    let rv = o
        .metadata
        .resource_version
        .as_deref()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let status = o
        .data
        .get("status")
        .and_then(|s| serde_json::from_value(s.clone()).ok())
        .unwrap_or_default();
    (rv, status)
}

/// The Events a pass is worth: creates, recreates, restarts and failures of objects that came
/// from the cluster.
pub fn happenings(
    plan: &berth_core::Plan,
    outcomes: &[berth_engine::Outcome],
    in_force: &BTreeMap<ObjectKey, Origin>,
) -> Vec<Happening> {
    let from_kube = |k: &ObjectKey| in_force.get(k).is_some_and(Origin::is_cluster);
    all_happenings(plan, outcomes)
        .into_iter()
        .filter(|h| from_kube(&h.key))
        .collect()
}

/// What is worth an Event in an executed plan, for every object (the local API keeps them all).
pub fn all_happenings(
    plan: &berth_core::Plan,
    outcomes: &[berth_engine::Outcome],
) -> Vec<Happening> {
    use berth_core::{Action, Intent};
    let mut out = Vec::new();
    for (a, o) in plan.actions.iter().zip(outcomes) {
        let key = &a.owner.key;
        if let Err(e) = &o.result {
            if !o.skipped {
                out.push(Happening {
                    key: key.clone(),
                    reason: EventReason::Failed,
                    note: format!("{}: {e}", a.action),
                });
            }
            continue;
        }
        let recreate = plan.actions.iter().any(|b| {
            b.owner == a.owner
                && matches!(
                    b.action,
                    Action::RemoveContainer { .. } | Action::StopContainer { .. }
                )
        });
        let reason = match (&a.action, &a.intent) {
            (Action::CreateContainer { .. }, Intent::Surge) => continue,
            (Action::CreateContainer { .. }, _) if recreate => EventReason::Recreated,
            // A start-first rolling update replaces the replica when the new container takes its
            // name; a rollback when the previous one takes it back.
            (Action::RenameContainer { .. }, Intent::Promote) => EventReason::Recreated,
            (Action::RenameContainer { .. }, Intent::RollBackRestore) => EventReason::RolledBack,
            (
                Action::CreateContainer { .. }
                | Action::CreateNetwork { .. }
                | Action::CreateVolume { .. },
                _,
            ) => EventReason::Created,
            (Action::StartContainer { .. }, Intent::Restart { .. }) => EventReason::Restarted,
            _ => continue,
        };
        out.push(Happening {
            key: key.clone(),
            reason,
            note: a.action.to_string(),
        });
    }
    out
}
