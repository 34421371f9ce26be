//! What the agent is doing, for the local API, `berth get`/`describe`/`events` and metrics.
//!
//! The agent loop hands each pass to an [`Observer`], which builds an immutable [`AgentView`]
//! and publishes it on a `watch` channel; the HTTP handlers only read the latest view (and the
//! metrics registry), never the engine or the loop's state. Nothing secret is in a view: env
//! values and file contents are elided (names of Secrets and files stay).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use berth_api::{Condition, HostObjectState, Kind, Manifest, ObjectKey, ObjectStatus};
use berth_core::conditions::{HostState, aggregate, entry};
use berth_core::merge::Merged;
use berth_core::observed::Health;
use berth_core::{Action, DesiredState, ObservedState, Owner, Plan, WaitReason};
use berth_engine::Outcome;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::watch;

use crate::metrics::Metrics;
use crate::status::{EventReason, now_rfc3339};

/// How many recent events a view keeps.
pub const EVENTS_KEPT: usize = 200;

/// The agent's current view, as served by the local API (`GET /v1/view`).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentView {
    /// The agent's `--instance`.
    pub instance: String,
    /// The host's name (`--node-name`).
    pub node: String,
    /// berth's version.
    pub version: String,
    /// RFC 3339 time the agent started.
    pub started_at: String,
    /// True once every source delivered its first complete set (`/readyz`).
    pub sources_ready: bool,
    /// The latest pass, once one ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_pass: Option<PassSummary>,
    /// Set while the Docker Engine does not answer (the agent waits for it; `/readyz` fails).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine_unreachable: Option<EngineOutage>,
    /// Every desired (or blocked) object, sorted by kind, namespace and name. Shared between the
    /// observer and each published view (a pass replaces it; other publications reuse it).
    pub objects: Arc<[ObjectView]>,
    /// Recent events, oldest first (at most [`EVENTS_KEPT`]).
    pub events: Vec<EventView>,
}

/// The Docker Engine does not answer.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EngineOutage {
    /// RFC 3339 time of the first failed attempt.
    pub since: String,
    /// The latest error.
    pub error: String,
}

/// One pass of the loop.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PassSummary {
    /// RFC 3339 time the pass started.
    pub at: String,
    /// What triggered it (`engine event`, `desired state changed`, `periodic relist`, …).
    pub trigger: String,
    /// Observe + plan, in milliseconds (execution runs in the background).
    pub took_ms: u64,
    /// Actions planned.
    pub actions: usize,
    /// Objects that wait (not converging), by reason.
    pub waiting: BTreeMap<String, usize>,
    /// The engine could not be observed: the error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One object in the CRD shape: `apiVersion`, `kind`, `metadata`, `spec`, `status`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectView {
    /// `berth.dev/v1alpha1`.
    pub api_version: String,
    /// `Container`, `Network` or `Volume`.
    pub kind: String,
    /// Name, namespace, and the origin (file:line:column or custom resource) as annotation
    /// `berth.dev/origin`.
    pub metadata: MetaView,
    /// The declared spec (for an object the security policy refused, the version refused), env
    /// values and file contents elided; absent when unknown (`get` without an agent shows what
    /// the engine's labels tell, which holds no spec).
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub spec: Value,
    /// This host's status.
    pub status: StatusView,
}

/// `metadata` of an [`ObjectView`].
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MetaView {
    /// `metadata.name`.
    pub name: String,
    /// `metadata.namespace`.
    pub namespace: String,
    /// When this agent first saw the object declared (RFC 3339); the AGE column.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creation_timestamp: Option<String>,
    /// `berth.dev/origin`: where the object is declared.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// `status` of an [`ObjectView`]: the custom resource's status (conditions and this host's
/// entry, computed by the same functions) plus what only this host knows.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusView {
    /// Conditions (`Ready`, `Progressing`, `Degraded`, …), as in the CRD status.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// This host's entry (state, reason, message, replicas, restart count, last exit code).
    #[serde(default)]
    pub hosts: Vec<berth_api::HostEntry>,
    /// The desired spec hash (`berth.dev/spec-hash`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub spec_hash: String,
    /// Containers only: the image the replicas run, after defaulting — `spec.image`, or the
    /// tag berth builds for `spec.build` without `image` (`berth.local/…`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Containers only: the engine containers of the object (replicas, surge and previous).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub containers: Vec<ReplicaView>,
    /// A retry or restart being delayed (back-off), when there is one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub waiting: Vec<WaitingView>,
}

/// One engine container of a Container object.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplicaView {
    /// Engine name.
    pub name: String,
    /// Engine ID.
    pub id: String,
    /// Replica index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica: Option<u32>,
    /// `created`, `running`, `paused`, `restarting`, `exited`, `removing`, `dead`.
    pub state: String,
    /// Exit code of the last run, for exited containers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i64>,
    /// `starting`, `healthy` or `unhealthy`, with a health check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<String>,
    /// The readiness probe's verdict, with one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready: Option<bool>,
    /// True when it runs the desired spec hash.
    pub current: bool,
}

/// Why a replica or object is not converging now.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WaitingView {
    /// Replica index, for containers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica: Option<u32>,
    /// `CrashLoopBackOff`, `ImagePullBackOff`, `BackOff`, `RollingUpdate`, …
    pub reason: String,
    /// Detail.
    pub message: String,
    /// RFC 3339 time of the next retry, for back-offs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_retry: Option<String>,
}

/// Something that happened (as a Kubernetes Event).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventView {
    /// Sequence number, from 1, increasing (for `events --watch`).
    pub seq: u64,
    /// RFC 3339 time.
    pub time: String,
    /// `Normal` or `Warning`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `Created`, `Recreated`, `Restarted`, `RolledBack`, `Failed`, or a waiting reason
    /// (`CrashLoopBackOff`, `ImagePullBackOff`, …) when an object starts waiting for it.
    pub reason: String,
    /// `Kind/namespace/name`.
    pub object: String,
    /// Detail (never a Secret value).
    pub message: String,
}

/// Builds and publishes the agent's view; owned by the loop.
pub struct Observer {
    tx: watch::Sender<Arc<AgentView>>,
    metrics: Arc<Metrics>,
    base: AgentView,
    events: VecDeque<EventView>,
    /// The waits of the last pass ([`berth_core::Waiting::identity`]): one that is not among them is an
    /// event.
    last_waiting: BTreeSet<(Owner, WaitReason, String)>,
    previous: BTreeMap<ObjectKey, berth_api::HostEntry>,
    conditions: BTreeMap<ObjectKey, Vec<Condition>>,
    first_seen: BTreeMap<ObjectKey, String>,
    seq: u64,
}

impl Observer {
    /// A new observer for `instance` on `node`, with its receiver (for the API) and metrics.
    pub fn new(
        instance: &str,
        node: &str,
        metrics: Arc<Metrics>,
    ) -> (Self, watch::Receiver<Arc<AgentView>>) {
        let base = AgentView {
            instance: instance.to_string(),
            node: node.to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            started_at: now_rfc3339(),
            ..Default::default()
        };
        let (tx, rx) = watch::channel(Arc::new(base.clone()));
        let observer = Observer {
            tx,
            metrics,
            base,
            events: VecDeque::new(),
            last_waiting: BTreeSet::new(),
            previous: BTreeMap::new(),
            conditions: BTreeMap::new(),
            first_seen: BTreeMap::new(),
            seq: 0,
        };
        (observer, rx)
    }

    /// The metrics this observer updates.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    fn push_event(&mut self, reason: EventReason, key: &ObjectKey, message: String) {
        if self.events.len() >= EVENTS_KEPT {
            self.events.pop_front();
        }
        self.seq += 1;
        self.events.push_back(EventView {
            seq: self.seq,
            time: now_rfc3339(),
            type_: if reason.warning() {
                "Warning"
            } else {
                "Normal"
            }
            .into(),
            reason: reason.as_str().into(),
            object: format!("{}/{}/{}", key.kind.as_str(), key.namespace, key.name),
            message,
        });
    }

    /// Publishes that the agent waits for its sources (no pass yet).
    pub fn waiting_for_sources(&mut self) {
        self.base.sources_ready = false;
        self.publish(self.base.objects.clone());
    }

    /// Publishes whether the engine answers: `Some((how long ago it stopped, the latest
    /// error))` while it does not.
    pub fn engine(&mut self, outage: Option<(Duration, &str)>) {
        let now = outage.map(|(ago, error)| EngineOutage {
            since: rfc3339_ago(ago),
            error: error.to_string(),
        });
        if now.is_none() && self.base.engine_unreachable.is_none() {
            return;
        }
        self.metrics.engine_reachable(now.is_none());
        self.base.engine_unreachable = now;
        self.publish(self.base.objects.clone());
    }

    /// Records a planned pass and publishes the new view.
    #[allow(clippy::too_many_arguments)]
    pub fn pass(
        &mut self,
        trigger: &str,
        started: Instant,
        merged: &Merged,
        desired: &DesiredState,
        observed: &ObservedState,
        plan: &Plan,
        states: &BTreeMap<ObjectKey, HostState>,
    ) {
        let took = started.elapsed();
        self.metrics.pass(trigger, took, true);
        for a in &plan.actions {
            if matches!(
                a.action,
                Action::StartContainer { restart: true, .. } | Action::RestartContainer { .. }
            ) {
                self.metrics.restart(&a.owner.key);
            }
        }
        // A waiting reason that appears, or whose message changes, is an event (once, not on
        // every pass; a back-off's counting message is not a change).
        let mut now_waiting = BTreeSet::new();
        for w in &plan.waiting {
            if w.reason == WaitReason::InProgress {
                continue;
            }
            let k = w.identity();
            if !self.last_waiting.contains(&k) {
                let reason = EventReason::Waiting(w.reason);
                self.push_event(reason, &w.owner.key, w.message.clone());
            }
            now_waiting.insert(k);
        }
        self.last_waiting = now_waiting;
        let mut waiting: BTreeMap<String, usize> = BTreeMap::new();
        for w in &plan.waiting {
            *waiting.entry(w.reason.as_str().to_string()).or_default() += 1;
        }
        self.base.sources_ready = true;
        self.base.last_pass = Some(PassSummary {
            at: rfc3339_ago(took),
            trigger: trigger.to_string(),
            took_ms: took.as_millis() as u64,
            actions: plan.actions.len(),
            waiting,
            error: None,
        });
        let objects = self.objects(merged, desired, observed, plan, states);
        self.metrics.objects(&objects);
        self.metrics.synced();
        self.publish(objects.into());
    }

    /// Records a pass that could not observe the engine.
    pub fn pass_failed(&mut self, trigger: &str, started: Instant, error: &str) {
        let took = started.elapsed();
        self.metrics.pass(trigger, took, false);
        self.base.last_pass = Some(PassSummary {
            at: rfc3339_ago(took),
            trigger: trigger.to_string(),
            took_ms: took.as_millis() as u64,
            error: Some(error.to_string()),
            ..Default::default()
        });
        self.publish(self.base.objects.clone());
    }

    /// Records an executed plan: engine operation metrics and events.
    pub fn executed(&mut self, plan: &Plan, outcomes: &[Outcome]) {
        for (a, o) in plan.actions.iter().zip(outcomes) {
            if !o.skipped {
                self.metrics.operation(a, o.result.is_ok(), o.took);
            }
        }
        for h in crate::status::all_happenings(plan, outcomes) {
            self.push_event(h.reason, &h.key, h.note);
        }
        self.publish(self.base.objects.clone());
    }

    fn publish(&mut self, objects: Arc<[ObjectView]>) {
        self.base.objects = objects;
        self.base.events = self.events.iter().cloned().collect();
        self.tx.send_replace(Arc::new(self.base.clone()));
    }

    fn objects(
        &mut self,
        merged: &Merged,
        desired: &DesiredState,
        observed: &ObservedState,
        plan: &Plan,
        states: &BTreeMap<ObjectKey, HostState>,
    ) -> Vec<ObjectView> {
        let now = now_rfc3339();
        let mut out = Vec::new();
        let mut entries = BTreeMap::new();
        let mut conditions = BTreeMap::new();
        for (key, s) in states {
            let e = entry(&self.base.node, 0, s, self.previous.get(key), &now);
            let previous = self.conditions.get(key).map(Vec::as_slice).unwrap_or(&[]);
            let (conds, _) = aggregate(0, std::slice::from_ref(&e), previous, &now);
            // The object's spec as declared, as kubectl shows it: for a refused object the
            // version refused (its status says what runs).
            let manifest = merged.refused.get(key).or_else(|| merged.objects.get(key));
            let spec = manifest
                .map(|d| redacted_spec(&d.manifest))
                .unwrap_or(Value::Null);
            let mut annotations = BTreeMap::new();
            if let Some(d) = manifest {
                annotations.insert("berth.dev/origin".to_string(), d.origin.to_string());
            }
            let image = desired.containers.get(key).map(|c| c.config.image.clone());
            let spec_hash = match key.kind {
                Kind::Container => desired.containers.get(key).map(|c| c.hash.clone()),
                Kind::Network => desired.networks.get(key).map(|n| n.hash.clone()),
                Kind::Volume => desired.volumes.get(key).map(|v| v.hash.clone()),
            }
            .unwrap_or_default();
            let containers = observed
                .containers
                .iter()
                .filter(|c| c.key.as_ref() == Some(key))
                .map(|c| ReplicaView {
                    name: c.name.clone(),
                    id: c.id.clone(),
                    replica: c.replica,
                    state: format!("{:?}", c.state).to_lowercase(),
                    exit_code: c.exit_code,
                    health: c.health.map(|h| {
                        match h {
                            Health::Starting => "starting",
                            Health::Healthy => "healthy",
                            Health::Unhealthy => "unhealthy",
                        }
                        .to_string()
                    }),
                    ready: c.probe.as_ref().and_then(|p| p.ready),
                    current: c.hash.as_deref() == Some(spec_hash.as_str()),
                })
                .collect();
            let waiting = plan
                .waiting
                .iter()
                .filter(|w| &w.owner.key == key)
                .map(|w| WaitingView {
                    replica: w.owner.replica,
                    reason: w.reason.as_str().to_string(),
                    message: w.message.clone(),
                    next_retry: w
                        .until
                        .map(|t| rfc3339_in(t.saturating_duration_since(Instant::now()))),
                })
                .collect();
            out.push(ObjectView {
                api_version: berth_api::API_VERSION.into(),
                kind: key.kind.as_str().into(),
                metadata: MetaView {
                    name: key.name.clone(),
                    namespace: key.namespace.clone(),
                    creation_timestamp: Some(
                        self.first_seen
                            .entry(key.clone())
                            .or_insert_with(|| now.clone())
                            .clone(),
                    ),
                    annotations,
                },
                spec,
                status: StatusView {
                    conditions: conds.clone(),
                    hosts: vec![e.clone()],
                    spec_hash,
                    image,
                    containers,
                    waiting,
                },
            });
            entries.insert(key.clone(), e);
            conditions.insert(key.clone(), conds);
        }
        self.first_seen.retain(|k, _| states.contains_key(k));
        self.previous = entries;
        self.conditions = conditions;
        out
    }
}

/// The object's status in the custom resource's shape (for `-o json`/`-o yaml` readers that
/// want only that).
pub fn crd_status(v: &StatusView) -> ObjectStatus {
    ObjectStatus {
        observed_generation: None,
        conditions: v.conditions.clone(),
        hosts: v.hosts.clone(),
    }
}

/// The state of an object view (`Ready`, `Progressing`, `Degraded`).
pub fn state_of(v: &ObjectView) -> HostObjectState {
    v.status.hosts.first().map(|e| e.state).unwrap_or_default()
}

/// A manifest's spec as JSON with every `env[].value` and `files[].content` replaced by
/// `<elided: N bytes>` (their names and paths stay).
pub fn redacted_spec(m: &Manifest) -> Value {
    let mut spec = match m {
        Manifest::Container { spec, .. } => serde_json::to_value(&**spec),
        Manifest::Network { spec, .. } => serde_json::to_value(spec),
        Manifest::Volume { spec, .. } => serde_json::to_value(spec),
    }
    .unwrap_or(Value::Null);
    for (list, field) in [("env", "value"), ("files", "content")] {
        if let Some(items) = spec.get_mut(list).and_then(Value::as_array_mut) {
            for item in items {
                if let Some(v) = item.get_mut(field)
                    && let Some(s) = v.as_str()
                {
                    *v = Value::String(format!("<elided: {} bytes>", s.len()));
                }
            }
        }
    }
    spec
}

fn unix_now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

fn rfc3339_at(since_epoch: Duration) -> String {
    k8s_openapi::jiff::Timestamp::from_second(since_epoch.as_secs() as i64)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

/// RFC 3339 time `d` ago.
fn rfc3339_ago(d: Duration) -> String {
    rfc3339_at(unix_now().saturating_sub(d))
}

/// RFC 3339 time `d` from now.
fn rfc3339_in(d: Duration) -> String {
    rfc3339_at(unix_now() + d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_api::{ContainerSpec, EnvVar, File, ManifestMetadata};

    /// An object the security policy refuses (here one of the manifest directory, which has no
    /// custom resource to carry an Event) is in the local API: a Warning Event
    /// `PolicyViolation` with the refusal, once, and its Degraded state with the same message.
    #[test]
    fn a_policy_refusal_is_a_warning_event_and_a_degraded_state() {
        let key = ObjectKey::new(Kind::Container, "app", "bad");
        let why = "refused by the baseline profile of the directory source: m.yaml:9:12: spec.capAdd[0]: …";
        let (mut observer, rx) = Observer::new("i", "host", Arc::new(Metrics::new()));
        for _ in 0..2 {
            refused_pass(&mut observer, &key, why);
        }
        let view = rx.borrow().clone();
        let events: Vec<_> = view
            .events
            .iter()
            .filter(|e| e.object == "Container/app/bad")
            .collect();
        assert_eq!(events.len(), 1, "once, not once per pass: {events:?}");
        assert_eq!(
            (events[0].type_.as_str(), events[0].reason.as_str()),
            ("Warning", "PolicyViolation")
        );
        assert_eq!(events[0].message, why);
        let object = view
            .objects
            .iter()
            .find(|o| o.metadata.name == "bad")
            .expect("listed");
        let host = &object.status.hosts[0];
        assert_eq!(
            (host.reason.as_str(), host.message.as_str()),
            ("PolicyViolation", why)
        );
    }

    /// One pass in which `key` is refused with `why`.
    fn refused_pass(observer: &mut Observer, key: &ObjectKey, why: &str) {
        refused_pass_of(observer, key, why, &Merged::default());
    }

    /// One pass in which `key` is refused with `why`; `merged` holds what was declared.
    fn refused_pass_of(observer: &mut Observer, key: &ObjectKey, why: &str, merged: &Merged) {
        let mut desired = DesiredState::default();
        desired.refused.insert(key.clone(), why.into());
        let observed = ObservedState::default();
        let retries = berth_core::backoff::RetryBook::default();
        let plan = berth_core::plan(&desired, &observed, &retries, Instant::now());
        let states = berth_core::conditions::host_states(&desired, &observed, &plan, &retries);
        observer.pass(
            "test",
            Instant::now(),
            merged,
            &desired,
            &observed,
            &plan,
            &states,
        );
    }

    /// A refusal whose violations change (one field fixed, another left) is a new event, as on
    /// the Kubernetes side; the same refusal again is not.
    #[test]
    fn a_refusal_whose_message_changes_is_a_new_event() {
        let key = ObjectKey::new(Kind::Container, "app", "bad");
        let both = "refused by the baseline profile of the directory source: m.yaml:9:12: spec.capAdd[0]: …; m.yaml:10:3: spec.privileged: …";
        let one = "refused by the baseline profile of the directory source: m.yaml:9:12: spec.capAdd[0]: …";
        let (mut observer, rx) = Observer::new("i", "host", Arc::new(Metrics::new()));
        for why in [both, both, one, one] {
            refused_pass(&mut observer, &key, why);
        }
        let messages: Vec<String> = rx
            .borrow()
            .events
            .iter()
            .filter(|e| e.object == "Container/app/bad" && e.reason == "PolicyViolation")
            .map(|e| e.message.clone())
            .collect();
        assert_eq!(messages, [both, one]);
    }

    /// A refused object with no version applied before shows its spec as declared (what was
    /// refused), as kubectl shows an object's spec; a view without a spec (the engine's labels)
    /// leaves the key out rather than `"spec": null`.
    #[test]
    fn a_refused_object_shows_its_declared_spec_and_an_unknown_one_is_left_out() {
        let key = ObjectKey::new(Kind::Container, "app", "bad");
        let manifest = Manifest::Container {
            metadata: ManifestMetadata {
                name: "bad".into(),
                namespace: Some("app".into()),
                ..Default::default()
            },
            spec: std::sync::Arc::new(ContainerSpec {
                image: Some("busybox".into()),
                cap_add: vec!["SYS_ADMIN".into()],
                ..Default::default()
            }),
        };
        let origin = berth_core::merge::Origin::File {
            path: "m.yaml".into(),
            line: 1,
            column: 1,
        };
        let mut merged = Merged::default();
        merged.refused.insert(
            key.clone(),
            berth_core::merge::Declaration::new(manifest, origin),
        );
        let (mut observer, rx) = Observer::new("i", "host", Arc::new(Metrics::new()));
        refused_pass_of(&mut observer, &key, "refused", &merged);
        let view = serde_json::to_value(&**rx.borrow()).expect("json");
        let object = &view["objects"][0];
        assert_eq!(object["spec"]["image"], "busybox", "{object}");
        assert_eq!(object["spec"]["capAdd"][0], "SYS_ADMIN", "{object}");
        assert_eq!(
            object["metadata"]["annotations"]["berth.dev/origin"],
            "m.yaml:1:1"
        );
        let unknown = serde_json::to_value(ObjectView::default()).expect("json");
        assert!(unknown.get("spec").is_none(), "{unknown}");
    }

    #[test]
    fn spec_elides_env_values_and_file_contents() {
        let m = Manifest::Container {
            metadata: ManifestMetadata {
                name: "web".into(),
                ..Default::default()
            },
            spec: std::sync::Arc::new(ContainerSpec {
                image: Some("nginx".into()),
                env: vec![EnvVar {
                    name: "PASSWORD".into(),
                    value: "hunter2".into(),
                    ..Default::default()
                }],
                files: vec![File {
                    path: "/etc/secret".into(),
                    content: "top secret".into(),
                    ..Default::default()
                }],
                ..Default::default()
            }),
        };
        let text = redacted_spec(&m).to_string();
        assert!(
            !text.contains("hunter2") && !text.contains("top secret"),
            "{text}"
        );
        assert!(
            text.contains("PASSWORD") && text.contains("/etc/secret"),
            "{text}"
        );
        assert!(text.contains("<elided: 7 bytes>"), "{text}");
    }
}
