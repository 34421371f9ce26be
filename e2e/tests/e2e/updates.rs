//! Updates that never leave a service down, and an `apply` that tells the truth (issue 13),
//! on the real engine.
//!
//! - a stop-first update to a spec whose container cannot start is undone at once: the old
//!   container serves again within the engine's stop + start time plus one pass, and `apply`
//!   exits 1 with it running;
//! - a Network and its attached Container edited together (1 and 3 replicas): one `apply`
//!   converges, each container replaced once;
//! - a container with a fixed address (`ipv4Address`) is updated stop-first by default, keeps
//!   its address, in one `apply`;
//! - `apply` exit codes: an `Always` image whose registry is unreachable cannot be verified (1);
//!   a dependency that never turns healthy fails after `--timeout` (1) with its real state; a
//!   dependency that turns healthy after a few seconds is waited for (0, dependent running).

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Output;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use berth_e2e::{BUSYBOX, Env, test_env, text};

/// `berth apply --timeout SECONDS` on the manifest directory.
fn apply_with_timeout(env: &Env, seconds: u32) -> Output {
    env.berth()
        .arg("apply")
        .args(["--timeout", &seconds.to_string()])
        .arg(env.dir.path())
        .output()
        .expect("run berth apply")
}

fn ip_of(env: &Env, name: &str, network: &str) -> String {
    env.docker_cli(&[
        "inspect",
        "-f",
        &format!("{{{{(index .NetworkSettings.Networks \"{network}\").IPAddress}}}}"),
        name,
    ])
}

#[tokio::test(flavor = "multi_thread")]
async fn static_address_is_updated_stop_first_keeping_the_address() {
    let env = test_env!("upd-static-ip").await;
    env.write(
        "net.yaml",
        &env.network(
            "net",
            "spec:\n  ipam: {config: [{subnet: 10.213.131.0/24}]}\n",
        ),
    );
    let web = |version: &str| {
        env.container(
            "web",
            BUSYBOX,
            &format!(
                "  networks: [{{name: net, ipv4Address: 10.213.131.10}}]\n  env: [{{name: VERSION, value: \"{version}\"}}]\n"
            ),
        )
    };
    env.write("web.yaml", &web("1"));
    let out = env.apply();
    assert!(out.status.success(), "{}", text(&out));
    let name = env.cname("web");
    let net = env.oname("net");
    assert_eq!(ip_of(&env, &name, &net), "10.213.131.10");
    let before = env.container_id(&name).await;

    env.write("web.yaml", &web("2"));
    let t0 = Instant::now();
    let out = env.apply();
    let took = t0.elapsed();
    let out_text = text(&out);
    println!("{out_text}\nupdate took {took:?}");
    assert!(out.status.success(), "{out_text}");
    assert!(!out_text.contains("FAILED"), "no failed action: {out_text}");
    assert!(
        out_text.contains(&format!("stop container {name}")),
        "stop-first: {out_text}"
    );
    assert!(
        !out_text.contains("_next"),
        "no surge container: {out_text}"
    );
    assert_ne!(env.container_id(&name).await, before, "replaced");
    assert!(env.running(&name).await);
    assert_eq!(ip_of(&env, &name, &net), "10.213.131.10", "same address");
    let left: Vec<String> = env.containers().await.into_keys().collect();
    assert_eq!(left, vec![name], "no _prev left");
    assert!(
        took < Duration::from_secs(60),
        "no retries until a deadline: {took:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn apply_fails_when_an_always_image_cannot_be_verified() {
    let env = test_env!("upd-unverified").await;
    // A tag of a registry nobody listens on (port 9 is discard; nothing listens on it here):
    // the image is present locally, so the container runs, but berth cannot tell whether the
    // tag moved.
    let image = format!("127.0.0.1:9/{}/app:1", env.ns);
    env.docker_cli(&["tag", BUSYBOX, &image]);
    env.write(
        "web.yaml",
        &env.container("web", &image, "")
            .replace("pullPolicy: IfNotPresent", "pullPolicy: Always"),
    );
    let out = env.apply();
    let out_text = text(&out);
    println!("{out_text}");
    let _ = env.try_docker_cli(&["rmi", &image]);
    assert_eq!(out.status.code(), Some(1), "{out_text}");
    assert!(out_text.contains("could not be verified"), "{out_text}");
    assert!(out_text.contains(&image), "{out_text}");
    assert!(
        !out_text.contains("the host is converged"),
        "no false claim: {out_text}"
    );
}

/// A `db` whose health check passes once /tmp/ready exists, created `ready_after` seconds
/// after start (never when `None`), and a `web` that depends on it being Healthy.
fn db_and_web(env: &Env, ready_after: Option<u32>) {
    let script = match ready_after {
        Some(s) => format!("(sleep {s}; touch /tmp/ready) & exec sleep 3600"),
        None => "exec sleep 3600".to_string(),
    };
    env.write(
        "db.yaml",
        &env.container(
            "db",
            BUSYBOX,
            "  healthCheck:\n    test: [CMD, test, -e, /tmp/ready]\n    interval: 1s\n    retries: 1\n",
        )
        .replace("[sleep, \"3600\"]", &format!("[sh, -c, \"{script}\"]")),
    );
    env.write(
        "web.yaml",
        &env.container(
            "web",
            BUSYBOX,
            "  dependsOn: [{name: db, condition: Healthy}]\n",
        ),
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn apply_waits_for_a_dependency_that_turns_healthy() {
    let env = test_env!("upd-dep-ok").await;
    db_and_web(&env, Some(3));
    let out = apply_with_timeout(&env, 60);
    let out_text = text(&out);
    println!("{out_text}");
    assert!(out.status.success(), "{out_text}");
    assert!(env.running(&env.cname("db")).await);
    assert!(
        env.running(&env.cname("web")).await,
        "the dependent runs when apply returns: {out_text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn apply_fails_after_timeout_when_a_dependency_never_turns_healthy() {
    let env = test_env!("upd-dep-never").await;
    db_and_web(&env, None);
    let t0 = Instant::now();
    let out = apply_with_timeout(&env, 8);
    let took = t0.elapsed();
    let out_text = text(&out);
    println!("{out_text}\napply took {took:?}");
    assert_eq!(out.status.code(), Some(1), "{out_text}");
    assert!(took >= Duration::from_secs(8), "waited for --timeout");
    assert!(out_text.contains("WaitingForDependency"), "{out_text}");
    // The message gives the dependency's real state, not "being created".
    let db = env.cname("db");
    assert!(
        out_text.contains(&format!(
            "dependency {db} to become healthy (now Unhealthy)"
        )),
        "{out_text}"
    );
    assert!(env.container_id(&env.cname("web")).await.is_none());
}

/// A port that was free on 127.0.0.1 a moment ago.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// Connects to `addr` every 20 ms until `stop`; returns the longest stretch without a
/// successful connection after the first one.
fn longest_outage(addr: SocketAddr, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Duration> {
    std::thread::spawn(move || {
        let mut last_ok: Option<Instant> = None;
        let mut worst = Duration::ZERO;
        while !stop.load(Ordering::Relaxed) {
            let ok = TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok();
            let now = Instant::now();
            if ok {
                if let Some(t) = last_ok {
                    worst = worst.max(now - t);
                }
                last_ok = Some(now);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if let Some(t) = last_ok {
            worst = worst.max(Instant::now() - t);
        }
        worst
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_stop_first_update_is_undone_at_once() {
    let env = test_env!("upd-undo").await;
    let port = free_port();
    let web = |user: &str| {
        env.container(
            "web",
            BUSYBOX,
            &format!(
                "  init: true\n  ports: [{{containerPort: 8080, hostPort: {port}, hostIP: 127.0.0.1}}]\n  files: [{{path: /www/index.html, content: v1}}]\n{user}"
            ),
        )
        .replace(r#"[sleep, "3600"]"#, r#"[httpd, -f, -p, "8080", -h, /www]"#)
    };
    env.write("web.yaml", &web(""));
    let out = env.apply();
    assert!(out.status.success(), "{}", text(&out));
    let name = env.cname("web");
    let v1 = env.container_id(&name).await;
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    env.until("web serves", Duration::from_secs(60), || async {
        TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
    })
    .await;

    // The engine's own stop + start of this container, the floor of any stop-first update.
    let t0 = Instant::now();
    env.docker_cli(&["stop", "-t", "1", &name]);
    env.docker_cli(&["start", &name]);
    let floor = t0.elapsed();

    // The new spec cannot start: its user does not exist in the image.
    env.write("web.yaml", &web("  user: no-such-user\n"));
    let stop = Arc::new(AtomicBool::new(false));
    let probe = longest_outage(addr, stop.clone());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let t0 = Instant::now();
    let out = env.apply();
    let took = t0.elapsed();
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let outage = probe.join().expect("probe thread");
    let out_text = text(&out);
    println!("{out_text}");
    println!(
        "engine stop + start: {floor:?}; longest outage seen by a client: {outage:?}; apply took {took:?}"
    );
    assert_eq!(out.status.code(), Some(1), "{out_text}");
    assert!(
        out_text.contains(&format!("rename container {name}_prev to {name}")),
        "restored by apply: {out_text}"
    );
    assert_eq!(
        env.container_id(&name).await,
        v1,
        "the old container is back"
    );
    assert!(env.running(&name).await);
    let left: Vec<String> = env.containers().await.into_keys().collect();
    assert_eq!(left, vec![name.clone()], "no _prev left");
    assert!(
        outage < floor + Duration::from_secs(3),
        "outage {outage:?} beyond stop + start ({floor:?}) plus one pass"
    );
    assert!(
        took < Duration::from_secs(60),
        "no deadline waited for: {took:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn network_and_containers_edited_together_converge_in_one_apply() {
    for replicas in [1u32, 3] {
        let env = test_env!(&format!("upd-netc{replicas}")).await;
        let write = |version: &str| {
            env.write(
                "net.yaml",
                &env.network(
                    "net",
                    &format!("spec:\n  labels: {{version: \"{version}\"}}\n"),
                ),
            );
            env.write(
                "web.yaml",
                &env.container(
                    "web",
                    BUSYBOX,
                    &format!(
                        "  replicas: {replicas}\n  networks: [{{name: net}}]\n  env: [{{name: VERSION, value: \"{version}\"}}]\n"
                    ),
                ),
            );
        };
        write("1");
        let out = env.apply();
        assert!(out.status.success(), "{}", text(&out));
        write("2");
        let out = env.apply();
        let out_text = text(&out);
        println!("{out_text}");
        assert!(out.status.success(), "{replicas} replica(s): {out_text}");
        assert!(!out_text.contains("FAILED"), "{out_text}");
        for r in 0..replicas {
            let n = format!("{}_web_{r}", env.ns);
            let removed = out_text
                .lines()
                .filter(|l| {
                    l.trim_start()
                        .starts_with(&format!("remove container {n} "))
                })
                .count();
            assert_eq!(removed, 1, "{n} replaced once: {out_text}");
            assert!(env.running(&n).await, "{n} runs");
        }
        let left: Vec<String> = env.containers().await.into_keys().collect();
        assert_eq!(left.len(), replicas as usize, "{left:?}");
        let out = env.diff();
        assert_eq!(out.status.code(), Some(0), "converged: {}", text(&out));
    }
}

/// Found by a new-user review: a start-first update to a version that exits at once was
/// promoted, undone, and tried again every second or two until the progress deadline, each attempt
/// stopping the old container, with "1 failed attempt(s)" every time (the next attempt's
/// successful create cleared the count, and the delay was an engine failure's 1 s). Now each
/// undone attempt counts and waits as a crash loop does (10 s, 20 s, …) until the progress
/// deadline rolls the update back.
#[tokio::test(flavor = "multi_thread")]
async fn an_update_that_keeps_crashing_backs_off_more_each_time() {
    let env = test_env!("upd-crash").await;
    let web = |cmd: &str| {
        env.container("web", BUSYBOX, "  init: true\n")
            .replace(r#"[sleep, "3600"]"#, cmd)
    };
    env.write("web.yaml", &web(r#"[sleep, "3600"]"#));
    let mut agent = env.agent_with(&["--resync-seconds", "300"]);
    let name = env.cname("web");
    env.until("v1 running", Duration::from_secs(60), || env.running(&name))
        .await;
    env.write("web.yaml", &web(r#"[sh, -c, "exit 3"]"#));
    let undone = |log: &str, n: u32| {
        log.lines().any(|l| {
            l.contains("replacement failed; previous container restored")
                && l.contains(&format!("attempts={n}"))
        })
    };
    // A hang bound, not a timing: the second undone attempt comes after a 10 s back-off.
    let start = Instant::now();
    while !undone(&agent.log(), 2) && start.elapsed() < Duration::from_secs(150) {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let log = agent.log();
    agent.stop();
    assert!(
        undone(&log, 1),
        "the first undone attempt is logged:\n{log}"
    );
    assert!(
        undone(&log, 2),
        "the second undone attempt counts 2:\n{log}"
    );
    // The back-off before the third attempt: 20 s ± 20 % (a crash loop's), not an engine
    // failure's 2 s.
    let retry = log
        .lines()
        .find(|l| l.contains("replacement failed") && l.contains("attempts=2"))
        .and_then(|l| l.split("retry_in=").nth(1))
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_default();
    let secs = match retry.strip_suffix("ms") {
        Some(ms) => ms.parse::<f64>().unwrap_or(0.0) / 1000.0,
        None => retry.trim_end_matches('s').parse::<f64>().unwrap_or(0.0),
    };
    assert!(secs >= 15.0, "retry_in={retry}:\n{log}");
}
