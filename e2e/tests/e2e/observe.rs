//! Seeing what the agent does, on the real engine: the local API through `berth get`,
//! `describe` and `events`, the "no agent running" fallback, Prometheus metrics and health
//! endpoints, and systemd notifications with the watchdog.

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth_e2e::proxy::{self, EngineProxy, Fault};
use berth_e2e::{BUSYBOX, Env, http_get, test_env};
use serde_json::Value;

const T: Duration = Duration::from_secs(60);

/// `berth --socket SOCKET ARGS…`: (exit code, stdout, stderr).
fn berth(env: &Env, socket: &Path, args: &[&str]) -> (i32, String, String) {
    env.local(socket, args)
}

fn item<'a>(list: &'a Value, name: &str) -> &'a Value {
    list["items"]
        .as_array()
        .and_then(|items| items.iter().find(|o| o["metadata"]["name"] == name))
        .unwrap_or(&Value::Null)
}

fn condition(o: &Value, type_: &str) -> String {
    o["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == type_))
        .and_then(|c| c["status"].as_str())
        .unwrap_or("")
        .to_string()
}

fn metric(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Done when 1 and 2: a healthy container, one whose image cannot be pulled and a
/// crash-looping one, seen through `get -o json`, the table, `describe`, `events`, `/metrics`,
/// `/healthz` and `/readyz`; after the agent stops, `get` says so and shows the engine's view.
#[tokio::test(flavor = "multi_thread")]
async fn get_describe_events_and_metrics_show_what_the_agent_sees() {
    let env = test_env!("observe").await;
    let sockdir = tempfile::tempdir().expect("tempdir");
    let socket = sockdir.path().join("agent.sock");
    let addr = "127.0.0.1:19471";
    env.write(
        "ok.yaml",
        &env.container("ok", BUSYBOX, "  env: [{name: PASSWORD, value: hunter2}]\n"),
    );
    env.write(
        "nopull.yaml",
        &env.container("nopull", "127.0.0.1:1/berth-e2e/absent:1", ""),
    );
    env.write(
        "crash.yaml",
        &env.container("crash", BUSYBOX, "").replace(
            "command: [sleep, \"3600\"]",
            "command: [sh, -c, \"exit 3\"]",
        ),
    );
    // The socket flag is global; the agent gets it through the environment.
    let mut agent = env.agent_with_env(
        &[
            "--metrics-address",
            addr,
            "--crash-backoff-initial-seconds",
            "1",
            "--crash-backoff-cap-seconds",
            "2",
        ],
        &[("BERTH_SOCKET", socket.as_os_str())],
    );
    let mut list = Value::Null;
    env.until(
        "get -o json shows Ready, ImagePullBackOff and CrashLoopBackOff",
        T,
        || {
            let (code, out, _) = berth(&env, &socket, &["get", "containers", "-o", "json"]);
            list = serde_json::from_str(&out).unwrap_or(Value::Null);
            let reason = |n: &str| item(&list, n)["status"]["hosts"][0]["reason"].clone();
            let ok = code == 0
                && condition(item(&list, "ok"), "Ready") == "True"
                && reason("nopull") == "ImagePullBackOff"
                && condition(item(&list, "nopull"), "Degraded") == "True"
                && reason("crash") == "CrashLoopBackOff"
                && item(&list, "crash")["status"]["hosts"][0]["restartCount"]
                    .as_u64()
                    .is_some_and(|n| n >= 1);
            async move { ok }
        },
    )
    .await;
    assert_eq!(list["kind"], "List");
    let ok = item(&list, "ok");
    assert_eq!(ok["apiVersion"], "berth.dev/v1alpha1");
    assert_eq!(ok["kind"], "Container");
    assert_eq!(ok["metadata"]["namespace"], env.ns.as_str());
    assert_eq!(ok["spec"]["image"], BUSYBOX);
    assert!(
        !list.to_string().contains("hunter2"),
        "no env value in the API: {list}"
    );
    assert_eq!(ok["spec"]["env"][0]["name"], "PASSWORD");

    let (code, table, _) = berth(&env, &socket, &["get", "-n", &env.ns]);
    assert_eq!(code, 0, "{table}");
    println!("{table}");
    let head: Vec<&str> = table
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    assert_eq!(
        head,
        [
            "NAMESPACE",
            "NAME",
            "READY",
            "STATUS",
            "RESTARTS",
            "AGE",
            "IMAGE"
        ]
    );
    let row = |name: &str| {
        table
            .lines()
            .find(|l| l.contains(&format!("container/{name} ")))
            .unwrap_or("")
            .split_whitespace()
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    assert_eq!(row("ok")[2..4], ["1/1".to_string(), "Running".into()]);
    assert_eq!(row("nopull")[3], "ImagePullBackOff");
    assert_eq!(row("crash")[3], "CrashLoopBackOff");

    let (code, yaml, _) = berth(&env, &socket, &["get", "containers", "-o", "yaml"]);
    assert!(code == 0 && yaml.contains("kind: List"), "{yaml}");

    let (code, text, _) = berth(
        &env,
        &socket,
        &["describe", "container", &format!("{}/crash", env.ns)],
    );
    println!("{text}");
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains(&env.cname("crash")),
        "names the engine container"
    );
    assert!(text.contains("Last exit code: 3"), "{text}");
    assert!(text.contains("CrashLoopBackOff"), "{text}");

    let (code, events, _) = berth(&env, &socket, &["events"]);
    assert_eq!(code, 0);
    assert!(
        events.contains("Restarted") && events.contains("ImagePullBackOff"),
        "{events}"
    );

    // Metrics: the restart counter moves.
    let restarts = |text: &str| {
        metric(
            text,
            &format!(
                "berth_container_restarts_total{{namespace=\"{}\",name=\"crash\"}}",
                env.ns
            ),
        )
        .unwrap_or(0.0)
    };
    let (code, first) = http_get(addr, "/metrics").expect("/metrics answers");
    assert_eq!(code, 200);
    for name in [
        "berth_objects{",
        "berth_passes_total{",
        "berth_pass_duration_seconds_bucket{",
        "berth_engine_operations_total{",
        "berth_engine_operation_duration_seconds_bucket{",
        "berth_image_pulls_total{",
        "berth_last_successful_sync_timestamp_seconds",
        "berth_build_info{",
    ] {
        assert!(first.contains(name), "/metrics lacks {name}:\n{first}");
    }
    let before = restarts(&first);
    env.until("the restart counter moves", T, || {
        let now = http_get(addr, "/metrics")
            .map(|(_, b)| restarts(&b))
            .unwrap_or(0.0);
        async move { now > before }
    })
    .await;
    assert_eq!(http_get(addr, "/healthz").map(|r| r.0), Some(200));
    assert_eq!(http_get(addr, "/readyz").map(|r| r.0), Some(200));
    let mode = std::fs::metadata(&socket)
        .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777)
        .expect("socket");
    assert_eq!(mode, 0o660, "socket mode");

    // No agent: `get` says so, exits 1 and shows what the engine's labels tell.
    agent.stop();
    let (code, out, err) = berth(&env, &socket, &["get"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("no agent is running"), "{err}");
    assert!(
        out.contains("container/ok") && out.contains("Running"),
        "{out}"
    );
    assert!(out.contains("container/crash"), "{out}");
}

/// `berth ARGS…` with its standard output (and its standard error, with `stderr_too`) a pipe
/// whose reader is already gone (`berth get | head -1` once `head` exited): (exit code,
/// standard error).
fn with_stdout_closed(
    env: &Env,
    args: &[&std::ffi::OsStr],
    stderr_too: bool,
) -> (Option<i32>, String) {
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    let stderr = if stderr_too {
        std::process::Stdio::from(writer.try_clone().expect("dup"))
    } else {
        std::process::Stdio::piped()
    };
    let out = env
        .berth()
        .args(args)
        .stdout(writer)
        .stderr(stderr)
        .output()
        .expect("run berth");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Every command that prints on standard output ends quietly when its reader went away, as a
/// program killed by SIGPIPE does: exit status 141, no panic ("failed printing to stdout:
/// Broken pipe"), no message — the one-shot commands, and `get` (each output), `describe` and
/// `events` (also `--watch`) of a running agent; and with standard error on the same pipe
/// (`2>&1 | head`), commands that print there first.
#[tokio::test(flavor = "multi_thread")]
async fn every_command_exits_quietly_when_stdout_is_closed() {
    let env = test_env!("epipe").await;
    let sockdir = tempfile::tempdir().expect("tempdir");
    let socket = sockdir.path().join("agent.sock");
    env.write("a.yaml", &env.container("web", BUSYBOX, ""));
    let dir = env.dir.path().as_os_str();
    let check_with = |args: &[&str], extra: Option<&std::ffi::OsStr>, stderr_too: bool| {
        let mut all: Vec<&std::ffi::OsStr> = vec!["--socket".as_ref(), socket.as_os_str()];
        all.extend(args.iter().map(|a| std::ffi::OsStr::new(*a)));
        all.extend(extra);
        let (code, err) = with_stdout_closed(&env, &all, stderr_too);
        assert!(
            code == Some(141) && !err.contains("panicked") && !err.contains("Broken pipe"),
            "berth {args:?} with standard output closed (and standard error: {stderr_too}): exit {code:?}, stderr:\n{err}"
        );
    };
    let check = |args: &[&str], extra: Option<&std::ffi::OsStr>| check_with(args, extra, false);
    // Standard error first: a manifest that does not decode, and no agent running.
    let bad = tempfile::tempdir().expect("tempdir");
    std::fs::write(bad.path().join("bad.yaml"), "kind: Nope\n").expect("write");
    check_with(&["validate"], Some(bad.path().as_os_str()), true);
    check_with(&["get"], None, true);
    check_with(&["events"], None, true);
    for args in [&["validate"][..], &["diff"], &["apply"]] {
        check(args, Some(dir));
    }
    for args in [
        &["crd"][..],
        &["schema"],
        &["man"],
        &["completions", "bash"],
    ] {
        check(args, None);
    }
    let _agent = env.agent_with_env(&[], &[("BERTH_SOCKET", socket.as_os_str())]);
    env.until("the agent serves web", T, || {
        let (code, out, _) = berth(&env, &socket, &["get", "containers", "-o", "json"]);
        let ok = code == 0 && out.contains("\"web\"");
        async move { ok }
    })
    .await;
    let web = format!("{}/web", env.ns);
    for args in [
        &["get", "-o", "json"][..],
        &["get", "-o", "yaml"],
        &["get", "-o", "wide"],
        &["get"],
        &["describe", "container", &web],
        &["events"],
        &["events", "--watch"],
    ] {
        check(args, None);
    }
    env.cleanup().await;
}

/// Done when 3: under a fake `NOTIFY_SOCKET` with `WATCHDOG_USEC=1000000` the agent sends
/// `READY=1`, then `WATCHDOG=1` at least every half second; while its loop is stalled (the
/// `BERTH_TEST_STALL_FILE` hook) the pings stop, and they resume after.
#[tokio::test(flavor = "multi_thread")]
async fn systemd_ready_and_watchdog_from_the_loop() {
    let env = test_env!("sdnotify").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let notify = dir.path().join("notify.sock");
    let stall = dir.path().join("stall");
    let sock = UnixDatagram::bind(&notify).expect("bind notify socket");
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    let got: Arc<Mutex<Vec<(Instant, String)>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = std::thread::spawn({
        let (got, stop) = (got.clone(), stop.clone());
        move || {
            let mut buf = [0u8; 4096];
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok(n) = sock.recv(&mut buf) {
                    let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                    got.lock().expect("lock").push((Instant::now(), msg));
                }
            }
        }
    });
    env.write("a.yaml", &env.container("web", BUSYBOX, ""));
    let mut agent = env.agent_with_env(
        &[],
        &[
            ("NOTIFY_SOCKET", notify.as_os_str()),
            ("WATCHDOG_USEC", "1000000".as_ref()),
            ("BERTH_TEST_STALL_FILE", stall.as_os_str()),
        ],
    );
    let pings = |from: Instant, to: Instant| -> Vec<Instant> {
        got.lock()
            .expect("lock")
            .iter()
            .filter(|(t, m)| *t >= from && *t <= to && m.lines().any(|l| l == "WATCHDOG=1"))
            .map(|(t, _)| *t)
            .collect()
    };
    env.until("READY=1", T, || {
        let ready = got
            .lock()
            .expect("lock")
            .iter()
            .any(|(_, m)| m.lines().any(|l| l == "READY=1"));
        async move { ready }
    })
    .await;
    let status = got
        .lock()
        .expect("lock")
        .iter()
        .find(|(_, m)| m.contains("READY=1"))
        .map(|(_, m)| m.clone())
        .unwrap_or_default();
    assert!(
        status.contains("STATUS="),
        "READY=1 comes with STATUS=: {status}"
    );

    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let t1 = Instant::now();
    let mut seen = vec![t0];
    seen.extend(pings(t0, t1));
    seen.push(t1);
    let worst = seen
        .windows(2)
        .map(|w| w[1] - w[0])
        .max()
        .unwrap_or_default();
    println!("{} pings in 3 s, longest gap {worst:?}", seen.len() - 2);
    assert!(
        worst <= Duration::from_millis(500),
        "WATCHDOG=1 at least every half second; longest gap {worst:?}"
    );

    std::fs::write(&stall, "").expect("stall the loop");
    tokio::time::sleep(Duration::from_millis(600)).await;
    let s0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let stalled = pings(s0, Instant::now());
    assert!(
        stalled.is_empty(),
        "no pings while the loop is stalled, got {}",
        stalled.len()
    );
    std::fs::remove_file(&stall).expect("unstall");
    let r0 = Instant::now();
    env.until("pings resume", Duration::from_secs(5), || {
        let n = pings(r0, Instant::now()).len();
        async move { n > 0 }
    })
    .await;
    agent.stop();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = reader.join();
}

/// Done when 5: after editing a file's content and a container's args, `diff` names
/// `spec.files[0].content` and `spec.args` for that object (never the content) and exits 1;
/// on a converged host it exits 0. An image that is already present is not a change.
#[tokio::test(flavor = "multi_thread")]
async fn diff_names_the_changed_fields() {
    let env = test_env!("fielddiff").await;
    let spec = |args: &str, content: &str| {
        env.container(
            "web",
            BUSYBOX,
            &format!(
                "  args: [{args}]\n  files: [{{path: /etc/app.conf, content: \"{content}\"}}]\n  env: [{{name: TOKEN, value: s3cr3t-token}}]\n"
            ),
        )
        .replace("command: [sleep, \"3600\"]", "command: [sleep]")
    };
    env.write("web.yaml", &spec("\"3600\"", "first-content"));
    env.write("other.yaml", &env.container("other", BUSYBOX, ""));
    let out = env.apply();
    assert!(out.status.success(), "{}", berth_e2e::text(&out));
    let out = env.diff();
    assert_eq!(
        out.status.code(),
        Some(0),
        "converged: {}",
        berth_e2e::text(&out)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("no changes"));

    env.write("web.yaml", &spec("\"3601\"", "second-content"));
    let out = env.diff();
    let text = berth_e2e::text(&out);
    println!("{text}");
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains(&format!("Container {}/web", env.ns)),
        "{text}"
    );
    assert!(
        text.contains("spec.args") && text.contains("spec.files[0].content"),
        "{text}"
    );
    assert!(
        !text.contains("second-content") && !text.contains("first-content"),
        "{text}"
    );
    assert!(!text.contains("s3cr3t-token"), "{text}");
    assert!(
        !text.contains("/other"),
        "an unchanged object is not listed: {text}"
    );
    assert!(
        !text.contains("ensure image"),
        "a present image is no change: {text}"
    );

    let out = env
        .berth()
        .args(["diff", "-o", "json"])
        .arg(env.dir.path())
        .output()
        .expect("diff -o json");
    assert_eq!(out.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    let changes = v["changes"].as_array().cloned().unwrap_or_default();
    assert_eq!(changes.len(), 1, "{v}");
    assert_eq!(changes[0]["name"], "web");
    assert_eq!(
        changes[0]["fields"],
        serde_json::json!(["spec.args", "spec.files[0].content"])
    );
    assert!(!changes[0]["actions"].as_array().is_none_or(Vec::is_empty));
}

/// `berth apply` on a terminal (a pseudo-terminal from util-linux `script`) draws the progress
/// line (objects done / total, the slowest action in flight); through a pipe it prints plain
/// lines only, without terminal control sequences.
#[tokio::test(flavor = "multi_thread")]
async fn apply_shows_progress_on_a_terminal_and_plain_lines_otherwise() {
    let env = test_env!("progress").await;
    // One action at a time: five creates take the engine well over one redraw interval.
    for i in 0..5 {
        env.write(
            &format!("c{i}.yaml"),
            &env.container(&format!("c{i}"), BUSYBOX, ""),
        );
    }
    let mut cmd = format!(
        "RUST_LOG=warn {} --instance {} apply --parallelism 1 {}",
        env.bin().display(),
        env.ns,
        env.dir.path().display()
    );
    cmd.push_str(" 2>&1");
    let out = std::process::Command::new("script")
        .args(["-q", "-e", "-c", &cmd, "/dev/null"])
        .env("TERM", "xterm")
        .output()
        .expect("run script(1)");
    let tty = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{tty}");
    assert!(
        tty.contains("/5 objects"),
        "no progress line on a terminal: {tty:?}"
    );
    assert!(tty.contains("slowest: "), "{tty:?}");
    assert!(tty.contains("applied "), "the plain lines follow: {tty:?}");

    env.write(
        "c0.yaml",
        &env.container("c0", BUSYBOX, "  env: [{name: V, value: \"2\"}]\n"),
    );
    let out = env
        .berth()
        .args(["apply", "--parallelism", "1"])
        .arg(env.dir.path())
        .output()
        .expect("apply");
    let piped = berth_e2e::text(&out);
    assert!(out.status.success(), "{piped}");
    assert!(piped.contains("applied "), "{piped}");
    assert!(
        !piped.contains("objects") && !piped.contains('\u{1b}'),
        "no progress line through a pipe: {piped:?}"
    );
    env.cleanup().await;
}

/// A build context whose image sleeps (FROM the local busybox: nothing is pulled).
fn sleeping_context() -> tempfile::TempDir {
    let ctx = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        ctx.path().join("Dockerfile"),
        "FROM berth-test/busybox:latest\nRUN echo built > /built\nCMD [\"sleep\", \"3600\"]\n",
    )
    .expect("Dockerfile");
    ctx
}

/// A Container declared with `spec.build` and no `image`: `get` shows, and `describe` names,
/// the tag berth builds (the instance's default tag), not `-`.
#[tokio::test(flavor = "multi_thread")]
async fn get_and_describe_show_the_image_berth_builds() {
    let env = test_env!("getbuilt").await;
    let sockdir = tempfile::tempdir().expect("tempdir");
    let socket = sockdir.path().join("agent.sock");
    let ctx = sleeping_context();
    env.write("site.yaml", &env.built("site", ctx.path()));
    let mut agent = env.agent_with_env(&[], &[("BERTH_SOCKET", socket.as_os_str())]);
    let tag = format!("berth.local/{0}/{0}/site:latest", env.ns);
    let mut table = String::new();
    env.until("get shows the built container running", T, || {
        let (code, out, _) = berth(&env, &socket, &["get", "containers", "-n", &env.ns]);
        table = out;
        let ok = code == 0
            && table
                .lines()
                .any(|l| l.contains("site ") && l.contains("Running"));
        async move { ok }
    })
    .await;
    println!("{table}");
    let row: Vec<&str> = table
        .lines()
        .find(|l| l.contains("site "))
        .unwrap_or("")
        .split_whitespace()
        .collect();
    assert_eq!(row.last().copied(), Some(tag.as_str()), "IMAGE: {table}");
    let (code, text, err) = berth(
        &env,
        &socket,
        &["describe", "container", &format!("{}/site", env.ns)],
    );
    assert_eq!(code, 0, "{text}{err}");
    assert!(text.contains(&format!("Image:          {tag}\n")), "{text}");
    assert!(
        text.contains(&format!("Built from:     {}", ctx.path().display())),
        "{text}"
    );
    let (_, json, _) = berth(&env, &socket, &["get", "containers", "-o", "json"]);
    let list: Value = serde_json::from_str(&json).unwrap_or(Value::Null);
    assert_eq!(
        item(&list, "site")["status"]["image"],
        tag.as_str(),
        "{json}"
    );
    agent.stop();
}

/// The agent runs but its engine does not answer (a proxy on the engine socket, stopped):
/// `get` and `describe` say since when and why, exit 1, and still show the last view; without
/// an agent and with `DOCKER_HOST` naming a dead socket, `get` fails naming `DOCKER_HOST`.
#[tokio::test(flavor = "multi_thread")]
async fn get_and_describe_say_when_the_engine_is_unreachable() {
    let env = test_env!("getoutage").await;
    let sockdir = tempfile::tempdir().expect("tempdir");
    let socket = sockdir.path().join("agent.sock");
    let proxy = EngineProxy::start(
        &sockdir.path().join("docker.sock"),
        &proxy::engine_socket().expect("engine socket"),
    )
    .expect("proxy");
    env.write("web.yaml", &env.container("web", BUSYBOX, ""));
    let mut agent = env.agent_with_env(
        &[],
        &[
            ("BERTH_SOCKET", socket.as_os_str()),
            ("DOCKER_HOST", proxy.docker_host().as_ref()),
        ],
    );
    env.until("get shows web running", T, || {
        let (code, out, err) = berth(&env, &socket, &["get", "-n", &env.ns]);
        let ok = code == 0 && out.contains("Running") && err.is_empty();
        async move { ok }
    })
    .await;

    proxy.set(Fault::Down);
    let mut got = (0, String::new(), String::new());
    env.until("get says the engine is unreachable", T, || {
        got = berth(&env, &socket, &["get", "-n", &env.ns]);
        let said = got.2.contains("cannot reach the Docker Engine");
        async move { said }
    })
    .await;
    let (code, out, err) = got;
    println!("{err}{out}");
    assert_eq!(code, 1, "not current: exit 1\n{err}{out}");
    assert!(err.contains("unreachable since "), "{err}");
    assert!(
        err.contains("not current") && out.contains("container/web"),
        "the last view is still shown, marked: {err}{out}"
    );
    let (code, text, err) = berth(
        &env,
        &socket,
        &["describe", "container", &format!("{}/web", env.ns)],
    );
    assert_eq!(code, 1, "{err}{text}");
    assert!(
        err.contains("cannot reach the Docker Engine") && text.contains("Name:"),
        "{err}{text}"
    );
    agent.stop();

    // No agent, and the engine cannot be read: the error names where the engine was looked for.
    let dead = format!("unix://{}", sockdir.path().join("dead.sock").display());
    let out = env
        .berth()
        .arg("--socket")
        .arg(&socket)
        .arg("get")
        .env("DOCKER_HOST", &dead)
        .output()
        .expect("get");
    let text = berth_e2e::text(&out);
    println!("{text}");
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(
        text.contains("no agent is running") && text.contains(&format!("DOCKER_HOST={dead}")),
        "{text}"
    );
    drop(proxy);
}

/// `berth apply DIR` on a pseudo-terminal of `stty SIZE` (util-linux `script`): the raw bytes
/// it wrote (standard output and error).
fn apply_on_a_terminal(env: &Env, stty: &str) -> Vec<u8> {
    let cmd = format!(
        "stty {stty}; RUST_LOG=warn {} --instance {} apply --parallelism 1 {} 2>&1",
        env.bin().display(),
        env.ns,
        env.dir.path().display()
    );
    let out = std::process::Command::new("script")
        .args(["-q", "-e", "-c", &cmd, "/dev/null"])
        .env("TERM", "xterm")
        .output()
        .expect("run script(1)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    out.stdout
}

/// What a terminal of `cols` columns shows after `bytes` (tall enough never to scroll).
fn screen(bytes: &[u8], cols: u16) -> Vec<String> {
    let mut term = vt100::Parser::new(2000, cols, 0);
    term.process(bytes);
    let rows: Vec<String> = term.screen().rows(0, cols).collect();
    let used = rows
        .iter()
        .rposition(|r| !r.trim().is_empty())
        .map_or(0, |i| i + 1);
    rows[..used].to_vec()
}

/// While `apply` builds an image on a terminal, the build's step lines are printed above the
/// progress line instead of into it, and on a narrow terminal (`stty cols 40`, its row count
/// unknown) the line is cut to the width instead of wrapping: either way, once `apply` is done
/// the terminal shows its plain lines and the build steps, and nothing of the progress line.
#[tokio::test(flavor = "multi_thread")]
async fn apply_progress_leaves_build_steps_whole_and_fits_a_narrow_terminal() {
    let env = test_env!("progress-build").await;
    let ctx = tempfile::tempdir().expect("tempdir");
    let dockerfile = |n: u32| {
        let runs: String = (0..n)
            .map(|i| format!("RUN echo step-{i} > /step-{i}\n"))
            .collect();
        format!("FROM berth-test/busybox:latest\n{runs}CMD [\"sleep\", \"3600\"]\n")
    };
    std::fs::write(ctx.path().join("Dockerfile"), dockerfile(4)).expect("Dockerfile");
    env.write("site.yaml", &env.built("site-with-a-long-name", ctx.path()));
    for i in 0..3 {
        let name = format!("a-container-with-a-rather-long-name-{i}");
        env.write(&format!("c{i}.yaml"), &env.container(&name, BUSYBOX, ""));
    }
    let check = |raw: &[u8], cols: u16| {
        let text = String::from_utf8_lossy(raw);
        assert!(
            text.contains(" objects"),
            "no progress line drawn: {text:?}"
        );
        let rows = screen(raw, cols);
        let shown = rows.join("\n");
        println!("{cols} columns:\n{shown}");
        let steps: Vec<&String> = rows.iter().filter(|r| r.contains("building ")).collect();
        assert!(!steps.is_empty(), "the build's steps are shown:\n{shown}");
        for r in &steps {
            assert!(
                r.starts_with("building berth.local/") || !r.contains("objects"),
                "a step line runs into the progress line: {r:?}\n{shown}"
            );
        }
        assert!(
            !rows.iter().any(|r| r.contains(" objects")),
            "the progress line left junk on the terminal:\n{shown}"
        );
        assert!(shown.contains("applied "), "{shown}");
    };
    // A wide terminal: only the build's lines could garble the progress line.
    check(&apply_on_a_terminal(&env, "rows 50 cols 200"), 200);
    // A narrow one whose row count is unknown, after a change that rebuilds and replaces
    // everything.
    std::fs::write(ctx.path().join("Dockerfile"), dockerfile(5)).expect("Dockerfile");
    for i in 0..3 {
        let name = format!("a-container-with-a-rather-long-name-{i}");
        env.write(
            &format!("c{i}.yaml"),
            &env.container(&name, BUSYBOX, "  env: [{name: V, value: \"2\"}]\n"),
        );
    }
    check(&apply_on_a_terminal(&env, "cols 40"), 40);
    env.cleanup().await;
}
