//! Security policy per source, end to end: the directory under `baseline` (through `berth
//! apply --policy`, and through the running agent with the policy changed under it), and custom
//! resources from the fake API server under the default policy and a namespace override picked
//! up by the running agent without a restart. Secret values never reach any output of a refused
//! object: logs, status, the local API (`get -o json`, `describe`, `events`), `/metrics`.

use std::path::Path;
use std::time::Duration;

use berth::host::HostIdentity;
use berth_e2e::inproc::{CONTAINERS, InProcessAgent, SECRETS, secret};
use berth_e2e::{BUSYBOX, Env, http_get, test_env, text};
use berth_sources::fake_api::FakeApi;
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(60);

/// `sysadmin.yaml`: a container adding `SYS_ADMIN` (`spec.capAdd[0]` at line 11, column 12)
/// with a password in its environment; `ok.yaml`: a compliant one.
fn write_sysadmin_and_ok(env: &Env) {
    env.write(
        "sysadmin.yaml",
        &env.container(
            "sysadmin",
            BUSYBOX,
            "  capAdd: [SYS_ADMIN]\n  env: [{name: PASSWORD, value: s3cret-value}]\n",
        ),
    );
    env.write("ok.yaml", &env.container("ok", BUSYBOX, ""));
}

/// Done-when 1: under a policy that puts the directory at `baseline`, a `hostPath` of `/`,
/// the engine socket (also through a symlink), `networkMode: host` and `capAdd: [SYS_ADMIN]`
/// are each refused with `PolicyViolation` naming the field, nothing of them is created, and a
/// compliant object beside them converges; without a policy file the same directory applies as
/// today.
#[tokio::test(flavor = "multi_thread")]
async fn baseline_directory_refuses_host_access_and_runs_the_rest() {
    let env = test_env!("policy-dir").await;
    let link_dir = tempfile::tempdir().expect("tmp");
    let link = link_dir.path().join("engine");
    std::os::unix::fs::symlink("/var/run/docker.sock", &link).expect("symlink");
    let mount = |path: &str| {
        format!("  mounts: [{{mountPath: /host, readOnly: true, hostPath: {{path: {path}}}}}]\n")
    };
    env.write("root.yaml", &env.container("root", BUSYBOX, &mount("/")));
    env.write(
        "sock.yaml",
        &env.container("sock", BUSYBOX, &mount("/var/run/docker.sock")),
    );
    env.write(
        "link.yaml",
        &env.container("link", BUSYBOX, &mount(&link.display().to_string())),
    );
    env.write(
        "hostnet.yaml",
        &env.container("hostnet", BUSYBOX, "  networkMode: host\n"),
    );
    write_sysadmin_and_ok(&env);
    let policy = link_dir.path().join("policy.yaml");
    std::fs::write(&policy, "sources:\n  directory: {profile: baseline}\n").expect("policy");

    // validate names every violation, without an engine.
    let out = env
        .berth()
        .arg("validate")
        .arg("--policy")
        .arg(&policy)
        .arg(env.dir.path())
        .output()
        .expect("validate");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    // Each violation points at its field (`file:line:column: field:`), as a decoding error.
    for needle in [
        "error: root.yaml:11:",
        ": spec.mounts[0].hostPath.path: PolicyViolation: Container/",
        "error: hostnet.yaml:11:16: spec.networkMode: PolicyViolation: ",
        "error: sysadmin.yaml:11:12: spec.capAdd[0]: PolicyViolation: ",
    ] {
        assert!(err.contains(needle), "{needle}: {}", text(&out));
    }

    let out = env
        .berth()
        .arg("apply")
        .arg("--policy")
        .arg(&policy)
        .arg(env.dir.path())
        .output()
        .expect("apply");
    assert_eq!(
        out.status.code(),
        Some(1),
        "refusals fail apply: {}",
        text(&out)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    for (name, field, rule) in [
        ("root", "spec.mounts[0].hostPath.path", "EngineSocket"),
        ("sock", "spec.mounts[0].hostPath.path", "EngineSocket"),
        ("link", "spec.mounts[0].hostPath.path", "EngineSocket"),
        ("hostnet", "spec.networkMode", "HostNamespaces"),
        ("sysadmin", "spec.capAdd[0]", "Capabilities"),
    ] {
        let line = stdout
            .lines()
            .find(|l| l.contains(&format!("/{name} PolicyViolation")))
            .unwrap_or_else(|| panic!("{name} refused: {}", text(&out)));
        assert!(line.contains(field) && line.contains(rule), "{line}");
        assert!(
            line.contains("baseline") && line.contains("directory"),
            "{line}"
        );
    }
    assert!(stdout.contains("through symlinks"), "{}", text(&out));
    assert!(!stdout.contains("s3cret"), "no env value in the output");
    let containers = env.containers().await;
    let names: Vec<&String> = containers.keys().collect();
    assert_eq!(names, [&env.cname("ok")], "only the compliant object runs");
    assert!(env.running(&env.cname("ok")).await);

    // diff shows the refusals too (and changes nothing).
    let out = env
        .berth()
        .arg("diff")
        .arg("--policy")
        .arg(&policy)
        .arg(env.dir.path())
        .output()
        .expect("diff");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("PolicyViolation"),
        "{}",
        text(&out)
    );

    // Without a policy file the directory is privileged: everything applies as before.
    let out = env.apply();
    assert!(out.status.success(), "{}", text(&out));
    for name in ["root", "sock", "link", "hostnet", "sysadmin", "ok"] {
        assert!(env.running(&env.cname(name)).await, "{name} runs");
    }
    // A refusal afterwards never removes what runs (the version applied before stays).
    let out = env
        .berth()
        .arg("apply")
        .arg("--policy")
        .arg(&policy)
        .arg(env.dir.path())
        .output()
        .expect("apply");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    for name in ["root", "sock", "link", "hostnet", "sysadmin", "ok"] {
        assert!(env.running(&env.cname(name)).await, "{name} still runs");
    }
}

/// Done-when 2 with the fake API server: a custom resource asking for the host network is
/// refused under the default policy (Kubernetes `baseline`) and the refusal reaches its status;
/// a policy that overrides its namespace to `privileged` — written while the agent runs —
/// accepts it.
#[tokio::test(flavor = "multi_thread")]
async fn custom_resource_host_network_refused_then_accepted_by_namespace_override() {
    let env = test_env!("policy-kube").await;
    let ns = env.ns.clone();
    let (api, client) = FakeApi::new();
    api.put(SECRETS, secret(&ns, "s3cret-token"));
    api.put(
        CONTAINERS,
        json!({"apiVersion": "berth.dev/v1alpha1", "kind": "Container",
               "metadata": {"name": "hostnet", "namespace": ns},
               "spec": {"image": BUSYBOX, "command": ["sleep", "3600"], "stopGracePeriodSeconds": 1,
                        "networkMode": "host",
                        "env": [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "app", "key": "token"}}}]}}),
    );
    let dir = tempfile::tempdir().expect("tmp");
    let policy = dir.path().join("policy.yaml");
    std::fs::write(&policy, "{}\n").expect("{} = the default profiles");
    let socket = dir.path().join("agent.sock");
    let addr = "127.0.0.1:19472";
    let mut agent = InProcessAgent::start(
        &ns,
        HostIdentity::from_cli(Some("e2e-host"), &[]),
        &[
            "--socket",
            &socket.display().to_string(),
            "agent",
            "--kube",
            "--namespace",
            &ns,
            "--resync-seconds",
            "1",
            "--metrics-address",
            addr,
            "--policy",
            &policy.display().to_string(),
        ],
        Some(client),
    );
    let refused_in_status = || {
        api.requests_to("PATCH", "/containers/hostnet/status")
            .iter()
            .any(|r| {
                r.body.as_ref().is_some_and(|b| {
                    let h = &b["status"]["hosts"][0];
                    h["reason"] == "PolicyViolation"
                        && h["message"].as_str().is_some_and(|m| {
                            m.contains("spec.networkMode")
                                && m.contains("HostNamespaces")
                                && m.contains("kubernetes")
                        })
                })
            })
    };
    env.until(
        "PolicyViolation in the custom resource's status",
        T,
        || async { refused_in_status() },
    )
    .await;
    assert!(
        env.container_id(&env.cname("hostnet")).await.is_none(),
        "nothing of it is created"
    );
    // The local API and the metrics show the refusal, and no Secret value.
    refusal_in_local_api(&env, &socket, addr, "hostnet", "spec.networkMode", "s3cret").await;
    // The namespace override, written while the agent runs.
    std::fs::write(
        &policy,
        format!(
            "sources:\n  kubernetes:\n    namespaces: {{{}: privileged}}\n",
            env.ns
        ),
    )
    .expect("policy");
    env.until("accepted once its namespace is privileged", T, || async {
        env.running(&env.cname("hostnet")).await
    })
    .await;
    let mode = env
        .docker
        .inspect_container(&env.cname("hostnet"), None)
        .await
        .ok()
        .and_then(|i| i.host_config)
        .and_then(|h| h.network_mode);
    assert_eq!(mode.as_deref(), Some("host"));
    for r in api.requests() {
        let body = r.body.map(|b| b.to_string()).unwrap_or_default();
        assert!(
            !body.contains("s3cret"),
            "{} {} leaks a secret value",
            r.method,
            r.path
        );
    }
    agent.stop().expect("agent ran cleanly");
    let log = agent.logs();
    assert!(log.contains("PolicyViolation"), "logs captured:\n{log}");
    assert!(
        !log.contains("s3cret"),
        "a Secret value reached the logs:\n{log}"
    );
}

/// `berth get -o json` lists `name`: `item["status"]["hosts"][0]` says PolicyViolation.
fn refused_in(list: &Value, name: &str) -> bool {
    list["items"].as_array().is_some_and(|items| {
        items.iter().any(|o| {
            o["metadata"]["name"] == name && o["status"]["hosts"][0]["reason"] == "PolicyViolation"
        })
    })
}

/// The refusal of `name` (naming `field`) is seen through the local API on `socket` — `get -o
/// json` (its host entry and Degraded condition), `describe` and `events` (a Warning) — and
/// neither those nor `/metrics` on `addr` hold `secret`.
async fn refusal_in_local_api(
    env: &Env,
    socket: &Path,
    addr: &str,
    name: &str,
    field: &str,
    secret: &str,
) {
    let mut list = Value::Null;
    env.until("the refusal in get -o json", T, || {
        let (_, out, _) = env.local(socket, &["get", "containers", "-o", "json"]);
        list = serde_json::from_str(&out).unwrap_or(Value::Null);
        let found = refused_in(&list, name);
        async move { found }
    })
    .await;
    let object = list["items"]
        .as_array()
        .and_then(|items| items.iter().find(|o| o["metadata"]["name"] == name))
        .cloned()
        .unwrap_or_default();
    // Its spec as declared (no version of it was applied before), not null.
    assert_eq!(object["spec"]["image"], BUSYBOX, "{object}");
    let message = object["status"]["hosts"][0]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(message.contains(field), "{object}");
    let degraded = object["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == "Degraded"))
        .map(|c| c["status"].clone());
    assert_eq!(degraded, Some(json!("True")), "{object}");
    let (code, describe, err) = env.local(
        socket,
        &["describe", "container", &format!("{}/{name}", env.ns)],
    );
    assert_eq!(code, 0, "{describe}{err}");
    assert!(
        describe.contains("PolicyViolation") && describe.contains(field),
        "{describe}"
    );
    let (code, events, err) = env.local(socket, &["events"]);
    assert_eq!(code, 0, "{events}{err}");
    let object_key = format!("Container/{}/{name}", env.ns);
    assert!(
        events.lines().any(|l| l.contains("Warning")
            && l.contains("PolicyViolation")
            && l.contains(&object_key)
            && l.contains(field)),
        "{events}"
    );
    let (code, metrics) = http_get(addr, "/metrics").expect("/metrics answers");
    assert_eq!(code, 200);
    for (what, out) in [
        ("get -o json", list.to_string()),
        ("describe", describe),
        ("events", events),
        ("/metrics", metrics),
    ] {
        assert!(!out.contains(secret), "{what} leaks a secret value:\n{out}");
    }
}

/// Done-when 1 through the agent: with `--policy` putting the directory at `baseline`, an
/// object asking for `SYS_ADMIN` (and holding a password in its environment) is not created and
/// its refusal — pointing at `file:line:column` of `spec.capAdd[0]` — is in the local API and
/// the metrics without the password, while a compliant object beside it converges; the policy
/// file changed to `privileged` is picked up by the same agent, which then creates the object.
#[tokio::test(flavor = "multi_thread")]
async fn agent_refuses_under_baseline_and_creates_once_the_policy_is_privileged() {
    let env = test_env!("policy-agent").await;
    let dir = tempfile::tempdir().expect("tmp");
    let policy = dir.path().join("policy.yaml");
    std::fs::write(&policy, "sources:\n  directory: {profile: baseline}\n").expect("policy");
    let socket = dir.path().join("agent.sock");
    let addr = "127.0.0.1:19473";
    write_sysadmin_and_ok(&env);
    let mut agent = env.agent_with_env(
        &[
            "--metrics-address",
            addr,
            "--policy",
            &policy.display().to_string(),
        ],
        &[("BERTH_SOCKET", socket.as_os_str())],
    );
    env.until("the compliant object runs", T, || async {
        env.running(&env.cname("ok")).await
    })
    .await;
    refusal_in_local_api(
        &env,
        &socket,
        addr,
        "sysadmin",
        "sysadmin.yaml:11:12: spec.capAdd[0]",
        "s3cret",
    )
    .await;
    assert!(
        env.container_id(&env.cname("sysadmin")).await.is_none(),
        "nothing of the refused object is created"
    );

    // The policy changes under the running agent.
    std::fs::write(&policy, "sources:\n  directory: {profile: privileged}\n").expect("policy");
    env.until("created once the directory is privileged", T, || async {
        env.running(&env.cname("sysadmin")).await
    })
    .await;
    assert!(agent.running(), "the same agent, not restarted");
    let created = format!("Container/{}/sysadmin", env.ns);
    env.until("a Created event for it", T, || {
        let (_, events, _) = env.local(&socket, &["events"]);
        let seen = events
            .lines()
            .any(|l| l.contains("Created") && l.contains(&created));
        async move { seen }
    })
    .await;
    env.until("no longer refused in get -o json", T, || {
        let (_, out, _) = env.local(&socket, &["get", "containers", "-o", "json"]);
        let list: Value = serde_json::from_str(&out).unwrap_or_default();
        let admitted = list["items"]
            .as_array()
            .is_some_and(|items| !items.is_empty())
            && !refused_in(&list, "sysadmin");
        async move { admitted }
    })
    .await;
    agent.stop();
    let log = agent.log();
    // The refusal is logged once, with its field, rule and source (not again as "not
    // converging").
    let sysadmin = format!("Container/{}/sysadmin", env.ns);
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(&sysadmin) && l.contains("PolicyViolation"))
        .collect();
    assert_eq!(lines.len(), 1, "logged once:\n{log}");
    for what in [
        "refused by the security policy",
        "spec.capAdd[0]",
        "rule Capabilities",
        "source=\"directory\"",
    ] {
        assert!(lines[0].contains(what), "{what} in {}", lines[0]);
    }
    assert!(
        !log.contains("s3cret"),
        "a password reached the log:\n{log}"
    );
}
