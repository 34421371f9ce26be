//! Table-style tests of `plan`, plus the convergence property: applying a plan to the observed
//! state (with a faithful in-memory engine model) and planning again yields an empty plan.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use berth_api::*;
use berth_core::backoff::{Backoff, RetryBook};
use berth_core::hash::spec_hash;
use berth_core::observed::{Health, ProbeStatus};
use berth_core::resolve::resolve;
mod common;

use common::{ContainerBuilder, Sim, meta, network, touches, volume};

use berth_core::{
    Action, Failure, FailureKind, Intent, ObservedContainer, ObservedState, Owner, Plan,
    PlannedAction, RunState, WaitReason, plan,
};

fn stack() -> Vec<Manifest> {
    let c = |name: &str| {
        ContainerBuilder::new("app", name)
            .network("net")
            .volume("data")
            .env("NAME", name)
            .build()
    };
    vec![
        network("app", "net"),
        volume("app", "data"),
        c("web"),
        c("db"),
    ]
}

/// The pass the agent makes (no busy owners, Kubernetes' CrashLoopBackOff).
fn one_pass(
    desired: &berth_core::DesiredState,
    observed: &ObservedState,
    book: &mut RetryBook,
    now: Instant,
) -> Plan {
    let busy = BTreeSet::new();
    berth_core::pass::pass(desired, observed, book, &busy, Backoff::CRASH_LOOP, now).plan
}

/// Applies plans until the host is converged (a rolling update takes a few passes); returns the
/// first plan.
fn converge(sim: &mut Sim, objects: &[Manifest]) -> Plan {
    let desired = resolve(objects);
    let mut book = RetryBook::default();
    let now = Instant::now();
    let first = one_pass(&desired, &sim.state, &mut book, now);
    sim.apply(&first);
    let rolling = first.actions.iter().any(|a| {
        matches!(
            a.action,
            Action::StopContainer { .. } | Action::RenameContainer { .. }
        ) || a.intent == Intent::Surge
    });
    for _ in 0..10 {
        let again = one_pass(&desired, &sim.state, &mut book, now);
        if again.is_empty() {
            assert!(
                !sim.state
                    .containers
                    .iter()
                    .any(|c| c.name.ends_with("_prev") || c.name.ends_with("_next")),
                "no surge or previous container is left: {:#?}",
                sim.state.containers
            );
            return first;
        }
        assert!(
            rolling,
            "only a rolling update takes more than one plan; second plan: {:#?}",
            again.actions
        );
        sim.apply(&again);
    }
    panic!("no convergence after 10 plans: {:#?}", sim.state.containers);
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
        let spec = std::sync::Arc::make_mut(spec);
        spec.image = Some("busybox:2".into());
    }
    let p = converge(&mut sim, &objs);
    assert_eq!(
        names(&p),
        vec![
            "ensure image busybox:2 (pull policy IfNotPresent)",
            "stop container app_db_0",
            "rename container app_db_0 to app_db_0_prev",
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
        let spec = std::sync::Arc::make_mut(spec);
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
        .filter(|w| w.reason == WaitReason::Conflict)
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
    assert!(
        p.waiting
            .iter()
            .any(|w| w.reason == WaitReason::DependencyBlocked)
    );
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
    assert!(
        p.waiting
            .iter()
            .any(|w| w.reason == WaitReason::InvalidReference)
    );
    assert!(
        p.waiting
            .iter()
            .any(|w| w.reason == WaitReason::NetworkInUse)
    );
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
        Failure::new(FailureKind::Engine, "pull failed"),
        |n| Backoff::FAILURE.delay(n),
    );
    let p = plan(&desired, &sim.state, &book, now);
    assert!(names(&p).contains(&"create container app_db_0 (busybox:1)".to_string()));
    assert!(!names(&p).iter().any(|n| n.contains("app_web_0")));
    assert!(
        p.waiting
            .iter()
            .any(|w| w.reason == WaitReason::BackOff && w.message.contains("pull failed"))
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
        book.record_restart(a.owner.clone(), &a.hash, now, Backoff::CRASH_LOOP, Some(0));
    }
    let p = plan(&desired, &sim.state, &book, now + Duration::from_secs(5));
    assert!(p.is_empty());
    assert_eq!(
        p.waiting
            .iter()
            .filter(|w| w.reason == WaitReason::CrashLoopBackOff)
            .count(),
        2
    );
    let p = plan(&desired, &sim.state, &book, now + Duration::from_secs(10));
    assert_eq!(p.actions.len(), 2);

    let mut objs = stack();
    for m in &mut objs {
        if let Manifest::Container { spec, .. } = m {
            let spec = std::sync::Arc::make_mut(spec);
            spec.restart_policy = RestartPolicy::OnFailure;
        }
    }
    assert!(
        plan(&resolve(&objs), &sim.state, &RetryBook::default(), now).is_empty(),
        "exit 0 with OnFailure"
    );
}

#[test]
fn a_paused_container_is_unpaused() {
    let mut sim = Sim::default();
    converge(&mut sim, &stack());
    let id = sim.container_id("app_web_0");
    sim.state
        .containers
        .iter_mut()
        .find(|c| c.id == id)
        .expect("web")
        .state = RunState::Paused;
    let p = converge(&mut sim, &stack());
    assert_eq!(names(&p), vec!["unpause container app_web_0"]);
    assert_eq!(sim.container_id("app_web_0"), id, "the same container");
}

#[test]
fn scaling_down_removes_highest_indexes() {
    let mut objs = stack();
    if let Manifest::Container { spec, .. } = &mut objs[2] {
        let spec = std::sync::Arc::make_mut(spec);
        spec.replicas = Some(3);
    }
    let mut sim = Sim::default();
    converge(&mut sim, &objs);
    if let Manifest::Container { spec, .. } = &mut objs[2] {
        let spec = std::sync::Arc::make_mut(spec);
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
            let spec = std::sync::Arc::make_mut(spec);
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

fn with_deps(condition: DependencyCondition) -> Vec<Manifest> {
    let mut objs = stack();
    if let Manifest::Container { spec, .. } = &mut objs[2] {
        let spec = std::sync::Arc::make_mut(spec);
        spec.depends_on = vec![Dependency {
            name: "db".into(),
            condition,
        }];
    }
    objs
}

fn set_db(sim: &mut Sim, state: RunState, health: Option<Health>, exit: Option<i64>) {
    let c = sim
        .state
        .containers
        .iter_mut()
        .find(|c| c.name == "app_db_0")
        .expect("db");
    c.state = state;
    c.health = health;
    c.exit_code = exit;
}

fn waiting_reason(p: &Plan, name: &str) -> Option<String> {
    p.waiting
        .iter()
        .find(|w| w.owner.key.name == name)
        .map(|w| format!("{}: {}", w.reason, w.message))
}

#[test]
fn dependent_waits_until_dependency_is_healthy() {
    let objs = with_deps(DependencyCondition::Healthy);
    let desired = resolve(&objs);
    let mut sim = Sim::default();
    let p = plan(&desired, &sim.state, &RetryBook::default(), Instant::now());
    assert!(
        !names(&p).iter().any(|n| n.contains("app_web_0")),
        "{:?}",
        names(&p)
    );
    assert!(waiting_reason(&p, "web").is_some_and(|w| w.starts_with("WaitingForDependency")));
    sim.apply(&p);
    set_db(&mut sim, RunState::Running, Some(Health::Starting), None);
    let p = plan(&desired, &sim.state, &RetryBook::default(), Instant::now());
    assert!(p.is_empty());
    assert!(
        waiting_reason(&p, "web").is_some_and(|w| w.contains("become healthy")),
        "{:?}",
        p.waiting
    );
    set_db(&mut sim, RunState::Running, Some(Health::Healthy), None);
    let p = plan(&desired, &sim.state, &RetryBook::default(), Instant::now());
    assert!(
        names(&p).contains(&"start container app_web_0".to_string()),
        "{:?}",
        names(&p)
    );
}

#[test]
fn failed_dependency_keeps_dependent_waiting_with_reason() {
    let objs = with_deps(DependencyCondition::Started);
    let desired = resolve(&objs);
    let mut sim = Sim::default();
    sim.apply(&plan(
        &desired,
        &sim.state,
        &RetryBook::default(),
        Instant::now(),
    ));
    set_db(&mut sim, RunState::Exited, None, Some(1));
    let mut book = RetryBook::default();
    let db = ObjectKey::new(Kind::Container, "app", "db");
    book.record_restart(
        Owner::replica(db.clone(), 0),
        &desired.containers[&db].hash,
        Instant::now(),
        Backoff::CRASH_LOOP,
        None,
    );
    let p = plan(&desired, &sim.state, &book, Instant::now());
    assert!(waiting_reason(&p, "db").is_some_and(|w| w.starts_with("CrashLoopBackOff")));
    assert!(
        waiting_reason(&p, "web").is_some_and(|w| w.contains("exited with code 1")),
        "{:?}",
        p.waiting
    );
    assert!(p.actions.iter().all(|a| a.owner.key.name != "web"));
}

#[test]
fn completed_condition_needs_exit_zero() {
    let objs = with_deps(DependencyCondition::Completed);
    let desired = resolve(&objs);
    let mut sim = Sim::default();
    sim.apply(&plan(
        &desired,
        &sim.state,
        &RetryBook::default(),
        Instant::now(),
    ));
    set_db(&mut sim, RunState::Running, None, None);
    let p = plan(&desired, &sim.state, &RetryBook::default(), Instant::now());
    assert!(waiting_reason(&p, "web").is_some_and(|w| w.contains("to complete")));
    set_db(&mut sim, RunState::Exited, None, Some(0));
    let mut objs = objs;
    if let Manifest::Container { spec, .. } = &mut objs[3] {
        let spec = std::sync::Arc::make_mut(spec);
        spec.restart_policy = RestartPolicy::OnFailure;
    }
    let p = plan(
        &resolve(&objs),
        &sim.state,
        &RetryBook::default(),
        Instant::now(),
    );
    assert!(
        names(&p).contains(&"start container app_web_0".to_string()),
        "{:?}",
        names(&p)
    );
}

#[test]
fn cycles_and_unknown_dependencies_are_blocked() {
    let mut objs = with_deps(DependencyCondition::Started);
    if let Manifest::Container { spec, .. } = &mut objs[3] {
        let spec = std::sync::Arc::make_mut(spec);
        spec.depends_on = vec![Dependency {
            name: "web".into(),
            ..Default::default()
        }];
    }
    let d = resolve(&objs);
    assert!(d.containers.is_empty());
    assert!(
        d.blocked.values().any(|w| w.contains("cycle")),
        "{:?}",
        d.blocked
    );
    let mut objs = with_deps(DependencyCondition::Started);
    if let Manifest::Container { spec, .. } = &mut objs[2] {
        let spec = std::sync::Arc::make_mut(spec);
        spec.depends_on[0].name = "nope".into();
    }
    let d = resolve(&objs);
    assert!(
        d.blocked
            .values()
            .any(|w| w.contains("\"nope\" is not declared")),
        "{:?}",
        d.blocked
    );
}

#[test]
fn unhealthy_container_is_restarted_with_backoff_but_not_while_starting() {
    let desired = resolve(&stack());
    let mut sim = Sim::default();
    sim.apply(&plan(
        &desired,
        &sim.state,
        &RetryBook::default(),
        Instant::now(),
    ));
    set_db(&mut sim, RunState::Running, Some(Health::Starting), None);
    assert!(plan(&desired, &sim.state, &RetryBook::default(), Instant::now()).is_empty());
    set_db(&mut sim, RunState::Running, Some(Health::Unhealthy), None);
    let now = Instant::now();
    let p = plan(&desired, &sim.state, &RetryBook::default(), now);
    assert_eq!(names(&p), vec!["restart unhealthy container app_db_0"]);
    let mut book = RetryBook::default();
    book.record_restart(
        p.actions[0].owner.clone(),
        &p.actions[0].hash,
        now,
        Backoff::CRASH_LOOP,
        None,
    );
    let p = plan(&desired, &sim.state, &book, now + Duration::from_secs(1));
    assert!(p.is_empty());
    assert!(waiting_reason(&p, "db").is_some_and(|w| w.starts_with("Unhealthy")));
}

#[test]
fn shared_network_namespace_follows_a_replaced_target() {
    let mut objs = stack();
    if let Manifest::Container { spec, .. } = &mut objs[2] {
        let spec = std::sync::Arc::make_mut(spec);
        spec.networks.clear();
        spec.network_mode = Some("container:db".into());
    }
    let desired = resolve(&objs);
    let pass = |sim: &mut Sim| {
        let p = plan(&desired, &sim.state, &RetryBook::default(), Instant::now());
        sim.apply(&p);
        names(&p)
    };
    let mut sim = Sim::default();
    let first = pass(&mut sim);
    assert!(
        first.iter().all(|n| !n.contains("app_web_0")),
        "web waits for db in the first pass: {first:?}"
    );
    assert!(pass(&mut sim).contains(&"start container app_web_0".to_string()));
    assert!(pass(&mut sim).is_empty(), "converged");
    let web_id = sim.container_id("app_web_0");
    // db really replaced: web follows in the next pass, once db runs again.
    sim.state.containers.retain(|c| c.name != "app_db_0");
    let p = pass(&mut sim);
    assert!(p.iter().all(|n| !n.contains("app_web_0")), "{p:?}");
    let p = pass(&mut sim);
    assert!(
        p.contains(&"remove container app_web_0".to_string()),
        "{p:?}"
    );
    assert!(pass(&mut sim).is_empty());
    assert_ne!(sim.container_id("app_web_0"), web_id);
}

#[test]
fn failed_liveness_probe_restarts_and_readiness_gates_dependents() {
    let objs = with_deps(DependencyCondition::Healthy);
    let desired = resolve(&objs);
    let mut sim = Sim::default();
    sim.apply(&plan(
        &desired,
        &sim.state,
        &RetryBook::default(),
        Instant::now(),
    ));
    let probe = |ready: Option<bool>, live: bool| ProbeStatus {
        started: true,
        ready,
        live,
        message: Some("GET /: HTTP 500".into()),
    };
    let db = sim
        .state
        .containers
        .iter_mut()
        .find(|c| c.name == "app_db_0")
        .expect("db");
    db.state = RunState::Running;
    db.probe = Some(probe(Some(false), true));
    let p = plan(&desired, &sim.state, &RetryBook::default(), Instant::now());
    assert!(
        waiting_reason(&p, "web").is_some_and(|w| w.contains("become ready")),
        "{:?}",
        p.waiting
    );
    let db = sim
        .state
        .containers
        .iter_mut()
        .find(|c| c.name == "app_db_0")
        .expect("db");
    db.probe = Some(probe(Some(true), true));
    let p = plan(&desired, &sim.state, &RetryBook::default(), Instant::now());
    assert!(
        names(&p).contains(&"start container app_web_0".to_string()),
        "{:?}",
        names(&p)
    );
    let db = sim
        .state
        .containers
        .iter_mut()
        .find(|c| c.name == "app_db_0")
        .expect("db");
    db.probe = Some(probe(Some(true), false));
    let p = plan(&desired, &sim.state, &RetryBook::default(), Instant::now());
    let restart = p
        .actions
        .iter()
        .find(|a| a.owner.key.name == "db")
        .expect("db restarted");
    assert_eq!(
        restart.action.to_string(),
        "restart unhealthy container app_db_0"
    );
    assert!(
        restart
            .intent
            .to_string()
            .contains("liveness probe failed: GET /: HTTP 500"),
        "{}",
        restart.intent
    );
}

/// A broken file's objects are unknown after an agent restart: nothing undeclared is removed
/// until the set is complete again.
#[test]
fn incomplete_desired_set_removes_nothing() {
    let mut sim = Sim::default();
    converge(&mut sim, &stack());
    let mut desired = resolve(&[]);
    desired.incomplete = Some("a.yaml has not decoded".into());
    let p = plan(&desired, &sim.state, &RetryBook::default(), Instant::now());
    assert!(p.is_empty(), "{:?}", names(&p));
    assert!(
        p.waiting
            .iter()
            .any(|w| w.reason == WaitReason::RemovalPaused)
    );
    desired.incomplete = None;
    assert!(!plan(&desired, &sim.state, &RetryBook::default(), Instant::now()).is_empty());
}

/// Review finding: renaming an object that publishes a host port must remove the old container
/// before the new one is created.
#[test]
fn renamed_object_with_host_port_waits_for_the_old_container() {
    let mut objs = stack();
    if let Manifest::Container { spec, .. } = &mut objs[2] {
        let spec = std::sync::Arc::make_mut(spec);
        spec.ports = vec![ContainerPort {
            container_port: 80,
            host_port: Some(8080),
            ..Default::default()
        }];
    }
    let mut sim = Sim::default();
    converge(&mut sim, &objs);
    if let Manifest::Container { metadata, .. } = &mut objs[2] {
        metadata.name = "web2".into();
    }
    let p = converge(&mut sim, &objs);
    let rm = p
        .actions
        .iter()
        .find(|a| a.action.to_string() == "remove container app_web_0")
        .expect("rm");
    let create = p
        .actions
        .iter()
        .find(|a| {
            a.action
                .to_string()
                .starts_with("create container app_web2_0")
        })
        .expect("create");
    assert!(create.after.contains(&rm.id), "{:?}", p.actions);
}

#[test]
fn busy_owners_are_left_out_with_their_dependents() {
    let p = plan(
        &resolve(&stack()),
        &ObservedState::default(),
        &RetryBook::default(),
        Instant::now(),
    );
    let db = Owner::replica(ObjectKey::new(Kind::Container, "app", "db"), 0);
    let net = Owner::object(ObjectKey::new(Kind::Network, "app", "net"));
    let rest = p
        .clone()
        .without_owners(&[db.clone()].into_iter().collect());
    assert!(rest.actions.iter().all(|a| a.owner != db));
    assert!(
        rest.actions
            .iter()
            .any(|a| a.action.to_string() == "start container app_web_0")
    );
    for a in &rest.actions {
        assert_eq!(
            a.id,
            rest.actions.iter().position(|b| b.id == a.id).expect("id")
        );
        assert!(a.after.iter().all(|d| *d < a.id));
    }
    // Both containers need the network: only the volume is left. The image action goes too —
    // alone it would finish at once and start another pass with the same plan, in a loop.
    let rest = p.without_owners(&[net].into_iter().collect());
    assert_eq!(names(&rest), vec!["create volume app_data"]);
    assert!(
        rest.waiting
            .iter()
            .any(|w| w.reason == WaitReason::InProgress)
    );
}

fn always(objs: &mut [Manifest]) {
    if let Manifest::Container { spec, .. } = &mut objs[2] {
        let spec = std::sync::Arc::make_mut(spec);
        spec.pull_policy = PullPolicy::Always;
    }
}

/// `pullPolicy: Always`: once the agent re-pulled the tag and it names another image, the
/// container is recreated in that same pass (image first); `IfNotPresent` ignores a moved tag.
#[test]
fn always_container_follows_a_moved_tag_and_if_not_present_does_not() {
    let mut objs = stack();
    always(&mut objs);
    let mut sim = Sim::default();
    sim.state
        .image_ids
        .insert("busybox:1".into(), "sha256:1111111111111111".into());
    converge(&mut sim, &objs);
    let (web_id, db_id) = (sim.container_id("app_web_0"), sim.container_id("app_db_0"));
    sim.state
        .image_ids
        .insert("busybox:1".into(), "sha256:2222222222222222".into());
    let p = converge(&mut sim, &objs);
    assert_eq!(
        names(&p),
        vec![
            "ensure image busybox:1 (pull policy Always)",
            "remove container app_web_0",
            "create container app_web_0 (busybox:1)",
            "start container app_web_0",
        ]
    );
    assert_eq!(p.actions[1].after, vec![0], "image first");
    assert!(
        p.actions[1]
            .intent
            .to_string()
            .contains("now names 222222222222"),
        "{}",
        p.actions[1].intent
    );
    assert_ne!(sim.container_id("app_web_0"), web_id);
    assert_eq!(
        sim.container_id("app_db_0"),
        db_id,
        "IfNotPresent: a moved tag recreates nothing"
    );
    // Nothing known about the reference (not resolved, or missing locally): no recreate.
    sim.state.image_ids.clear();
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

/// Credentials are not hashed (changing them recreates nothing) but reach the pull.
#[test]
fn image_pull_secrets_reach_the_pull_and_are_not_hashed() {
    let mut sim = Sim::default();
    converge(&mut sim, &stack());
    let mut objs = stack();
    if let Manifest::Container { spec, .. } = &mut objs[2] {
        let spec = std::sync::Arc::make_mut(spec);
        spec.image_pull_secrets = vec![ImagePullSecret {
            file: "/etc/berth/auth.json".into(),
        }];
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
    sim.state.containers.retain(|c| c.name != "app_web_0");
    let p = converge(&mut sim, &objs);
    assert_eq!(
        p.actions[0].action,
        Action::EnsureImage {
            image: "busybox:1".into(),
            policy: PullPolicy::IfNotPresent,
            pull_secrets: vec!["/etc/berth/auth.json".into()],
        }
    );
}

/// A failed pull backs off as `ImagePullBackOff` (`ErrImageNeverPull` for pullPolicy Never);
/// other failures as `BackOff`.
#[test]
fn failed_pull_waits_as_image_pull_back_off() {
    let desired = resolve(&stack());
    let now = Instant::now();
    let reason = |kind: FailureKind, error: &str| {
        let mut book = RetryBook::default();
        let web = ObjectKey::new(Kind::Container, "app", "web");
        book.record_failure(
            Owner::replica(web.clone(), 0),
            &desired.containers[&web].hash,
            now,
            Failure::new(kind, error),
            |n| Backoff::FAILURE.delay(n),
        );
        let p = plan(&desired, &ObservedState::default(), &book, now);
        waiting_reason(&p, "web").expect("web waits")
    };
    let pull = reason(
        FailureKind::ImagePull,
        "pull r:5000/app:1: unauthorized: authentication required (ErrImagePull)",
    );
    assert!(
        pull.starts_with("ImagePullBackOff: 1 failed attempt(s)"),
        "{pull}"
    );
    // A create skipped because the pull failed carries the pull's kind (berth-engine's executor
    // test `a_skipped_action_carries_the_failed_dependency_kind`).
    let skipped = reason(
        FailureKind::ImagePull,
        "skipped: ensure image r:5000/app:1 (pull policy IfNotPresent) failed: pull r:5000/app:1: manifest unknown (ErrImagePull)",
    );
    assert!(skipped.starts_with("ImagePullBackOff"), "{skipped}");
    assert!(
        reason(
            FailureKind::ImageNeverPull,
            "image x is not present and pullPolicy is Never (ErrImageNeverPull)"
        )
        .starts_with("ErrImageNeverPull")
    );
    assert!(
        reason(FailureKind::Engine, "create container app_web_0: conflict").starts_with("BackOff")
    );
}

// ---- rolling updates

/// `web`: `replicas` busybox containers on network `net`, no volume (so start-first by
/// default), serving `version`.
fn web_stack(replicas: u32, version: &str, edit: impl Fn(&mut ContainerSpec)) -> Vec<Manifest> {
    let mut spec = ContainerSpec {
        image: Some("busybox:1".into()),
        replicas: Some(replicas),
        networks: vec![NetworkAttachment {
            name: "net".into(),
            ..Default::default()
        }],
        env: vec![EnvVar {
            name: "VERSION".into(),
            value: version.into(),
            ..Default::default()
        }],
        ..Default::default()
    };
    edit(&mut spec);
    vec![
        Manifest::Network {
            metadata: meta("app", "net"),
            spec: NetworkSpec::default(),
        },
        Manifest::Container {
            metadata: meta("app", "web"),
            spec: std::sync::Arc::new(spec),
        },
    ]
}

/// One agent pass at `now`: observe into the book, plan, apply.
fn pass(sim: &mut Sim, book: &mut RetryBook, objs: &[Manifest], now: Instant) -> Plan {
    let desired = resolve(objs);
    let p = one_pass(&desired, &sim.state, book, now);
    sim.apply(&p);
    p
}

fn web_containers(sim: &Sim) -> Vec<&ObservedContainer> {
    sim.state
        .containers
        .iter()
        .filter(|c| c.name.starts_with("app_web_"))
        .collect()
}

fn running_web(sim: &Sim) -> usize {
    web_containers(sim)
        .iter()
        .filter(|c| c.state == RunState::Running)
        .count()
}

fn set_probe(sim: &mut Sim, name: &str, ready: bool) {
    let c = sim
        .state
        .containers
        .iter_mut()
        .find(|c| c.name == name)
        .expect("container");
    c.probe = Some(ProbeStatus {
        started: true,
        ready: Some(ready),
        live: true,
        message: None,
    });
}

#[test]
fn rollout_bounds_follow_kubernetes_defaults_and_safety_rules() {
    let cfg = |objs: &[Manifest]| {
        resolve(objs)
            .containers
            .values()
            .next()
            .expect("web")
            .rollout
            .clone()
    };
    let d = cfg(&web_stack(3, "1", |_| {}));
    assert_eq!(
        (d.recreate, d.max_surge, d.max_unavailable),
        (false, 1, 0),
        "25%/25% of 3"
    );
    let d = cfg(&web_stack(8, "1", |_| {}));
    assert_eq!((d.max_surge, d.max_unavailable), (2, 2), "25%/25% of 8");
    let d = cfg(&web_stack(3, "1", |s| {
        s.ports = vec![ContainerPort {
            container_port: 80,
            host_port: Some(8080),
            ..Default::default()
        }];
        s.update_strategy = Some(UpdateStrategy {
            rolling_update: Some(RollingUpdate {
                max_surge: Some(IntOrString::Int(2)),
                ..Default::default()
            }),
            ..Default::default()
        });
    }));
    assert_eq!(
        (d.max_surge, d.max_unavailable),
        (0, 1),
        "a fixed hostPort forbids surge"
    );
    let d = cfg(&web_stack(3, "1", |s| {
        s.networks.clear();
        s.network_mode = Some("host".into());
    }));
    assert_eq!(
        (d.max_surge, d.max_unavailable),
        (0, 1),
        "host network: stop-first"
    );
    let mut objs = stack();
    objs.truncate(3);
    let d = cfg(&objs);
    assert_eq!(
        (d.max_surge, d.max_unavailable),
        (0, 1),
        "read-write volume: stop-first"
    );
    let d = cfg(&web_stack(4, "1", |s| {
        s.update_strategy = Some(UpdateStrategy {
            rolling_update: Some(RollingUpdate {
                max_surge: Some(IntOrString::String("50%".into())),
                max_unavailable: Some(IntOrString::String("50%".into())),
            }),
            ..Default::default()
        });
        s.min_ready_seconds = Some(5);
        s.progress_deadline_seconds = Some(30);
    }));
    assert_eq!((d.max_surge, d.max_unavailable), (2, 2));
    assert_eq!(
        (d.min_ready.as_secs(), d.progress_deadline.as_secs()),
        (5, 30)
    );
    let d = cfg(&web_stack(3, "1", |s| {
        s.update_strategy = Some(UpdateStrategy {
            type_: UpdateStrategyType::Recreate,
            rolling_update: None,
        });
    }));
    assert_eq!((d.recreate, d.max_surge, d.max_unavailable), (true, 0, 3));
}

#[test]
fn start_first_rolling_update_keeps_every_replica_serving() {
    let mut sim = Sim::default();
    converge(&mut sim, &web_stack(3, "1", |_| {}));
    let old: BTreeSet<String> = web_containers(&sim).iter().map(|c| c.id.clone()).collect();
    let v2 = web_stack(3, "2", |_| {});
    let new_hash = resolve(&v2)
        .containers
        .values()
        .next()
        .expect("web")
        .hash
        .clone();
    let mut book = RetryBook::default();
    let now = Instant::now();
    let first = pass(&mut sim, &mut book, &v2, now);
    assert_eq!(
        names(&first),
        vec![
            "ensure image busybox:1 (pull policy IfNotPresent)",
            "create container app_web_0_next (busybox:1)",
            "start container app_web_0_next",
        ],
        "one surge container (maxSurge 1), nothing stopped (maxUnavailable 0)"
    );
    assert!(
        first
            .waiting
            .iter()
            .filter(|w| w.reason == WaitReason::RollingUpdate)
            .count()
            == 2,
        "replicas 1 and 2 wait their turn: {:#?}",
        first.waiting
    );
    let mut passes = 1;
    loop {
        assert!(
            running_web(&sim) >= 3,
            "never fewer than 3 replicas running"
        );
        assert!(
            web_containers(&sim)
                .iter()
                .filter(|c| c.name.ends_with("_next"))
                .count()
                <= 1,
            "at most one surge container"
        );
        let p = pass(&mut sim, &mut book, &v2, now);
        passes += 1;
        assert!(passes < 20, "rollout does not finish");
        if p.is_empty() {
            break;
        }
        for a in &p.actions {
            if let Action::StopContainer { id, .. } = &a.action {
                assert!(old.contains(id), "only old containers are stopped");
            }
        }
    }
    let web = web_containers(&sim);
    assert_eq!(
        web.len(),
        3,
        "no surge or previous container left: {web:#?}"
    );
    for c in web {
        assert_eq!(c.hash.as_deref(), Some(new_hash.as_str()));
        assert_eq!(c.state, RunState::Running);
        assert!(!old.contains(&c.id));
    }
    println!("start-first update of 3 replicas took {passes} passes");
}

#[test]
fn readiness_and_min_ready_seconds_gate_each_step() {
    let mut sim = Sim::default();
    converge(&mut sim, &web_stack(3, "1", |_| {}));
    let v2 = web_stack(3, "2", |s| s.min_ready_seconds = Some(5));
    let mut book = RetryBook::default();
    let t0 = Instant::now();
    pass(&mut sim, &mut book, &v2, t0);
    set_probe(&mut sim, "app_web_0_next", false);
    let p = pass(&mut sim, &mut book, &v2, t0 + Duration::from_secs(30));
    assert!(p.is_empty(), "not ready: nothing moves: {:#?}", p.actions);
    assert!(
        waiting_reason(&p, "web")
            .is_some_and(|w| w.contains("RollingUpdate") && w.contains("become ready")),
        "{:?}",
        p.waiting
    );
    set_probe(&mut sim, "app_web_0_next", true);
    let t1 = t0 + Duration::from_secs(40);
    let p = pass(&mut sim, &mut book, &v2, t1);
    assert!(p.is_empty(), "ready, but not for minReadySeconds yet");
    assert!(
        p.waiting
            .iter()
            .any(|w| w.message.contains("minReadySeconds"))
    );
    assert_eq!(
        book.next_due(t1),
        Some(t1 + Duration::from_secs(5)),
        "a pass is due when it becomes available"
    );
    let p = pass(&mut sim, &mut book, &v2, t1 + Duration::from_secs(5));
    let n = names(&p);
    assert!(
        n.contains(&"stop container app_web_0".to_string())
            && n.contains(&"rename container app_web_0 to app_web_0_prev".to_string())
            && n.contains(&"rename container app_web_0_next to app_web_0".to_string()),
        "available for minReadySeconds: promoted: {n:#?}"
    );
    assert!(
        n.contains(&"create container app_web_1_next (busybox:1)".to_string()),
        "and the next replica surges in the same pass: {n:#?}"
    );
}

#[test]
fn stop_first_respects_max_unavailable() {
    let objs = |v: &str| {
        web_stack(4, v, |s| {
            s.update_strategy = Some(UpdateStrategy {
                rolling_update: Some(RollingUpdate {
                    max_surge: Some(IntOrString::Int(0)),
                    max_unavailable: Some(IntOrString::Int(2)),
                }),
                ..Default::default()
            });
        })
    };
    let mut sim = Sim::default();
    converge(&mut sim, &objs("1"));
    let mut book = RetryBook::default();
    let now = Instant::now();
    let p = pass(&mut sim, &mut book, &objs("2"), now);
    let stops: Vec<String> = p
        .actions
        .iter()
        .filter_map(|a| match &a.action {
            Action::StopContainer { name, .. } => Some(name.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        stops,
        vec!["app_web_0", "app_web_1"],
        "two at a time, lowest first"
    );
    assert!(!names(&p).iter().any(|n| n.contains("_next")), "no surge");
    // Every create comes after its own stop and rename (the name is free).
    for a in &p.actions {
        if let Action::CreateContainer { name, .. } = &a.action {
            let ren = p
                .actions
                .iter()
                .find(|b| matches!(&b.action, Action::RenameContainer { from, .. } if from == name))
                .expect("rename");
            assert!(a.after.contains(&ren.id));
        }
    }
    // The new replicas are not ready yet: the others wait.
    set_probe(&mut sim, "app_web_0", false);
    set_probe(&mut sim, "app_web_1", false);
    let p = pass(&mut sim, &mut book, &objs("2"), now);
    assert!(p.is_empty(), "{:#?}", p.actions);
    set_probe(&mut sim, "app_web_0", true);
    set_probe(&mut sim, "app_web_1", true);
    let p = pass(&mut sim, &mut book, &objs("2"), now);
    let n = names(&p);
    assert!(
        n.contains(&"stop container app_web_2".to_string())
            && n.contains(&"stop container app_web_3".to_string()),
        "{n:#?}"
    );
    let p = pass(&mut sim, &mut book, &objs("2"), now);
    assert_eq!(
        p.actions
            .iter()
            .filter(|a| matches!(a.action, Action::RemoveContainer { .. }))
            .count(),
        4,
        "done: the four previous containers go: {:#?}",
        names(&p)
    );
}

#[test]
fn never_ready_update_rolls_back_and_old_replicas_keep_running() {
    let mut sim = Sim::default();
    converge(&mut sim, &web_stack(3, "1", |_| {}));
    let old: BTreeMap<String, String> = web_containers(&sim)
        .iter()
        .map(|c| (c.name.clone(), c.id.clone()))
        .collect();
    let v2 = web_stack(3, "2", |s| s.progress_deadline_seconds = Some(60));
    let mut book = RetryBook::default();
    let t0 = Instant::now();
    pass(&mut sim, &mut book, &v2, t0);
    set_probe(&mut sim, "app_web_0_next", false);
    assert_eq!(book.next_due(t0), Some(t0 + Duration::from_secs(60)));
    let p = pass(&mut sim, &mut book, &v2, t0 + Duration::from_secs(59));
    assert!(p.is_empty());
    let p = pass(&mut sim, &mut book, &v2, t0 + Duration::from_secs(60));
    assert_eq!(names(&p), vec!["remove container app_web_0_next"]);
    assert!(
        p.waiting
            .iter()
            .filter(|w| w.reason == WaitReason::RolledBack)
            .count()
            == 3,
        "{:#?}",
        p.waiting
    );
    let now: BTreeMap<String, String> = web_containers(&sim)
        .iter()
        .map(|c| (c.name.clone(), c.id.clone()))
        .collect();
    assert_eq!(now, old, "the old containers are the ones left");
    assert_eq!(running_web(&sim), 3, "and they never stopped");
    let p = pass(&mut sim, &mut book, &v2, t0 + Duration::from_secs(600));
    assert!(
        p.is_empty(),
        "a rolled-back update is not tried again: {:#?}",
        p.actions
    );
    // A crashed old replica is still restarted.
    sim.state
        .containers
        .iter_mut()
        .find(|c| c.name == "app_web_2")
        .expect("web 2")
        .state = RunState::Exited;
    let p = pass(&mut sim, &mut book, &v2, t0 + Duration::from_secs(601));
    assert_eq!(names(&p), vec!["restart container app_web_2"]);
    // A new spec starts a new update.
    let v3 = web_stack(3, "3", |_| {});
    let p = pass(&mut sim, &mut book, &v3, t0 + Duration::from_secs(602));
    assert!(names(&p).contains(&"create container app_web_0_next (busybox:1)".to_string()));
}

#[test]
fn rollback_restores_replicas_that_were_already_updated() {
    let mut sim = Sim::default();
    converge(&mut sim, &web_stack(3, "1", |_| {}));
    let old: BTreeMap<String, String> = web_containers(&sim)
        .iter()
        .map(|c| (c.name.clone(), c.id.clone()))
        .collect();
    let v2 = web_stack(3, "2", |s| s.progress_deadline_seconds = Some(60));
    let mut book = RetryBook::default();
    let t0 = Instant::now();
    pass(&mut sim, &mut book, &v2, t0); // surge 0
    pass(&mut sim, &mut book, &v2, t0); // promote 0, surge 1
    set_probe(&mut sim, "app_web_1_next", false);
    assert!(
        sim.state
            .containers
            .iter()
            .any(|c| c.name == "app_web_0_prev")
    );
    let p = pass(&mut sim, &mut book, &v2, t0 + Duration::from_secs(61));
    let n = names(&p);
    for want in [
        "remove container app_web_1_next",
        "remove container app_web_0",
        "rename container app_web_0_prev to app_web_0",
        "start container app_web_0",
    ] {
        assert!(n.contains(&want.to_string()), "{want}: {n:#?}");
    }
    let now: BTreeMap<String, String> = web_containers(&sim)
        .iter()
        .map(|c| (c.name.clone(), c.id.clone()))
        .collect();
    assert_eq!(now, old);
    assert_eq!(running_web(&sim), 3);
    assert!(pass(&mut sim, &mut book, &v2, t0 + Duration::from_secs(62)).is_empty());
}

#[test]
fn recreate_stops_every_replica_before_creating_any() {
    let objs = |v: &str| {
        web_stack(3, v, |s| {
            s.update_strategy = Some(UpdateStrategy {
                type_: UpdateStrategyType::Recreate,
                rolling_update: None,
            });
        })
    };
    let mut sim = Sim::default();
    converge(&mut sim, &objs("1"));
    let p = converge(&mut sim, &objs("2"));
    let stops: Vec<usize> = p
        .actions
        .iter()
        .filter(|a| matches!(a.action, Action::StopContainer { .. }))
        .map(|a| a.id)
        .collect();
    assert_eq!(stops.len(), 3);
    for a in &p.actions {
        if matches!(a.action, Action::CreateContainer { .. }) {
            for s in &stops {
                assert!(a.after.contains(s), "every create waits for every stop");
            }
        }
    }
}

#[test]
fn update_resumes_from_engine_state_after_an_agent_restart() {
    let mut sim = Sim::default();
    converge(&mut sim, &web_stack(3, "1", |_| {}));
    let v2 = web_stack(3, "2", |_| {});
    let now = Instant::now();
    pass(&mut sim, &mut RetryBook::default(), &v2, now);
    pass(&mut sim, &mut RetryBook::default(), &v2, now);
    // A fresh book (the agent restarted) finds the update half done and finishes it.
    let mut book = RetryBook::default();
    for _ in 0..10 {
        if pass(&mut sim, &mut book, &v2, now).is_empty() {
            break;
        }
    }
    let web = web_containers(&sim);
    assert_eq!(web.len(), 3, "{web:#?}");
    assert!(
        web.iter()
            .all(|c| !c.name.ends_with("_prev") && !c.name.ends_with("_next"))
    );
}

#[test]
fn a_missing_replica_counts_against_max_surge() {
    // maxSurge 0 (read-write volume): while replica 0 is being replaced stop-first (its old
    // container already renamed away), replica 1 must not surge.
    let objs = |v: &str| {
        web_stack(2, v, |s| {
            s.mounts = vec![Mount {
                mount_path: "/data".into(),
                volume: Some("data".into()),
                ..Default::default()
            }];
        })
    };
    let with_volume = |mut o: Vec<Manifest>| {
        o.push(Manifest::Volume {
            metadata: meta("app", "data"),
            spec: VolumeSpec::default(),
        });
        o
    };
    let mut sim = Sim::default();
    converge(&mut sim, &with_volume(objs("1")));
    sim.state.containers.retain(|c| c.name != "app_web_0");
    let p = plan(
        &resolve(&with_volume(objs("2"))),
        &sim.state,
        &RetryBook::default(),
        Instant::now(),
    );
    let n = names(&p);
    assert!(
        n.contains(&"create container app_web_0 (busybox:1)".to_string()),
        "{n:#?}"
    );
    assert!(
        !n.iter().any(|a| a.contains("_next")),
        "no surge with maxSurge 0: {n:#?}"
    );
    assert!(
        waiting_reason(&p, "web").is_some_and(|w| w.starts_with("RollingUpdate")),
        "replica 1 waits its turn: {:?}",
        p.waiting
    );
}

#[test]
fn a_foreign_container_with_a_rollout_name_is_a_conflict() {
    let mut sim = Sim::default();
    converge(&mut sim, &web_stack(1, "1", |_| {}));
    sim.state.foreign_containers.insert("app_web_0_next".into());
    let p = plan(
        &resolve(&web_stack(1, "2", |_| {})),
        &sim.state,
        &RetryBook::default(),
        Instant::now(),
    );
    assert!(
        p.actions.iter().all(|a| !matches!(
            a.action,
            Action::StopContainer { .. } | Action::CreateContainer { .. }
        )),
        "{:#?}",
        names(&p)
    );
    assert!(
        waiting_reason(&p, "web")
            .is_some_and(|w| w.starts_with("Conflict") && w.contains("app_web_0_next")),
        "{:?}",
        p.waiting
    );
}

#[test]
fn reverting_a_stop_first_update_restores_the_previous_container() {
    let objs = |v: &str| {
        web_stack(1, v, |s| {
            s.update_strategy = Some(UpdateStrategy {
                rolling_update: Some(RollingUpdate {
                    max_surge: Some(IntOrString::Int(0)),
                    max_unavailable: Some(IntOrString::Int(1)),
                }),
                ..Default::default()
            });
        })
    };
    let mut sim = Sim::default();
    converge(&mut sim, &objs("1"));
    let v1_id = sim.container_id("app_web_0");
    let mut book = RetryBook::default();
    let now = Instant::now();
    pass(&mut sim, &mut book, &objs("2"), now);
    set_probe(&mut sim, "app_web_0", false);
    assert_eq!(sim.container_id("app_web_0_prev"), v1_id);
    // Reverted to v1 before the v2 container became ready.
    let p = pass(&mut sim, &mut book, &objs("1"), now);
    let n = names(&p);
    assert!(
        n.contains(&"rename container app_web_0_prev to app_web_0".to_string()),
        "{n:#?}"
    );
    assert_eq!(
        sim.container_id("app_web_0"),
        v1_id,
        "the original container is back"
    );
    assert!(pass(&mut sim, &mut book, &objs("1"), now).is_empty());
    assert_eq!(web_containers(&sim).len(), 1);
}

#[test]
fn a_busy_promotion_leaves_no_lone_image_action() {
    // Replica 0's old container is being stopped (busy); replica 1's surge waits for that stop,
    // so nothing of replica 1 may run — not even the image action it would have inherited.
    let mut sim = Sim::default();
    converge(&mut sim, &web_stack(2, "1", |_| {}));
    let v2 = web_stack(2, "2", |_| {});
    let mut book = RetryBook::default();
    let now = Instant::now();
    pass(&mut sim, &mut book, &v2, now); // surge 0
    let desired = resolve(&v2);
    let p = one_pass(&desired, &sim.state, &mut book, now);
    let n = names(&p);
    assert!(
        n.contains(&"stop container app_web_0".to_string()),
        "{n:#?}"
    );
    assert!(
        n.contains(&"create container app_web_1_next (busybox:1)".to_string()),
        "{n:#?}"
    );
    let web0 = Owner::replica(ObjectKey::new(Kind::Container, "app", "web"), 0);
    let rest = p.without_owners(&[web0].into_iter().collect());
    assert!(rest.is_empty(), "{:#?}", names(&rest));
}

/// The spec hash of the one Container in `objs`.
fn web_hash(objs: &[Manifest]) -> String {
    resolve(objs)
        .containers
        .values()
        .next()
        .expect("web")
        .hash
        .clone()
}

fn web_owner(r: u32) -> Owner {
    Owner::replica(ObjectKey::new(Kind::Container, "app", "web"), r)
}

/// `web` with a fixed host port: updates are stop-first.
fn stop_first_web(version: &str) -> Vec<Manifest> {
    web_stack(1, version, |s| {
        s.ports = vec![ContainerPort {
            container_port: 80,
            host_port: Some(8080),
            ..Default::default()
        }];
    })
}

#[test]
fn a_failed_stop_first_replacement_is_undone_in_the_next_pass_despite_the_back_off() {
    let mut sim = Sim::default();
    converge(&mut sim, &stop_first_web("1"));
    let v1_id = sim.container_id("app_web_0");
    let v2 = stop_first_web("2");
    let h2 = web_hash(&v2);
    let mut book = RetryBook::default();
    let now = Instant::now();
    let p = pass(&mut sim, &mut book, &v2, now);
    assert!(names(&p).contains(&"stop container app_web_0".to_string()));
    // The start of the new container failed (say, its user is not in the image): the executor
    // records the failure, the new container stays Created, the old one is stopped as _prev.
    sim.state
        .containers
        .iter_mut()
        .find(|c| c.name == "app_web_0")
        .expect("new")
        .state = RunState::Created;
    book.record_failure(
        web_owner(0),
        &h2,
        now,
        Failure::new(FailureKind::Engine, "start failed"),
        |_| Duration::from_secs(300),
    );
    let p = pass(&mut sim, &mut book, &v2, now + Duration::from_millis(100));
    let n = names(&p);
    assert!(
        n.contains(&"rename container app_web_0_prev to app_web_0".to_string())
            && n.contains(&"start container app_web_0".to_string()),
        "restored at once, not after the back-off: {n:#?}"
    );
    assert_eq!(sim.container_id("app_web_0"), v1_id);
    assert_eq!(web_containers(&sim).len(), 1);
    assert_eq!(running_web(&sim), 1);
    // The restore is the previous spec's: its success leaves the new spec's back-off alone.
    assert!(p.actions.iter().all(|a| a.hash != h2), "{:#?}", p.actions);
    // While the back-off runs, the old container serves and nothing is done.
    let p = pass(&mut sim, &mut book, &v2, now + Duration::from_secs(1));
    assert!(p.actions.is_empty(), "{:#?}", names(&p));
    assert!(p.waiting.iter().any(|w| w.reason == WaitReason::BackOff));
    // After it, the new spec is tried again.
    let p = pass(&mut sim, &mut book, &v2, now + Duration::from_secs(301));
    assert!(names(&p).contains(&"stop container app_web_0".to_string()));
}

#[test]
fn a_new_container_that_exits_during_a_stop_first_update_gives_the_old_one_back() {
    let mut sim = Sim::default();
    converge(&mut sim, &stop_first_web("1"));
    let v1_id = sim.container_id("app_web_0");
    let v2 = stop_first_web("2");
    let mut book = RetryBook::default();
    let now = Instant::now();
    pass(&mut sim, &mut book, &v2, now);
    let new = sim
        .state
        .containers
        .iter_mut()
        .find(|c| c.name == "app_web_0")
        .expect("new");
    (new.state, new.exit_code) = (RunState::Exited, Some(1));
    let p = pass(&mut sim, &mut book, &v2, now + Duration::from_millis(100));
    let n = names(&p);
    assert!(
        n.iter()
            .any(|a| a.starts_with("remove container app_web_0 "))
            || n.contains(&"remove container app_web_0".to_string()),
        "{n:#?}"
    );
    assert_eq!(sim.container_id("app_web_0"), v1_id, "{n:#?}");
    assert_eq!(running_web(&sim), 1);
}

#[test]
fn network_and_attached_containers_changed_together_converge_in_one_plan() {
    for replicas in [1, 3] {
        let mut sim = Sim::default();
        converge(&mut sim, &web_stack(replicas, "1", |_| {}));
        let mut objs = web_stack(replicas, "2", |_| {});
        for m in &mut objs {
            if let Manifest::Network { spec, .. } = m {
                spec.labels.insert("tier".into(), "front".into());
            }
        }
        let p = converge(&mut sim, &objs);
        let n = names(&p);
        let removes = n
            .iter()
            .filter(|a| a.starts_with("remove container"))
            .count();
        let creates = n
            .iter()
            .filter(|a| a.starts_with("create container"))
            .count();
        assert_eq!(
            (removes, creates),
            (replicas as usize, replicas as usize),
            "each replica replaced once, directly: {n:#?}"
        );
        assert!(
            !n.iter().any(|a| a.contains("_prev") || a.contains("_next")),
            "{n:#?}"
        );
        assert_eq!(running_web(&sim), replicas as usize);
    }
}

#[test]
fn a_newer_spec_supersedes_a_surge_container_in_order() {
    let mut sim = Sim::default();
    converge(&mut sim, &web_stack(1, "1", |_| {}));
    let mut book = RetryBook::default();
    let now = Instant::now();
    let p = pass(&mut sim, &mut book, &web_stack(1, "2", |_| {}), now);
    assert!(
        names(&p)
            .iter()
            .any(|a| a.starts_with("create container app_web_0_next"))
    );
    set_probe(&mut sim, "app_web_0_next", false);
    // v3 arrives while v2's surge container is not ready yet: one pass removes it and creates
    // v3's, in that order (check_ordering), and the old container keeps running.
    let p = pass(&mut sim, &mut book, &web_stack(1, "3", |_| {}), now);
    let n = names(&p);
    assert!(
        n.iter()
            .any(|a| a.starts_with("remove container app_web_0_next")),
        "{n:#?}"
    );
    assert!(
        n.iter()
            .any(|a| a.starts_with("create container app_web_0_next")),
        "{n:#?}"
    );
    assert!(
        sim.state
            .containers
            .iter()
            .any(|c| c.name == "app_web_0" && c.state == RunState::Running)
    );
    // Edits that keep arriving: every pass is ordered and the last spec wins.
    for v in 4..20 {
        pass(
            &mut sim,
            &mut book,
            &web_stack(1, &v.to_string(), |_| {}),
            now,
        );
    }
    let last = web_stack(1, "19", |_| {});
    for c in sim.state.containers.iter_mut() {
        c.probe = Some(ProbeStatus {
            started: true,
            ready: Some(true),
            live: true,
            message: None,
        });
    }
    for _ in 0..5 {
        pass(&mut sim, &mut book, &last, now + Duration::from_secs(1));
    }
    let h = web_hash(&last);
    let web = web_containers(&sim);
    assert_eq!(web.len(), 1, "{web:#?}");
    assert_eq!(web[0].hash.as_deref(), Some(h.as_str()));
}

// ---- spec.build: the image phase decides whether to build ----

fn built(name: &str, context: &str) -> Manifest {
    Manifest::Container {
        metadata: meta("app", name),
        spec: std::sync::Arc::new(ContainerSpec {
            build: Some(Build {
                context: context.into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
    }
}

/// The desired state with every build context read as `digest`.
fn with_digest(objects: &[Manifest], digest: &str) -> berth_core::DesiredState {
    let desired = resolve(objects);
    let digests = berth_core::build::context_keys(&desired)
        .into_iter()
        .map(|k| (k, Ok(digest.to_string())))
        .collect();
    berth_core::build::with_contexts(&desired, &digests)
}

fn builds(p: &Plan) -> Vec<&PlannedAction> {
    p.actions
        .iter()
        .filter(|a| matches!(a.action, Action::BuildImage { .. }))
        .collect()
}

#[test]
fn a_missing_built_image_is_built_before_the_create() {
    let mut sim = Sim::default();
    let desired = with_digest(&[built("app", "/srv/app")], "sha256:01");
    let p = plan(&desired, &sim.state, &RetryBook::default(), Instant::now());
    let b = builds(&p);
    assert_eq!(b.len(), 1, "{:#?}", names(&p));
    assert_eq!(
        b[0].intent,
        Intent::Build(berth_core::BuildReason::ImageMissing)
    );
    assert_eq!(
        b[0].action.to_string(),
        "build image berth.local/app/app:latest (context /srv/app)"
    );
    let create = p
        .actions
        .iter()
        .find(|a| matches!(a.action, Action::CreateContainer { .. }))
        .expect("create");
    assert!(create.after.contains(&b[0].id));
    sim.apply(&p);
    let again = plan(&desired, &sim.state, &RetryBook::default(), Instant::now());
    assert!(builds(&again).is_empty(), "{:#?}", names(&again));
}

#[test]
fn the_same_build_input_builds_nothing_and_recreates_nothing() {
    let mut sim = Sim::default();
    let objects = [built("app", "/srv/app")];
    let desired = with_digest(&objects, "sha256:01");
    let mut book = RetryBook::default();
    let now = Instant::now();
    for _ in 0..3 {
        let p = one_pass(&desired, &sim.state, &mut book, now);
        sim.apply(&p);
    }
    // A `touch` leaves the context digest as it was: the same desired state.
    let touched = with_digest(&objects, "sha256:01");
    let p = one_pass(&touched, &sim.state, &mut book, now);
    assert!(p.is_empty(), "{:#?}", names(&p));
    assert_eq!(builds(&p).len(), 0);
}

#[test]
fn a_changed_context_rebuilds_before_the_old_container_is_touched() {
    let mut sim = Sim::default();
    let objects = [built("app", "/srv/app")];
    let old = with_digest(&objects, "sha256:01");
    let mut book = RetryBook::default();
    let now = Instant::now();
    for _ in 0..3 {
        let p = one_pass(&old, &sim.state, &mut book, now);
        sim.apply(&p);
    }
    sim.state.containers[0].state = RunState::Running;
    let old_id = sim.container_id("app_app_0");
    let new = with_digest(&objects, "sha256:02");
    let p = one_pass(&new, &sim.state, &mut book, now);
    let b = builds(&p);
    assert_eq!(b.len(), 1, "{:#?}", names(&p));
    assert_eq!(
        b[0].intent,
        Intent::Build(berth_core::BuildReason::ContextChanged)
    );
    // Every action on the old container (and every create) waits for the build.
    for a in &p.actions {
        let touches_old = touches(&a.action).contains(&old_id);
        if touches_old || matches!(a.action, Action::CreateContainer { .. }) {
            assert!(
                a.after.contains(&b[0].id),
                "{} runs before the build",
                a.action
            );
        }
    }
    // Rolled out as a spec change: start-first surge by default.
    assert!(p.actions.iter().any(|a| a.intent == Intent::Surge));
}

#[test]
fn a_failed_build_backs_off_per_build_hash_and_keeps_the_old_container() {
    let mut sim = Sim::default();
    let objects = [built("app", "/srv/app"), built("other", "/srv/other")];
    let old = with_digest(&objects, "sha256:01");
    let mut book = RetryBook::default();
    let now = Instant::now();
    for _ in 0..3 {
        let p = one_pass(&old, &sim.state, &mut book, now);
        sim.apply(&p);
    }
    let new = with_digest(&objects[..1], "sha256:02");
    let mut new_all = new.clone();
    new_all.containers.extend(
        old.containers
            .iter()
            .filter(|(k, _)| k.name == "other")
            .map(|(k, v)| (k.clone(), v.clone())),
    );
    let key = ObjectKey::new(Kind::Container, "app", "app");
    let hash = new_all.containers[&key].hash.clone();
    book.record_failure(
        Owner::replica(key, 0),
        &hash,
        now,
        Failure::new(FailureKind::Build, "step 2/2 (RUN false): returned 1"),
        |n| Backoff::FAILURE.delay(n),
    );
    let p = one_pass(&new_all, &sim.state, &mut book, now);
    assert!(p.is_empty(), "nothing else is due: {:#?}", names(&p));
    let w = p
        .waiting
        .iter()
        .find(|w| w.reason == WaitReason::BuildFailed)
        .expect("BuildFailed");
    assert!(w.message.contains("step 2/2"), "{}", w.message);
    assert!(WaitReason::BuildFailed.blocks_apply() && WaitReason::BuildFailed.degraded());
    // Another build input (a fixed Dockerfile) is another hash: retried at once.
    let fixed = with_digest(&objects, "sha256:03");
    let p = one_pass(&fixed, &sim.state, &mut book, now);
    assert!(!builds(&p).is_empty(), "{:#?}", names(&p));
}

#[test]
fn two_containers_sharing_one_context_build_once() {
    let mut sim = Sim::default();
    let objects = [built("a", "/srv/app"), built("b", "/srv/app")];
    let desired = with_digest(&objects, "sha256:01");
    let p = plan(&desired, &sim.state, &RetryBook::default(), Instant::now());
    let b = builds(&p);
    assert_eq!(b.len(), 1, "{:#?}", names(&p));
    let Action::BuildImage { tags, users, .. } = &b[0].action else {
        unreachable!()
    };
    assert_eq!(
        tags,
        &["berth.local/app/a:latest", "berth.local/app/b:latest"]
    );
    assert_eq!(users.len(), 2);
    sim.apply(&p);
    assert!(
        builds(&plan(
            &desired,
            &sim.state,
            &RetryBook::default(),
            Instant::now()
        ))
        .is_empty()
    );
}

#[test]
fn an_unreadable_context_blocks_only_its_object() {
    let desired = resolve(&[built("app", "/srv/app"), built("other", "/srv/other")]);
    let digests = berth_core::build::context_keys(&desired)
        .into_iter()
        .map(|k| {
            let r = if k.context == "/srv/app" {
                Err("build context /srv/app: expected a directory".to_string())
            } else {
                Ok("sha256:01".to_string())
            };
            (k, r)
        })
        .collect();
    let desired = berth_core::build::with_contexts(&desired, &digests);
    let p = plan(
        &desired,
        &Sim::default().state,
        &RetryBook::default(),
        Instant::now(),
    );
    assert!(p.waiting.iter().any(|w| {
        w.reason == WaitReason::InvalidReference
            && w.message
                .starts_with("spec.build.context: build context /srv/app")
    }));
    assert_eq!(builds(&p).len(), 1);
}

#[test]
fn a_container_without_build_keeps_its_golden_hash() {
    let plain = resolve(&stack());
    let read = with_digest(&stack(), "sha256:01");
    assert_eq!(plain, read);
}

/// `spec.external`: an existing network and volume (not berth's) are used under their own
/// names; berth never creates, changes or removes them; while missing, their users wait.
#[test]
fn external_network_and_volume_are_used_never_created_or_removed() {
    let mut objs = stack();
    objs[0] = Manifest::Network {
        metadata: meta("app", "net"),
        spec: NetworkSpec {
            external: true,
            external_name: Some("shared-net".into()),
            ..Default::default()
        },
    };
    objs[1] = Manifest::Volume {
        metadata: meta("app", "data"),
        spec: VolumeSpec {
            external: true,
            ..Default::default()
        },
    };
    let mut sim = Sim::default();
    let p = plan(
        &resolve(&objs),
        &sim.state,
        &RetryBook::default(),
        Instant::now(),
    );
    assert!(
        !names(&p)
            .iter()
            .any(|n| n.contains("network") || n.contains("volume") || n.contains("create")),
        "{:?}",
        names(&p)
    );
    let net = ObjectKey::new(Kind::Network, "app", "net");
    assert!(p.waiting.iter().any(|w| {
        w.owner.key == net
            && w.reason == WaitReason::InvalidReference
            && w.message
                .contains("external network \"shared-net\" does not exist")
    }));
    assert!(
        p.waiting
            .iter()
            .any(|w| w.reason == WaitReason::DependencyBlocked)
    );
    sim.state.foreign_networks.insert("shared-net".into());
    sim.state
        .foreign_network_ids
        .insert("shared-net".into(), "ext1".into());
    sim.state.foreign_volumes.insert("data".into());
    let p = converge(&mut sim, &objs);
    assert!(
        !names(&p)
            .iter()
            .any(|n| n.contains("network") || n.contains("volume")),
        "{:?}",
        names(&p)
    );
    let web = sim
        .state
        .containers
        .iter()
        .find(|c| c.name == "app_web_0")
        .expect("web runs");
    assert_eq!(
        web.networks.get("shared-net").map(String::as_str),
        Some("ext1")
    );
    let d = resolve(&objs);
    assert_eq!(
        d.containers[&ObjectKey::new(Kind::Container, "app", "web")]
            .config
            .mounts[0]
            .source,
        berth_core::desired::MountSource::Volume("data".into())
    );
    let p = plan(&d, &sim.state, &RetryBook::default(), Instant::now());
    assert!(p.is_empty() && p.waiting.is_empty(), "{p:?}");
    // Undeclared: the containers go, the external network and volume are not touched.
    let p = plan(
        &resolve(&[]),
        &sim.state,
        &RetryBook::default(),
        Instant::now(),
    );
    assert!(
        !names(&p)
            .iter()
            .any(|n| n.contains("network") || n.contains("volume")),
        "{:?}",
        names(&p)
    );
}

/// The host-access and runtime fields enter the spec hash only when set: a spec that leaves
/// them out hashes as before (golden values above), each one set changes the hash.
#[test]
fn new_fields_enter_the_hash_only_when_set() {
    let base = resolve(&stack());
    let web = ObjectKey::new(Kind::Container, "app", "web");
    let hash_with = |f: &dyn Fn(&mut ContainerSpec)| {
        let mut objs = stack();
        if let Manifest::Container { spec, .. } = &mut objs[2] {
            let spec = std::sync::Arc::make_mut(spec);
            f(spec);
        }
        resolve(&objs).containers[&web].hash.clone()
    };
    assert_eq!(hash_with(&|_| {}), base.containers[&web].hash);
    assert_eq!(
        hash_with(&|s| s.allow_privilege_escalation = Some(true)),
        base.containers[&web].hash,
        "the default spelled out"
    );
    type Change = Box<dyn Fn(&mut ContainerSpec)>;
    let changes: Vec<(&str, Change)> = vec![
        ("privileged", Box::new(|s| s.privileged = true)),
        (
            "devices",
            Box::new(|s| {
                s.devices = vec![Device {
                    host_path: "/dev/null".into(),
                    ..Default::default()
                }]
            }),
        ),
        ("hostPID", Box::new(|s| s.host_pid = true)),
        ("hostIPC", Box::new(|s| s.host_ipc = true)),
        (
            "seccompProfile",
            Box::new(|s| {
                s.seccomp_profile = Some(SeccompProfile {
                    type_: ProfileType::Unconfined,
                    localhost_profile: None,
                })
            }),
        ),
        (
            "allowPrivilegeEscalation",
            Box::new(|s| s.allow_privilege_escalation = Some(false)),
        ),
        (
            "sysctls",
            Box::new(|s| {
                s.sysctls.insert("net.core.somaxconn".into(), "1024".into());
            }),
        ),
        ("shmSize", Box::new(|s| s.shm_size = Some("128Mi".into()))),
        ("tty", Box::new(|s| s.tty = true)),
        ("stdin", Box::new(|s| s.stdin = true)),
        ("dns", Box::new(|s| s.dns = vec!["192.0.2.1".into()])),
        (
            "logging",
            Box::new(|s| {
                s.logging = Some(Logging {
                    driver: Some("local".into()),
                    ..Default::default()
                })
            }),
        ),
    ];
    for (field, f) in changes {
        assert_ne!(hash_with(&*f), base.containers[&web].hash, "{field}");
    }
}

/// An object the policy refuses waits with `PolicyViolation`, and its running containers are
/// never removed as orphans (the version applied before stays, even with no version in force).
#[test]
fn refused_object_waits_and_keeps_its_containers() {
    let mut sim = Sim::default();
    converge(&mut sim, &stack());
    let web = ObjectKey::new(Kind::Container, "app", "web");
    let objs: Vec<Manifest> = stack().into_iter().filter(|m| m.key() != web).collect();
    let mut desired = resolve(&objs);
    desired
        .refused
        .insert(web.clone(), "refused by the baseline profile".into());
    let p = plan(&desired, &sim.state, &RetryBook::default(), Instant::now());
    assert!(
        !names(&p).iter().any(|n| n.contains("remove")),
        "{:?}",
        names(&p)
    );
    assert!(p.waiting.iter().any(|w| w.owner.key == web
        && w.reason == WaitReason::PolicyViolation
        && w.message.contains("baseline")));
    let states =
        berth_core::conditions::host_states(&desired, &sim.state, &p, &RetryBook::default());
    assert_eq!(states[&web].reason, "PolicyViolation");
}

/// Found by the property test: replicas 2 → 1 with a new spec used to start `app_web_0_next`
/// beside `app_web_1`, three containers against `replicas + maxSurge` = 2. The replica being
/// scaled down counts toward the ceiling: it goes first, the surge follows in the next pass.
#[test]
fn a_scale_down_goes_before_a_surge_of_the_same_update() {
    let mut sim = Sim::default();
    converge(&mut sim, &web_stack(2, "1", |_| {}));
    let mut book = RetryBook::default();
    let now = Instant::now();
    let v2 = web_stack(1, "2", |_| {});
    let running = |sim: &Sim| {
        sim.state
            .containers
            .iter()
            .filter(|c| c.state == RunState::Running)
            .count()
    };
    let first = names(&pass(&mut sim, &mut book, &v2, now));
    assert!(
        first.iter().any(|a| a == "remove container app_web_1"),
        "{first:#?}"
    );
    assert!(
        !first.iter().any(|a| a.contains("app_web_0_next")),
        "{first:#?}"
    );
    let second = names(&pass(&mut sim, &mut book, &v2, now));
    assert!(
        second
            .iter()
            .any(|a| a.starts_with("create container app_web_0_next")),
        "{second:#?}"
    );
    assert_eq!(
        running(&sim),
        2,
        "the old replica 0 and its surge container"
    );
}

/// Found by the property test: a changed network was recreated while a container that the
/// plan did not replace stayed attached (here: an undeclared one, kept while a source is
/// incomplete), so its removal could only fail. The network keeps its old version, and the
/// declared container on it is not touched, until every container on it can be replaced.
#[test]
fn a_changed_network_waits_while_a_container_that_stays_is_attached() {
    let before = vec![
        network("app", "net"),
        ContainerBuilder::new("app", "web").network("net").build(),
        ContainerBuilder::new("app", "job").network("net").build(),
    ];
    let mut sim = Sim::default();
    converge(&mut sim, &before);
    let after = vec![
        common::internal_network("app", "net"),
        ContainerBuilder::new("app", "web").network("net").build(),
    ];
    let mut desired = resolve(&after);
    desired.incomplete = Some("job.yaml has not decoded".into());
    let p = plan(&desired, &sim.state, &RetryBook::default(), Instant::now());
    assert!(p.is_empty(), "{:#?}", names(&p));
    let net = waiting_reason(&p, "net").unwrap_or_default();
    assert!(net.starts_with("NetworkInUse: network app_net changed, but is not recreated while app_job_0 stays attached"), "{net}");
    let web = waiting_reason(&p, "web").unwrap_or_default();
    assert!(
        web.starts_with("DependencyBlocked: waits for network app_net"),
        "{web}"
    );
    assert_eq!(
        p.waiting
            .iter()
            .filter(|w| w.owner.key.name == "net")
            .count(),
        1
    );
    // Once the source is complete, the network and the containers on it are replaced.
    let p = plan(
        &resolve(&after),
        &sim.state,
        &RetryBook::default(),
        Instant::now(),
    );
    let n = names(&p);
    assert!(n.iter().any(|a| a == "remove network app_net"), "{n:#?}");
    assert!(
        n.iter().any(|a| a == "remove container app_job_0"),
        "{n:#?}"
    );
    sim.apply(&p);
}
