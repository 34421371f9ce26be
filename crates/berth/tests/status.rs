//! Status back to the cluster, against the fake API server (tower-test mock behind
//! kube::Client): one server-side apply per change with the host's own field manager, no
//! write when nothing changed (including after the agent's own write comes back through the
//! watch), entry removal when the selector stops matching, the Host object and the Lease.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use berth::host::HostIdentity;
use berth::status::{StatusInput, StatusWriter};
use berth_api::{HostObjectState, Kind, ObjectKey};
use berth_core::conditions::HostState;
use berth_sources::directory::Snapshot;
use berth_sources::fake_api::FakeApi;
use berth_sources::kube::{KubeSource, KubeSourceConfig};
use serde_json::{Value, json};

const CONTAINERS: &str = "/apis/berth.dev/v1alpha1/containers";

fn container(zone: &str) -> Value {
    json!({"apiVersion": "berth.dev/v1alpha1", "kind": "Container",
           "metadata": {"name": "web", "namespace": "shop"},
           "spec": {"image": "nginx:1.27", "hostSelector": {"matchLabels": {"zone": zone}}}})
}

fn ready() -> HostState {
    HostState {
        state: HostObjectState::Ready,
        reason: "Running".into(),
        message: String::new(),
        replicas: Some(1),
        ready_replicas: Some(1),
        restart_count: None,
        last_exit_code: None,
    }
}

async fn snapshot(
    rx: &mut tokio::sync::watch::Receiver<Option<Arc<Snapshot>>>,
    pred: impl Fn(&Snapshot) -> bool,
) -> Arc<Snapshot> {
    for _ in 0..200 {
        if let Some(s) = rx.borrow_and_update().clone()
            && pred(&s)
        {
            return s;
        }
        let _ = tokio::time::timeout(Duration::from_millis(50), rx.changed()).await;
    }
    panic!("no snapshot");
}

fn status_patches(api: &FakeApi) -> Vec<berth_sources::fake_api::Recorded> {
    api.requests_to("PATCH", "/containers/web/status")
}

#[tokio::test]
async fn a_status_patch_is_sent_once_per_change_with_the_hosts_field_manager() {
    let (api, client) = FakeApi::new();
    api.put(CONTAINERS, container("eu"));
    let (mut rx, view) = KubeSource::new(
        client.clone(),
        KubeSourceConfig {
            debounce: Duration::from_millis(5),
            ..Default::default()
        },
    )
    .watch();
    let snap = snapshot(&mut rx, |s| s.objects.len() == 1).await;
    let host = HostIdentity::from_cli(Some("edge-1"), &[("zone".into(), "eu".into())]);
    let mut writer = StatusWriter::new(
        client,
        host,
        view,
        "berth-system".into(),
        "27.0 (API 1.47)".into(),
        None,
    );
    assert_eq!(writer.field_manager(), "berth-edge-1");
    let key = ObjectKey::new(Kind::Container, "shop", "web");
    let mut input = StatusInput {
        in_force: [(
            key.clone(),
            berth_core::merge::Origin::Cluster {
                kind: "Container".into(),
                namespace: "shop".into(),
                name: "web".into(),
            },
        )]
        .into(),
        states: [(key.clone(), ready())].into(),
        kube: Some(snap.clone()),
        conflicts: BTreeMap::new(),
    };

    writer.write_statuses(&input).await;
    let patches = status_patches(&api);
    assert_eq!(patches.len(), 1);
    let p = &patches[0];
    assert_eq!(p.field_manager().as_deref(), Some("berth-edge-1"));
    assert!(p.query.contains("force=true"), "{}", p.query);
    assert_eq!(p.content_type, "application/apply-patch+yaml");
    let body = p.body.clone().expect("body");
    assert_eq!(body["status"]["hosts"][0]["name"], "edge-1");
    assert_eq!(body["status"]["hosts"][0]["state"], "Ready");
    assert_eq!(
        body["status"]["hosts"].as_array().map(Vec::len),
        Some(1),
        "only its own entry"
    );
    assert_eq!(body["status"]["observedGeneration"], 1);
    let conds: Vec<(String, String)> = body["status"]["conditions"]
        .as_array()
        .expect("conditions")
        .iter()
        .map(|c| {
            (
                c["type"].as_str().unwrap_or("").into(),
                c["status"].as_str().unwrap_or("").into(),
            )
        })
        .collect();
    assert!(
        conds.contains(&("Ready".into(), "True".into())),
        "{conds:?}"
    );

    // Nothing changed: no write, neither right away (the watch has not brought our write back
    // yet) nor after it has.
    writer.write_statuses(&input).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    writer.write_statuses(&input).await;
    assert_eq!(status_patches(&api).len(), 1, "no write without a change");
    assert!(
        !rx.has_changed().unwrap_or(true),
        "our own status write republished nothing"
    );

    // A change of state: one more write.
    input.states.insert(
        key.clone(),
        HostState {
            state: HostObjectState::Degraded,
            reason: "CrashLoopBackOff".into(),
            message: "back-off 10s restarting".into(),
            replicas: Some(1),
            ready_replicas: Some(0),
            restart_count: None,
            last_exit_code: None,
        },
    );
    writer.write_statuses(&input).await;
    writer.write_statuses(&input).await;
    let patches = status_patches(&api);
    assert_eq!(patches.len(), 2);
    let body = patches[1].body.clone().expect("body");
    assert_eq!(body["status"]["hosts"][0]["state"], "Degraded");

    // The selector stops matching: the host removes its entry, once.
    api.put(CONTAINERS, container("us"));
    let snap = snapshot(&mut rx, |s| {
        s.objects.values().any(|d| {
            d.manifest
                .host_selector()
                .is_some_and(|h| h.match_labels.get("zone").map(String::as_str) == Some("us"))
        })
    })
    .await;
    input.kube = Some(snap);
    input.states.clear();
    writer.write_statuses(&input).await;
    writer.write_statuses(&input).await;
    let patches = status_patches(&api);
    assert_eq!(patches.len(), 3);
    let body = patches[2].body.clone().expect("body");
    assert!(
        body["status"].get("hosts").is_none(),
        "entry removed: {body}"
    );
    let stored = api.get(CONTAINERS, "shop", "web").expect("stored");
    assert_eq!(stored["status"]["hosts"], json!([]));

    // The Host object and its status, and the heartbeat Lease.
    writer.write_host(&input).await;
    writer.write_host(&input).await;
    assert_eq!(api.requests_to("PATCH", "/hosts/edge-1").len(), 1);
    assert_eq!(
        api.requests_to("PATCH", "/hosts/edge-1/status").len(),
        1,
        "unchanged status written once"
    );
    let host = api
        .get("/apis/berth.dev/v1alpha1/hosts", "", "edge-1")
        .expect("Host");
    assert_eq!(host["metadata"]["labels"]["zone"], "eu");
    assert_eq!(host["status"]["engineVersion"], "27.0 (API 1.47)");
    writer.renew_lease().await;
    let lease = api
        .get(
            "/apis/coordination.k8s.io/v1/leases",
            "berth-system",
            "edge-1",
        )
        .expect("Lease");
    assert_eq!(lease["spec"]["holderIdentity"], "edge-1");
    let renew = lease["spec"]["renewTime"].as_str().expect("renewTime");
    assert_eq!(renew.len(), "2026-01-01T00:00:00.000000Z".len(), "{renew}");
}
