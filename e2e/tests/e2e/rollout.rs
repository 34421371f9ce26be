//! Rolling updates (Kubernetes Deployment semantics) on the real engine, seen by a client.
//!
//! Three replicas of an HTTP service (busybox httpd, network alias `web`) sit behind a reverse
//! proxy (nginx from the services image, publishing a free port on 127.0.0.1), as they would in
//! production. The test process is the client: a thread sending `GET /` through the proxy in a
//! loop and recording every answer. nginx re-resolves `web` every second through Docker's DNS
//! and, when one address fails (refused, timed out, reset), tries the next one
//! (`proxy_next_upstream`): that is how a service behind a proxy survives one replica going
//! away, so long as some replica keeps serving.
//!
//! - start-first (`maxSurge: 1, maxUnavailable: 0`): every request succeeds, v1 then v2, and
//!   three web containers run at every moment, never more than one `_next` at a time;
//! - `Recreate` (control): the same client does see the outage, which proves it can;
//! - a new spec that never becomes ready is rolled back after `progressDeadlineSeconds`; the
//!   old replicas are never stopped and serve every request; the agent does not retry.
//!
//! These tests run one at a time (see [`SERIAL`]): "zero failed requests" must not depend on
//! how busy two other proxies make the machine.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use berth_e2e::{Agent, BUSYBOX, Env, SERVICES, test_env};

/// Timeout for each wait; generous, the machine is shared and small.
const T: Duration = Duration::from_secs(120);
/// A request that has no complete answer within this time is a failure. Generous: a request
/// in flight when its replica is stopped can cost nginx a read timeout (1 s) and a connect
/// timeout per stale address (0.3 s) before another replica answers; nginx's own retry budget
/// is left at its default (no time limit, every address).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause between two requests of the client.
const REQUEST_GAP: Duration = Duration::from_millis(10);
/// The client stops by itself after this long, whatever happens to the test.
const CLIENT_MAX: Duration = Duration::from_secs(600);

/// One test of this file at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// busybox httpd in the foreground on 8080 serving /www.
const HTTPD: &str = r#"[httpd, -f, -p, "8080", -h, /www]"#;

/// The proxy's nginx.conf. `proxy_pass` with a variable makes nginx resolve `web` at request
/// time through `resolver` (Docker's embedded DNS), caching the answer 1 s; every address the
/// name has is a peer, and a failed connect/read moves the request to the next peer.
const NGINX_CONF: &str = r#"worker_processes 1;
pid /tmp/nginx.pid;
error_log stderr notice;
events { worker_connections 256; }
http {
  access_log off;
  client_body_temp_path /tmp/nginx-body;
  proxy_temp_path /tmp/nginx-proxy;
  server {
    listen 80;
    resolver 127.0.0.11 valid=1s ipv6=off;
    resolver_timeout 10s;
    location / {
      set $backend http://web:8080;
      proxy_pass $backend;
      proxy_next_upstream error timeout http_502;
      proxy_connect_timeout 300ms;
      proxy_send_timeout 1s;
      proxy_read_timeout 1s;
    }
  }
}
"#;

/// A port that was free on 127.0.0.1 a moment ago.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// The berth network `net` and the nginx proxy on it, publishing 127.0.0.1:`port`.
fn write_proxy(env: &Env, port: u16) {
    env.write("net.yaml", &env.network("net", ""));
    let conf: String = NGINX_CONF
        .lines()
        .map(|l| format!("        {l}\n"))
        .collect();
    env.write(
        "proxy.yaml",
        &env.container(
            "proxy",
            SERVICES,
            &format!(
                "  ports: [{{containerPort: 80, hostPort: {port}, hostIP: 127.0.0.1}}]\n  networks: [{{name: net}}]\n  stopSignal: SIGQUIT\n  files:\n    - path: /etc/berth/nginx.conf\n      content: |\n{conf}"
            ),
        )
        .replace(
            r#"[sleep, "3600"]"#,
            r#"[nginx, -c, /etc/berth/nginx.conf, -g, "daemon off;"]"#,
        ),
    );
}

/// The `web` Container: 3 replicas on `net` with alias `web`, serving `content` as /index.html
/// with `command`, ready when `GET /` on 8080 answers; `extra` is appended to the spec.
fn web(env: &Env, content: &str, command: &str, extra: &str) -> String {
    env.container(
        "web",
        BUSYBOX,
        &format!(
            "  replicas: 3\n  init: true\n  networks: [{{name: net, aliases: [web]}}]\n  files: [{{path: /www/index.html, content: {content}}}]\n  readinessProbe:\n    httpGet: {{path: /, port: 8080}}\n    periodSeconds: 1\n{extra}"
        ),
    )
    .replace(r#"[sleep, "3600"]"#, command)
}

// ------------------------------------------------------------------------------- client ---

/// One `GET /` through the proxy: the body of a 200 answer, else what went wrong.
fn get(addr: SocketAddr) -> Result<String, String> {
    let start = Instant::now();
    let mut s =
        TcpStream::connect_timeout(&addr, REQUEST_TIMEOUT).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(REQUEST_TIMEOUT))
        .and_then(|()| s.set_write_timeout(Some(REQUEST_TIMEOUT)))
        .map_err(|e| format!("set timeout: {e}"))?;
    s.write_all(b"GET / HTTP/1.0\r\nHost: web\r\nConnection: close\r\n\r\n")
        .map_err(|e| format!("write: {e}"))?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if start.elapsed() > REQUEST_TIMEOUT {
            return Err(format!("no complete answer within {REQUEST_TIMEOUT:?}"));
        }
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(format!("read: {e}")),
        }
    }
    let text = String::from_utf8_lossy(&buf);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return Err(format!("malformed answer {text:?}"));
    };
    let status = head.split_whitespace().nth(1).unwrap_or_default();
    if status != "200" {
        let body = body.trim();
        return Err(if body.len() <= 40 {
            format!("status {status}: {body:?}")
        } else {
            format!("status {status}")
        });
    }
    Ok(body.trim().to_string())
}

/// One request's outcome, `at` from the client's start.
struct Outcome {
    at: Duration,
    result: Result<String, String>,
}

/// A thread sending `GET /` through the proxy until stopped (or [`CLIENT_MAX`]).
struct Client {
    stop: Arc<AtomicBool>,
    outcomes: Arc<Mutex<Vec<Outcome>>>,
    thread: Option<JoinHandle<()>>,
    started: Instant,
}

impl Client {
    fn start(port: u16) -> Client {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let stop = Arc::new(AtomicBool::new(false));
        let outcomes = Arc::new(Mutex::new(Vec::new()));
        let started = Instant::now();
        let thread = {
            let (stop, outcomes) = (stop.clone(), outcomes.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) && started.elapsed() < CLIENT_MAX {
                    let at = started.elapsed();
                    let result = get(addr);
                    outcomes
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(Outcome { at, result });
                    std::thread::sleep(REQUEST_GAP);
                }
            })
        };
        Client {
            stop,
            outcomes,
            thread: Some(thread),
            started,
        }
    }

    /// Failures so far.
    fn failures(&self) -> usize {
        let o = self.outcomes.lock().unwrap_or_else(|e| e.into_inner());
        o.iter().filter(|o| o.result.is_err()).count()
    }

    /// Stops the thread and sums up.
    fn finish(mut self) -> Summary {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().expect("client thread");
        }
        let outcomes =
            std::mem::take(&mut *self.outcomes.lock().unwrap_or_else(|e| e.into_inner()));
        Summary {
            duration: self.started.elapsed(),
            outcomes,
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

struct Summary {
    duration: Duration,
    outcomes: Vec<Outcome>,
}

impl Summary {
    fn failures(&self) -> Vec<&Outcome> {
        self.outcomes.iter().filter(|o| o.result.is_err()).collect()
    }

    /// Successful answers by body.
    fn bodies(&self) -> BTreeMap<&str, usize> {
        let mut m = BTreeMap::new();
        for o in &self.outcomes {
            if let Ok(b) = &o.result {
                *m.entry(b.as_str()).or_insert(0) += 1;
            }
        }
        m
    }

    fn print(&self, what: &str) {
        let failures = self.failures();
        println!(
            "[{what}] client: {} requests in {:.1?}, {} failed, answers {:?}",
            self.outcomes.len(),
            self.duration,
            failures.len(),
            self.bodies()
        );
        if let (Some(first), Some(last)) = (failures.first(), failures.last()) {
            println!(
                "[{what}] failures from {:.2?} to {:.2?}; first ones:",
                first.at, last.at
            );
            for f in failures.iter().take(5) {
                println!("    at {:.2?}: {:?}", f.at, f.result);
            }
        }
    }
}

// ------------------------------------------------------------------------------ sampler ---

/// One web container in a sample.
struct WebContainer {
    name: String,
    id: String,
    running: bool,
    hash: String,
}

/// Every container of object `web` (any name: `_<r>`, `_<r>_next`, `_<r>_prev`).
async fn web_containers(env: &Env) -> Vec<WebContainer> {
    let prefix = format!("{}_web_", env.ns);
    let mut v: Vec<WebContainer> = env
        .containers()
        .await
        .into_iter()
        .filter(|(name, _)| name.starts_with(&prefix))
        .map(|(name, c)| WebContainer {
            running: c.state.map(|s| s.to_string()).as_deref() == Some("running"),
            id: c.id.unwrap_or_default(),
            hash: c
                .labels
                .as_ref()
                .and_then(|l| l.get("berth.dev/spec-hash"))
                .cloned()
                .unwrap_or_default(),
            name,
        })
        .collect();
    v.sort_by(|a, b| a.name.cmp(&b.name));
    v
}

fn names(v: &[WebContainer]) -> Vec<&str> {
    v.iter()
        .map(|c| {
            if c.running {
                c.name.as_str()
            } else {
                "(stopped)"
            }
        })
        .collect()
}

/// The three replica names `<ns>_web_<r>`.
fn replica_names(env: &Env) -> Vec<String> {
    (0..3).map(|r| format!("{}_web_{r}", env.ns)).collect()
}

/// Brings up network, proxy and v1 of `web` (`web_extra` appended to its spec); returns the
/// agent once the proxy answers `v1` and the three replicas run.
async fn bring_up_v1(env: &Env, port: u16, web_extra: &str) -> Agent {
    berth_e2e::ensure_images("services");
    write_proxy(env, port);
    env.write("web.yaml", &web(env, "v1", HTTPD, web_extra));
    let agent = env.agent();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    env.until("3 web replicas run and the proxy answers v1", T, || async {
        let cs = web_containers(env).await;
        cs.len() == 3
            && cs.iter().all(|c| c.running)
            && tokio::task::spawn_blocking(move || get(addr))
                .await
                .ok()
                .and_then(Result::ok)
                .as_deref()
                == Some("v1")
    })
    .await;
    agent
}

/// The agent's log, for assertion messages (the last 60 lines).
fn log_tail(agent: &Agent) -> String {
    let log = agent.log();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(60)..].join("\n")
}

// -------------------------------------------------------------------------------- tests ---

/// start-first rolling update (maxSurge 1, maxUnavailable 0) of 3 replicas behind the proxy:
/// the client sees v1 then v2 and not one failed request; three web containers run at every
/// sampled moment and never more than one `_next` exists.
#[tokio::test(flavor = "multi_thread")]
async fn start_first_rolling_update_serves_every_request() {
    let _serial = SERIAL.lock().await;
    let env = test_env!("roll").await;
    let port = free_port();
    // minReadySeconds 2 > nginx's 1 s DNS cache: the proxy learns a new replica's address
    // before an old one stops. Without it the three steps can finish within one cached answer
    // holding only old addresses (seen: 1 failed request in about 5 runs).
    let strategy = "  updateStrategy:\n    type: RollingUpdate\n    rollingUpdate: {maxUnavailable: 0, maxSurge: 1}\n  minReadySeconds: 2\n";
    let agent = bring_up_v1(&env, port, strategy).await;
    let v1_hash = web_containers(&env).await[0].hash.clone();

    let client = Client::start(port);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(client.failures(), 0, "failures before any update");

    env.write("web.yaml", &web(&env, "v2", HTTPD, strategy));
    let t0 = Instant::now();
    let replicas = replica_names(&env);
    let (mut max_next, mut min_running, mut samples) = (0, usize::MAX, 0);
    let mut worst = String::new();
    loop {
        let cs = web_containers(&env).await;
        samples += 1;
        let next = cs.iter().filter(|c| c.name.ends_with("_next")).count();
        let running = cs.iter().filter(|c| c.running).count();
        if next > max_next || running < min_running {
            worst = format!("at {:.1?}: {:?}", t0.elapsed(), names(&cs));
        }
        max_next = max_next.max(next);
        min_running = min_running.min(running);
        let done = cs.len() == 3
            && cs.iter().zip(&replicas).all(|(c, r)| {
                c.name == *r && c.running && c.hash != v1_hash && c.hash == cs[0].hash
            });
        if done {
            break;
        }
        assert!(
            t0.elapsed() < T,
            "the update did not finish within {T:?}; now: {:?}\nagent log:\n{}",
            names(&cs),
            log_tail(&agent)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let took = t0.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let summary = client.finish();
    summary.print("start-first");
    println!(
        "update took {took:.1?}; {samples} samples: at most {max_next} _next, at least {min_running} running (extreme {worst})"
    );

    for r in &replicas {
        assert_eq!(
            env.docker_cli(&["exec", r, "cat", "/www/index.html"]),
            "v2",
            "{r} serves the new content"
        );
    }
    let failures = summary.failures();
    assert!(
        failures.is_empty(),
        "{} of {} requests failed during a start-first update, first: {:?}\nproxy log:\n{}\nagent log:\n{}",
        failures.len(),
        summary.outcomes.len(),
        failures.first().map(|f| &f.result),
        env.try_docker_cli(&["logs", &env.cname("proxy")])
            .unwrap_or_default(),
        log_tail(&agent)
    );
    let bodies = summary.bodies();
    assert!(
        bodies.contains_key("v1") && bodies.contains_key("v2") && bodies.len() == 2,
        "answers: {bodies:?}"
    );
    assert!(
        max_next <= 1,
        "maxSurge 1: at most one _next at a time ({worst})"
    );
    assert!(
        min_running >= 3,
        "maxUnavailable 0: never fewer than 3 running web containers ({worst})"
    );
}

/// Control: the same object switched to `updateStrategy: Recreate` (and a new content) stops
/// every old replica before starting new ones, and the very same client sees the outage. The
/// new command waits 2 s before httpd listens so that the gap cannot be shorter than the
/// client's request interval.
#[tokio::test(flavor = "multi_thread")]
async fn recreate_update_is_seen_by_the_client() {
    let _serial = SERIAL.lock().await;
    let env = test_env!("recreate").await;
    let port = free_port();
    let agent = bring_up_v1(&env, port, "").await;
    let v1_hash = web_containers(&env).await[0].hash.clone();

    let client = Client::start(port);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(client.failures(), 0, "failures before any update");

    env.write(
        "web.yaml",
        &web(
            &env,
            "v2",
            r#"[sh, -c, "sleep 2; exec httpd -f -p 8080 -h /www"]"#,
            "  updateStrategy: {type: Recreate}\n",
        ),
    );
    let t0 = Instant::now();
    let replicas = replica_names(&env);
    let mut saw_next = false;
    loop {
        let cs = web_containers(&env).await;
        saw_next |= cs.iter().any(|c| c.name.ends_with("_next"));
        let done = cs.len() == 3
            && cs
                .iter()
                .zip(&replicas)
                .all(|(c, r)| c.name == *r && c.running && c.hash != v1_hash);
        if done {
            break;
        }
        assert!(
            t0.elapsed() < T,
            "the update did not finish within {T:?}; now: {:?}\nagent log:\n{}",
            names(&cs),
            log_tail(&agent)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    env.until("the proxy answers v2", T, || async {
        tokio::task::spawn_blocking(move || get(addr))
            .await
            .ok()
            .and_then(Result::ok)
            .as_deref()
            == Some("v2")
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let summary = client.finish();
    summary.print("recreate");

    assert!(
        !summary.failures().is_empty(),
        "a Recreate update stops every replica: the client must have seen failed requests"
    );
    assert!(!saw_next, "Recreate creates no _next containers");
    let first_v2 = summary
        .outcomes
        .iter()
        .position(|o| o.result.as_deref() == Ok("v2"))
        .expect("v2 answered");
    assert!(
        summary.outcomes[first_v2..]
            .iter()
            .all(|o| o.result.as_deref() != Ok("v1")),
        "Recreate never runs both versions: no v1 after the first v2"
    );
}

/// A new spec whose readiness never passes (httpd on the wrong port, the readiness probe asks
/// 8080): its first `_next` replica never becomes available, so after `progressDeadlineSeconds`
/// the agent rolls back (`RolledBack`) and removes it. The three old replicas are never stopped
/// (same IDs, same StartedAt, running in every sample), serve every request with `v1`, and
/// the agent does not try the same spec again.
#[tokio::test(flavor = "multi_thread")]
async fn never_ready_update_rolls_back_and_old_replicas_keep_serving() {
    let _serial = SERIAL.lock().await;
    let env = test_env!("rollback").await;
    let port = free_port();
    // Default strategy (25 % / 25 % of 3: start-first, one surge).
    let deadline = "  progressDeadlineSeconds: 8\n";
    let agent = bring_up_v1(&env, port, deadline).await;
    let replicas = replica_names(&env);
    let original: HashMap<String, (String, String)> = web_containers(&env)
        .await
        .into_iter()
        .map(|c| {
            let started = env.docker_cli(&["inspect", "-f", "{{.State.StartedAt}}", &c.id]);
            (c.name, (c.id, started))
        })
        .collect();
    assert_eq!(
        original.keys().collect::<BTreeSet<_>>(),
        replicas.iter().collect::<BTreeSet<_>>()
    );

    let client = Client::start(port);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(client.failures(), 0, "failures before any update");

    env.write(
        "web.yaml",
        &web(&env, "v2", r#"[httpd, -f, -p, "8081", -h, /www]"#, deadline),
    );
    let t0 = Instant::now();
    // Every sample: the three originals run. Wait for a _next, then for the rollback.
    let check_originals = |cs: &[WebContainer], when: &str| {
        for (name, (id, _)) in &original {
            assert!(
                cs.iter()
                    .any(|c| c.id == *id && c.name == *name && c.running),
                "{when}, at {:.1?}: original {name} ({id:.12}) is not running under its name; web containers: {:?}\nagent log:\n{}",
                t0.elapsed(),
                names(cs),
                log_tail(&agent)
            );
        }
    };
    let (mut saw_next, mut max_next) = (None, 0);
    loop {
        let cs = web_containers(&env).await;
        check_originals(&cs, "during the update");
        let next = cs.iter().filter(|c| c.name.ends_with("_next")).count();
        max_next = max_next.max(next);
        if next > 0 && saw_next.is_none() {
            saw_next = Some(t0.elapsed());
        }
        if agent.log().contains("RolledBack") {
            break;
        }
        assert!(
            t0.elapsed() < T,
            "no RolledBack within {T:?} (a _next seen: {saw_next:?}); web containers: {:?}\nagent log:\n{}",
            names(&cs),
            log_tail(&agent)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let rolled_back = t0.elapsed();
    assert!(
        saw_next.is_some(),
        "a _next replica was created before the rollback"
    );
    let line = agent
        .log()
        .lines()
        .find(|l| l.contains("RolledBack") && l.contains("rolling back"))
        .unwrap_or_default()
        .to_string();
    println!("rollback after {rolled_back:.1?} (first _next at {saw_next:?}): {line}");
    assert!(line.contains("progressDeadlineSeconds"), "{line}");
    env.until("the waiting reason RolledBack is logged", T, || async {
        agent
            .log()
            .lines()
            .any(|l| l.contains("not converging") && l.contains("RolledBack"))
    })
    .await;

    env.until("no _next or _prev container remains", T, || async {
        let cs = web_containers(&env).await;
        check_originals(&cs, "after the rollback");
        cs.len() == 3
    })
    .await;
    // No new attempt at the same spec.
    let watch = Instant::now();
    while watch.elapsed() < Duration::from_secs(5) {
        let cs = web_containers(&env).await;
        check_originals(&cs, "after the rollback");
        assert_eq!(
            cs.len(),
            3,
            "the agent tried the rolled-back spec again: {:?}",
            names(&cs)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let summary = client.finish();
    summary.print("rollback");
    println!("at most {max_next} _next during the attempt");

    for (name, (id, started)) in &original {
        assert_eq!(
            env.docker_cli(&["inspect", "-f", "{{.State.StartedAt}}", id]),
            *started,
            "{name} was never restarted"
        );
        assert_eq!(
            env.docker_cli(&["exec", name, "cat", "/www/index.html"]),
            "v1"
        );
    }
    let failures = summary.failures();
    assert!(
        failures.is_empty(),
        "{} of {} requests failed while the old replicas should have kept serving, first: {:?}",
        failures.len(),
        summary.outcomes.len(),
        failures.first().map(|f| &f.result)
    );
    assert_eq!(
        summary.bodies().keys().copied().collect::<Vec<_>>(),
        ["v1"],
        "only the old version answered"
    );
}

/// `berth apply` drives a rolling update to the end — one pass per step, readiness probes run —
/// and exits 1 when the update made no progress and was rolled back, the old containers kept.
#[tokio::test(flavor = "multi_thread")]
async fn apply_finishes_a_rolling_update_and_reports_a_rollback() {
    let env = test_env!("roll-apply").await;
    let web = |content: &str, probe_port: u16| {
        env.container(
            "web",
            BUSYBOX,
            &format!(
                "  replicas: 2\n  init: true\n  files: [{{path: /www/index.html, content: {content}}}]\n  readinessProbe:\n    httpGet: {{path: /, port: {probe_port}}}\n    periodSeconds: 1\n  progressDeadlineSeconds: 6\n"
            ),
        )
        .replace(r#"[sleep, "3600"]"#, HTTPD)
    };
    let names: Vec<String> = (0..2).map(|r| format!("{}_web_{r}", env.ns)).collect();
    let content = |name: &str| env.docker_cli(&["exec", name, "cat", "/www/index.html"]);

    env.write("web.yaml", &web("v1", 8080));
    let out = env.apply();
    assert!(out.status.success(), "{}", berth_e2e::text(&out));

    env.write("web.yaml", &web("v2", 8080));
    let out = env.apply();
    let text = berth_e2e::text(&out);
    println!("{text}");
    assert!(out.status.success(), "{text}");
    for n in &names {
        assert!(
            text.contains(&format!("rename container {n}_next to {n}")),
            "{n} replaced start-first: {text}"
        );
        assert_eq!(content(n), "v2");
    }
    let left: Vec<String> = env.containers().await.into_keys().collect();
    assert_eq!(left.len(), 2, "no _next or _prev left: {left:?}");
    let ids: Vec<Option<String>> = {
        let mut v = Vec::new();
        for n in &names {
            v.push(env.container_id(n).await);
        }
        v
    };

    // v3's readiness probe asks a port nothing listens on: never ready, rolled back after 6 s.
    env.write("web.yaml", &web("v3", 9999));
    let t0 = Instant::now();
    let out = env.apply();
    let text = berth_e2e::text(&out);
    println!("{text}");
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("RolledBack"), "{text}");
    assert!(
        t0.elapsed() >= Duration::from_secs(6),
        "not before the deadline"
    );
    for (n, id) in names.iter().zip(&ids) {
        assert_eq!(&env.container_id(n).await, id, "{n} is the v2 container");
        assert!(env.running(n).await);
        assert_eq!(content(n), "v2");
    }
    let left: Vec<String> = env.containers().await.into_keys().collect();
    assert_eq!(left.len(), 2, "the surge container is gone: {left:?}");

    // Recreate (stop-first, every replica in one pass): apply still waits until the new
    // replicas are ready and the previous containers are gone.
    env.write(
        "web.yaml",
        &web("v4", 8080).replace(
            "  replicas: 2\n",
            "  replicas: 2\n  updateStrategy: {type: Recreate}\n",
        ),
    );
    let out = env.apply();
    let text = berth_e2e::text(&out);
    println!("{text}");
    assert!(out.status.success(), "{text}");
    for n in &names {
        assert_eq!(content(n), "v4");
    }
    let left: Vec<String> = env.containers().await.into_keys().collect();
    assert_eq!(left.len(), 2, "no _prev left after a Recreate: {left:?}");
}

/// Waits until the three replicas run under their own names, all with one spec hash other than
/// `old_hash`, and replica 0 serves `content`; returns how long that took.
async fn wait_all_serving(env: &Env, agent: &Agent, old_hash: &str, content: &str) -> Duration {
    let t0 = Instant::now();
    let replicas = replica_names(env);
    loop {
        let cs = web_containers(env).await;
        let settled = cs.len() == 3
            && cs.iter().zip(&replicas).all(|(c, r)| {
                c.name == *r && c.running && c.hash != old_hash && c.hash == cs[0].hash
            });
        if settled
            && env
                .try_docker_cli(&["exec", &replicas[0], "cat", "/www/index.html"])
                .as_deref()
                == Some(content)
        {
            return t0.elapsed();
        }
        assert!(
            t0.elapsed() < T,
            "not all replicas serve {content} after {T:?}; now: {:?}\nagent log:\n{}",
            names(&cs),
            log_tail(agent)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Issue 13, case 4: 200 edits in 20 s to a start-first Container while the agent runs. Each
/// newer spec supersedes the update in progress: no engine 409 Conflict (two actions on one
/// engine name), not one failed request through the proxy, and the last spec runs within
/// about one update's time after the last edit.
#[tokio::test(flavor = "multi_thread")]
async fn continuous_edits_supersede_updates_cleanly() {
    let _serial = SERIAL.lock().await;
    let env = test_env!("roll-edits").await;
    let port = free_port();
    let strategy = "  updateStrategy:\n    type: RollingUpdate\n    rollingUpdate: {maxUnavailable: 0, maxSurge: 1}\n  minReadySeconds: 2\n";
    let agent = bring_up_v1(&env, port, strategy).await;
    let v1_hash = web_containers(&env).await[0].hash.clone();
    let client = Client::start(port);

    // One undisturbed update, for scale.
    env.write("web.yaml", &web(&env, "v2", HTTPD, strategy));
    let one_update = wait_all_serving(&env, &agent, &v1_hash, "v2").await;
    let v2_hash = web_containers(&env).await[0].hash.clone();

    let edits = 200u32;
    let t0 = Instant::now();
    for i in 0..edits {
        env.write("web.yaml", &web(&env, &format!("e{i}"), HTTPD, strategy));
        let next = t0 + Duration::from_millis(100) * (i + 1);
        tokio::time::sleep(next.saturating_duration_since(Instant::now())).await;
    }
    let last = format!("e{}", edits - 1);
    let after_last = wait_all_serving(&env, &agent, &v2_hash, &last).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let summary = client.finish();
    summary.print("continuous edits");
    let log = agent.log();
    let conflicts = log
        .lines()
        .filter(|l| l.contains("status code 409"))
        .count();
    let failed_actions = log.lines().filter(|l| l.contains("action failed")).count();
    println!(
        "{edits} edits in {:.1?}; one undisturbed update took {one_update:.1?}; the last spec ran everywhere {after_last:.1?} after the last edit; engine 409s: {conflicts}; failed actions: {failed_actions}",
        Duration::from_millis(100) * edits
    );
    assert_eq!(conflicts, 0, "no 409 Conflict:\n{}", log_tail(&agent));
    let failures = summary.failures();
    assert!(
        failures.is_empty(),
        "{} of {} requests failed, first: {:?}\nagent log:\n{}",
        failures.len(),
        summary.outcomes.len(),
        failures.first().map(|f| &f.result),
        log_tail(&agent)
    );
    assert!(
        after_last < one_update * 2 + Duration::from_secs(5),
        "converged {after_last:?} after the last edit; one update takes {one_update:?}"
    );
    let left: Vec<String> = env.containers().await.into_keys().collect();
    assert_eq!(
        left.len(),
        4,
        "proxy and 3 replicas, no _next/_prev: {left:?}"
    );
}
