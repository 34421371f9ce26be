//! Agent-run probes (Kubernetes semantics) on the real engine.

use std::time::{Duration, Instant};

use berth_e2e::{BUSYBOX, test_env};

const T: Duration = Duration::from_secs(60);

fn started_at(env: &berth_e2e::Env, name: &str) -> Option<String> {
    env.try_docker_cli(&["inspect", "-f", "{{.State.StartedAt}}", name])
}

/// A failing liveness probe restarts the container; a startup probe holds liveness off until
/// the slow starter is up; a readiness probe (httpGet) gates a `dependsOn: Healthy` dependent.
#[tokio::test(flavor = "multi_thread")]
async fn liveness_startup_and_readiness_probes() {
    let env = test_env!("probes").await;
    // Live for 3 s (the file disappears), liveness checks every second, 2 failures → restart.
    env.write(
        "dies.yaml",
        &env.container(
            "dies",
            BUSYBOX,
            "  livenessProbe:\n    exec: {command: [test, -e, /tmp/alive]}\n    periodSeconds: 1\n    failureThreshold: 2\n",
        )
        .replace("[sleep, \"3600\"]", "[sh, -c, \"touch /tmp/alive; (sleep 3; rm /tmp/alive) & exec sleep 3600\"]"),
    );
    // Slow starter: ready after 4 s. Without the startup probe, the liveness probe (threshold 1)
    // would kill it at once.
    env.write(
        "slow.yaml",
        &env.container(
            "slow",
            BUSYBOX,
            "  startupProbe:\n    exec: {command: [test, -e, /tmp/up]}\n    periodSeconds: 1\n    failureThreshold: 30\n  livenessProbe:\n    exec: {command: [test, -e, /tmp/up]}\n    periodSeconds: 1\n    failureThreshold: 1\n",
        )
        .replace("[sleep, \"3600\"]", "[sh, -c, \"(sleep 4; touch /tmp/up) & exec sleep 3600\"]"),
    );
    // HTTP server that starts answering after 3 s; a dependent waits for its readiness.
    env.write(
        "web.yaml",
        &env.container(
            "web",
            BUSYBOX,
            "  files: [{path: /www/index.html, content: ok}]\n  readinessProbe:\n    httpGet: {path: /, port: 8080}\n    periodSeconds: 1\n",
        )
        .replace("[sleep, \"3600\"]", "[sh, -c, \"sleep 3; exec httpd -f -p 8080 -h /www\"]"),
    );
    env.write(
        "client.yaml",
        &env.container(
            "client",
            BUSYBOX,
            "  dependsOn: [{name: web, condition: Healthy}]\n",
        ),
    );
    let agent = env.agent();
    let (dies, slow, web, client) = (
        env.cname("dies"),
        env.cname("slow"),
        env.cname("web"),
        env.cname("client"),
    );
    env.until("all three running", T, || async {
        env.running(&dies).await && env.running(&slow).await && env.running(&web).await
    })
    .await;
    let t0 = Instant::now();
    let dies_started = started_at(&env, &dies);
    let slow_started = started_at(&env, &slow);
    assert!(
        env.container_id(&client).await.is_none(),
        "client waits for web's readiness"
    );
    env.until("client started once web is ready", T, || async {
        env.running(&client).await
    })
    .await;
    println!("client started {:?} after web ran", t0.elapsed());
    env.until("dies restarted by its liveness probe", T, || async {
        started_at(&env, &dies) != dies_started && env.running(&dies).await
    })
    .await;
    agent
        .wait_log("liveness probe failed", T)
        .await
        .expect("reason logged");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        started_at(&env, &slow),
        slow_started,
        "startup probe kept liveness off: never restarted"
    );
}
