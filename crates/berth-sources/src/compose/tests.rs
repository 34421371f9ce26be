use std::collections::BTreeMap;
use std::path::Path;

use berth_api::{DependencyCondition, Manifest, RestartPolicy};

use super::{Environment, FindingKind, load_project};

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).expect("write");
}

fn env(vars: &[(&str, &str)]) -> Environment {
    Environment::from_map(
        vars.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
    )
}

fn show(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn container<'a>(objs: &'a [crate::decode::Located], name: &str) -> &'a berth_api::ContainerSpec {
    objs.iter()
        .find_map(|l| match &l.manifest {
            Manifest::Container { metadata, spec } if metadata.name == name => Some(&**spec),
            _ => None,
        })
        .expect("container")
}

#[test]
fn classic_stack_maps_onto_berth_objects() {
    let d = tempfile::tempdir().expect("tmp");
    write(
        d.path(),
        ".env",
        "DB_PASSWORD=\"s3cret\"\nCOMPOSE_PROFILES=admin\n",
    );
    write(
        d.path(),
        "db.env",
        "# db settings\nPGDATA=/var/lib/postgresql/data/pg\nQUOTED='a b # c'\n",
    );
    write(d.path(), "token.txt", "t0ken");
    write(
        d.path(),
        "docker-compose.yml",
        r#"version: "1"
name: shop
x-common: &common
  restart: always
  init: true
services:
  db:
    <<: *common
    image: berth-test/services:bookworm
    container_name: shop-db
    environment:
      POSTGRES_USER: app
      POSTGRES_PASSWORD: ${DB_PASSWORD:?set DB_PASSWORD}
    env_file: db.env
    volumes: ["./data:/var/lib/postgresql/data", "cache:/cache:ro"]
    healthcheck: {test: "pg_isready", interval: 2s, retries: 5}
  app:
    extends: {service: db}
    image: berth-test/busybox:latest
    container_name: shop-app
    command: sh -c 'echo "hi there"'
    ports: ["8080:8080", "127.0.0.1:9000-9001:9000-9001/udp"]
    depends_on:
      db: {condition: service_healthy}
    secrets: [{source: token, mode: 0440, uid: "1000"}]
  admin:
    image: berth-test/busybox:latest
    profiles: [admin]
    deploy: {update_config: {order: start-first}}
    networks: {back: {aliases: [ui]}}
  debug:
    image: berth-test/busybox:latest
    profiles: [debug]
  api:
    build:
      context: ./backend
      dockerfile: Dockerfile.prod
      args: [VERSION=1.2]
    pull_policy: build
volumes:
  cache: {}
networks:
  back: {}
secrets:
  token: {file: ./token.txt}
"#,
    );
    write(
        d.path(),
        "docker-compose.override.yml",
        "services:\n  db:\n    environment: [EXTRA=1]\n",
    );
    let p = load_project(
        &d.path().join("docker-compose.yml"),
        &show,
        &env(&[("HOME", "/root")]),
    )
    .expect("valid");
    assert_eq!(p.name, "shop");
    assert!(
        p.warnings.iter().any(|w| w.key == "version"),
        "{:?}",
        p.warnings
    );
    let names: Vec<String> = p
        .objects
        .iter()
        .map(|l| l.manifest.key().to_string())
        .collect();
    assert!(
        names.contains(&"Container/shop/db".to_string()),
        "{names:?}"
    );
    assert!(
        names.contains(&"Container/shop/admin".to_string()),
        "profile selected in .env: {names:?}"
    );
    assert!(!names.iter().any(|n| n.ends_with("/debug")), "{names:?}");
    assert!(
        names.contains(&"Network/shop/default".to_string()),
        "{names:?}"
    );
    assert!(
        names.contains(&"Volume/shop/cache".to_string()),
        "{names:?}"
    );
    let db = container(&p.objects, "db");
    assert_eq!(db.restart_policy, RestartPolicy::Always);
    assert!(db.init);
    let env: Vec<(&str, &str)> = db
        .env
        .iter()
        .map(|e| (e.name.as_str(), e.value.as_str()))
        .collect();
    assert!(env.contains(&("POSTGRES_PASSWORD", "s3cret")), "{env:?}");
    assert!(env.contains(&("EXTRA", "1")), "override merged: {env:?}");
    assert!(env.contains(&("QUOTED", "a b # c")), "{env:?}");
    assert!(
        env.contains(&("PGDATA", "/var/lib/postgresql/data/pg")),
        "{env:?}"
    );
    let bind = db.mounts[0].host_path.as_ref().expect("bind");
    assert!(
        bind.path.ends_with("/data") && bind.path.starts_with('/'),
        "{bind:?}"
    );
    assert_eq!(db.mounts[1].volume.as_deref(), Some("cache"));
    assert!(db.mounts[1].read_only);
    assert_eq!(
        db.health_check.as_ref().expect("hc").test,
        ["CMD-SHELL", "pg_isready"]
    );
    assert_eq!(db.networks[0].name, "default");
    assert_eq!(db.networks[0].aliases, ["db"]);
    let app = container(&p.objects, "app");
    assert_eq!(
        app.container_name.as_deref(),
        Some("shop-app"),
        "extends: own keys win"
    );
    assert!(app.init, "extends: inherited");
    assert_eq!(
        app.args.as_deref(),
        Some(&["sh".to_string(), "-c".into(), "echo \"hi there\"".into()][..])
    );
    assert_eq!(app.ports.len(), 3);
    assert_eq!(app.ports[2].host_ip.as_deref(), Some("127.0.0.1"));
    assert_eq!(app.depends_on[0].condition, DependencyCondition::Healthy);
    assert_eq!(app.files[0].path, "/run/secrets/token");
    assert_eq!(app.files[0].mode.as_deref(), Some("0440"));
    assert_eq!(app.files[0].uid, 1000);
    assert_eq!(app.files[0].content, "t0ken");
    let api = container(&p.objects, "api");
    let build = api.build.as_ref().expect("build");
    assert!(
        build.context.starts_with('/') && build.context.ends_with("/backend"),
        "{build:?}"
    );
    assert_eq!(build.dockerfile.as_deref(), Some("Dockerfile.prod"));
    assert_eq!(build.args.get("VERSION").map(String::as_str), Some("1.2"));
    assert_eq!(api.image, None, "berth tags the built image itself");
    let admin = container(&p.objects, "admin");
    assert_eq!(admin.networks[0].aliases, ["admin", "ui"]);
    for l in &p.objects {
        assert!(
            l.manifest.validate().is_empty(),
            "{:?}: {:?}",
            l.manifest.key(),
            l.manifest.validate()
        );
    }
}

#[test]
fn every_mistake_is_reported_with_its_position() {
    let d = tempfile::tempdir().expect("tmp");
    write(
        d.path(),
        "compose.yaml",
        "services:\n  web:\n    image: busybox\n    userns_mode: host\n    ports: [\"80\"]\n    imagee: typo\n    environment:\n      A: ${NOPE:?needed}\n    deploy:\n      placement: {constraints: []}\n    volumes: [\"undeclared:/x\"]\n  other:\n    image: x\n    depends_on: [ghost]\nfoo: 1\n",
    );
    let errs = load_project(&d.path().join("compose.yaml"), &show, &env(&[])).expect_err("invalid");
    let lines: Vec<String> = errs.iter().map(ToString::to_string).collect();
    let has = |needle: &str, kind: FindingKind, line: u64| {
        assert!(
            errs.iter()
                .any(|e| e.key.contains(needle) && e.kind == kind && e.line == line),
            "{needle} at line {line}: {lines:#?}"
        );
    };
    has("services.web.userns_mode", FindingKind::Unsupported, 4);
    has("services.web.ports[0]", FindingKind::Unsupported, 5);
    has("services.web.imagee", FindingKind::Invalid, 6);
    has("services.web.environment.A", FindingKind::Invalid, 8);
    has(
        "services.web.deploy.placement",
        FindingKind::Unsupported,
        10,
    );
    has("services.web.volumes[0]", FindingKind::Invalid, 11);
    has("services.other.depends_on.ghost", FindingKind::Invalid, 14);
    has("foo", FindingKind::Invalid, 15);
    assert!(
        lines.iter().any(|l| l.starts_with(
            "compose.yaml:4:5: services.web.userns_mode: valid Compose that berth does not implement"
        )),
        "{lines:#?}"
    );
}

#[test]
fn a_compose_project_in_the_manifest_directory_keeps_last_known_good() {
    let root = tempfile::tempdir().expect("tmp");
    let proj = root.path().join("My_Shop");
    std::fs::create_dir_all(proj.join("data")).expect("mkdir");
    write(
        root.path(),
        "net.yaml",
        "apiVersion: berth.dev/v1alpha1\nkind: Network\nmetadata: {name: n}\n",
    );
    write(
        &proj,
        "compose.yaml",
        "services:\n  web:\n    image: busybox:latest\n",
    );
    // Not a berth manifest: inside the project, only the project counts.
    write(&proj.join("data"), "junk.yaml", "not: a manifest\n");
    let mut src = crate::directory::DirectorySource::new(root.path());
    let snap = src.scan().expect("scan");
    assert!(snap.errors.is_empty(), "{:?}", snap.errors);
    let keys: Vec<String> = snap.objects.keys().map(ToString::to_string).collect();
    assert_eq!(
        keys,
        [
            "Network/default/n",
            "Network/my-shop/default",
            "Container/my-shop/web"
        ],
        "project name from the directory, normalised"
    );
    assert_eq!(
        snap.objects.values().last().map(|d| d.origin.to_string()),
        Some("My_Shop/compose.yaml:2:1".to_string())
    );
    write(
        &proj,
        "compose.yaml",
        "services:\n  web:\n    image: busybox:latest\n    uts: host\n",
    );
    let snap = src.scan().expect("scan");
    assert_eq!(snap.errors.len(), 1, "{:?}", snap.errors);
    assert_eq!(
        snap.errors[0].to_string(),
        "My_Shop/compose.yaml:4:5: services.web.uts: valid Compose that berth does not implement: no UTS mode in berth"
    );
    assert_eq!(snap.objects.len(), 3, "last-known-good objects stay");
    std::fs::remove_file(proj.join("compose.yaml")).expect("rm");
    write(
        &proj.join("data"),
        "junk.yaml",
        "apiVersion: berth.dev/v1alpha1\nkind: Volume\nmetadata: {name: v}\n",
    );
    let snap = src.scan().expect("scan");
    let keys: Vec<String> = snap.objects.keys().map(ToString::to_string).collect();
    assert_eq!(
        keys,
        ["Network/default/n", "Volume/default/v"],
        "removing the Compose file is down"
    );
}

#[test]
fn a_single_compose_file_is_a_source() {
    let d = tempfile::tempdir().expect("tmp");
    write(
        d.path(),
        "docker-compose.yml",
        "name: solo\nservices:\n  a:\n    image: busybox:latest\n    network_mode: host\n",
    );
    let snap = crate::directory::DirectorySource::new(d.path().join("docker-compose.yml"))
        .scan()
        .expect("scan");
    let keys: Vec<String> = snap.objects.keys().map(ToString::to_string).collect();
    assert_eq!(keys, ["Container/solo/a"], "{:?}", snap.errors);
}

/// The host-access and runtime keys map onto the Container fields of the same meaning; an
/// `external` network and volume onto `spec.external` with the engine name.
#[test]
fn host_access_runtime_keys_and_external_objects_map() {
    let d = tempfile::tempdir().expect("tmp");
    write(d.path(), "seccomp.json", "{}");
    write(
        d.path(),
        "compose.yaml",
        r#"name: tuned
services:
  app:
    image: busybox
    privileged: true
    devices: ["/dev/fuse", "/dev/null:/dev/nul:r", {source: /dev/zero, target: /dev/z, permissions: rw}]
    pid: host
    ipc: host
    security_opt: ["no-new-privileges:true", "seccomp=./seccomp.json", "apparmor:unconfined"]
    sysctls: [net.core.somaxconn=1024]
    shm_size: 128m
    tty: true
    stdin_open: true
    ulimits: {nofile: {soft: 1024, hard: 2048}, nproc: 512}
    dns: 192.0.2.53
    dns_search: [example.test]
    dns_opt: [ndots:2]
    logging: {driver: json-file, options: {max-size: 1m, max-file: "2"}}
    networks: [outside]
    volumes: [shared:/shared]
networks:
  outside: {external: true, name: proxy_net}
volumes:
  shared: {external: true}
"#,
    );
    let p = load_project(&d.path().join("compose.yaml"), &show, &env(&[])).expect("valid");
    let app = container(&p.objects, "app");
    assert!(app.privileged && app.host_pid && app.host_ipc && app.tty && app.stdin);
    let devices: Vec<(&str, &str, &str)> = app
        .devices
        .iter()
        .map(|d| {
            (
                d.host_path.as_str(),
                d.container_path_or_default(),
                d.permissions_or_default(),
            )
        })
        .collect();
    assert_eq!(
        devices,
        [
            ("/dev/fuse", "/dev/fuse", "rwm"),
            ("/dev/null", "/dev/nul", "r"),
            ("/dev/zero", "/dev/z", "rw")
        ]
    );
    assert_eq!(app.allow_privilege_escalation, Some(false));
    let seccomp = app.seccomp_profile.as_ref().expect("seccomp");
    assert_eq!(seccomp.type_, berth_api::ProfileType::Localhost);
    assert!(
        seccomp
            .localhost_profile
            .as_deref()
            .is_some_and(|p| p.starts_with('/') && p.ends_with("/seccomp.json")),
        "{seccomp:?}"
    );
    assert_eq!(
        app.app_armor_profile.as_ref().map(|p| p.type_),
        Some(berth_api::ProfileType::Unconfined)
    );
    assert_eq!(
        app.sysctls.get("net.core.somaxconn").map(String::as_str),
        Some("1024")
    );
    assert_eq!(app.shm_size.as_deref(), Some("128Mi"));
    let ulimits: Vec<(&str, i64, i64)> = app
        .ulimits
        .iter()
        .map(|u| (u.name.as_str(), u.soft, u.hard))
        .collect();
    assert_eq!(ulimits, [("nofile", 1024, 2048), ("nproc", 512, 512)]);
    assert_eq!(app.dns, ["192.0.2.53"]);
    assert_eq!(app.dns_search, ["example.test"]);
    assert_eq!(app.dns_options, ["ndots:2"]);
    let logging = app.logging.as_ref().expect("logging");
    assert_eq!(logging.driver.as_deref(), Some("json-file"));
    assert_eq!(
        logging.options.get("max-file").map(String::as_str),
        Some("2")
    );
    for l in &p.objects {
        match &l.manifest {
            Manifest::Network { metadata, spec } if metadata.name == "outside" => {
                assert!(spec.external);
                assert_eq!(spec.external_name.as_deref(), Some("proxy_net"));
            }
            Manifest::Volume { metadata, spec } if metadata.name == "shared" => {
                assert!(spec.external);
                assert_eq!(spec.external_name, None, "the key is the engine name");
            }
            _ => {}
        }
        assert!(
            l.manifest.validate().is_empty(),
            "{:?}",
            l.manifest.validate()
        );
    }
    // Modes berth does not run and a name without external are reported, with positions.
    write(
        d.path(),
        "compose.yaml",
        "services:\n  app:\n    image: busybox\n    ipc: shareable\n    security_opt: [label=type:svirt]\nvolumes:\n  v:\n    name: fixed\n",
    );
    let errs = load_project(&d.path().join("compose.yaml"), &show, &env(&[])).expect_err("refused");
    let keys: Vec<(&str, u64)> = errs.iter().map(|e| (e.key.as_str(), e.line)).collect();
    assert!(keys.contains(&("services.app.ipc", 4)), "{keys:?}");
    assert!(
        keys.contains(&("services.app.security_opt[0]", 5)),
        "{keys:?}"
    );
    assert!(keys.contains(&("volumes.v.name", 8)), "{keys:?}");
}

/// The printed findings of a project that must be refused.
fn refused(compose: &str) -> Vec<String> {
    let d = tempfile::tempdir().expect("tmp");
    write(d.path(), "compose.yaml", compose);
    load_project(&d.path().join("compose.yaml"), &show, &env(&[]))
        .expect_err("refused")
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[test]
fn a_berth_check_points_at_the_compose_field_that_set_it() {
    assert_eq!(
        refused(
            "services:\n  web:\n    image: web:dev\n    build:\n      context: .\n      dockerfile: ../x\n"
        ),
        vec![
            "compose.yaml:6:19: services.web.build.dockerfile: valid Compose that berth does not implement: as berth Container spec.build.dockerfile: expected a path relative to the context and inside it, like Dockerfile or docker/app.Dockerfile, got \"../x\""
        ]
    );
    assert_eq!(
        refused("services:\n  web:\n    image: busybox\n    cap_add: [NET_ADMIN, NOT_A_CAP]\n"),
        vec![
            "compose.yaml:4:26: services.web.cap_add[1]: valid Compose that berth does not implement: as berth Container spec.capAdd[1]: expected a Linux capability such as NET_ADMIN or CAP_NET_ADMIN (or ALL), got \"NOT_A_CAP\""
        ]
    );
}

#[test]
fn a_misspelled_image_is_one_finding_at_its_key() {
    assert_eq!(
        refused("services:\n  web:\n    imagee: busybox\n"),
        vec![
            "compose.yaml:3:5: services.web.imagee: not valid Compose: unknown service key; did you mean image?"
        ]
    );
    // No image and no key like it: one finding, in Compose's words.
    assert_eq!(
        refused("services:\n  web:\n    command: [sleep, \"1\"]\n"),
        vec![
            "compose.yaml:3:5: services.web: not valid Compose: a service needs an image (or build); neither is given"
        ]
    );
}

#[test]
fn list_items_and_lists_have_compose_spec_types() {
    assert_eq!(
        refused(
            "services:\n  web:\n    image: busybox\n    environment:\n      - A=1\n      - [A, B]\n"
        ),
        vec![
            "compose.yaml:6:9: services.web.environment[1]: not valid Compose: expected a string KEY=VALUE, got a list"
        ]
    );
    assert_eq!(
        refused("services:\n  web:\n    image: busybox\n    profiles: debug\n"),
        vec![
            "compose.yaml:4:15: services.web.profiles: not valid Compose: expected a list of strings, got a string (write [debug])"
        ]
    );
    assert_eq!(
        refused("services:\n  web:\n    image: busybox\n    cap_add: NET_ADMIN\n"),
        vec![
            "compose.yaml:4:14: services.web.cap_add: not valid Compose: expected a list of strings, got a string (write [NET_ADMIN])"
        ]
    );
}
