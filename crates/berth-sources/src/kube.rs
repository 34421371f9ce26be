//! `KubeSource`: berth custom resources (`Container`, `Network`, `Volume`) in a Kubernetes
//! cluster, with the Secrets and ConfigMaps their `valueFrom` fields name.
//!
//! kube-runtime watchers feed reflector stores (one per resource type and watched namespace).
//! After any change the source rebuilds its full set from the stores and publishes it, like
//! [`crate::directory::DirectorySource`]:
//!
//! - nothing is published before *every* store has completed its initial list (the reflector
//!   swaps a complete list in atomically), so nothing is removed before the source is complete;
//! - API errors and watch restarts leave the stores — and so the published set — as they were:
//!   the last complete view stays in force while the API server is unreachable, and a relist
//!   is swapped in only once it has completed;
//! - each object is decoded through the same types and validation as a manifest file
//!   ([`crate::decode::decode_object`]); an object that does not decode, or whose Secret or
//!   ConfigMap key is missing, keeps its last-known-good version and is reported;
//! - status writes by the agents change neither `spec` nor `generation`, so they do not change
//!   the published set and trigger no pass.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth_api::{Kind, Manifest, ObjectKey, ValueFrom};
use berth_core::merge::{Declaration, Origin, merge};
use futures_util::stream::{BoxStream, StreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::utils::Backoff;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use tokio::sync::watch;

use crate::decode::{DecodeError, decode_object};
use crate::directory::{ClusterMeta, Snapshot};

/// The `ApiResource` of a berth kind (`berth.dev/v1alpha1`, plural `containers` etc.).
pub fn api_resource(kind: Kind) -> ApiResource {
    let plural = match kind {
        Kind::Container => "containers",
        Kind::Network => "networks",
        Kind::Volume => "volumes",
    };
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(berth_api::GROUP, berth_api::VERSION, kind.as_str()),
        plural,
    )
}

/// Values of Secrets and ConfigMaps, by (namespace, name) then key.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RefData {
    /// Secret data (decoded bytes).
    pub secrets: BTreeMap<(String, String), BTreeMap<String, Vec<u8>>>,
    /// ConfigMap data.
    pub config_maps: BTreeMap<(String, String), BTreeMap<String, String>>,
}

impl RefData {
    /// The value of `from` in `namespace`: `Ok(None)` when it is missing and optional,
    /// `Err(why)` when it is missing and required or not UTF-8. `why` names the object and key,
    /// never a value.
    pub fn value(&self, namespace: &str, from: &ValueFrom) -> Result<Option<String>, String> {
        let (what, r, found) = if let Some(r) = &from.secret_key_ref {
            let found = self
                .secrets
                .get(&(namespace.to_string(), r.name.clone()))
                .map(|d| d.get(&r.key).map(|v| String::from_utf8(v.clone())));
            ("Secret", r, found)
        } else if let Some(r) = &from.config_map_key_ref {
            let found = self
                .config_maps
                .get(&(namespace.to_string(), r.name.clone()))
                .map(|d| d.get(&r.key).map(|v| Ok(v.clone())));
            ("ConfigMap", r, found)
        } else {
            return Err("valueFrom names neither a Secret nor a ConfigMap".into());
        };
        match found {
            Some(Some(Ok(v))) => Ok(Some(v)),
            Some(Some(Err(_))) => Err(format!(
                "{what} {namespace}/{} key {:?} is not UTF-8 text",
                r.name, r.key
            )),
            _ if r.optional => Ok(None),
            Some(None) => Err(format!(
                "{what} {namespace}/{} has no key {:?}",
                r.name, r.key
            )),
            None => Err(format!("{what} {namespace}/{} does not exist", r.name)),
        }
    }
}

/// Replaces every `valueFrom` of a `Container` by the value it names (an optional, missing
/// value drops the variable, as Kubernetes does, or leaves the file empty).
///
/// # Errors
/// The first missing required reference, as `(field path, message)`; messages never hold values.
pub fn resolve_value_from(manifest: &mut Manifest, data: &RefData) -> Result<(), (String, String)> {
    let Manifest::Container { metadata, spec } = manifest else {
        return Ok(());
    };
    let ns = metadata.namespace_or_default().to_string();
    let spec = std::sync::Arc::make_mut(spec);
    let mut env = Vec::with_capacity(spec.env.len());
    for (i, mut e) in std::mem::take(&mut spec.env).into_iter().enumerate() {
        match e.value_from.take() {
            None => env.push(e),
            Some(from) => match data.value(&ns, &from) {
                Ok(Some(v)) => {
                    e.value = v;
                    env.push(e);
                }
                Ok(None) => {}
                Err(why) => return Err((format!("spec.env[{i}].valueFrom"), why)),
            },
        }
    }
    spec.env = env;
    for (i, f) in spec.files.iter_mut().enumerate() {
        if let Some(from) = f.value_from.take() {
            match data.value(&ns, &from) {
                Ok(v) => f.content = v.unwrap_or_default(),
                Err(why) => return Err((format!("spec.files[{i}].valueFrom"), why)),
            }
        }
    }
    Ok(())
}

/// The pure half of the source: turns the cluster's objects into a full set, remembering each
/// object's last-known-good version.
#[derive(Debug, Default)]
pub struct KubeSet {
    good: BTreeMap<ObjectKey, (Declaration, ClusterMeta)>,
    previous: BTreeMap<ObjectKey, Declaration>,
}

impl KubeSet {
    /// Builds the full set from every object currently in the cluster (as JSON, the server's
    /// representation) and the Secret and ConfigMap data.
    pub fn rebuild<'a>(
        &mut self,
        objects: impl IntoIterator<Item = &'a serde_json::Value>,
        data: &RefData,
    ) -> Snapshot {
        let mut errors = Vec::new();
        let mut unknown = Vec::new();
        let mut good = BTreeMap::new();
        for value in objects {
            let kind = value.get("kind").and_then(|v| v.as_str()).unwrap_or("?");
            let meta = value.get("metadata");
            let get = |f: &str| {
                meta.and_then(|m| m.get(f))
                    .and_then(|v| v.as_str())
                    .unwrap_or_default()
                    .to_string()
            };
            let ns = get("namespace");
            let name = get("name");
            let origin = Origin::Cluster {
                kind: kind.to_string(),
                namespace: ns.clone(),
                name: name.clone(),
            };
            let cluster = ClusterMeta {
                generation: meta
                    .and_then(|m| m.get("generation"))
                    .and_then(|v| v.as_i64())
                    .unwrap_or(0),
                uid: get("uid"),
            };
            let origin_text = origin.to_string();
            let decoded = decode_object(&origin_text, value).and_then(|mut m| {
                resolve_value_from(&mut m, data)
                    .map(|()| m)
                    .map_err(|(field, message)| {
                        vec![DecodeError {
                            file: origin_text.clone(),
                            line: 0,
                            column: 0,
                            field: Some(field),
                            message,
                        }]
                    })
            });
            match decoded {
                Ok(manifest) => {
                    let key = manifest.key();
                    good.insert(key, (Declaration::new(manifest, origin.clone()), cluster));
                }
                Err(mut errs) => {
                    // Keep the last-known-good version of this very object (same uid).
                    let prev = Kind::parse(kind)
                        .map(|k| ObjectKey::new(k, ns.clone(), name.clone()))
                        .and_then(|key| {
                            self.good
                                .get(&key)
                                .filter(|(_, c)| c.uid == cluster.uid)
                                .map(|p| (key, p.clone()))
                        });
                    match prev {
                        Some((key, prev)) => {
                            good.insert(key, prev);
                            for e in &mut errs {
                                e.message
                                    .push_str(" (its last-known-good version stays in force)");
                            }
                        }
                        // Unknown since the agent started: what it declared may be running.
                        None => unknown.push(origin_text),
                    }
                    errors.append(&mut errs);
                }
            }
        }
        self.good = good;
        let merged = merge(
            &self.previous,
            self.good.values().map(|(d, _)| d.clone()).collect(),
        );
        self.previous = merged.objects.clone();
        Snapshot {
            incomplete: (!unknown.is_empty()).then(|| {
                format!(
                    "custom resources not decoded since the agent started: {}",
                    unknown.join(", ")
                )
            }),
            cluster: self
                .good
                .iter()
                .filter(|(k, _)| merged.objects.contains_key(k))
                .map(|(k, (_, c))| (k.clone(), c.clone()))
                .collect(),
            objects: merged.objects,
            errors,
            conflicts: merged.conflicts,
        }
    }
}

/// What to watch.
#[derive(Clone, Debug)]
pub struct KubeSourceConfig {
    /// Namespaces to watch; empty: all namespaces.
    pub namespaces: Vec<String>,
    /// First retry delay after an API error (doubles up to `retry_cap`).
    pub retry_initial: Duration,
    /// Largest retry delay.
    pub retry_cap: Duration,
    /// Quiet time collected after a change before the set is rebuilt.
    pub debounce: Duration,
}

impl Default for KubeSourceConfig {
    fn default() -> Self {
        KubeSourceConfig {
            namespaces: Vec::new(),
            retry_initial: Duration::from_millis(800),
            retry_cap: Duration::from_secs(30),
            debounce: Duration::from_millis(50),
        }
    }
}

/// Exponential retry delays for the watchers (reset after a success).
#[derive(Clone, Debug)]
struct RetryDelays {
    initial: Duration,
    cap: Duration,
    next: Duration,
}

impl Iterator for RetryDelays {
    type Item = Duration;
    fn next(&mut self) -> Option<Duration> {
        let d = self.next;
        self.next = (self.next * 2).min(self.cap);
        Some(d)
    }
}

impl Backoff for RetryDelays {
    fn reset(&mut self) {
        self.next = self.initial;
    }
}

/// Health of the source, for the Host status and logs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SourceHealth {
    /// Every store completed its initial list.
    pub ready: bool,
    /// The last watcher error, cleared by the next successful event of that watcher.
    pub last_error: Option<String>,
}

/// Watcher errors as they happen. A watcher that recovers emits nothing until the next change
/// (bookmarks are not events), so an error counts as current only while it is fresh: a failing
/// watcher retries, and fails again, at least every `retry_cap`.
#[derive(Debug)]
struct HealthState {
    ready: bool,
    errors: Vec<Option<(String, Instant)>>,
    fresh: Duration,
}

impl HealthState {
    fn current_error(&self) -> Option<&(String, Instant)> {
        self.errors
            .iter()
            .flatten()
            .find(|(_, at)| at.elapsed() <= self.fresh)
    }
}

/// Read access to the cluster's current objects (for status writing), shared with the source.
#[derive(Clone)]
pub struct KubeView {
    stores: Vec<(Kind, Store<DynamicObject>)>,
    health: Arc<Mutex<HealthState>>,
}

impl KubeView {
    /// The object `key` as the cluster holds it now (with its `status`), if it is in a store.
    pub fn get(&self, key: &ObjectKey) -> Option<Arc<DynamicObject>> {
        let r = ObjectRef::<DynamicObject>::new_with(&key.name, api_resource(key.kind))
            .within(&key.namespace);
        self.stores
            .iter()
            .filter(|(k, _)| *k == key.kind)
            .find_map(|(_, s)| s.get(&r))
    }

    /// Current health.
    pub fn health(&self) -> SourceHealth {
        self.health
            .lock()
            .map(|h| SourceHealth {
                ready: h.ready,
                last_error: h.current_error().map(|(e, _)| e.clone()),
            })
            .unwrap_or_default()
    }
}

/// Berth custom resources in a Kubernetes cluster; see the module docs.
pub struct KubeSource {
    client: Client,
    config: KubeSourceConfig,
}

/// Drops `metadata.managedFields` before an object enters a store: nothing here reads them, and
/// an API server keeps one entry per field manager, so one per host that wrote the object's
/// status (every agent would cache every host's entry of every object it watches).
fn forget_managed_fields<K: kube::Resource>(o: &mut K) {
    o.meta_mut().managed_fields = None;
}

/// A watcher's news for the rebuild loop: its index, and what it saw (or its error).
type Tick = (usize, Result<Seen, String>);

/// What one watcher event means for the full set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Seen {
    /// The watcher's initial list is complete.
    init_done: bool,
    /// The set may have changed: anything but an object applied again with the same
    /// [`fingerprint`].
    changed: bool,
}

/// What the full set reads of a custom resource: `decode_object` reads labels, annotations and
/// `spec`, the cluster metadata uid and generation. Status writes (every host's, fleet-wide)
/// change none of it, so they cost no rebuild of the set.
fn fingerprint(o: &DynamicObject) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    o.metadata.uid.hash(&mut h);
    o.metadata.generation.hash(&mut h);
    o.metadata.labels.hash(&mut h);
    o.metadata.annotations.hash(&mut h);
    o.data.get("spec").map(|s| s.to_string()).hash(&mut h);
    h.finish()
}

/// The fingerprints of one watcher's custom resources, by namespace and name.
#[derive(Debug, Default)]
struct Fingerprints(std::collections::HashMap<(Option<String>, Option<String>), u64>);

impl Fingerprints {
    fn tick(&mut self, i: usize, r: Result<watcher::Event<DynamicObject>, watcher::Error>) -> Tick {
        let key = |o: &DynamicObject| (o.metadata.namespace.clone(), o.metadata.name.clone());
        let changed = match &r {
            Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) => {
                let fp = fingerprint(o);
                self.0.insert(key(o), fp) != Some(fp)
            }
            Ok(watcher::Event::Delete(o)) => {
                self.0.remove(&key(o));
                true
            }
            Ok(watcher::Event::Init) => {
                self.0.clear();
                true
            }
            Ok(watcher::Event::InitDone) | Err(_) => true,
        };
        let (i, r) = tick(i, r);
        (i, r.map(|s| Seen { changed, ..s }))
    }
}

impl KubeSource {
    /// A source reading through `client`.
    pub fn new(client: Client, config: KubeSourceConfig) -> Self {
        KubeSource { client, config }
    }

    fn scopes(&self) -> Vec<Option<String>> {
        if self.config.namespaces.is_empty() {
            vec![None]
        } else {
            self.config.namespaces.iter().cloned().map(Some).collect()
        }
    }

    fn backoff(&self) -> RetryDelays {
        RetryDelays {
            initial: self.config.retry_initial,
            cap: self.config.retry_cap,
            next: self.config.retry_initial,
        }
    }

    /// The store and watch stream (as the `i`-th watcher) of a kind that manifests reference
    /// (`valueFrom`): Secrets, ConfigMaps.
    fn referenced<K>(
        &self,
        scope: Option<&str>,
        wc: &watcher::Config,
        i: usize,
    ) -> (Store<K>, BoxStream<'static, Tick>)
    where
        K: kube::Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + std::fmt::Debug
            + serde::de::DeserializeOwned
            + Send
            + Sync
            + 'static,
    {
        let api: Api<K> = match scope {
            Some(ns) => Api::namespaced(self.client.clone(), ns),
            None => Api::all(self.client.clone()),
        };
        let (reader, writer) = reflector::store();
        let stream = reflector::reflector(
            writer,
            watcher(api, wc.clone()).modify(forget_managed_fields),
        )
        .backoff(self.backoff())
        .map(move |r| tick(i, r))
        .boxed();
        (reader, stream)
    }

    /// Starts the watchers and publishes each complete set on the returned channel (`None` until
    /// every store has completed its initial list). Runs until the receiver is dropped.
    pub fn watch(self) -> (watch::Receiver<Option<Arc<Snapshot>>>, KubeView) {
        let (tx, rx) = watch::channel(None);
        let health = Arc::new(Mutex::new(HealthState {
            ready: false,
            errors: Vec::new(),
            fresh: self.config.retry_cap * 3,
        }));
        let mut streams: Vec<BoxStream<'static, Tick>> = Vec::new();
        let mut names: Vec<String> = Vec::new();
        let mut crd_stores = Vec::new();
        let mut secret_stores = Vec::new();
        let mut cm_stores = Vec::new();
        let wc = watcher::Config::default();
        for scope in self.scopes() {
            let where_ = scope.clone().unwrap_or_else(|| "all namespaces".into());
            for kind in [Kind::Network, Kind::Volume, Kind::Container] {
                let ar = api_resource(kind);
                let api: Api<DynamicObject> = match &scope {
                    Some(ns) => Api::namespaced_with(self.client.clone(), ns, &ar),
                    None => Api::all_with(self.client.clone(), &ar),
                };
                let writer = reflector::store::Writer::<DynamicObject>::new(ar.clone());
                let reader = writer.as_reader();
                let i = streams.len();
                names.push(format!("{kind} ({where_})"));
                let mut fingerprints = Fingerprints::default();
                streams.push(
                    reflector::reflector(
                        writer,
                        watcher(api, wc.clone()).modify(forget_managed_fields),
                    )
                    .backoff(self.backoff())
                    .map(move |r| fingerprints.tick(i, r))
                    .boxed(),
                );
                crd_stores.push((kind, reader));
            }
            let (reader, stream) = self.referenced::<Secret>(scope.as_deref(), &wc, streams.len());
            names.push(format!("Secret ({where_})"));
            streams.push(stream);
            secret_stores.push(reader);
            let (reader, stream) =
                self.referenced::<ConfigMap>(scope.as_deref(), &wc, streams.len());
            names.push(format!("ConfigMap ({where_})"));
            streams.push(stream);
            cm_stores.push(reader);
        }
        let view = KubeView {
            stores: crd_stores.clone(),
            health: health.clone(),
        };
        let debounce = self.config.debounce;
        tokio::spawn(async move {
            let mut ready = vec![false; streams.len()];
            if let Ok(mut h) = health.lock() {
                h.errors = vec![None; streams.len()];
            }
            let mut events = futures_util::stream::select_all(streams);
            let mut set = KubeSet::default();
            loop {
                let first = tokio::select! {
                    t = events.next() => t,
                    _ = tx.closed() => None,
                };
                let Some(first) = first else { break };
                let mut batch = vec![first];
                let quiet = tokio::time::sleep(debounce);
                tokio::pin!(quiet);
                loop {
                    tokio::select! {
                        t = events.next() => match t {
                            Some(t) => batch.push(t),
                            None => break,
                        },
                        _ = &mut quiet => break,
                    }
                }
                let Ok(mut h) = health.lock() else { break };
                let mut changed = false;
                for (i, r) in batch {
                    match r {
                        Ok(Seen {
                            init_done,
                            changed: c,
                        }) => {
                            changed |= c;
                            if init_done && !ready[i] {
                                tracing::debug!(watch = %names[i], "initial list complete");
                            }
                            ready[i] |= init_done;
                            if let Some((e, _)) = h.errors[i].take() {
                                tracing::info!(watch = %names[i], after = %e, "watch recovered");
                            }
                        }
                        Err(e) => {
                            let fresh = h.fresh;
                            let repeat = h.errors[i]
                                .as_ref()
                                .is_some_and(|(old, at)| *old == e && at.elapsed() <= fresh);
                            if !repeat {
                                tracing::warn!(watch = %names[i], error = %e, "Kubernetes API error; the last complete set stays in force");
                            }
                            h.errors[i] = Some((e, Instant::now()));
                        }
                    }
                }
                let all_ready = ready.iter().all(|r| *r);
                h.ready = all_ready;
                drop(h);
                // Only status writes (or errors, whose stores stay as they were): the set is
                // the one already published; rebuilding it would decode every object again.
                if !all_ready || !changed {
                    continue;
                }
                let data = ref_data(&secret_stores, &cm_stores);
                let objects: Vec<serde_json::Value> = crd_stores
                    .iter()
                    .flat_map(|(kind, s)| {
                        let kind = *kind;
                        s.state().into_iter().map(move |o| object_json(kind, &o))
                    })
                    .collect();
                let snap = set.rebuild(&objects, &data);
                tx.send_if_modified(|cur| {
                    if cur.as_deref() == Some(&snap) {
                        false
                    } else {
                        for e in &snap.errors {
                            tracing::warn!(error = %e, "custom resource rejected");
                        }
                        for c in &snap.conflicts {
                            tracing::warn!(conflict = %c, "conflicting declarations; neither new version applied");
                        }
                        *cur = Some(Arc::new(snap));
                        true
                    }
                });
            }
        });
        (rx, view)
    }
}

fn tick<K>(i: usize, r: Result<watcher::Event<K>, watcher::Error>) -> Tick {
    (
        i,
        r.map(|e| Seen {
            init_done: matches!(e, watcher::Event::InitDone),
            changed: true,
        })
        .map_err(|e| e.to_string()),
    )
}

/// A dynamic object as JSON with its `apiVersion` and `kind` (which list items may lack).
fn object_json(kind: Kind, o: &DynamicObject) -> serde_json::Value {
    let mut v = serde_json::to_value(o).unwrap_or_default();
    if let Some(m) = v.as_object_mut() {
        m.insert("apiVersion".into(), berth_api::API_VERSION.into());
        m.insert("kind".into(), kind.as_str().into());
    }
    v
}

fn ref_data(secrets: &[Store<Secret>], cms: &[Store<ConfigMap>]) -> RefData {
    let mut data = RefData::default();
    for s in secrets.iter().flat_map(|s| s.state()) {
        let key = (s.namespace().unwrap_or_default(), s.name_any());
        let mut values: BTreeMap<String, Vec<u8>> = s
            .data
            .as_ref()
            .map(|d| d.iter().map(|(k, v)| (k.clone(), v.0.clone())).collect())
            .unwrap_or_default();
        if let Some(sd) = &s.string_data {
            for (k, v) in sd {
                values.insert(k.clone(), v.clone().into_bytes());
            }
        }
        data.secrets.insert(key, values);
    }
    for c in cms.iter().flat_map(|s| s.state()) {
        let key = (c.namespace().unwrap_or_default(), c.name_any());
        data.config_maps.insert(
            key,
            c.data.clone().unwrap_or_default().into_iter().collect(),
        );
    }
    data
}

#[cfg(test)]
#[path = "kube_tests.rs"]
mod tests;
