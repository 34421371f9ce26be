//! Cross-object checks of `resolve` and the update strategy it derives.

use berth_api::*;
use berth_core::resolve::resolve;

fn meta(name: &str) -> ManifestMetadata {
    ManifestMetadata {
        name: name.into(),
        namespace: Some("app".into()),
        ..Default::default()
    }
}

fn net(name: &str) -> Manifest {
    Manifest::Network {
        metadata: meta(name),
        spec: NetworkSpec::default(),
    }
}

fn web(name: &str, edit: impl Fn(&mut ContainerSpec)) -> Manifest {
    let mut spec = ContainerSpec {
        image: Some("busybox:1".into()),
        networks: vec![NetworkAttachment {
            name: "net".into(),
            ..Default::default()
        }],
        ..Default::default()
    };
    edit(&mut spec);
    Manifest::Container {
        metadata: meta(name),
        spec: std::sync::Arc::new(spec),
    }
}

fn ip(spec: &mut ContainerSpec, address: &str) {
    spec.networks[0].ipv4_address = Some(address.into());
}

fn port(spec: &mut ContainerSpec, host_ip: Option<&str>, host_port: u16, protocol: Protocol) {
    spec.ports.push(ContainerPort {
        container_port: 80,
        host_port: Some(host_port),
        host_ip: host_ip.map(Into::into),
        protocol,
    });
}

#[test]
fn a_static_address_makes_updates_stop_first() {
    let d = resolve(&[net("net"), web("a", |s| ip(s, "10.88.0.10"))]);
    let r = &d.containers.values().next().expect("a").rollout;
    assert_eq!((r.max_surge, r.max_unavailable), (0, 1));
    let d = resolve(&[net("net"), web("a", |_| {})]);
    let r = &d.containers.values().next().expect("a").rollout;
    assert_eq!(
        (r.max_surge, r.max_unavailable),
        (1, 0),
        "no address: start-first"
    );
}

#[test]
fn duplicate_static_addresses_on_one_network_block_both_naming_each_other() {
    let d = resolve(&[
        net("net"),
        net("other"),
        web("a", |s| ip(s, "10.88.0.10")),
        web("b", |s| ip(s, "10.88.0.10")),
        web("c", |s| {
            s.networks[0].name = "other".into();
            ip(s, "10.88.0.10");
        }),
    ]);
    assert_eq!(
        d.containers
            .keys()
            .map(|k| k.name.as_str())
            .collect::<Vec<_>>(),
        ["c"]
    );
    for k in ["a", "b"] {
        let why = d
            .blocked
            .iter()
            .find(|(key, _)| key.name == k)
            .map(|(_, why)| why.as_str())
            .expect("blocked");
        assert!(why.contains("10.88.0.10"), "{why}");
        assert!(
            why.contains("Container/app/a") && why.contains("Container/app/b"),
            "{why}"
        );
    }
}

#[test]
fn duplicate_host_ports_block_both_and_unspecified_addresses_overlap() {
    let d = resolve(&[
        net("net"),
        web("a", |s| port(s, None, 8080, Protocol::TCP)),
        web("b", |s| port(s, Some("127.0.0.1"), 8080, Protocol::TCP)),
        // Another protocol, another port, or two distinct addresses do not clash.
        web("c", |s| port(s, None, 8080, Protocol::UDP)),
        web("d", |s| port(s, Some("127.0.0.1"), 8081, Protocol::TCP)),
        web("e", |s| port(s, Some("127.0.0.2"), 8081, Protocol::TCP)),
    ]);
    let running: Vec<&str> = d.containers.keys().map(|k| k.name.as_str()).collect();
    assert_eq!(running, ["c", "d", "e"]);
    let why = &d.blocked.values().next().expect("blocked");
    assert!(why.contains("8080/TCP"), "{why}");
    assert!(
        why.contains("Container/app/a") && why.contains("Container/app/b"),
        "{why}"
    );
}

/// A Container built without `image` gets the default build tag: unchanged for the default
/// instance (existing images are not rebuilt), and naming the instance for any other, so that
/// two agents on one host building an object of the same name never share a tag.
#[test]
fn the_default_build_tag_names_a_non_default_instance() {
    let built = Manifest::Container {
        metadata: meta("site"),
        spec: std::sync::Arc::new(ContainerSpec {
            build: Some(Build {
                context: "/srv/site".into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
    };
    let image = |instance: &str| {
        let d = berth_core::resolve::resolve_for(instance, [&built]);
        d.containers
            .values()
            .next()
            .expect("site")
            .config
            .image
            .clone()
    };
    assert_eq!(image("default"), "berth.local/app/site:latest");
    assert_eq!(image("blue"), "berth.local/blue/app/site:latest");
    assert_ne!(image("blue"), image("green"));
    // An explicit image is the tag, whatever the instance.
    let tagged = Manifest::Container {
        metadata: meta("site"),
        spec: std::sync::Arc::new(ContainerSpec {
            image: Some("registry.example/site:2".into()),
            build: Some(Build {
                context: "/srv/site".into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
    };
    let d = berth_core::resolve::resolve_for("blue", [&tagged]);
    assert_eq!(
        d.containers.values().next().expect("site").config.image,
        "registry.example/site:2"
    );
}

fn depends(name: &str, on: &[&str]) -> Manifest {
    web(name, |s| {
        s.depends_on = on
            .iter()
            .map(|d| Dependency {
                name: (*d).into(),
                ..Default::default()
            })
            .collect();
    })
}

#[test]
fn cycles_are_blocked_each_with_a_way_back_and_nothing_else_is() {
    // a → b → c → a is a cycle; d → a and e → e (itself) too; f → d is not on one.
    let mut objs = vec![
        net("net"),
        depends("a", &["b"]),
        depends("b", &["c"]),
        depends("c", &["a"]),
        depends("d", &["a"]),
        depends("e", &["e"]),
        depends("f", &["d"]),
    ];
    let d = resolve(&objs);
    let why = |n: &str| {
        d.blocked
            .get(&ObjectKey::new(Kind::Container, "app", n))
            .cloned()
    };
    assert_eq!(why("a").as_deref(), Some("dependsOn cycle: a → b → c → a"));
    assert_eq!(why("b").as_deref(), Some("dependsOn cycle: b → c → a → b"));
    assert!(why("e").is_some(), "e depends on itself");
    // d depends on the cycle and f on d: blocked as dependents, not as members of a cycle.
    for n in ["d", "f"] {
        let w = why(n).unwrap_or_default();
        assert!(w.contains("is blocked") && !w.contains("cycle"), "{n}: {w}");
    }
    // Two cycles sharing a node: every node of the component is blocked.
    objs.push(depends("g", &["h"]));
    objs.push(depends("h", &["g", "a"]));
    let d = resolve(&objs);
    for n in ["a", "b", "c", "e", "g", "h"] {
        assert!(
            d.blocked
                .contains_key(&ObjectKey::new(Kind::Container, "app", n)),
            "{n}"
        );
    }
}

#[test]
fn a_long_dependency_chain_resolves_in_linear_time() {
    // c0 ← c1 ← … ← c2999: the check for cycles once searched from every container and copied
    // the path at every step (a 1,000-long chain took 9 s); it is now one linear pass. Counted,
    // not timed: every container resolves and none is blocked.
    let n = 3000;
    let mut objs = vec![net("net")];
    objs.extend((0..n).map(|i| {
        if i == 0 {
            depends("c0", &[])
        } else {
            depends(&format!("c{i}"), &[&format!("c{}", i - 1)])
        }
    }));
    let d = resolve(&objs);
    assert_eq!(d.containers.len(), n);
    assert!(d.blocked.is_empty(), "{:?}", d.blocked.values().next());
    // Closed into a ring of 300 (each container's way back is searched on its own: quadratic
    // in the ring's length, which only a cycle, an error, pays).
    objs[1] = depends("c0", &["c299"]);
    let d = resolve(&objs);
    let on_cycle = d
        .blocked
        .values()
        .filter(|w| w.contains("dependsOn cycle"))
        .count();
    assert_eq!(
        (on_cycle, d.blocked.len()),
        (300, n),
        "the rest blocked as dependents"
    );
}
