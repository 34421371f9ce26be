//! Engine outages, through a fault-injecting proxy on the engine socket (`berth_e2e::proxy`):
//! the agent talks to the proxy (`DOCKER_HOST`), the test breaks and mends it. The machine's
//! dockerd is never restarted.
//!
//! - started while the engine is unreachable, the agent waits (capped back-off, one log line
//!   per state change), reports not ready, and converges as soon as the engine answers;
//! - an outage mid-run (500 answers, connections cut, the socket gone) removes nothing and
//!   duplicates nothing; what changed meanwhile is repaired by a full resync when the engine is
//!   back — a container removed by hand is created again, and a container stopped meanwhile
//!   (what a real dockerd restart does to every container berth created: berth sets no engine
//!   restart policy) is started again, the same container; the events stream reconnects.

use std::path::Path;
use std::time::{Duration, Instant};

use berth_e2e::proxy::{self, EngineProxy, Fault};
use berth_e2e::{BUSYBOX, test_env};

/// `/readyz` of the agent's local API: `Ok(())` when ready, else the answer's text.
async fn readyz(socket: &Path) -> Result<(), String> {
    berth::api::fetch(socket, "/readyz")
        .await
        .map(|_| ())
        .map_err(|e| format!("{e:#}"))
}

fn count(log: &str, needle: &str) -> usize {
    log.matches(needle).count()
}

/// The log line the agent writes once when the engine stops answering, and once when it
/// answers again.
const UNREACHABLE: &str = "Docker Engine unreachable";
const REACHABLE: &str = "Docker Engine reachable";

#[tokio::test(flavor = "multi_thread")]
async fn agent_started_before_the_engine_waits_and_converges() {
    let env = test_env!("outage-start").await;
    let sockets = tempfile::tempdir().expect("tempdir");
    let api = sockets.path().join("api.sock");
    let proxy = EngineProxy::start_with(
        &sockets.path().join("docker.sock"),
        &proxy::engine_socket().expect("engine socket"),
        Fault::Down,
    )
    .expect("proxy");
    env.write("a.yaml", &env.container("a", BUSYBOX, ""));
    env.write("b.yaml", &env.container("b", BUSYBOX, ""));
    let mut agent = env.agent_with_env(
        &["--socket", api.to_str().expect("utf-8 path")],
        &[("DOCKER_HOST", proxy.docker_host().as_ref())],
    );

    // 20 s without an engine: the agent waits, says so once, and is not ready.
    agent
        .wait_log("waiting for it", Duration::from_secs(10))
        .await
        .expect("the agent says it waits for the engine");
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(20) {
        assert!(agent.running(), "the agent exited:\n{}", agent.log());
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let not_ready = readyz(&api).await.expect_err("not ready without an engine");
    assert!(
        not_ready.contains("503") && not_ready.contains("Docker Engine"),
        "{not_ready}"
    );
    assert!(env.containers().await.is_empty());
    let log = agent.log();
    assert_eq!(
        count(&log, UNREACHABLE),
        1,
        "one line per state change:\n{log}"
    );

    // The engine answers: converged within the back-off's cap plus a converge.
    proxy.set(Fault::None);
    let took = env
        .until("both containers run", Duration::from_secs(30), || async {
            env.running(&env.cname("a")).await && env.running(&env.cname("b")).await
        })
        .await;
    eprintln!("converged {took:?} after the engine came up");
    env.until("ready", Duration::from_secs(10), || async {
        readyz(&api).await.is_ok()
    })
    .await;
    let log = agent.log();
    assert_eq!(count(&log, REACHABLE), 1, "{log}");
    assert_eq!(count(&log, UNREACHABLE), 1, "{log}");
    assert_eq!(env.containers().await.len(), 2, "nothing duplicated");
    agent.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn engine_outage_mid_run_removes_nothing_and_resyncs() {
    let env = test_env!("outage-mid").await;
    let sockets = tempfile::tempdir().expect("tempdir");
    let api = sockets.path().join("api.sock");
    let proxy = EngineProxy::start(
        &sockets.path().join("docker.sock"),
        &proxy::engine_socket().expect("engine socket"),
    )
    .expect("proxy");
    env.write("a.yaml", &env.container("a", BUSYBOX, ""));
    env.write("b.yaml", &env.container("b", BUSYBOX, ""));
    env.write("c.yaml", &env.container("c", BUSYBOX, ""));
    // A long resync: after the outage, only the agent's own reconnect can notice the repair
    // quickly, and a killed container is seen through the (reconnected) events stream.
    let mut agent = env.agent_with_env(
        &[
            "--socket",
            api.to_str().expect("utf-8 path"),
            "--resync-seconds",
            "300",
        ],
        &[("DOCKER_HOST", proxy.docker_host().as_ref())],
    );
    env.until("all three run", Duration::from_secs(30), || async {
        env.running(&env.cname("a")).await
            && env.running(&env.cname("b")).await
            && env.running(&env.cname("c")).await
    })
    .await;
    env.until("ready", Duration::from_secs(10), || async {
        readyz(&api).await.is_ok()
    })
    .await;
    let a_id = env.container_id(&env.cname("a")).await.expect("a exists");
    let c_id = env.container_id(&env.cname("c")).await.expect("c exists");
    let before = proxy.snapshot();

    // 30 s of outage in three shapes; `b` is removed by hand meanwhile and `c` stopped (as a
    // dockerd restart stops it).
    proxy.set(Fault::Error500);
    tokio::time::sleep(Duration::from_secs(3)).await;
    env.docker_cli(&["rm", "-f", &env.cname("b")]);
    env.docker_cli(&["stop", "-t", "1", &env.cname("c")]);
    tokio::time::sleep(Duration::from_secs(7)).await;
    let not_ready = readyz(&api)
        .await
        .expect_err("not ready while the engine fails");
    assert!(not_ready.contains("Docker Engine"), "{not_ready}");
    proxy.set(Fault::Reset);
    tokio::time::sleep(Duration::from_secs(10)).await;
    proxy.set(Fault::Down);
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert!(agent.running(), "the agent exited:\n{}", agent.log());
    let during = proxy::diff(&before, &proxy.snapshot());
    assert!(
        during
            .keys()
            .all(|k| !k.starts_with("DELETE") && !k.contains("/stop")),
        "nothing removed or stopped during the outage: {during:?}"
    );

    // Back: `b` is recreated by the resync, `a` is the same container, nothing duplicated.
    proxy.set(Fault::None);
    let took = env
        .until(
            "b recreated, c started",
            Duration::from_secs(20),
            || async { env.running(&env.cname("b")).await && env.running(&env.cname("c")).await },
        )
        .await;
    eprintln!("repaired {took:?} after the engine came back");
    assert_eq!(
        env.container_id(&env.cname("a")).await.as_deref(),
        Some(a_id.as_str()),
        "a was left alone"
    );
    assert_eq!(
        env.container_id(&env.cname("c")).await.as_deref(),
        Some(c_id.as_str()),
        "c was started again, not replaced"
    );
    let after = proxy::diff(&before, &proxy.snapshot());
    assert_eq!(
        after.get("DELETE /containers/{id}"),
        None,
        "nothing removed: {after:?}"
    );
    assert_eq!(env.containers().await.len(), 3, "nothing duplicated");
    env.until("ready again", Duration::from_secs(10), || async {
        readyz(&api).await.is_ok()
    })
    .await;
    let log = agent.log();
    assert_eq!(count(&log, UNREACHABLE), 1, "one line per outage:\n{log}");
    assert_eq!(count(&log, REACHABLE), 1, "{log}");

    // The events stream reconnected: a killed container is restarted without waiting for the
    // 300 s resync.
    env.docker_cli(&["kill", &env.cname("a")]);
    env.until(
        "a restarted after a kill",
        Duration::from_secs(20),
        || async { env.running(&env.cname("a")).await },
    )
    .await;
    agent.stop();
}
