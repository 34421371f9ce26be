//! Image pulls from a private registry with credentials, ImagePullBackOff, and
//! `pullPolicy: Always` following a re-pushed tag — against a real registry with htpasswd auth
//! on 127.0.0.1 (`e2e/registry/start.sh`, one per test).

use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use berth_e2e::registry::{PASSWORD, Registry, USER};
use berth_e2e::{BUSYBOX, BUSYBOX_V2, Env, ensure_images, test_env, text};

const T: Duration = Duration::from_secs(60);

fn image_id(env: &Env, image: &str) -> String {
    env.docker_cli(&["image", "inspect", "-f", "{{.Id}}", image])
}

/// Image ID a container runs, if it exists.
fn container_image(env: &Env, name: &str) -> Option<String> {
    env.try_docker_cli(&["inspect", "-f", "{{.Image}}", name])
}

fn secrets_line(file: &Path) -> String {
    format!("  imagePullSecrets: [{{file: {}}}]\n", file.display())
}

/// Seconds of the day of a log line (`2026-11-29T15:01:07.932756Z …`).
fn log_time(line: &str) -> Option<f64> {
    let ts = line.split_whitespace().next()?;
    let t = ts.split('T').nth(1)?.trim_end_matches('Z');
    let mut p = t.split(':');
    let h: f64 = p.next()?.parse().ok()?;
    let m: f64 = p.next()?.parse().ok()?;
    let s: f64 = p.next()?.parse().ok()?;
    Some(h * 3600.0 + m * 60.0 + s)
}

/// Pull with credentials: one container through its `imagePullSecrets` file, one through the
/// Docker config of the berth process, whose `credHelpers` entry runs a credential helper.
#[tokio::test(flavor = "multi_thread")]
async fn pulls_from_private_registry_with_credentials() {
    ensure_images("busybox");
    let env = test_env!("regauth").await;
    let reg = Registry::start();
    reg.push(BUSYBOX, "berth/app:1");
    reg.push(BUSYBOX_V2, "berth/app:2");
    for tag in ["berth/app:1", "berth/app:2"] {
        assert!(
            env.try_docker_cli(&["image", "inspect", &reg.image(tag)])
                .is_none(),
            "{tag} must not be present locally before the test"
        );
    }
    let secrets = tempfile::tempdir().expect("tempdir");
    let file = reg.credentials_file(secrets.path(), "auth.json", PASSWORD);
    // The berth process's Docker config: a credential helper answering for this registry only.
    let home = tempfile::tempdir().expect("tempdir");
    let helper = home.path().join("docker-credential-berthtest");
    std::fs::write(
        &helper,
        format!(
            "#!/bin/sh\n[ \"$1\" = get ] || exit 1\nread server\nif [ \"$server\" = {addr} ]; then\n  printf '{{\"ServerURL\":\"%s\",\"Username\":\"{USER}\",\"Secret\":\"{PASSWORD}\"}}' \"$server\"\nelse\n  echo 'credentials not found in native keychain'; exit 1\nfi\n",
            addr = reg.addr
        ),
    )
    .expect("write helper");
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    std::fs::write(
        home.path().join("config.json"),
        format!(r#"{{"credHelpers": {{"{}": "berthtest"}}}}"#, reg.addr),
    )
    .expect("write config.json");
    let path = format!(
        "{}:{}",
        home.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );

    env.write(
        "byfile.yaml",
        &env.container("byfile", &reg.image("berth/app:1"), &secrets_line(&file)),
    );
    env.write(
        "byhelper.yaml",
        &env.container("byhelper", &reg.image("berth/app:2"), ""),
    );
    let out = env
        .berth()
        .env("DOCKER_CONFIG", home.path())
        .env("PATH", &path)
        .arg("apply")
        .arg(env.dir.path())
        .output()
        .expect("run berth apply");
    assert!(out.status.success(), "{}", text(&out));
    assert!(!text(&out).contains(PASSWORD), "a secret was printed");
    assert!(env.running(&env.cname("byfile")).await);
    assert!(env.running(&env.cname("byhelper")).await);
    assert_eq!(
        container_image(&env, &env.cname("byfile")),
        Some(image_id(&env, BUSYBOX))
    );
    assert_eq!(
        container_image(&env, &env.cname("byhelper")),
        Some(image_id(&env, BUSYBOX_V2))
    );

    // Without credentials the registry refuses: the same manifests fail to pull.
    env.cleanup().await;
    let _ = env.try_docker_cli(&["rmi", &reg.image("berth/app:2")]);
    let empty = tempfile::tempdir().expect("tempdir");
    let out = env
        .berth()
        .env("DOCKER_CONFIG", empty.path())
        .arg("apply")
        .arg(env.dir.path())
        .output()
        .expect("run berth apply");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("ErrImagePull"), "{}", text(&out));
}

/// Wrong credentials: the object backs off as ImagePullBackOff with growing delays while the
/// rest of the host converges; fixing the file (no manifest change) lets the next retry pull.
#[tokio::test(flavor = "multi_thread")]
async fn wrong_credentials_back_off_as_image_pull_back_off() {
    ensure_images("busybox");
    let env = test_env!("regbad").await;
    let reg = Registry::start();
    reg.push(BUSYBOX, "berth/app:1");
    let secrets = tempfile::tempdir().expect("tempdir");
    let file = reg.credentials_file(secrets.path(), "auth.json", "wrong-password");
    env.write(
        "bad.yaml",
        &env.container("bad", &reg.image("berth/app:1"), &secrets_line(&file)),
    );
    env.write("other.yaml", &env.container("other", BUSYBOX, ""));
    let empty = tempfile::tempdir().expect("tempdir");
    let agent = env.agent_with_env(&[], &[("DOCKER_CONFIG", empty.path().as_os_str())]);
    env.until("other running", T, || async {
        env.running(&env.cname("other")).await
    })
    .await;
    agent
        .wait_log("attempts=4", T)
        .await
        .expect("four failed pulls");
    let log = agent.log();
    assert!(log.contains("ImagePullBackOff"), "{log}");
    assert!(log.contains("ErrImagePull"), "{log}");
    assert!(
        !log.contains(PASSWORD) && !log.contains("wrong-password"),
        "a secret was logged"
    );
    assert!(env.container_id(&env.cname("bad")).await.is_none());
    let times: Vec<f64> = log
        .lines()
        .filter(|l| l.contains("object failed; backing off") && l.contains("/bad#0"))
        .filter_map(log_time)
        .collect();
    assert!(times.len() >= 4, "{log}");
    let gaps: Vec<f64> = times.windows(2).map(|w| w[1] - w[0]).collect();
    println!("pull retry gaps: {gaps:?}");
    // 1 s doubling, ±20 % jitter: about 1, 2, 4 s.
    assert!(
        gaps[0] >= 0.7 && gaps[1] >= 1.5 && gaps[2] >= 3.1,
        "gaps {gaps:?}"
    );
    assert!(gaps[2] > gaps[1] && gaps[1] > gaps[0], "gaps {gaps:?}");

    // The credentials file is read at each pull: fixing it needs no manifest change.
    let fixed_at = Instant::now();
    reg.credentials_file(secrets.path(), "auth.json", PASSWORD);
    env.until("bad running after the fix", T, || async {
        env.running(&env.cname("bad")).await
    })
    .await;
    println!("running {:?} after the fix", fixed_at.elapsed());
}

/// `pullPolicy: Always`: a new image pushed under the same tag is running after one pass
/// (the agent re-resolves the tag every `--image-refresh-seconds`); an `IfNotPresent`
/// container of the same tag keeps its image.
#[tokio::test(flavor = "multi_thread")]
async fn always_follows_a_re_pushed_tag_in_one_pass() {
    ensure_images("busybox");
    let env = test_env!("regalways").await;
    let reg = Registry::start();
    reg.push(BUSYBOX, "berth/app:1");
    let secrets = tempfile::tempdir().expect("tempdir");
    let file = reg.credentials_file(secrets.path(), "auth.json", PASSWORD);
    let image = reg.image("berth/app:1");
    env.write(
        "web.yaml",
        &env.container("web", &image, &secrets_line(&file))
            .replace("pullPolicy: IfNotPresent", "pullPolicy: Always"),
    );
    env.write(
        "steady.yaml",
        &env.container("steady", &image, &secrets_line(&file)),
    );
    let empty = tempfile::tempdir().expect("tempdir");
    let agent = env.agent_with_env(
        &["--image-refresh-seconds", "2"],
        &[("DOCKER_CONFIG", OsStr::new(empty.path()))],
    );
    let (web, steady) = (env.cname("web"), env.cname("steady"));
    env.until("both running", T, || async {
        env.running(&web).await && env.running(&steady).await
    })
    .await;
    let (v1, v2) = (image_id(&env, BUSYBOX), image_id(&env, BUSYBOX_V2));
    assert_eq!(container_image(&env, &web), Some(v1.clone()));
    let (web_id, steady_id) = (
        env.container_id(&web).await,
        env.container_id(&steady).await,
    );
    // A few refreshes with an unchanged tag recreate nothing.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(env.container_id(&web).await, web_id);

    reg.push(BUSYBOX_V2, "berth/app:1");
    let pushed = Instant::now();
    env.until("web runs the re-pushed image", T, || async {
        container_image(&env, &web).as_deref() == Some(v2.as_str()) && env.running(&web).await
    })
    .await;
    let took = pushed.elapsed();
    println!("web runs the new image {took:?} after the push");
    assert!(took < Duration::from_secs(20), "took {took:?}");
    assert_ne!(env.container_id(&web).await, web_id);
    agent
        .wait_log("image tag moved", T)
        .await
        .expect("the move is logged");
    // One pass did it: image, remove, create, start — the remove exactly once.
    let log = agent.log();
    assert!(
        log.lines()
            .any(|l| l.contains("image tag moved") && l.contains(&format!("after={v2}"))),
        "{log}"
    );
    let short = &v2["sha256:".len().."sha256:".len() + 12];
    let removes = log
        .lines()
        .filter(|l| l.contains(&format!("action=remove container {web} ")))
        .collect::<Vec<_>>();
    assert_eq!(removes.len(), 1, "{log}");
    assert!(
        removes[0].contains(&format!("now names {short} (pullPolicy Always")),
        "{log}"
    );
    assert_eq!(
        env.container_id(&steady).await,
        steady_id,
        "IfNotPresent does not follow the tag"
    );
    assert_eq!(container_image(&env, &steady), Some(v1));
}
