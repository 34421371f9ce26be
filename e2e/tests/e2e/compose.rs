//! Compose files as input: real Compose projects on the real engine.

use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_e2e::{SERVICES, test_env, text};

const T: Duration = Duration::from_secs(90);

/// PostgreSQL's start script for the services image (it has no postgres entrypoint), written
/// as a Compose user writes a shell script in a YAML list: `$$` for a literal `$`.
const PG_START: &str = r#"set -eu
        D=/var/lib/postgresql/data; B=/usr/lib/postgresql/15/bin
        P="setpriv --reuid=postgres --regid=postgres --init-groups"
        mkdir -p $$D /run/postgresql; chown postgres:postgres $$D /run/postgresql; chmod 0700 $$D
        if [ ! -s $$D/PG_VERSION ]; then
          printf '%s\n' "$$POSTGRES_PASSWORD" > /run/postgresql/pw; chown postgres /run/postgresql/pw
          $$P $$B/initdb -D $$D -U "$$POSTGRES_USER" --pwfile=/run/postgresql/pw --auth-local=trust --auth-host=scram-sha-256 >/dev/null
          echo "listen_addresses = '*'" >> $$D/postgresql.conf
          echo "host all all all scram-sha-256" >> $$D/pg_hba.conf
        fi
        exec $$P $$B/postgres -D $$D"#;

/// The project directory: a subdirectory of the manifest directory named after the test's
/// namespace, so that the project name (from the directory, as in Compose) is the namespace.
fn project_dir(env: &berth_e2e::Env) -> PathBuf {
    let d = env.dir.path().join(&env.ns);
    std::fs::create_dir_all(&d).expect("mkdir");
    d
}

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).expect("write");
}

fn apply(env: &berth_e2e::Env) -> std::process::Output {
    env.berth()
        .arg("apply")
        .arg(env.dir.path())
        .output()
        .expect("apply")
}

fn classic(env: &berth_e2e::Env) -> String {
    format!(
        r#"version: "1"
services:
  db:
    image: {SERVICES}
    container_name: {ns}-db
    restart: always
    command:
      - sh
      - -c
      - |
        {PG_START}
    stop_signal: SIGINT
    environment:
      POSTGRES_USER: shop
      POSTGRES_PASSWORD: "s3cret pass"
    volumes:
      - ./pgdata:/var/lib/postgresql/data
  app:
    build: ./backend
    container_name: {ns}-app
    restart: always
    init: true
    command: ["busybox", "httpd", "-f", "-p", "8080", "-h", "/srv"]
    ports:
      - "18491:8080"
    environment:
      - PGHOST=db
      - PGUSER=shop
      - PGPASSWORD=s3cret pass
      - PGDATABASE=postgres
    depends_on: [db]
"#,
        ns = env.ns
    )
}

/// The classic stack's `./backend` build context: the services image plus the page it serves.
fn write_backend(dir: &Path) {
    std::fs::create_dir_all(dir.join("backend")).expect("mkdir backend");
    write(
        &dir.join("backend"),
        "Dockerfile",
        &format!("FROM {SERVICES}\nCOPY index.html /srv/index.html\n"),
    );
    write(&dir.join("backend"), "index.html", "built from ./backend\n");
}

fn psql(env: &berth_e2e::Env, sql: &str) -> Option<String> {
    env.try_docker_cli(&[
        "exec",
        &format!("{}-app", env.ns),
        "psql",
        "-X",
        "-q",
        "-A",
        "-t",
        "-c",
        sql,
    ])
}

/// Done-when 1: the classic stack written as a Compose user writes it, the app's image built
/// from `./backend` (a Dockerfile on the services image adding the page it serves), converges;
/// the app serves its built page and reaches PostgreSQL by service name with the declared
/// password; removing
/// the file removes the containers and keeps the bind-mounted data directory; putting the
/// file back finds the data.
#[tokio::test(flavor = "multi_thread")]
async fn classic_stack_converges_and_keeps_its_data() {
    let env = test_env!("compose-classic").await;
    berth_e2e::ensure_images("services");
    let dir = project_dir(&env);
    let file = classic(&env);
    write_backend(&dir);
    write(&dir, "docker-compose.yml", &file);
    let out = apply(&env);
    assert!(out.status.success(), "{}", text(&out));
    let page = env.try_docker_cli(&[
        "exec",
        &format!("{}-app", env.ns),
        "curl",
        "-sf",
        "http://127.0.0.1:8080/index.html",
    ]);
    assert_eq!(
        page.as_deref().map(str::trim),
        Some("built from ./backend"),
        "the app runs the image built from ./backend"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("version"),
        "the obsolete version is reported as a warning: {}",
        text(&out)
    );
    env.until(
        "PostgreSQL accepts the declared password over the service name",
        T,
        || async { psql(&env, "SELECT 1;").is_some_and(|o| o.trim() == "1") },
    )
    .await;
    let out = psql(
        &env,
        "CREATE TABLE kept (v text); INSERT INTO kept VALUES ('from compose'); SELECT count(*) FROM kept;",
    );
    assert_eq!(out.as_deref().map(str::trim), Some("1"));
    assert!(
        env.try_docker_cli(&["exec", &format!("{}-db", env.ns), "true"])
            .is_some(),
        "container_name is the engine name"
    );
    assert!(
        dir.join("pgdata/PG_VERSION").is_file(),
        "relative bind mount resolved against the project directory"
    );
    let restart = env.docker_cli(&[
        "inspect",
        "-f",
        "{{.HostConfig.RestartPolicy.Name}}",
        &format!("{}-db", env.ns),
    ]);
    assert!(
        restart.trim().is_empty() || restart.trim() == "no",
        "restarts are the agent's: {restart}"
    );
    let out = env.diff();
    assert_eq!(out.status.code(), Some(0), "converged: {}", text(&out));

    // Removing the file is `down`: containers go, the data directory stays.
    std::fs::remove_file(dir.join("docker-compose.yml")).expect("rm");
    let out = apply(&env);
    assert!(out.status.success(), "{}", text(&out));
    assert!(env.containers().await.is_empty(), "containers removed");
    assert!(
        dir.join("pgdata/PG_VERSION").is_file(),
        "data directory kept"
    );

    // Putting it back finds the data.
    write(&dir, "docker-compose.yml", &file);
    let out = apply(&env);
    assert!(out.status.success(), "{}", text(&out));
    env.until("the data survived down and up", T, || async {
        psql(&env, "SELECT v FROM kept;").is_some_and(|o| o.trim() == "from compose")
    })
    .await;
}

/// Done-when 2: a project using interpolation with defaults and required variables, `.env`,
/// `env_file` quoting, anchors and merge keys, `extends`, profiles, `depends_on` conditions,
/// a healthcheck, network aliases and secrets as files with modes runs on the engine as
/// Compose would run it.
#[tokio::test(flavor = "multi_thread")]
async fn compose_features_run_on_the_engine() {
    let env = test_env!("compose-features").await;
    berth_e2e::ensure_images("services");
    let dir = project_dir(&env);
    write(
        &dir,
        ".env",
        "TAG=bookworm\nGREETING=\"hello\\nworld\"\nCOMPOSE_PROFILES=extra\n",
    );
    write(
        &dir,
        "app.env",
        "# comment\nPLAIN=value # comment\nSINGLE='$$not interpolated'\nDOUBLE=\"tab\\there ${TAG}\"\n",
    );
    write(
        &dir,
        "base.yaml",
        "services:\n  base:\n    image: berth-test/services:${TAG}\n    init: true\n    command: [sleep, \"3600\"]\n    stop_grace_period: 1s\n",
    );
    write(&dir, "token.txt", "t0ken\n");
    write(
        &dir,
        "compose.yaml",
        &r#"x-env: &env
  FROM_ANCHOR: anchored
  REQUIRED: ${TAG:?TAG must be set}
  DEFAULTED: ${UNSET_IN_TEST:-fallback}
  ALT: ${TAG:+has-tag}
  DOLLAR: $$HOME
services:
  db:
    extends: {file: base.yaml, service: base}
    healthcheck:
      test: ["CMD", "test", "-e", "/tmp/ready"]
      interval: 1s
      retries: 30
    command: [sh, -c, "sleep 2; touch /tmp/ready; exec sleep 3600"]
    networks:
      back: {aliases: [database]}
  app:
    <<: &common
      image: berth-test/services:${TAG}
      init: true
      stop_grace_period: 1s
    command: [sleep, "3600"]
    environment:
      <<: *env
      GREETING: ${GREETING}
    env_file: [app.env]
    depends_on:
      db: {condition: service_healthy}
    networks: [back, default]
    secrets:
      - source: token
        mode: 0400
      - source: token
        target: /etc/token
        mode: "0640"
        uid: "1000"
  extra:
    <<: *common
    command: [sleep, "3600"]
    profiles: [extra]
  never:
    <<: *common
    profiles: [debug]
  tuned:
    <<: *common
    command: [sleep, "3600"]
    devices: ["/dev/null:/dev/berth-null:rw"]
    security_opt: ["no-new-privileges:true", "seccomp:unconfined"]
    sysctls: {net.ipv4.ip_unprivileged_port_start: "80"}
    shm_size: 128m
    tty: true
    stdin_open: true
    ulimits: {nofile: {soft: 1024, hard: 2048}, nproc: 512}
    dns: [192.0.2.53]
    dns_search: [berth.test]
    dns_opt: ["ndots:2"]
    logging: {driver: json-file, options: {max-size: 1m, max-file: "2"}}
    networks: [outside]
    volumes: [shared:/shared]
  hostns:
    <<: *common
    command: [sleep, "3600"]
    pid: host
    ipc: host
    network_mode: none
networks:
  back: {}
  outside: {external: true, name: @NS@_extnet}
volumes:
  shared: {external: true, name: @NS@_extdata}
secrets:
  token:
    file: ./token.txt
"#
        .replace("@NS@", &env.ns),
    );
    // The external network and volume exist before, outside berth (named with the test's
    // prefix, so the harness removes them).
    let (extnet, extdata) = (format!("{}_extnet", env.ns), format!("{}_extdata", env.ns));
    env.docker_cli(&["network", "create", &extnet]);
    env.docker_cli(&["volume", "create", &extdata]);
    let out = apply(&env);
    assert!(out.status.success(), "{}", text(&out));
    tuned_fields_reach_the_engine(&env).await;
    let app = format!("{}_app_0", env.ns);
    let printenv = |v: &str| env.docker_cli(&["exec", &app, "printenv", v]);
    assert_eq!(printenv("FROM_ANCHOR").trim(), "anchored");
    assert_eq!(printenv("REQUIRED").trim(), "bookworm");
    assert_eq!(printenv("DEFAULTED").trim(), "fallback");
    assert_eq!(printenv("ALT").trim(), "has-tag");
    assert_eq!(printenv("DOLLAR").trim(), "$HOME");
    assert_eq!(printenv("GREETING").trim_end(), "hello\nworld");
    assert_eq!(printenv("PLAIN").trim(), "value");
    assert_eq!(printenv("SINGLE").trim(), "$$not interpolated");
    assert_eq!(
        printenv("DOUBLE").trim_end_matches('\n'),
        "tab\there bookworm"
    );
    assert_eq!(
        env.docker_cli(&["exec", &app, "stat", "-c", "%a %u", "/run/secrets/token"])
            .trim(),
        "400 0"
    );
    assert_eq!(
        env.docker_cli(&["exec", &app, "stat", "-c", "%a %u", "/etc/token"])
            .trim(),
        "640 1000"
    );
    assert_eq!(
        env.docker_cli(&["exec", &app, "cat", "/etc/token"])
            .trim_end(),
        "t0ken"
    );
    // Service names and aliases resolve on the project's networks.
    for name in ["db", "database"] {
        let hosts = env.docker_cli(&["exec", &app, "getent", "hosts", name]);
        assert!(!hosts.trim().is_empty(), "{name} resolves");
    }
    // depends_on service_healthy: app started after db was healthy.
    let health = env.docker_cli(&[
        "inspect",
        "-f",
        "{{.State.Health.Status}}",
        &format!("{}_db_0", env.ns),
    ]);
    assert_eq!(health.trim(), "healthy");
    let containers = env.containers().await;
    assert!(
        containers.contains_key(&format!("{}_extra_0", env.ns)),
        "profile selected in .env: {:?}",
        containers.keys()
    );
    assert!(
        !containers.keys().any(|k| k.contains("_never_")),
        "unselected profile: {:?}",
        containers.keys()
    );
    let out = env.diff();
    assert_eq!(out.status.code(), Some(0), "converged: {}", text(&out));
    // Removing the project keeps the external network and volume (never berth's to remove).
    std::fs::remove_dir_all(&dir).expect("rm project");
    let out = apply(&env);
    assert!(out.status.success(), "{}", text(&out));
    assert!(env.containers().await.is_empty(), "down");
    assert!(
        env.try_docker_cli(&["network", "inspect", &extnet])
            .is_some()
    );
    assert!(
        env.try_docker_cli(&["volume", "inspect", &extdata])
            .is_some()
    );
}

/// The host-access and runtime keys of the `tuned` and `hostns` services (all but
/// `privileged`, see below), as the engine has
/// them (docker inspect), and the external network and volume in use.
async fn tuned_fields_reach_the_engine(env: &berth_e2e::Env) {
    let tuned = env
        .docker
        .inspect_container(&format!("{}_tuned_0", env.ns), None)
        .await
        .expect("inspect tuned");
    let hc = tuned.host_config.clone().expect("host config");
    let devices: Vec<(String, String, String)> = hc
        .devices
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|d| {
            (
                d.path_on_host.unwrap_or_default(),
                d.path_in_container.unwrap_or_default(),
                d.cgroup_permissions.unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        devices,
        [("/dev/null".into(), "/dev/berth-null".into(), "rw".into())]
    );
    let sec = hc.security_opt.clone().unwrap_or_default();
    assert!(sec.contains(&"seccomp=unconfined".to_string()), "{sec:?}");
    assert!(
        sec.iter().any(|s| s.starts_with("no-new-privileges")),
        "{sec:?}"
    );
    assert_eq!(
        hc.sysctls
            .clone()
            .unwrap_or_default()
            .get("net.ipv4.ip_unprivileged_port_start")
            .map(String::as_str),
        Some("80")
    );
    assert_eq!(hc.shm_size, Some(128 * 1024 * 1024));
    let ulimits: Vec<(String, i64, i64)> = hc
        .ulimits
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|u| {
            (
                u.name.unwrap_or_default(),
                u.soft.unwrap_or_default(),
                u.hard.unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        ulimits,
        [("nofile".into(), 1024, 2048), ("nproc".into(), 512, 512)]
    );
    assert_eq!(hc.dns.clone().unwrap_or_default(), ["192.0.2.53"]);
    assert_eq!(hc.dns_search.clone().unwrap_or_default(), ["berth.test"]);
    assert_eq!(hc.dns_options.clone().unwrap_or_default(), ["ndots:2"]);
    let log = hc.log_config.clone().expect("log config");
    assert_eq!(log.typ.as_deref(), Some("json-file"));
    assert_eq!(
        log.config
            .unwrap_or_default()
            .get("max-file")
            .map(String::as_str),
        Some("2")
    );
    let config = tuned.config.clone().expect("config");
    assert_eq!((config.tty, config.open_stdin), (Some(true), Some(true)));
    let nets: Vec<String> = tuned
        .network_settings
        .and_then(|n| n.networks)
        .map(|n| n.into_keys().collect())
        .unwrap_or_default();
    assert_eq!(nets, [format!("{}_extnet", env.ns)]);
    let mounts: Vec<String> = tuned
        .mounts
        .unwrap_or_default()
        .into_iter()
        .filter_map(|m| m.name)
        .collect();
    assert_eq!(mounts, [format!("{}_extdata", env.ns)]);
    let hostns = env
        .docker
        .inspect_container(&format!("{}_hostns_0", env.ns), None)
        .await
        .expect("inspect hostns")
        .host_config
        .expect("host config");
    // `privileged` is checked at the mapping (unit test): this test engine runs inside a
    // container that cannot grant every capability, so a privileged container cannot start.
    assert_eq!(hostns.pid_mode.as_deref(), Some("host"));
    assert_eq!(hostns.ipc_mode.as_deref(), Some("host"));
}

/// Done-when 3: several mistakes in one file are all reported, with positions, and nothing is
/// applied.
#[tokio::test(flavor = "multi_thread")]
async fn every_mistake_is_reported_and_nothing_is_applied() {
    let env = test_env!("compose-mistakes").await;
    let dir = project_dir(&env);
    write(
        &dir,
        "compose.yaml",
        "services:\n  ok:\n    image: berth-test/busybox:latest\n  web:\n    image: berth-test/busybox:latest\n    userns_mode: host\n    ports: [\"80\"]\n    imagee: typo\n    environment:\n      A: ${E2E_COMPOSE_NOPE:?needed}\n    deploy:\n      placement: {constraints: [node.role==manager]}\n    develop: {watch: []}\n",
    );
    let out = apply(&env);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    for needle in [
        "compose.yaml:6:5: services.web.userns_mode: valid Compose that berth does not implement",
        "compose.yaml:7:13: services.web.ports[0]: valid Compose that berth does not implement",
        "compose.yaml:8:5: services.web.imagee: not valid Compose: unknown service key",
        "compose.yaml:10:10: services.web.environment.A: not valid Compose: required variable E2E_COMPOSE_NOPE is missing a value: needed",
        "compose.yaml:12:7: services.web.deploy.placement: valid Compose that berth does not implement",
        "compose.yaml:13:5: services.web.develop: valid Compose that berth does not implement",
    ] {
        assert!(err.contains(needle), "{needle}\n{}", text(&out));
    }
    assert!(env.containers().await.is_empty(), "nothing applied");
    let out = env
        .berth()
        .arg("validate")
        .arg(dir.join("compose.yaml"))
        .output()
        .expect("validate");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
}

/// Done-when 4: `berth convert` prints manifests that validate and converge to the same
/// containers (same spec hash): `berth diff` on the converted manifests finds nothing to do.
#[tokio::test(flavor = "multi_thread")]
async fn convert_output_converges_to_the_same_containers() {
    let env = test_env!("compose-convert").await;
    berth_e2e::ensure_images("services");
    let dir = project_dir(&env);
    write_backend(&dir);
    write(
        &dir,
        "compose.yaml",
        &classic(&env).replace("18491:8080", "18492:8080"),
    );
    let out = apply(&env);
    assert!(out.status.success(), "{}", text(&out));
    let out = env
        .berth()
        .arg("convert")
        .arg(dir.join("compose.yaml"))
        .output()
        .expect("convert");
    assert!(out.status.success(), "{}", text(&out));
    let converted = tempfile::tempdir().expect("tmp");
    std::fs::write(converted.path().join("converted.yaml"), &out.stdout).expect("write");
    let out = env
        .berth()
        .arg("validate")
        .arg(converted.path())
        .output()
        .expect("validate");
    assert!(out.status.success(), "{}", text(&out));
    let out = env
        .berth()
        .arg("diff")
        .arg(converted.path())
        .output()
        .expect("diff");
    assert_eq!(
        out.status.code(),
        Some(0),
        "same objects, same spec hashes: {}",
        text(&out)
    );
}
