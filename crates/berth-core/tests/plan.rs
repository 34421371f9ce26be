//! Table-style tests of `plan`, plus the convergence property: applying a plan to the observed
//! state (with a faithful in-memory engine model) and planning again yields an empty plan.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use berth_api::*;
use berth_core::backoff::{Backoff, RetryBook};
use berth_core::hash::spec_hash;
use berth_core::labels;
use berth_core::resolve::resolve;
use berth_core::{
    Action, ObservedContainer, ObservedNetwork, ObservedState, ObservedVolume, Owner, Plan,
    RunState, plan,
};

fn meta(ns: &str, name: &str) -> ManifestMetadata {
    ManifestMetadata {
        name: name.into(),
        namespace: Some(ns.into()),
        ..Default::default()
    }
}

fn container(name: &str, image: &str) -> ContainerSpec {
    ContainerSpec {
        image: image.into(),
        networks: vec![NetworkAttachment {
            name: "net".into(),
            ..Default::default()
        }],
        mounts: vec![Mount {
            mount_path: "/data".into(),
            volume: Some("data".into()),
            ..Default::default()
        }],
        env: vec![EnvVar {
            name: "NAME".into(),
            value: name.into(),
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn stack() -> Vec<Manifest> {
    vec![
        Manifest::Network {
            metadata: meta("app", "net"),
            spec: NetworkSpec::default(),
        },
        Manifest::Volume {
            metadata: meta("app", "data"),
            spec: VolumeSpec::default(),
        },
        Manifest::Container {
            metadata: meta("app", "web"),
            spec: Box::new(container("web", "busybox:1")),
        },
        Manifest::Container {
            metadata: meta("app", "db"),
            spec: Box::new(container("db", "busybox:1")),
        },
    ]
}

/// A model of the engine good enough to apply plans: IDs are counters.
#[derive(Default)]
struct Sim {
    state: ObservedState,
    next: u32,
    calls: Vec<String>,
}

impl Sim {
    fn id(&mut self) -> String {
        self.next += 1;
        format!("id{}", self.next)
    }

    fn apply(&mut self, p: &Plan) {
        for a in &p.actions {
            for d in &a.after {
                assert!(*d < a.id, "dependencies point backwards");
            }
            self.calls.push(a.action.to_string());
            match &a.action {
                Action::EnsureImage { .. } => {}
                Action::CreateNetwork {
                    name, labels: l, ..
                } => {
                    let id = self.id();
                    self.state.networks.push(ObservedNetwork {
                        id,
                        name: name.clone(),
                        key: labels::key_from_labels(l),
                        hash: l.get(labels::SPEC_HASH).cloned(),
                    });
                }
                Action::RemoveNetwork { id, .. } => self.state.networks.retain(|n| &n.id != id),
                Action::CreateVolume {
                    name, labels: l, ..
                } => self.state.volumes.push(ObservedVolume {
                    name: name.clone(),
                    key: labels::key_from_labels(l),
                    hash: l.get(labels::SPEC_HASH).cloned(),
                    delete_when_orphaned: l.get(labels::RECLAIM_POLICY).map(String::as_str)
                        == Some("Delete"),
                }),
                Action::RemoveVolume { name } => self.state.volumes.retain(|v| &v.name != name),
                Action::RemoveContainer { id, .. } => self.state.containers.retain(|c| &c.id != id),
                Action::CreateContainer {
                    name,
                    config,
                    labels: l,
                } => {
                    let id = self.id();
                    let networks = config
                        .networks
                        .iter()
                        .map(|a| {
                            let nid = self
                                .state
                                .networks
                                .iter()
                                .find(|n| n.name == a.network)
                                .map(|n| n.id.clone());
                            (
                                a.network.clone(),
                                nid.expect("network exists before container create"),
                            )
                        })
                        .collect();
                    self.state.containers.push(ObservedContainer {
                        id,
                        name: name.clone(),
                        key: labels::key_from_labels(l),
                        replica: labels::replica_from_labels(l),
                        hash: l.get(labels::SPEC_HASH).cloned(),
                        state: RunState::Created,
                        exit_code: None,
                        networks,
                    });
                }
                Action::StartContainer { name, .. } => {
                    let c = self
                        .state
                        .containers
                        .iter_mut()
                        .find(|c| &c.name == name)
                        .expect("exists");
                    c.state = RunState::Running;
                }
            }
        }
    }

    fn container_id(&self, name: &str) -> String {
        self.state
            .containers
            .iter()
            .find(|c| c.name == name)
            .map(|c| c.id.clone())
            .expect("container")
    }
}

fn converge(sim: &mut Sim, objects: &[Manifest]) -> Plan {
    let desired = resolve(objects);
    let p = plan(&desired, &sim.state, &RetryBook::default(), Instant::now());
    sim.apply(&p);
    let again = plan(&desired, &sim.state, &RetryBook::default(), Instant::now());
    assert!(
        again.is_empty(),
        "second plan must be empty, got {:#?}",
        again.actions
    );
    p
}

fn names(p: &Plan) -> Vec<String> {
    p.actions.iter().map(|a| a.action.to_string()).collect()
}

#[test]
fn cold_start_creates_dependencies_first_and_pulls_once() {
    let mut sim = Sim::default();
    let p = converge(&mut sim, &stack());
    assert_eq!(
        names(&p),
        vec![
            "create network app_net",
            "create volume app_data",
            "ensure image busybox:1 (pull policy IfNotPresent)",
            "create container app_db_0 (busybox:1)",
            "start container app_db_0",
            "create container app_web_0 (busybox:1)",
            "start container app_web_0",
        ]
    );
}

#[test]
fn converged_host_plans_nothing() {
    let mut sim = Sim::default();
    converge(&mut sim, &stack());
    let p = plan(
        &resolve(&stack()),
        &sim.state,
        &RetryBook::default(),
        Instant::now(),
    );
    assert!(p.is_empty() && p.waiting.is_empty());
}

#[test]
fn image_change_recreates_one_container_image_first() {
    let mut sim = Sim::default();
    converge(&mut sim, &stack());
    let web_id = sim.container_id("app_web_0");
    let mut objs = stack();
    if let Manifest::Container { spec, .. } = &mut objs[3] {
        spec.image = "busybox:2".into();
    }
    let p = converge(&mut sim, &objs);
    assert_eq!(
        names(&p),
        vec![
            "ensure image busybox:2 (pull policy IfNotPresent)",
            "remove container app_db_0",
            "create container app_db_0 (busybox:2)",
            "start container app_db_0",
        ]
    );
    assert_eq!(
        p.actions[1].after,
        vec![0],
        "old container removed only after the image is there"
    );
    assert_eq!(
        sim.container_id("app_web_0"),
        web_id,
        "the other container is untouched"
    );
}

#[test]
fn scheduling_fields_do_not_recreate() {
    let mut sim = Sim::default();
    converge(&mut sim, &stack());
    let mut objs = stack();
    if let Manifest::Container { spec, .. } = &mut objs[2] {
        spec.restart_policy = RestartPolicy::OnFailure;
        spec.pull_policy = PullPolicy::Always;
    }
    assert!(
        plan(
            &resolve(&objs),
            &sim.state,
            &RetryBook::default(),
            Instant::now()
        )
        .is_empty()
    );
}

#[test]
fn rename_removes_old_and_creates_new() {
    let mut sim = Sim::default();
    converge(&mut sim, &stack());
    let db_id = sim.container_id("app_db_0");
    let mut objs = stack();
    if let Manifest::Container { metadata, .. } = &mut objs[2] {
        metadata.name = "frontend".into();
    }
    let p = converge(&mut sim, &objs);
    let mut got = names(&p);
    got.sort();
    assert_eq!(
        got,
        vec![
            "create container app_frontend_0 (busybox:1)",
            "ensure image busybox:1 (pull policy IfNotPresent)",
            "remove container app_web_0",
            "start container app_frontend_0",
        ]
    );
    assert_eq!(sim.container_id("app_db_0"), db_id);
}

#[test]
fn deleting_everything_removes_containers_then_network_and_keeps_volume() {
    let mut sim = Sim::default();
    converge(&mut sim, &stack());
    let p = converge(&mut sim, &[]);
    let got = names(&p);
    assert_eq!(got.len(), 3, "{got:?}");
    assert_eq!(got[2], "remove network app_net");
    assert_eq!(p.actions[2].after, vec![0, 1]);
    assert_eq!(sim.state.volumes.len(), 1, "Retain keeps the volume");
}

#[test]
fn volume_with_delete_policy_is_removed_after_containers() {
    let mut objs = stack();
    if let Manifest::Volume { spec, .. } = &mut objs[1] {
        spec.reclaim_policy = ReclaimPolicy::Delete;
    }
    let mut sim = Sim::default();
    converge(&mut sim, &objs);
    let p = converge(&mut sim, &[]);
    let last = p.actions.last().expect("actions");
    assert_eq!(last.action.to_string(), "remove volume app_data");
    assert!(sim.state.volumes.is_empty());
}

#[test]
fn network_change_recreates_network_and_attached_containers() {
    let mut sim = Sim::default();
    converge(&mut sim, &stack());
    let mut objs = stack();
    if let Manifest::Network { spec, .. } = &mut objs[0] {
        spec.labels.insert("tier".into(), "front".into());
    }
    let p = converge(&mut sim, &objs);
    let got = names(&p);
    let pos = |s: &str| {
        got.iter()
            .position(|g| g == s)
            .unwrap_or_else(|| panic!("{s} missing from {got:?}"))
    };
    assert!(pos("remove container app_web_0") < pos("remove network app_net"));
    assert!(pos("remove network app_net") < pos("create network app_net"));
    assert!(pos("create network app_net") < pos("create container app_web_0 (busybox:1)"));
    assert!(pos("create network app_net") < pos("create container app_db_0 (busybox:1)"));
}

#[test]
fn removed_network_is_recreated_and_container_reattached() {
    let mut sim = Sim::default();
    converge(&mut sim, &stack());
    sim.state.networks.clear(); // `docker network rm` while the containers were stopped
    for c in &mut sim.state.containers {
        c.state = RunState::Exited;
    }
    let p = converge(&mut sim, &stack());
    assert!(names(&p).contains(&"create network app_net".to_string()));
    assert!(names(&p).contains(&"remove container app_web_0".to_string()));
}

#[test]
fn missing_container_is_recreated_without_touching_others() {
    let mut sim = Sim::default();
    converge(&mut sim, &stack());
    sim.state.containers.retain(|c| c.name != "app_web_0"); // docker rm -f
    let p = converge(&mut sim, &stack());
    assert_eq!(
        names(&p),
        vec![
            "ensure image busybox:1 (pull policy IfNotPresent)",
            "create container app_web_0 (busybox:1)",
            "start container app_web_0"
        ]
    );
}

#[test]
fn foreign_container_with_wanted_name_is_a_conflict() {
    let mut sim = Sim::default();
    sim.state.foreign_containers.insert("app_web_0".into());
    let p = plan(
        &resolve(&stack()),
        &sim.state,
        &RetryBook::default(),
        Instant::now(),
    );
    assert!(!names(&p).iter().any(|n| n.contains("app_web_0")));
    let w: Vec<_> = p
        .waiting
        .iter()
        .filter(|w| w.reason == "Conflict")
        .collect();
    assert_eq!(w.len(), 1);
    assert!(w[0].message.contains("not managed by berth"));
}

#[test]
fn foreign_volume_is_never_removed_or_used() {
    let mut sim = Sim::default();
    sim.state.foreign_volumes.insert("app_data".into());
    let p = plan(
        &resolve(&stack()),
        &sim.state,
        &RetryBook::default(),
        Instant::now(),
    );
    assert!(!names(&p).iter().any(|n| n.contains("volume")));
    assert!(p.waiting.iter().any(|w| w.reason == "DependencyBlocked"));
    let p = plan(
        &resolve(&[]),
        &sim.state,
        &RetryBook::default(),
        Instant::now(),
    );
    assert!(p.is_empty());
}

#[test]
fn undeclared_network_blocks_container_but_keeps_its_old_one() {
    let mut sim = Sim::default();
    converge(&mut sim, &stack());
    let objs: Vec<Manifest> = stack()
        .into_iter()
        .filter(|m| m.kind() != Kind::Network)
        .collect();
    let p = plan(
        &resolve(&objs),
        &sim.state,
        &RetryBook::default(),
        Instant::now(),
    );
    assert!(
        p.actions
            .iter()
            .all(|a| !matches!(a.action, Action::RemoveContainer { .. })),
        "{:?}",
        names(&p)
    );
    assert!(p.waiting.iter().any(|w| w.reason == "InvalidReference"));
    assert!(p.waiting.iter().any(|w| w.reason == "NetworkInUse"));
}

#[test]
fn failure_backoff_blocks_only_that_owner() {
    let mut sim = Sim::default();
    let desired = resolve(&stack());
    let now = Instant::now();
    let mut book = RetryBook::default();
    let web = desired
        .containers
        .keys()
        .find(|k| k.name == "web")
        .expect("web")
        .clone();
    let hash = desired.containers[&web].hash.clone();
    book.record_failure(
        Owner::replica(web, 0),
        &hash,
        now,
        "pull failed".into(),
        |n| Backoff::FAILURE.delay(n),
    );
    let p = plan(&desired, &sim.state, &book, now);
    assert!(names(&p).contains(&"create container app_db_0 (busybox:1)".to_string()));
    assert!(!names(&p).iter().any(|n| n.contains("app_web_0")));
    assert!(
        p.waiting
            .iter()
            .any(|w| w.reason == "BackOff" && w.message.contains("pull failed"))
    );
    let later = plan(&desired, &sim.state, &book, now + Duration::from_secs(2));
    assert!(names(&later).iter().any(|n| n.contains("app_web_0")));
    sim.apply(&later);
}

#[test]
fn restart_policy_decides_restarts_with_crash_loop_backoff() {
    let mut sim = Sim::default();
    converge(&mut sim, &stack());
    let desired = resolve(&stack());
    for c in &mut sim.state.containers {
        c.state = RunState::Exited;
        c.exit_code = Some(0);
    }
    let now = Instant::now();
    let mut book = RetryBook::default();
    let p = plan(&desired, &sim.state, &book, now);
    assert_eq!(
        names(&p),
        vec!["restart container app_db_0", "restart container app_web_0"]
    );
    for a in &p.actions {
        book.record_restart(a.owner.clone(), &a.hash, now, Backoff::CRASH_LOOP);
    }
    let p = plan(&desired, &sim.state, &book, now + Duration::from_secs(5));
    assert!(p.is_empty());
    assert_eq!(
        p.waiting
            .iter()
            .filter(|w| w.reason == "CrashLoopBackOff")
            .count(),
        2
    );
    let p = plan(&desired, &sim.state, &book, now + Duration::from_secs(10));
    assert_eq!(p.actions.len(), 2);

    let mut objs = stack();
    for m in &mut objs {
        if let Manifest::Container { spec, .. } = m {
            spec.restart_policy = RestartPolicy::OnFailure;
        }
    }
    assert!(
        plan(&resolve(&objs), &sim.state, &RetryBook::default(), now).is_empty(),
        "exit 0 with OnFailure"
    );
}

#[test]
fn scaling_down_removes_highest_indexes() {
    let mut objs = stack();
    if let Manifest::Container { spec, .. } = &mut objs[2] {
        spec.replicas = Some(3);
    }
    let mut sim = Sim::default();
    converge(&mut sim, &objs);
    if let Manifest::Container { spec, .. } = &mut objs[2] {
        spec.replicas = Some(1);
    }
    let p = converge(&mut sim, &objs);
    assert_eq!(
        names(&p),
        vec!["remove container app_web_1", "remove container app_web_2"]
    );
}

#[test]
fn unfinished_create_is_replaced_after_agent_crash() {
    let mut sim = Sim::default();
    converge(&mut sim, &stack());
    sim.state.containers[0].state = RunState::Created; // killed between create and start
    let p = converge(&mut sim, &stack());
    assert_eq!(p.actions.len(), 4, "{:?}", names(&p));
}

#[test]
fn duplicate_engine_names_block_both_objects() {
    let mut objs = stack();
    for m in &mut objs {
        if let Manifest::Container { spec, .. } = m {
            spec.container_name = Some("same".into());
        }
    }
    let d = resolve(&objs);
    assert!(d.containers.is_empty());
    assert_eq!(d.blocked.len(), 2);
}

/// Golden values: a change here restarts every container on every upgraded host.
#[test]
fn golden_spec_hashes() {
    let d = resolve(&stack());
    let hashes: BTreeMap<String, String> = d
        .containers
        .iter()
        .map(|(k, c)| (k.name.clone(), c.hash.clone()))
        .chain(
            d.networks
                .iter()
                .map(|(k, n)| (k.name.clone(), n.hash.clone())),
        )
        .chain(
            d.volumes
                .iter()
                .map(|(k, v)| (k.name.clone(), v.hash.clone())),
        )
        .collect();
    let got: BTreeSet<(String, String)> = hashes.into_iter().collect();
    let want: BTreeSet<(String, String)> = [
        ("data", "v1-a43ed8ec94242924"),
        ("db", "v1-3a22261bd57987fd"),
        ("net", "v1-106f3fa4658223ee"),
        ("web", "v1-41a35bc06fba1fd0"),
    ]
    .into_iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(got, want);
    assert_eq!(spec_hash(&()), "v1-74234e98afe7498f", "hash of JSON null");
}
