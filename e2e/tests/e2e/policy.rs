//! Security policy per source, end to end: the directory under `baseline` (through `berth
//! apply --policy`), and custom resources from the fake API server under the default policy and
//! a namespace override picked up by the running agent without a restart.

use std::time::Duration;

use berth::cli::{Cli, Command};
use berth::host::HostIdentity;
use berth_e2e::{BUSYBOX, test_env, text};
use berth_sources::fake_api::FakeApi;
use clap::Parser;
use serde_json::json;

const T: Duration = Duration::from_secs(60);

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
    env.write(
        "sysadmin.yaml",
        &env.container(
            "sysadmin",
            BUSYBOX,
            "  capAdd: [SYS_ADMIN]\n  env: [{name: PASSWORD, value: s3cret-value}]\n",
        ),
    );
    env.write("ok.yaml", &env.container("ok", BUSYBOX, ""));
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
    api.put(
        "/api/v1/secrets",
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "app", "namespace": ns},
               "data": {"token": "czNjcmV0LXRva2Vu"}}),
    );
    api.put(
        "/apis/berth.dev/v1alpha1/containers",
        json!({"apiVersion": "berth.dev/v1alpha1", "kind": "Container",
               "metadata": {"name": "hostnet", "namespace": ns},
               "spec": {"image": BUSYBOX, "command": ["sleep", "3600"], "stopGracePeriodSeconds": 1,
                        "networkMode": "host",
                        "env": [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "app", "key": "token"}}}]}}),
    );
    let dir = tempfile::tempdir().expect("tmp");
    let policy = dir.path().join("policy.yaml");
    std::fs::write(&policy, "").expect("empty policy = the defaults");
    let cli = Cli::parse_from([
        "berth",
        "--instance",
        &ns,
        "agent",
        "--kube",
        "--namespace",
        &ns,
        "--resync-seconds",
        "1",
        "--metrics-address",
        "off",
        "--policy",
        &policy.display().to_string(),
    ]);
    let Command::Agent(args) = cli.command else {
        unreachable!()
    };
    let host = HostIdentity::from_cli(Some("e2e-host"), &[]);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let agent = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("agent runtime");
        rt.block_on(berth::agent::run_with(
            &ns,
            &host,
            args,
            Some(client),
            Box::pin(async move {
                let _ = stopped.await;
            }),
        ))
        .map_err(|e| format!("{e:#}"))
    });
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
    let _ = stop.send(());
    agent.join().expect("join").expect("agent ran cleanly");
}
