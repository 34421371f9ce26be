//! Health checks, health-driven restarts, CrashLoopBackOff and dependency order on the real
//! engine.

use std::time::{Duration, Instant};

use berth_e2e::{BUSYBOX, test_env};

const T: Duration = Duration::from_secs(60);

async fn restart_count(env: &berth_e2e::Env, name: &str) -> Option<String> {
    env.try_docker_cli(&["inspect", "-f", "{{.State.StartedAt}}", name])
}

/// Health check values reach the engine exactly; the container reports healthy within about
/// two intervals.
#[tokio::test(flavor = "multi_thread")]
async fn health_check_reaches_the_engine_exactly() {
    let env = test_env!("hcvalues").await;
    env.write(
        "a.yaml",
        &env.container(
            "web",
            BUSYBOX,
            "  healthCheck:\n    test: [CMD, \"true\"]\n    interval: 2s\n    timeout: 1s\n    retries: 2\n    startPeriod: 15s\n",
        ),
    );
    let out = env.apply();
    assert!(out.status.success(), "{}", berth_e2e::text(&out));
    let web = env.cname("web");
    let hc = env.docker_cli(&["inspect", "-f", "{{json .Config.Healthcheck}}", &web]);
    let v: serde_json::Value = serde_json::from_str(&hc).expect("json");
    assert_eq!(v["Test"], serde_json::json!(["CMD", "true"]));
    assert_eq!(v["Interval"], 2_000_000_000u64);
    assert_eq!(v["Timeout"], 1_000_000_000u64);
    assert_eq!(v["Retries"], 2);
    assert_eq!(v["StartPeriod"], 15_000_000_000u64);
    let took = env
        .until("healthy", T, || async {
            env.try_docker_cli(&["inspect", "-f", "{{.State.Health.Status}}", &web])
                .as_deref()
                == Some("healthy")
        })
        .await;
    println!("healthy after {took:?} (interval 2s)");
    assert!(
        took < Duration::from_secs(6),
        "healthy within about two intervals, took {took:?}"
    );
}

/// A container whose health turns unhealthy is restarted; one still in its start period is not.
#[tokio::test(flavor = "multi_thread")]
async fn unhealthy_container_is_restarted_but_not_during_start_period() {
    let env = test_env!("unhealthy").await;
    // Healthy while /tmp/ok exists; the file disappears after 3 s.
    let flaky = "  command: [sh, -c, \"touch /tmp/ok; (sleep 3; rm /tmp/ok) & exec sleep 3600\"]\n  healthCheck:\n    test: [CMD, test, -e, /tmp/ok]\n    interval: 1s\n    timeout: 1s\n    retries: 1\n";
    // Always failing, but within a 60 s start period.
    let starting = "  healthCheck:\n    test: [CMD, \"false\"]\n    interval: 1s\n    retries: 1\n    startPeriod: 60s\n";
    env.write(
        "flaky.yaml",
        &env.container("flaky", BUSYBOX, flaky)
            .replace("  command: [sleep, \"3600\"]\n", ""),
    );
    env.write(
        "starting.yaml",
        &env.container("starting", BUSYBOX, starting),
    );
    let agent = env.agent_with(&["--crash-backoff-initial-seconds", "1"]);
    let (flaky, starting) = (env.cname("flaky"), env.cname("starting"));
    env.until("both running", T, || async {
        env.running(&flaky).await && env.running(&starting).await
    })
    .await;
    let first_start = restart_count(&env, &flaky).await;
    let starting_id = env.container_id(&starting).await;
    let starting_started = restart_count(&env, &starting).await;
    env.until("flaky restarted after turning unhealthy", T, || async {
        restart_count(&env, &flaky).await != first_start && env.running(&flaky).await
    })
    .await;
    agent
        .wait_log("restarting unhealthy container", T)
        .await
        .expect("logged");
    assert_eq!(env.container_id(&starting).await, starting_id);
    assert_eq!(
        restart_count(&env, &starting).await,
        starting_started,
        "never restarted in its start period"
    );
}

/// A crash is repaired from its engine event, not at the next periodic relist (here 300 s):
/// Docker 20.10 publishes `die` before its list shows the container exited, which the agent's
/// second look shortly after the event covers.
#[tokio::test(flavor = "multi_thread")]
async fn a_crash_restarts_without_waiting_for_the_relist() {
    let env = test_env!("crashevent").await;
    env.write(
        "a.yaml",
        &env.container("crash", BUSYBOX, "")
            .replace("[sleep, \"3600\"]", "[sh, -c, \"sleep 1; exit 3\"]"),
    );
    let agent = env.agent_with(&[
        "--resync-seconds",
        "300",
        "--crash-backoff-initial-seconds",
        "1",
    ]);
    agent
        .wait_log("restart_count=3", Duration::from_secs(60))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", agent.log()));
}

/// Crash-looping restarts visibly space out (CrashLoopBackOff, here with a 1 s initial delay).
#[tokio::test(flavor = "multi_thread")]
async fn crash_loop_restarts_space_out() {
    let env = test_env!("crashloop").await;
    env.write(
        "a.yaml",
        &env.container("crash", BUSYBOX, "")
            .replace("[sleep, \"3600\"]", "[sh, -c, \"exit 3\"]"),
    );
    let agent = env.agent_with(&[
        "--crash-backoff-initial-seconds",
        "2",
        "--crash-backoff-cap-seconds",
        "16",
    ]);
    let start = Instant::now();
    agent
        .wait_log("restart_count=4", Duration::from_secs(60))
        .await
        .expect("four restarts");
    let log = agent.log();
    let times: Vec<f64> = log
        .lines()
        .filter(|l| l.contains("restarting exited container"))
        .filter_map(|l| l.split_whitespace().next())
        .filter_map(|ts| {
            // 2026-11-29T15:01:07.932756Z → seconds of the day
            let t = ts.split('T').nth(1)?.trim_end_matches('Z');
            let mut p = t.split(':');
            let h: f64 = p.next()?.parse().ok()?;
            let m: f64 = p.next()?.parse().ok()?;
            let s: f64 = p.next()?.parse().ok()?;
            Some(h * 3600.0 + m * 60.0 + s)
        })
        .collect();
    assert!(times.len() >= 4, "{log}");
    let gaps: Vec<f64> = times.windows(2).map(|w| w[1] - w[0]).collect();
    println!("restart gaps: {gaps:?} (after {:?})", start.elapsed());
    // Expected 2, 4, 8 s, each plus the time a start and exit take on this machine (up to
    // ~1.5 s under load, which is why the delays are not smaller); each gap grows.
    assert!(
        gaps[0] >= 1.9 && gaps[1] >= 3.9 && gaps[2] >= 7.9,
        "gaps {gaps:?}"
    );
    assert!(gaps[2] > gaps[1] && gaps[1] > gaps[0], "gaps {gaps:?}");
}

/// A dependent waits for its dependency to become healthy and starts within two check
/// intervals of that; a dependency that exits 1 leaves its dependent not started and reported,
/// while the rest of the host converges.
#[tokio::test(flavor = "multi_thread")]
async fn dependents_wait_for_healthy_and_for_failed_dependencies() {
    let env = test_env!("depends").await;
    // db turns healthy 4 s after start (interval 1 s).
    let db = "  command: [sh, -c, \"(sleep 4; touch /tmp/ready) & exec sleep 3600\"]\n  healthCheck:\n    test: [CMD, test, -e, /tmp/ready]\n    interval: 1s\n    retries: 30\n";
    env.write(
        "db.yaml",
        &env.container("db", BUSYBOX, db)
            .replace("  command: [sleep, \"3600\"]\n", ""),
    );
    env.write(
        "web.yaml",
        &env.container(
            "web",
            BUSYBOX,
            "  dependsOn: [{name: db, condition: Healthy}]\n",
        ),
    );
    // A migration job that fails, and a worker that needs it to complete.
    env.write(
        "migrate.yaml",
        &env.container("migrate", BUSYBOX, "  restartPolicy: Never\n")
            .replace("[sleep, \"3600\"]", "[sh, -c, \"exit 1\"]"),
    );
    env.write(
        "worker.yaml",
        &env.container(
            "worker",
            BUSYBOX,
            "  dependsOn: [{name: migrate, condition: Completed}]\n",
        ),
    );
    env.write("other.yaml", &env.container("other", BUSYBOX, ""));
    let agent = env.agent();
    let (dbn, web) = (env.cname("db"), env.cname("web"));
    env.until("db running", T, || async { env.running(&dbn).await })
        .await;
    assert!(
        env.container_id(&web).await.is_none(),
        "web must wait for db to be healthy"
    );
    env.until("db healthy", T, || async {
        env.try_docker_cli(&["inspect", "-f", "{{.State.Health.Status}}", &dbn])
            .as_deref()
            == Some("healthy")
    })
    .await;
    let healthy_at = Instant::now();
    env.until("web running", T, || async { env.running(&web).await })
        .await;
    let lag = healthy_at.elapsed();
    println!("web started {lag:?} after db turned healthy");
    assert!(
        lag < Duration::from_secs(2),
        "within two check intervals, took {lag:?}"
    );

    assert!(env.running(&env.cname("other")).await, "the rest converges");
    agent
        .wait_log("exited with code 1", T)
        .await
        .expect("reason reported");
    assert!(
        env.container_id(&env.cname("worker")).await.is_none(),
        "worker not started"
    );
    assert!(
        agent.log().contains("WaitingForDependency"),
        "{}",
        agent.log()
    );
}
