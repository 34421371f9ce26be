//! Images built from a Dockerfile context (`spec.build`) on the real engine: the classic
//! builder, `.dockerignore`, rebuilds exactly when the build input changes, a failed build that
//! leaves the old container serving, one build for two objects sharing a context, and a Compose
//! project with `build:`. `FROM` is the local busybox image: nothing is pulled.

use std::path::Path;
use std::time::Duration;

use berth_e2e::{BUSYBOX, Env, test_env, text};

const T: Duration = Duration::from_secs(60);

const DOCKERFILE: &str = "FROM berth-test/busybox:latest\nCOPY site/ /srv/\nCMD [\"httpd\", \"-f\", \"-p\", \"8080\", \"-h\", \"/srv\"]\n";

fn write(dir: &Path, file: &str, text: &str) {
    let p = dir.join(file);
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent).expect("mkdir");
    }
    std::fs::write(p, text).expect("write");
}

/// A context serving `index.html`, with a `.dockerignore`d `secret.txt`.
fn context(content: &str) -> tempfile::TempDir {
    let ctx = tempfile::tempdir().expect("tempdir");
    write(ctx.path(), "Dockerfile", DOCKERFILE);
    write(ctx.path(), ".dockerignore", "site/secret.txt\n");
    write(ctx.path(), "site/index.html", content);
    write(ctx.path(), "site/secret.txt", "do not ship\n");
    ctx
}

/// What the container serves at `/index.html` (fetched from inside it).
fn served(env: &Env, name: &str) -> Option<String> {
    env.try_docker_cli(&[
        "exec",
        &env.cname(name),
        "wget",
        "-qO-",
        "http://127.0.0.1:8080/index.html",
    ])
}

async fn serves(env: &Env, name: &str, content: &str) {
    env.until(&format!("{name} serves {content:?}"), T, || async {
        served(env, name).as_deref() == Some(content)
    })
    .await;
}

fn builds_in(out: &std::process::Output) -> usize {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.trim_start().starts_with("build image "))
        .count()
}

#[tokio::test]
async fn a_built_image_serves_its_context_and_rebuilds_exactly_when_it_changes() {
    let env = test_env!("build-serve").await;
    let ctx = context("v1");
    env.write("app.yaml", &env.built("app", ctx.path()));
    let out = env.apply();
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(builds_in(&out), 1, "{}", text(&out));
    serves(&env, "app", "v1").await;
    // `.dockerignore`d: not in the image.
    let secret = env.try_docker_cli(&["exec", &env.cname("app"), "cat", "/srv/secret.txt"]);
    assert_eq!(secret, None, "the ignored file is in the image");
    let tag = format!("berth.local/{0}/{0}/app:latest", env.ns);
    let label = env.docker_cli(&[
        "image",
        "inspect",
        "-f",
        "{{index .Config.Labels \"berth.dev/build-hash\"}}",
        &tag,
    ]);
    assert!(label.starts_with("v1-"), "build-hash label: {label:?}");
    let id = env.container_id(&env.cname("app")).await;

    // touch: no build, no recreate.
    let touched = std::process::Command::new("touch")
        .args(["-d", "2001-01-01"])
        .arg(ctx.path().join("site/index.html"))
        .status()
        .expect("touch");
    assert!(touched.success());
    let out = env.apply();
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(builds_in(&out), 0, "{}", text(&out));
    assert_eq!(env.container_id(&env.cname("app")).await, id);

    // A content change: diff says "build" (and builds nothing), apply rebuilds and recreates.
    write(ctx.path(), "site/index.html", "v2");
    let before = env.docker_cli(&["image", "inspect", "-f", "{{.Id}}", &tag]);
    let diff = env.diff();
    assert_eq!(diff.status.code(), Some(1), "{}", text(&diff));
    let diff_out = String::from_utf8_lossy(&diff.stdout);
    assert!(
        diff_out.contains("build image") && diff_out.contains("build: context changed"),
        "{}",
        text(&diff)
    );
    assert_eq!(
        env.docker_cli(&["image", "inspect", "-f", "{{.Id}}", &tag]),
        before
    );
    let out = env.apply();
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(builds_in(&out), 1, "{}", text(&out));
    assert_ne!(env.container_id(&env.cname("app")).await, id);
    serves(&env, "app", "v2").await;

    // Garbage collection: the previous image is kept for a rollback, older ones go.
    let v1 = before;
    let built_images = || {
        let mut ids: Vec<String> = env
            .docker_cli(&[
                "images",
                "-q",
                "--no-trunc",
                "--filter",
                &format!("label=berth.dev/instance={}", env.ns),
            ])
            .lines()
            .map(str::to_string)
            .collect();
        ids.sort();
        ids.dedup();
        ids
    };
    assert!(built_images().contains(&v1), "{:?}", built_images());
    write(ctx.path(), "site/index.html", "v2b");
    let out = env.apply();
    assert!(out.status.success(), "{}", text(&out));
    serves(&env, "app", "v2b").await;
    let left = built_images();
    assert_eq!(left.len(), 2, "current and previous only: {left:?}");
    assert!(!left.contains(&v1), "the oldest image is removed: {left:?}");

    // A failing step: apply exits 1 naming the step; the old container still serves.
    write(
        ctx.path(),
        "Dockerfile",
        &DOCKERFILE.replace("COPY site/ /srv/\n", "COPY site/ /srv/\nRUN false\n"),
    );
    write(ctx.path(), "site/index.html", "v3");
    let id = env.container_id(&env.cname("app")).await;
    let out = env.apply();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    // Step 3 of the Dockerfile; the classic builder counts the labels it adds as steps too.
    assert!(
        stdout.contains("step 3/") && stdout.contains("(RUN false) failed"),
        "{}",
        text(&out)
    );
    assert!(stdout.contains("BuildFailed"), "{}", text(&out));
    assert!(stdout.contains("builder output of"), "{}", text(&out));
    assert_eq!(env.container_id(&env.cname("app")).await, id);
    assert_eq!(served(&env, "app").as_deref(), Some("v2b"));
}

#[tokio::test]
async fn two_manifests_sharing_one_context_build_once() {
    let env = test_env!("build-shared").await;
    let ctx = context("shared");
    env.write("a.yaml", &env.built("a", ctx.path()));
    env.write("b.yaml", &env.built("b", ctx.path()));
    let out = env.apply();
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(builds_in(&out), 1, "one build for both: {}", text(&out));
    serves(&env, "a", "shared").await;
    serves(&env, "b", "shared").await;
    let id = |o: &str| {
        env.docker_cli(&[
            "image",
            "inspect",
            "-f",
            "{{.Id}}",
            &format!("berth.local/{0}/{0}/{o}:latest", env.ns),
        ])
    };
    assert_eq!(id("a"), id("b"));
    let out = env.apply();
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(builds_in(&out), 0, "{}", text(&out));
}

#[tokio::test]
async fn an_unreadable_context_names_the_file_and_field_and_affects_nothing_else() {
    let env = test_env!("build-missing").await;
    env.write(
        "app.yaml",
        &env.built("app", Path::new("/nonexistent/berth-context")),
    );
    env.write("other.yaml", &env.container("other", BUSYBOX, ""));
    let out = env.apply();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("app.yaml") && stderr.contains("spec.build.context"),
        "{}",
        text(&out)
    );
    assert!(env.running(&env.cname("other")).await);
}

#[tokio::test]
async fn a_compose_project_with_build_is_built_and_served() {
    let env = test_env!("build-compose").await;
    let project = env.dir.path().join(&env.ns);
    write(&project, "app/Dockerfile", DOCKERFILE);
    write(&project, "app/site/index.html", "from compose");
    write(
        &project,
        "compose.yaml",
        &format!(
            "services:\n  web:\n    build: ./app\n    container_name: {ns}-web\n    stop_grace_period: 1s\n",
            ns = env.ns
        ),
    );
    let out = env.apply();
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(builds_in(&out), 1, "{}", text(&out));
    let name = format!("{}-web", env.ns);
    env.until("the compose service serves", T, || async {
        env.try_docker_cli(&[
            "exec",
            &name,
            "wget",
            "-qO-",
            "http://127.0.0.1:8080/index.html",
        ])
        .as_deref()
            == Some("from compose")
    })
    .await;
    let out = env.apply();
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(builds_in(&out), 0, "{}", text(&out));
}

#[tokio::test]
async fn the_agent_builds_in_the_background_and_follows_a_changed_context() {
    let env = test_env!("build-agent").await;
    let ctx = context("agent v1");
    env.write("app.yaml", &env.built("app", ctx.path()));
    env.write("other.yaml", &env.container("other", BUSYBOX, ""));
    let mut agent = env.agent();
    serves(&env, "app", "agent v1").await;
    assert!(env.running(&env.cname("other")).await);
    // A changed file in the context is seen at the latest by the periodic relist (2 s here).
    write(ctx.path(), "site/index.html", "agent v2");
    serves(&env, "app", "agent v2").await;
    // A failing build: the old container keeps serving; the object waits as BuildFailed.
    write(
        ctx.path(),
        "Dockerfile",
        &DOCKERFILE.replace("COPY site/ /srv/\n", "COPY site/ /srv/\nRUN false\n"),
    );
    agent
        .wait_log("BuildFailed", T)
        .await
        .unwrap_or_else(|e| panic!("{e}: {}", agent.log()));
    assert_eq!(served(&env, "app").as_deref(), Some("agent v2"));
    agent.stop();
}

#[tokio::test]
async fn a_relative_context_of_a_manifest_named_by_its_bare_file_name_is_found() {
    // `cd sub && berth diff app.yaml` with `context: ../ctx`: the manifest's directory is the
    // current one (its path's parent is empty), not nothing.
    let env = test_env!("build-bare").await;
    let ctx = context("bare name\n");
    let top = tempfile::tempdir().expect("tempdir");
    std::os::unix::fs::symlink(ctx.path(), top.path().join("ctx")).expect("symlink");
    write(
        top.path(),
        "sub/app.yaml",
        &env.built("app", Path::new("../ctx")),
    );
    let out = env
        .berth()
        .current_dir(top.path().join("sub"))
        .args(["diff", "app.yaml"])
        .output()
        .expect("berth diff");
    let all = text(&out);
    assert!(!all.contains("expected a directory"), "{all}");
    assert!(all.contains("build"), "the plan builds the image: {all}");
}
