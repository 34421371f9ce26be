//! The Kubernetes source end to end: berth custom resources served by a fake API server (no
//! API server can run here; the fake sits behind kube's own client, see
//! `berth_sources::fake_api`) converge on the real Docker Engine through the real agent loop.
//! For a real cluster, see `e2e/k8s/real-cluster.sh`.

use std::time::Duration;

use berth::host::HostIdentity;
use berth_e2e::inproc::{CONTAINERS, InProcessAgent, NETWORKS, SECRETS, secret};
use berth_e2e::{BUSYBOX, test_env};
use berth_sources::fake_api::FakeApi;
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(30);

fn container(ns: &str, zone: &str) -> Value {
    json!({"apiVersion": "berth.dev/v1alpha1", "kind": "Container",
           "metadata": {"name": "web", "namespace": ns},
           "spec": {"image": BUSYBOX, "command": ["sleep", "3600"], "stopGracePeriodSeconds": 1,
                    "networks": [{"name": "front"}],
                    "env": [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "app", "key": "token"}}}],
                    "hostSelector": {"matchLabels": {"zone": zone}}}})
}

async fn env_of(env: &berth_e2e::Env, name: &str) -> Vec<String> {
    env.docker
        .inspect_container(name, None)
        .await
        .ok()
        .and_then(|i| i.config)
        .and_then(|c| c.env)
        .unwrap_or_default()
}

/// Done-when 2 on the real engine: initial list → objects converge; API outage and watch
/// restarts remove nothing; a changed Secret reconverges; a selector that stops matching
/// removes the objects.
#[tokio::test(flavor = "multi_thread")]
async fn custom_resources_converge_on_the_real_engine() {
    let env = test_env!("kube").await;
    let ns = env.ns.clone();
    let (api, client) = FakeApi::new();
    api.put(SECRETS, secret(&ns, "s3cret-one"));
    api.put(
        NETWORKS,
        json!({"apiVersion": "berth.dev/v1alpha1", "kind": "Network",
               "metadata": {"name": "front", "namespace": ns},
               "spec": {"hostSelector": {"matchLabels": {"zone": "eu"}}}}),
    );
    api.put(CONTAINERS, container(&ns, "eu"));

    let host = HostIdentity::from_cli(Some("e2e-host"), &[("zone".into(), "eu".into())]);
    let mut agent = InProcessAgent::start(
        &ns,
        host,
        &[
            "agent",
            "--kube",
            "--namespace",
            &ns,
            "--resync-seconds",
            "1",
        ],
        Some(client),
    );

    let web = env.cname("web");
    let took = env
        .until("custom resource running on the engine", T, || async {
            env.running(&web).await
        })
        .await;
    println!("initial list → container running in {took:?}");
    assert!(
        env_of(&env, &web)
            .await
            .contains(&"TOKEN=s3cret-one".to_string())
    );
    assert!(env.networks().await.contains(&env.oname("front")));
    let id = env.container_id(&web).await;

    // Status back to the cluster: this host's entry, Ready, written by its own field manager;
    // then no more writes while nothing changes (the agent's own writes trigger nothing).
    let ready_written = || {
        api.requests_to("PATCH", "/containers/web/status")
            .iter()
            .any(|r| {
                r.body
                    .as_ref()
                    .is_some_and(|b| b["status"]["hosts"][0]["state"] == "Ready")
            })
    };
    env.until("Ready status written", T, || async { ready_written() })
        .await;
    let patches = api.requests_to("PATCH", "/containers/web/status");
    assert!(
        patches
            .iter()
            .all(|p| p.field_manager().as_deref() == Some("berth-e2e-host"))
    );
    tokio::time::sleep(Duration::from_secs(4)).await; // several 1 s resync passes
    assert_eq!(
        api.requests_to("PATCH", "/containers/web/status").len(),
        patches.len(),
        "no status write without a change"
    );
    let stored = api.get(CONTAINERS, &ns, "web").expect("stored");
    let ready = stored["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
        .expect("Ready condition");
    assert_eq!(ready["status"], "True");
    assert_eq!(stored["status"]["observedGeneration"], 1);
    let events = api.requests_to("POST", "/events");
    assert!(
        events
            .iter()
            .any(|e| e.body.as_ref().is_some_and(|b| b["reason"] == "Created"
                && b["regarding"]["name"] == "web"
                && b["regarding"]["kind"] == "Container")),
        "a Created event on the Container"
    );
    assert!(
        api.get("/apis/berth.dev/v1alpha1/hosts", "", "e2e-host")
            .is_some(),
        "Host object"
    );

    // API server unreachable, then watches expired: nothing is removed or changed.
    api.set_down(true);
    tokio::time::sleep(Duration::from_secs(3)).await;
    api.set_down(false);
    api.expire_watches();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        env.container_id(&web).await,
        id,
        "outage and relist change nothing"
    );

    // A changed Secret value reconverges the container that uses it.
    api.put(SECRETS, secret(&ns, "s3cret-two"));
    env.until("container recreated with the new secret", T, || async {
        env.running(&web).await
            && env_of(&env, &web)
                .await
                .contains(&"TOKEN=s3cret-two".to_string())
    })
    .await;
    assert_ne!(env.container_id(&web).await, id);
    env.until("Recreated event", T, || async {
        api.requests_to("POST", "/events")
            .iter()
            .any(|e| e.body.as_ref().is_some_and(|b| b["reason"] == "Recreated"))
    })
    .await;

    // The selector stops matching this host: its objects are removed.
    api.put(CONTAINERS, container(&ns, "us"));
    env.until("container removed", T, || async {
        env.container_id(&web).await.is_none()
    })
    .await;

    // Secret values never leave the host: not in status, Events or the Host object.
    for r in api.requests() {
        let body = r.body.map(|b| b.to_string()).unwrap_or_default();
        assert!(
            !body.contains("s3cret"),
            "{} {} leaks a secret value: {body}",
            r.method,
            r.path
        );
    }

    agent.stop().expect("agent ran cleanly");
    let log = agent.logs();
    assert!(log.contains("pass executed"), "logs captured:\n{log}");
    assert!(
        log.contains("TOKEN") || log.contains("Secret"),
        "debug logs are rich enough to tell"
    );
    assert!(
        !log.contains("s3cret"),
        "a Secret value reached the logs:\n{log}"
    );
}

/// The real binary with a real kubeconfig whose API server is unreachable: the agent starts,
/// reports the API errors, and removes nothing (the cluster source never completed its initial
/// list), even though the manifest directory it also reads is empty.
#[tokio::test(flavor = "multi_thread")]
async fn unreachable_cluster_at_start_removes_nothing() {
    let env = test_env!("kube-down").await;
    env.write("a.yaml", &env.container("a", BUSYBOX, ""));
    let out = env.apply();
    assert!(out.status.success(), "{}", berth_e2e::text(&out));
    let a = env.cname("a");
    assert!(env.running(&a).await);
    let id = env.container_id(&a).await;
    env.remove("a.yaml");

    let tmp = tempfile::tempdir().expect("tempdir");
    let kubeconfig = tmp.path().join("kubeconfig");
    // Port 9 (discard) on loopback: nothing listens there.
    std::fs::write(
        &kubeconfig,
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {server: \"http://127.0.0.1:9\"}\nusers:\n- name: u\n  user: {token: t}\ncontexts:\n- name: x\n  context: {cluster: c, user: u}\ncurrent-context: x\n",
    )
    .expect("write kubeconfig");
    let log = tmp.path().join("agent.log");
    let mut child = env
        .berth()
        .args(["--log-format", "text", "agent", "--kube", "--kubeconfig"])
        .arg(&kubeconfig)
        .arg("--manifests")
        .arg(env.dir.path())
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("start agent");
    let deadline = std::time::Instant::now() + T;
    let text = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("Kubernetes API error") || std::time::Instant::now() > deadline {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    let still_running = matches!(child.try_wait(), Ok(None));
    let _ = child.kill();
    let _ = child.wait();
    assert!(text.contains("Kubernetes API error"), "{text}");
    assert!(
        still_running,
        "the agent keeps running while the cluster is unreachable:\n{text}"
    );
    assert_eq!(env.container_id(&a).await, id, "nothing removed:\n{text}");
    assert!(env.running(&a).await);
}
