//! The manifest-directory path end to end, on the real Docker Engine: each test is one
//! "done when" case of the directory-to-engine issue. Every test runs in its own namespace and
//! berth instance, so tests run in parallel without touching each other.

use std::time::Duration;

use berth_e2e::{BUSYBOX, BUSYBOX_V2, test_env, text};

const T: Duration = Duration::from_secs(30);

/// Case 2: editing one file's image or env recreates that container quickly; the others keep
/// their IDs.
#[tokio::test(flavor = "multi_thread")]
async fn edit_recreates_only_the_edited_container() {
    let env = test_env!("edit").await;
    env.write("a.yaml", &env.container("a", BUSYBOX, ""));
    env.write(
        "b.yaml",
        &env.container("b", BUSYBOX, "  env: [{name: MODE, value: one}]\n"),
    );
    let agent = env.agent();
    let (a, b) = (env.cname("a"), env.cname("b"));
    env.until("both running", T, || async {
        env.running(&a).await && env.running(&b).await
    })
    .await;
    let a_id = env.container_id(&a).await;
    let b_id = env.container_id(&b).await;

    env.write(
        "b.yaml",
        &env.container("b", BUSYBOX, "  env: [{name: MODE, value: two}]\n"),
    );
    let took = env
        .until("b recreated with the new env", T, || async {
            env.container_id(&b).await != b_id && env.running(&b).await
        })
        .await;
    println!("env edit → new container running in {took:?}");
    let inspect = env
        .docker
        .inspect_container(&b, None)
        .await
        .expect("inspect");
    let envs = inspect.config.and_then(|c| c.env).unwrap_or_default();
    assert!(envs.contains(&"MODE=two".to_string()), "{envs:?}");

    let b_id = env.container_id(&b).await;
    env.write("a.yaml", &env.container("a", BUSYBOX_V2, ""));
    let took = env
        .until("a recreated with the new image", T, || async {
            env.container_id(&a).await != a_id && env.running(&a).await
        })
        .await;
    println!("image edit → new container running in {took:?}");
    assert_eq!(env.container_id(&b).await, b_id, "b untouched by a's edit");
    assert!(agent.log().contains("spec changed"), "{}", agent.log());
}

/// Case 3: renaming one object of two removes the old container, creates the new one, and
/// leaves the other alone.
#[tokio::test(flavor = "multi_thread")]
async fn rename_replaces_only_the_renamed_object() {
    let env = test_env!("rename").await;
    env.write(
        "both.yaml",
        &format!(
            "{}---\n{}",
            env.container("a", BUSYBOX, ""),
            env.container("b", BUSYBOX, "")
        ),
    );
    let _agent = env.agent();
    let (a, b, c) = (env.cname("a"), env.cname("b"), env.cname("c"));
    env.until("both running", T, || async {
        env.running(&a).await && env.running(&b).await
    })
    .await;
    let b_id = env.container_id(&b).await;
    env.write(
        "both.yaml",
        &format!(
            "{}---\n{}",
            env.container("c", BUSYBOX, ""),
            env.container("b", BUSYBOX, "")
        ),
    );
    env.until("c running and a gone", T, || async {
        env.running(&c).await && env.container_id(&a).await.is_none()
    })
    .await;
    assert_eq!(env.container_id(&b).await, b_id);
}

/// Case 4: deleting a file removes its containers and networks; named volumes and their data
/// stay.
#[tokio::test(flavor = "multi_thread")]
async fn deleting_a_file_removes_containers_and_networks_but_keeps_volume_data() {
    let env = test_env!("delete").await;
    let app = format!(
        "{}---\n{}---\n{}",
        env.network("net", ""),
        env.volume("data", ""),
        env.container(
            "writer",
            BUSYBOX,
            "  args: []\n  networks: [{name: net}]\n  mounts: [{mountPath: /data, volume: data}]\n",
        )
        .replace(
            "command: [sleep, \"3600\"]",
            "command: [sh, -c, \"echo kept > /data/proof; sleep 3600\"]"
        )
    );
    env.write("app.yaml", &app);
    env.write("other.yaml", &env.container("other", BUSYBOX, ""));
    let _agent = env.agent();
    let w = env.cname("writer");
    env.until("writer running", T, || async { env.running(&w).await })
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    env.remove("app.yaml");
    env.until("writer and network removed", T, || async {
        env.container_id(&w).await.is_none() && env.networks().await.is_empty()
    })
    .await;
    assert_eq!(
        env.volumes().await,
        vec![env.oname("data")],
        "volume kept (reclaimPolicy Retain)"
    );
    let proof = env.docker_cli(&[
        "run",
        "--rm",
        "-v",
        &format!("{}:/data", env.oname("data")),
        BUSYBOX,
        "cat",
        "/data/proof",
    ]);
    assert_eq!(proof, "kept");
    assert!(
        env.running(&env.cname("other")).await,
        "the other file's container stays"
    );
}

/// Case 5: `docker rm -f` of a managed container, and removing its network while it is
/// stopped, are both repaired: recreated, reattached, running. A paused container is unpaused.
#[tokio::test(flavor = "multi_thread")]
async fn drift_is_repaired() {
    let env = test_env!("drift").await;
    env.write(
        "app.yaml",
        &format!(
            "{}---\n{}",
            env.network("net", ""),
            env.container("web", BUSYBOX, "  networks: [{name: net}]\n")
        ),
    );
    let mut agent = env.agent();
    let web = env.cname("web");
    env.until("web running", T, || async { env.running(&web).await })
        .await;

    env.docker_cli(&["rm", "-f", &web]);
    let took = env
        .until("web recreated after rm -f", T, || async {
            env.running(&web).await
        })
        .await;
    println!("drift repair (rm -f) in {took:?}");

    // `docker pause` is drift too: the same container is unpaused.
    let id = env.container_id(&web).await;
    env.docker_cli(&["pause", &web]);
    env.until("web unpaused", T, || async {
        env.try_docker_cli(&["inspect", "-f", "{{.State.Status}}", &web])
            .as_deref()
            == Some("running")
    })
    .await;
    assert_eq!(env.container_id(&web).await, id, "unpaused, not recreated");

    // With the agent down (say, across a reboot), the container stops and its network is
    // removed; the restarted agent must bring both back.
    agent.stop();
    let old = env.container_id(&web).await;
    env.docker_cli(&["stop", "-t", "1", &web]);
    env.docker_cli(&["network", "rm", &env.oname("net")]);
    let _agent = env.agent();
    env.until("network back and web running on it", T, || async {
        if !env.running(&web).await || env.container_id(&web).await == old {
            return false;
        }
        let nets = env.networks().await;
        let Ok(info) = env.docker.inspect_container(&web, None).await else {
            return false;
        };
        let attached = info
            .network_settings
            .and_then(|s| s.networks)
            .is_some_and(|n| n.contains_key(&env.oname("net")));
        nets == vec![env.oname("net")] && attached
    })
    .await;
}

/// Case 6: changing a network's labels or IPAM recreates the network and every attached
/// container, all running afterwards.
#[tokio::test(flavor = "multi_thread")]
async fn network_change_recreates_network_and_attached_containers() {
    let env = test_env!("netchange").await;
    let write = |extra: &str| {
        format!(
            "{}---\n{}---\n{}",
            env.network("net", extra),
            env.container("a", BUSYBOX, "  networks: [{name: net}]\n"),
            env.container("b", BUSYBOX, "  networks: [{name: net, aliases: [bee]}]\n")
        )
    };
    env.write("app.yaml", &write(""));
    let _agent = env.agent();
    let (a, b) = (env.cname("a"), env.cname("b"));
    env.until("both running", T, || async {
        env.running(&a).await && env.running(&b).await
    })
    .await;
    let net_id = env.docker_cli(&["network", "inspect", "-f", "{{.Id}}", &env.oname("net")]);
    let ids = (env.container_id(&a).await, env.container_id(&b).await);

    env.write(
        "app.yaml",
        &write("spec:\n  labels: {tier: back}\n  ipam: {config: [{subnet: 10.213.7.0/24}]}\n"),
    );
    env.until(
        "network and both containers replaced and running",
        T,
        || async {
            let now =
                env.try_docker_cli(&["network", "inspect", "-f", "{{.Id}}", &env.oname("net")]);
            now.is_some_and(|now| now != net_id)
                && env.container_id(&a).await != ids.0
                && env.container_id(&b).await != ids.1
                && env.running(&a).await
                && env.running(&b).await
        },
    )
    .await;
    let subnet = env.docker_cli(&[
        "network",
        "inspect",
        "-f",
        "{{(index .IPAM.Config 0).Subnet}}",
        &env.oname("net"),
    ]);
    assert_eq!(subnet, "10.213.7.0/24");
    let ip = env.docker_cli(&[
        "inspect",
        "-f",
        "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
        &b,
    ]);
    assert!(ip.starts_with("10.213.7."), "{ip}");
}

/// Case 7: a file truncated mid-write, a `*.yaml.bak` beside it and a no-op save from vim
/// remove nothing and recreate nothing; the error names file:line:column.
#[tokio::test(flavor = "multi_thread")]
async fn editor_accidents_change_nothing() {
    let env = test_env!("editor").await;
    let full = env.container(
        "web",
        BUSYBOX,
        "  env:\n    - {name: A, value: \"1\"}\n  ports:\n    - {containerPort: 80}\n",
    );
    env.write("web.yaml", &full);
    let agent = env.agent();
    let web = env.cname("web");
    env.until("web running", T, || async { env.running(&web).await })
        .await;
    let id = env.container_id(&web).await;

    // Truncated mid-token (an editor or `cp` caught half-way).
    let cut = full.find("containerPort").expect("field") + 7;
    env.write("web.yaml", &full[..cut]);
    agent
        .wait_log("web.yaml:", T)
        .await
        .expect("error reported");
    let log = agent.log();
    let line = log
        .lines()
        .find(|l| l.contains("web.yaml:"))
        .unwrap_or_default()
        .to_string();
    assert!(
        line.contains("web.yaml:13:") || line.contains("web.yaml:14:"),
        "error must name file:line:column, got {line}"
    );
    // A backup file with a conflicting copy, and vim's write-test file.
    env.write("web.yaml.bak", &full.replace("\"1\"", "\"2\""));
    env.write("4913", "");
    env.write(".web.yaml.swp", "binary junk");
    tokio::time::sleep(Duration::from_secs(3)).await; // > one resync period
    assert_eq!(
        env.container_id(&web).await,
        id,
        "nothing recreated while the file is broken"
    );

    // The fixed file, saved the way vim does (write a new file, rename over the old one).
    env.write(".web.yaml.tmp", &full);
    std::fs::rename(env.path(".web.yaml.tmp"), env.path("web.yaml")).expect("rename");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        env.container_id(&web).await,
        id,
        "a no-op save recreates nothing"
    );
    assert!(env.running(&web).await);
    assert_eq!(
        env.containers().await.len(),
        1,
        "the .bak copy declared nothing"
    );
}

/// Case 8: one object's image tag does not exist: error for it, the rest converge, and its
/// old container keeps running.
#[tokio::test(flavor = "multi_thread")]
async fn missing_image_fails_only_that_object() {
    let env = test_env!("badimage").await;
    env.write("a.yaml", &env.container("a", BUSYBOX, ""));
    let agent = env.agent();
    let a = env.cname("a");
    env.until("a running", T, || async { env.running(&a).await })
        .await;
    let id = env.container_id(&a).await;

    env.write(
        "a.yaml",
        &env.container("a", "berth-test/busybox:does-not-exist", ""),
    );
    env.write("b.yaml", &env.container("b", BUSYBOX, ""));
    let b = env.cname("b");
    env.until("b running", T, || async { env.running(&b).await })
        .await;
    agent
        .wait_log("does-not-exist", T)
        .await
        .expect("pull failure reported");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(env.container_id(&a).await, id, "old container kept");
    assert!(env.running(&a).await, "old container keeps running");
    assert!(agent.log().contains("backing off"), "{}", agent.log());
}

/// Case 9: an unlabelled container holding the wanted name is a conflict: reported, untouched.
#[tokio::test(flavor = "multi_thread")]
async fn foreign_container_with_wanted_name_is_left_alone() {
    let env = test_env!("conflict").await;
    let name = env.cname("web");
    let foreign = env.docker_cli(&["run", "-d", "--name", &name, BUSYBOX, "sleep", "3600"]);
    env.write("web.yaml", &env.container("web", BUSYBOX_V2, ""));
    let out = env.apply();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("Conflict"), "{}", text(&out));
    let agent = env.agent();
    agent
        .wait_log("Conflict", T)
        .await
        .expect("conflict reported by the agent");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(env.container_id(&name).await, Some(foreign));
    assert!(env.running(&name).await);
}

/// Case 10: `kill -9` of the agent mid-converge, then a restart: no duplicates, no orphans,
/// converged.
#[tokio::test(flavor = "multi_thread")]
async fn agent_killed_mid_converge_recovers() {
    let env = test_env!("kill9").await;
    let mut all = String::new();
    for i in 0..12 {
        all.push_str(&env.container(
            &format!("c{i}"),
            BUSYBOX,
            "  files: [{path: /etc/app.conf, content: \"x\"}]\n",
        ));
        all.push_str("---\n");
    }
    env.write("many.yaml", &all);
    let mut agent = env.agent();
    env.until("first container created", T, || async {
        !env.containers().await.is_empty()
    })
    .await;
    agent.kill9();
    let mut agent = env.agent();
    env.until("all 12 running", T, || async {
        let cs = env.containers().await;
        cs.len() == 12
            && cs
                .values()
                .all(|c| c.state.map(|s| s.to_string()) == Some("running".into()))
    })
    .await;
    // Give it a few more passes: still exactly 12, all carrying the file.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(env.containers().await.len(), 12);
    let cat = env.docker_cli(&["exec", &env.cname("c0"), "cat", "/etc/app.conf"]);
    assert_eq!(cat, "x");
    agent.stop();
    // Stopping the agent leaves the containers running.
    assert!(env.running(&env.cname("c3")).await);
}

/// Case 11: converging twice with nothing changed makes no engine write call; re-ordering
/// keys, editing comments or moving an object to another file recreates nothing.
#[tokio::test(flavor = "multi_thread")]
async fn unchanged_input_makes_no_write_calls() {
    let env = test_env!("noop").await;
    env.write(
        "a.yaml",
        &format!(
            "{}---\n{}",
            env.network("net", ""),
            env.container(
                "web",
                BUSYBOX,
                "  networks: [{name: net}]\n  env: [{name: A, value: x}]\n"
            )
        ),
    );
    let out = env.apply();
    assert!(out.status.success(), "{}", text(&out));
    let id = env.container_id(&env.cname("web")).await;

    // `docker events --since` has one-second resolution: start on a fresh second.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let start = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let out = env.apply();
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("nothing to do"),
        "{}",
        text(&out)
    );

    // Same objects, keys reordered, comments added, moved to another file.
    env.remove("a.yaml");
    env.write(
        "sub/moved.yaml",
        &format!(
            "# moved here\nkind: Container\napiVersion: berth.dev/v1alpha1\nspec:\n  env: [{{value: x, name: A}}]\n  networks: [{{name: net}}]\n  stopGracePeriodSeconds: 1\n  command: [sleep, \"3600\"]\n  pullPolicy: IfNotPresent\n  image: {BUSYBOX}\nmetadata: {{namespace: {ns}, name: web}}\n---\n# the network\n{}",
            env.network("net", ""),
            ns = env.ns
        ),
    );
    let out = env.apply();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("nothing to do"),
        "{}",
        text(&out)
    );
    let out = env.diff();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(env.container_id(&env.cname("web")).await, id);

    // The engine saw no write for our objects since `start`.
    let events = env.docker_cli(&[
        "events",
        "--since",
        &start.to_string(),
        "--until",
        &(start + 600)
            .min(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .expect("clock")
                    .as_secs(),
            )
            .to_string(),
        "--filter",
        &format!("label=berth.dev/instance={}", env.ns),
        "--format",
        "{{.Type}} {{.Action}}",
    ]);
    assert_eq!(events, "", "no engine events for our objects");
}

/// Case 12: a volume berth did not create is never removed, whatever the manifests say.
#[tokio::test(flavor = "multi_thread")]
async fn foreign_volume_is_never_removed() {
    let env = test_env!("foreignvol").await;
    let vol = env.oname("data");
    env.docker_cli(&["volume", "create", &vol]);
    env.write(
        "a.yaml",
        &format!(
            "{}---\n{}",
            env.volume("data", "spec: {reclaimPolicy: Delete}\n"),
            env.container(
                "web",
                BUSYBOX,
                "  mounts: [{mountPath: /data, volume: data}]\n"
            )
        ),
    );
    let out = env.apply();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("not managed by berth"),
        "{}",
        text(&out)
    );
    env.write("a.yaml", &env.container("other", BUSYBOX, ""));
    let out = env.apply();
    assert!(out.status.success(), "{}", text(&out));
    env.remove("a.yaml");
    env.write("b.yaml", &env.container("other", BUSYBOX, ""));
    let _ = env.apply();
    assert_eq!(env.volumes().await, vec![vol.clone()]);
    let labels = env.docker_cli(&["volume", "inspect", "-f", "{{json .Labels}}", &vol]);
    assert!(
        !labels.contains("berth.dev"),
        "berth never labels a volume it did not create: {labels}"
    );
}

/// Regression (issue 9): a volume whose spec changed is never recreated; `apply` reports it as
/// `VolumeSpecChanged` and exits 1 (it cannot converge until someone removes the volume), while
/// the volume and its container are left as they are.
#[tokio::test(flavor = "multi_thread")]
async fn changed_volume_spec_makes_apply_fail() {
    let env = test_env!("volchanged").await;
    let vol = env.oname("data");
    let files = |labels: &str| {
        format!(
            "{}---\n{}",
            env.volume("data", &format!("spec: {{labels: {{{labels}}}}}\n")),
            env.container(
                "web",
                BUSYBOX,
                "  mounts: [{mountPath: /data, volume: data}]\n"
            )
        )
    };
    env.write("a.yaml", &files("tier: a"));
    let out = env.apply();
    assert!(out.status.success(), "{}", text(&out));
    let web = env.docker_cli(&["inspect", "-f", "{{.Id}}", &env.cname("web")]);
    env.write("a.yaml", &files("tier: b"));
    let out = env.apply();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("VolumeSpecChanged"), "{}", text(&out));
    assert_eq!(env.volumes().await, vec![vol.clone()]);
    assert_eq!(
        env.docker_cli(&["inspect", "-f", "{{.Id}}", &env.cname("web")]),
        web,
        "the container using the volume is left alone"
    );
}

/// Regression (review finding): restarting the agent while a file is broken must not remove
/// what that file declared — its last-known-good objects are unknown to the new process.
#[tokio::test(flavor = "multi_thread")]
async fn restart_with_a_broken_file_removes_nothing() {
    let env = test_env!("restartbroken").await;
    let full = format!(
        "{}---\n{}",
        env.volume("data", "spec: {reclaimPolicy: Delete}\n"),
        env.container(
            "web",
            BUSYBOX,
            "  mounts: [{mountPath: /data, volume: data}]\n"
        )
    );
    env.write("a.yaml", &full);
    let mut agent = env.agent();
    let web = env.cname("web");
    env.until("web running", T, || async { env.running(&web).await })
        .await;
    env.write("a.yaml", &format!("{full}garbage: [\n"));
    agent.wait_log("a.yaml:", T).await.expect("error reported");
    agent.kill9();
    let agent = env.agent();
    agent
        .wait_log("RemovalPaused", T)
        .await
        .expect("removal paused and reported");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(env.running(&web).await, "container kept");
    assert_eq!(env.volumes().await, vec![env.oname("data")], "volume kept");
    env.write("a.yaml", "");
    env.remove("a.yaml");
    env.until("removed once the file is deleted", T, || async {
        env.container_id(&web).await.is_none()
    })
    .await;
}

/// Regression (review finding): a container that takes long to stop holds up only itself;
/// drift elsewhere is repaired meanwhile.
#[tokio::test(flavor = "multi_thread")]
async fn slow_stop_does_not_hold_up_other_repairs() {
    let env = test_env!("slowstop").await;
    let slow = |v: &str| {
        env.container(
            "slow",
            BUSYBOX,
            &format!("  env: [{{name: V, value: \"{v}\"}}]\n"),
        )
        .replace("stopGracePeriodSeconds: 1", "stopGracePeriodSeconds: 30")
    };
    env.write("slow.yaml", &slow("1"));
    env.write("fast.yaml", &env.container("fast", BUSYBOX, ""));
    let _agent = env.agent();
    let (s, f) = (env.cname("slow"), env.cname("fast"));
    env.until("both running", T, || async {
        env.running(&s).await && env.running(&f).await
    })
    .await;
    env.write("slow.yaml", &slow("2")); // its old container now takes 30 s to stop
    tokio::time::sleep(Duration::from_secs(2)).await;
    env.docker_cli(&["rm", "-f", &f]);
    let took = env
        .until("fast repaired", T, || async { env.running(&f).await })
        .await;
    println!("fast repaired in {took:?} while slow was stopping");
    assert!(
        took < Duration::from_secs(10),
        "repair waited for the slow stop: {took:?}"
    );
}
