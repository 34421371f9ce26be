//! The shipped examples, run as a new user would (the README's first command runs the agent
//! on `manifests/examples/hello`).

use std::process::Command;
use std::time::Duration;

use berth_e2e::{SERVICES, repo_root, test_env, text};

const T: Duration = Duration::from_secs(60);

fn curl(args: &[&str]) -> Option<String> {
    let out = Command::new("curl")
        .args(["-sf", "--max-time", "5"])
        .args(args)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).to_string())
}

/// Case 1: the README's example runs under the agent, labelled as berth's, and serves.
#[tokio::test(flavor = "multi_thread")]
async fn hello_example_runs_under_the_agent() {
    let env = test_env!("hello").await;
    let dir = repo_root().join("manifests/examples/hello");
    let mut agent = env
        .berth()
        .args(["agent", "--manifests"])
        .arg(&dir)
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("agent");
    let name = "default_hello_0";
    env.until("hello serves", T, || async {
        curl(&["http://127.0.0.1:8088/"]).as_deref() == Some("hello from berth\n")
    })
    .await;
    let labels = env.docker_cli(&["inspect", "-f", "{{json .Config.Labels}}", name]);
    for l in [
        "\"berth.dev/managed-by\":\"berth\"",
        "\"berth.dev/kind\":\"Container\"",
        "\"berth.dev/name\":\"hello\"",
        "\"berth.dev/namespace\":\"default\"",
        "\"berth.dev/replica\":\"0\"",
        "\"berth.dev/spec-hash\":\"v1-",
    ] {
        assert!(labels.contains(l), "{l} missing from {labels}");
    }
    let _ = agent.kill();
    let _ = agent.wait();
    assert!(
        env.running(name).await,
        "stopping the agent leaves the container running"
    );
}

/// The blog back end really runs: PostgreSQL with credentials in env and a named volume, the
/// HTTP app querying it over the berth network, the admin UI proxying to the app; data
/// survives the database container being replaced.
#[tokio::test(flavor = "multi_thread")]
async fn blog_example_serves_and_keeps_data() {
    let env = test_env!("blog").await;
    berth_e2e::ensure_images("services");
    if env.docker.inspect_image(SERVICES).await.is_err() {
        panic!("image {SERVICES} missing: run `bash e2e/images/build.sh services`");
    }
    let dir = repo_root().join("manifests/examples/blog");
    let apply = || env.berth().arg("apply").arg(&dir).output().expect("apply");
    let out = apply();
    assert!(out.status.success(), "{}", text(&out));
    env.until("app answers from PostgreSQL", T, || async {
        curl(&["http://127.0.0.1:8080/cgi-bin/posts"])
            .is_some_and(|b| b.trim_start().starts_with('['))
    })
    .await;
    let created = curl(&[
        "-X",
        "POST",
        "--data-binary",
        "hello from the e2e test",
        "http://127.0.0.1:8080/cgi-bin/posts",
    ])
    .expect("POST a post");
    assert!(created.contains("hello from the e2e test"), "{created}");
    env.until("admin UI proxies to the app", T, || async {
        curl(&["http://127.0.0.1:8081/api/posts"])
            .is_some_and(|b| b.contains("hello from the e2e test"))
    })
    .await;

    // Replace the database container: the named volume keeps the data.
    env.docker_cli(&["rm", "-f", "blog_postgres_0"]);
    let out = apply();
    assert!(out.status.success(), "{}", text(&out));
    env.until(
        "the post survived the database being replaced",
        T,
        || async {
            curl(&["http://127.0.0.1:8080/cgi-bin/posts"])
                .is_some_and(|b| b.contains("hello from the e2e test"))
        },
    )
    .await;
}
