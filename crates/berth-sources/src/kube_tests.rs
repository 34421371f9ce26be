//! KubeSource against the fake API server (tower-test mock, as kube-rs and controller-rs test).

use std::time::Duration;

use serde_json::{Value, json};

use super::*;
use crate::fake_api::FakeApi;

const CONTAINERS: &str = "/apis/berth.dev/v1alpha1/containers";
const NETWORKS: &str = "/apis/berth.dev/v1alpha1/networks";
const SECRETS: &str = "/api/v1/secrets";

fn fast() -> KubeSourceConfig {
    KubeSourceConfig {
        namespaces: vec![],
        retry_initial: Duration::from_millis(50),
        retry_cap: Duration::from_millis(200),
        debounce: Duration::from_millis(10),
    }
}

fn container(ns: &str, name: &str, spec: Value) -> Value {
    json!({"apiVersion": "berth.dev/v1alpha1", "kind": "Container",
           "metadata": {"name": name, "namespace": ns}, "spec": spec})
}

fn network(ns: &str, name: &str) -> Value {
    json!({"apiVersion": "berth.dev/v1alpha1", "kind": "Network",
           "metadata": {"name": name, "namespace": ns}, "spec": {}})
}

fn secret(ns: &str, name: &str, key: &str, value: &str) -> Value {
    use std::fmt::Write;
    // base64 by hand (no extra dependency for one test helper)
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in value.as_bytes().chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                let _ = out.write_char(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    json!({"apiVersion": "v1", "kind": "Secret",
           "metadata": {"name": name, "namespace": ns}, "data": {key: out}})
}

fn keys(s: &Snapshot) -> Vec<String> {
    s.objects.keys().map(ToString::to_string).collect()
}

async fn wait_for(
    rx: &mut watch::Receiver<Option<Arc<Snapshot>>>,
    what: &str,
    pred: impl Fn(&Snapshot) -> bool,
) -> Arc<Snapshot> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(s) = rx.borrow_and_update().clone()
            && pred(&s)
        {
            return s;
        }
        if tokio::time::timeout_at(deadline, rx.changed())
            .await
            .is_err()
        {
            panic!(
                "timed out waiting for: {what}; last: {:?}",
                rx.borrow().as_deref().map(keys)
            );
        }
    }
}

#[tokio::test]
async fn initial_list_then_watch_events_publish_full_sets() {
    let (api, client) = FakeApi::new();
    api.put(NETWORKS, network("shop", "front"));
    api.put(
        CONTAINERS,
        container("shop", "web", json!({"image": "nginx:1.27"})),
    );
    let (mut rx, _view) = KubeSource::new(client, fast()).watch();
    let s = wait_for(&mut rx, "initial list", |s| s.objects.len() == 2).await;
    assert_eq!(keys(&s), vec!["Network/shop/front", "Container/shop/web"]);
    assert_eq!(
        s.objects.values().next().map(|d| d.origin.to_string()),
        Some("kube:Network/shop/front".to_string())
    );
    assert_eq!(s.cluster.len(), 2);

    api.put(
        CONTAINERS,
        container("shop", "db", json!({"image": "postgres:16"})),
    );
    wait_for(&mut rx, "added object", |s| s.objects.len() == 3).await;
    api.put(
        CONTAINERS,
        container("shop", "web", json!({"image": "nginx:1.28"})),
    );
    let s = wait_for(&mut rx, "modified object", |s| {
        s.objects.values().any(|d| {
            matches!(&d.manifest, Manifest::Container { spec, .. } if spec.image.as_deref() == Some("nginx:1.28"))
        })
    })
    .await;
    let web = ObjectKey::new(Kind::Container, "shop", "web");
    assert_eq!(
        s.cluster[&web].generation, 2,
        "spec change bumps generation"
    );
    api.delete(CONTAINERS, "shop", "db");
    wait_for(&mut rx, "deleted object", |s| s.objects.len() == 2).await;
}

#[tokio::test]
async fn nothing_is_published_before_the_initial_list_completes() {
    let (api, client) = FakeApi::new();
    api.put(
        CONTAINERS,
        container("a", "web", json!({"image": "nginx:1.27"})),
    );
    api.set_down(true);
    let (mut rx, view) = KubeSource::new(client, fast()).watch();
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(rx.borrow().is_none(), "no set before the initial list");
    assert!(!view.health().ready);
    assert!(
        view.health().last_error.is_some(),
        "the API error is reported"
    );
    api.set_down(false);
    wait_for(&mut rx, "initial list after the outage", |s| {
        s.objects.len() == 1
    })
    .await;
    assert!(view.health().ready);
}

#[tokio::test]
async fn api_errors_and_watch_restarts_remove_nothing() {
    let (api, client) = FakeApi::new();
    api.put(
        CONTAINERS,
        container("a", "one", json!({"image": "busybox:1"})),
    );
    api.put(
        CONTAINERS,
        container("a", "two", json!({"image": "busybox:1"})),
    );
    let (mut rx, view) = KubeSource::new(client, fast()).watch();
    let first = wait_for(&mut rx, "initial list", |s| s.objects.len() == 2).await;

    // API server unreachable: the last complete view stays in force.
    api.set_down(true);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(view.health().last_error.is_some());
    assert_eq!(
        rx.borrow().as_deref(),
        Some(&*first),
        "an outage changes nothing"
    );

    // Watch restarts (410 Gone → relist) change nothing either while the objects are there.
    api.set_down(false);
    tokio::time::sleep(Duration::from_millis(500)).await;
    api.expire_watches();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        rx.borrow().as_deref(),
        Some(&*first),
        "a relist of the same objects changes nothing"
    );
    for _ in 0..100 {
        if view.health().last_error.is_none() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        view.health().last_error.is_none(),
        "recovered: {:?}",
        view.health()
    );

    // A deletion made while the agent could not see the API server arrives once it can.
    api.set_down(true);
    api.delete(CONTAINERS, "a", "two");
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        rx.borrow().as_deref(),
        Some(&*first),
        "nothing removed while unreachable"
    );
    api.expire_watches();
    api.set_down(false);
    let s = wait_for(&mut rx, "deletion seen after the relist", |s| {
        s.objects.len() == 1
    })
    .await;
    assert_eq!(keys(&s), vec!["Container/a/one"]);
}

#[tokio::test]
async fn status_writes_do_not_republish() {
    let (api, client) = FakeApi::new();
    api.put(
        CONTAINERS,
        container("a", "web", json!({"image": "busybox:1"})),
    );
    let (mut rx, _view) = KubeSource::new(client, fast()).watch();
    wait_for(&mut rx, "initial list", |s| s.objects.len() == 1).await;
    let mut obj = api.get(CONTAINERS, "a", "web").expect("stored");
    obj["status"] = json!({"hosts": [{"name": "h1", "observedGeneration": 1, "state": "Ready"}]});
    api.put(CONTAINERS, obj);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !rx.has_changed().unwrap_or(true),
        "a status write is not a change of the set"
    );
}

#[tokio::test]
async fn secret_values_resolve_and_a_changed_secret_changes_the_set() {
    let (api, client) = FakeApi::new();
    api.put(SECRETS, secret("a", "db", "password", "s3cret"));
    api.put(
        CONTAINERS,
        container(
            "a",
            "app",
            json!({"image": "busybox:1", "env": [
                {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}},
                {"name": "OPTIONAL", "valueFrom": {"configMapKeyRef": {"name": "nope", "key": "x", "optional": true}}}
            ], "files": [{"path": "/etc/pw", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}}]}),
        ),
    );
    let (mut rx, _view) = KubeSource::new(client, fast()).watch();
    let env_of = |s: &Snapshot| -> Vec<(String, String)> {
        s.objects
            .values()
            .flat_map(|d| match &d.manifest {
                Manifest::Container { spec, .. } => spec
                    .env
                    .iter()
                    .map(|e| (e.name.clone(), e.value.clone()))
                    .collect(),
                _ => vec![],
            })
            .collect()
    };
    let s = wait_for(&mut rx, "resolved", |s| s.objects.len() == 1).await;
    assert_eq!(
        env_of(&s),
        vec![("PASSWORD".to_string(), "s3cret".to_string())]
    );
    let debug = format!("{s:?}");
    assert!(
        !debug.contains("s3cret"),
        "Debug output never shows Secret values: {debug}"
    );
    let hash1 = berth_core::resolve::resolve(s.manifests())
        .containers
        .values()
        .next()
        .map(|c| c.hash.clone());

    api.put(SECRETS, secret("a", "db", "password", "rotated"));
    let s = wait_for(&mut rx, "new secret value", |s| {
        env_of(s).first().is_some_and(|(_, v)| v == "rotated")
    })
    .await;
    let hash2 = berth_core::resolve::resolve(s.manifests())
        .containers
        .values()
        .next()
        .map(|c| c.hash.clone());
    assert_ne!(
        hash1, hash2,
        "a changed Secret changes the spec hash: the container reconverges"
    );

    // A deleted Secret: the object keeps its last-known-good version and is reported.
    api.delete(SECRETS, "a", "db");
    let s = wait_for(&mut rx, "missing secret reported", |s| !s.errors.is_empty()).await;
    assert_eq!(env_of(&s).first().map(|(_, v)| v.as_str()), Some("rotated"));
    let e = s.errors[0].to_string();
    assert!(
        e.starts_with("kube:Container/a/app: spec.env[0].valueFrom: Secret a/db does not exist"),
        "{e}"
    );
    assert!(!e.contains("rotated"));
}

#[tokio::test]
async fn invalid_object_is_reported_and_never_good_contributes_nothing() {
    let (api, client) = FakeApi::new();
    api.put(
        CONTAINERS,
        container(
            "a",
            "bad",
            json!({"image": "busybox:1", "ports": [{"containerPort": 0}]}),
        ),
    );
    api.put(
        CONTAINERS,
        container("a", "good", json!({"image": "busybox:1"})),
    );
    let (mut rx, _view) = KubeSource::new(client, fast()).watch();
    let s = wait_for(&mut rx, "initial list", |s| s.objects.len() == 1).await;
    assert_eq!(keys(&s), vec!["Container/a/good"]);
    assert_eq!(
        s.errors.iter().map(ToString::to_string).collect::<Vec<_>>(),
        vec!["kube:Container/a/bad: spec.ports[0].containerPort: expected 1–65535, got 0"]
    );
    assert!(
        s.incomplete
            .as_deref()
            .is_some_and(|w| w.contains("kube:Container/a/bad")),
        "an object never decoded since start marks the set incomplete (no removals): {:?}",
        s.incomplete
    );
}

#[tokio::test]
async fn namespaces_to_watch_limit_the_set() {
    let (api, client) = FakeApi::new();
    api.put(
        CONTAINERS,
        container("a", "x", json!({"image": "busybox:1"})),
    );
    api.put(
        CONTAINERS,
        container("b", "y", json!({"image": "busybox:1"})),
    );
    let mut cfg = fast();
    cfg.namespaces = vec!["b".into()];
    let (mut rx, _view) = KubeSource::new(client, cfg).watch();
    let s = wait_for(&mut rx, "initial list", |s| !s.objects.is_empty()).await;
    assert_eq!(keys(&s), vec!["Container/b/y"]);
    assert!(
        api.requests()
            .iter()
            .all(|r| r.path.contains("/namespaces/b/")),
        "only namespace b is read"
    );
}

/// Done-when 3: the manifest-directory examples, applied unchanged as custom resources, decode
/// to exactly the same objects (same types, same validation).
#[tokio::test]
async fn examples_apply_unchanged_as_custom_resources() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../manifests/examples");
    let dir = crate::directory::DirectorySource::new(&root)
        .scan()
        .expect("scan examples");
    assert!(
        dir.errors.is_empty() && dir.objects.len() >= 5,
        "{:?}",
        dir.errors
    );
    let (api, client) = FakeApi::new();
    for d in dir.objects.values() {
        let berth_core::merge::Origin::File { path: file, .. } = &d.origin else {
            panic!("a directory object comes from a file");
        };
        let text = std::fs::read_to_string(root.join(file)).expect("read");
        for doc in text.split("\n---") {
            let v: Value = serde_saphyr::from_str(doc).expect("yaml as json");
            if v["metadata"]["name"] == json!(d.manifest.metadata().name) {
                let mut v = v;
                if v["metadata"]["namespace"].is_null() {
                    v["metadata"]["namespace"] = json!("default");
                }
                let plural = api_resource(d.manifest.kind()).plural;
                api.put(&format!("/apis/berth.dev/v1alpha1/{plural}"), v);
            }
        }
    }
    let (mut rx, _view) = KubeSource::new(client, fast()).watch();
    let s = wait_for(&mut rx, "examples", |s| {
        s.objects.len() == dir.objects.len()
    })
    .await;
    assert!(s.errors.is_empty(), "{:?}", s.errors);
    for (key, d) in &dir.objects {
        let mut want = d.manifest.clone();
        let (Manifest::Container { metadata, .. }
        | Manifest::Network { metadata, .. }
        | Manifest::Volume { metadata, .. }) = &mut want;
        metadata.namespace = Some(key.namespace.clone());
        assert_eq!(s.objects[key].manifest, want, "{key}");
    }
}

/// A watcher that recovers emits nothing until the next change, so errors age out.
#[test]
fn errors_count_only_while_fresh() {
    let mut h = HealthState {
        ready: true,
        errors: vec![None, Some(("boom".into(), std::time::Instant::now()))],
        fresh: Duration::from_secs(60),
    };
    assert_eq!(h.current_error().map(|(e, _)| e.as_str()), Some("boom"));
    h.fresh = Duration::ZERO;
    std::thread::sleep(Duration::from_millis(2));
    assert!(h.current_error().is_none());
}

/// Status writes — every host's, fleet-wide — must not make every agent decode every object
/// again: only what decoding and the status writer read marks the set as changed.
#[test]
fn only_spec_labels_annotations_and_generation_changes_mark_the_set_changed() {
    let obj = |v: Value| -> DynamicObject {
        serde_json::from_value(v).unwrap_or_else(|e| panic!("object: {e}"))
    };
    let base = json!({"apiVersion": "berth.dev/v1alpha1", "kind": "Container",
        "metadata": {"name": "web", "namespace": "shop", "uid": "u1", "generation": 1,
                     "resourceVersion": "7", "labels": {"a": "1"}},
        "spec": {"image": "busybox:1"}});
    let with = |f: &dyn Fn(&mut Value)| {
        let mut v = base.clone();
        f(&mut v);
        obj(v)
    };
    let mut fp = Fingerprints::default();
    let changed = |fp: &mut Fingerprints, e: watcher::Event<DynamicObject>| {
        fp.tick(0, Ok(e)).1.map(|s| s.changed).unwrap_or(true)
    };
    assert!(changed(
        &mut fp,
        watcher::Event::InitApply(obj(base.clone()))
    ));
    // A status write: new resourceVersion and status, nothing else.
    let status = with(&|v| {
        v["metadata"]["resourceVersion"] = json!("8");
        v["status"] = json!({"hosts": [{"name": "h1", "state": "Ready"}]});
    });
    assert!(!changed(&mut fp, watcher::Event::Apply(status.clone())));
    assert!(!changed(&mut fp, watcher::Event::Apply(status)));
    let spec = with(&|v| {
        v["spec"]["image"] = json!("busybox:2");
        v["metadata"]["generation"] = json!(2);
    });
    assert!(changed(&mut fp, watcher::Event::Apply(spec.clone())));
    assert!(!changed(&mut fp, watcher::Event::Apply(spec)));
    let labels = with(&|v| v["metadata"]["labels"]["a"] = json!("2"));
    assert!(changed(&mut fp, watcher::Event::Apply(labels)));
    let annotations = with(&|v| v["metadata"]["annotations"] = json!({"note": "x"}));
    assert!(changed(&mut fp, watcher::Event::Apply(annotations.clone())));
    // Recreated under the same name: a new uid.
    let recreated = with(&|v| {
        v["metadata"]["uid"] = json!("u2");
        v["metadata"]["annotations"] = json!({"note": "x"});
    });
    assert!(changed(&mut fp, watcher::Event::Apply(recreated)));
    assert!(changed(&mut fp, watcher::Event::Delete(annotations)));
    assert!(changed(&mut fp, watcher::Event::InitDone));
}

#[tokio::test]
async fn managed_fields_are_not_cached() {
    let (api, client) = FakeApi::new();
    let managed = json!([{"manager": "berth-host-a", "operation": "Apply", "apiVersion": "berth.dev/v1alpha1",
        "fieldsType": "FieldsV1", "fieldsV1": {"f:status": {"f:hosts": {}}}}]);
    let mut web = container("shop", "web", json!({"image": "nginx:1.27"}));
    web["metadata"]["managedFields"] = managed;
    api.put(CONTAINERS, web);
    assert!(
        api.get(CONTAINERS, "shop", "web")
            .is_some_and(|o| o["metadata"]["managedFields"].is_array()),
        "the fake API serves them"
    );
    let (mut rx, view) = KubeSource::new(client, fast()).watch();
    wait_for(&mut rx, "initial list", |s| s.objects.len() == 1).await;
    let cached = view
        .get(&ObjectKey::new(Kind::Container, "shop", "web"))
        .expect("web is cached");
    assert_eq!(cached.metadata.managed_fields, None);
    assert_eq!(cached.metadata.name.as_deref(), Some("web"));
}
