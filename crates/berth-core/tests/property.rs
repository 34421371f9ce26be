//! The convergence property of `plan`, on generated hosts: for random desired states (Containers
//! with replicas, Networks, Volumes, dependencies, rolling-update settings) and random observed
//! states (missing, stale, stopped, exited, unhealthy containers, `_next` / `_prev` leftovers of
//! an interrupted update, foreign objects), applying each plan to the in-memory engine and
//! planning again reaches an empty plan within a bounded number of passes, and at every action:
//! - no replica name is taken twice (checked by the simulator);
//! - an updated object keeps at least `replicas - maxUnavailable` replicas available (or as many
//!   as it had, when it had fewer) and runs at most `replicas + maxSurge` containers (or as many
//!   as it ran), replicas being scaled down and surge containers together at most `maxSurge`;
//! - nothing berth did not create is touched;
//! - while a source is incomplete, no object that is not declared is removed.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use berth_api::{Manifest, ObjectKey};
use berth_core::backoff::{Backoff, RetryBook};
use berth_core::resolve::resolve;
use berth_core::{Action, DesiredState, ObservedState, RunState, labels};
use common::{ContainerBuilder, Sim, internal_network, network, volume};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, RngSeed};

/// Passes within which every generated host converges (a rolling update of 3 replicas one at a
/// time takes 2 passes per replica, after the leftovers are cleared and dependencies started).
const MAX_PASSES: usize = 30;

/// One generated Container.
#[derive(Clone, Debug)]
struct GenContainer {
    replicas: u32,
    image: u8,
    env: u8,
    networks: Vec<usize>,
    volume: Option<usize>,
    depends_on: Option<usize>,
    /// The dependency's condition is `Healthy` (else `Started`).
    healthy_dep: bool,
    /// Declares a native health check.
    health_check: bool,
    strategy: Update,
    host_port: bool,
}

#[derive(Clone, Copy, Debug)]
enum Update {
    Default,
    Rolling(i32, i32),
    Recreate,
}

/// What happens to one engine container before the pass.
#[derive(Clone, Copy, Debug)]
enum Perturbation {
    Keep,
    Missing,
    Exited(i64),
    Unhealthy,
    Stale,
    LeftoverNext(RunState, bool),
    LeftoverPrev(RunState, bool),
}

#[derive(Clone, Debug)]
struct Host {
    networks: usize,
    volumes: usize,
    before: Vec<GenContainer>,
    after: Vec<GenContainer>,
    /// Networks whose spec the edit changes (made internal: recreated).
    net_edits: Vec<bool>,
    /// Seconds the clock moves before each pass (back-offs and minReadySeconds expire).
    ticks: Vec<u64>,
    perturbations: Vec<Perturbation>,
    incomplete: bool,
    foreign: bool,
}

fn update() -> impl Strategy<Value = Update> {
    prop_oneof![
        Just(Update::Default),
        (0..3i32, 0..3i32)
            .prop_filter("maxSurge and maxUnavailable not both 0", |(s, u)| s + u > 0)
            .prop_map(|(s, u)| Update::Rolling(s, u)),
        Just(Update::Recreate),
    ]
}

fn container(index: usize, networks: usize, volumes: usize) -> impl Strategy<Value = GenContainer> {
    (
        0..4u32,
        0..2u8,
        0..2u8,
        proptest::collection::vec(0..networks.max(1), 0..=networks.min(2)),
        proptest::option::of(0..volumes.max(1)),
        proptest::option::of(0..index.max(1)),
        update(),
        proptest::bool::weighted(0.2),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            move |(
                replicas,
                image,
                env,
                nets,
                vol,
                dep,
                strategy,
                host_port,
                healthy_dep,
                health_check,
            )| {
                let mut nets: Vec<usize> = nets.into_iter().filter(|_| networks > 0).collect();
                nets.sort();
                nets.dedup();
                GenContainer {
                    replicas,
                    image,
                    env,
                    networks: nets,
                    volume: vol.filter(|_| volumes > 0),
                    depends_on: dep.filter(|_| index > 0),
                    healthy_dep,
                    health_check,
                    strategy,
                    host_port: host_port && replicas <= 1,
                }
            },
        )
}

/// An edit of a Container: same shape, maybe another image, env value, replica count or strategy.
fn edit(c: GenContainer) -> impl Strategy<Value = GenContainer> {
    (0..2u8, 0..2u8, 0..4u32, update()).prop_map(move |(image, env, replicas, strategy)| {
        GenContainer {
            image,
            env,
            replicas,
            strategy,
            host_port: c.host_port && replicas <= 1,
            ..c.clone()
        }
    })
}

fn perturbation() -> impl Strategy<Value = Perturbation> {
    let state = prop_oneof![
        Just(RunState::Running),
        Just(RunState::Exited),
        Just(RunState::Created)
    ];
    prop_oneof![
        6 => Just(Perturbation::Keep),
        1 => Just(Perturbation::Missing),
        1 => (0..3i64).prop_map(Perturbation::Exited),
        1 => Just(Perturbation::Unhealthy),
        1 => Just(Perturbation::Stale),
        1 => (state.clone(), any::<bool>()).prop_map(|(s, stale)| Perturbation::LeftoverNext(s, stale)),
        1 => (state, any::<bool>()).prop_map(|(s, stale)| Perturbation::LeftoverPrev(s, stale)),
    ]
}

fn host() -> impl Strategy<Value = Host> {
    (0..3usize, 0..3usize, 1..5usize)
        .prop_flat_map(|(networks, volumes, n)| {
            let before: Vec<_> = (0..n).map(|i| container(i, networks, volumes)).collect();
            (Just(networks), Just(volumes), before)
        })
        .prop_flat_map(|(networks, volumes, before)| {
            let after: Vec<_> = before.iter().cloned().map(edit).collect();
            (
                Just(networks),
                Just(volumes),
                Just(before),
                after,
                proptest::collection::vec(proptest::bool::weighted(0.3), networks),
                proptest::collection::vec(0..40u64, MAX_PASSES),
                proptest::collection::vec(perturbation(), 16),
                proptest::bool::weighted(0.2),
                any::<bool>(),
            )
        })
        .prop_map(
            |(
                networks,
                volumes,
                before,
                after,
                net_edits,
                ticks,
                perturbations,
                incomplete,
                foreign,
            )| Host {
                networks,
                volumes,
                before,
                after,
                net_edits,
                ticks,
                perturbations,
                incomplete,
                foreign,
            },
        )
}

/// The manifests of a generated host (Container `c<i>`, Network `n<i>`, Volume `v<i>`); the
/// networks flagged in `internal` are internal.
fn manifests(
    networks: usize,
    volumes: usize,
    internal: &[bool],
    containers: &[GenContainer],
) -> Vec<Manifest> {
    let mut out: Vec<Manifest> = (0..networks)
        .map(|i| match internal.get(i) {
            Some(true) => internal_network("app", &format!("n{i}")),
            _ => network("app", &format!("n{i}")),
        })
        .chain((0..volumes).map(|i| volume("app", &format!("v{i}"))))
        .collect();
    for (i, c) in containers.iter().enumerate() {
        let mut b = ContainerBuilder::new("app", &format!("c{i}"))
            .image(&format!("busybox:{}", c.image))
            .env("V", &c.env.to_string())
            .replicas(c.replicas);
        for n in &c.networks {
            b = b.network(&format!("n{n}"));
        }
        if let Some(v) = c.volume {
            b = b.volume(&format!("v{v}"));
        }
        match c.depends_on {
            Some(d) if c.healthy_dep => b = b.depends_on_healthy(&format!("c{d}")),
            Some(d) => b = b.depends_on(&format!("c{d}")),
            None => {}
        }
        if c.health_check {
            b = b.health_check();
        }
        if c.host_port {
            b = b.host_port(8000 + i as u16);
        }
        b = match c.strategy {
            Update::Default => b,
            Update::Rolling(s, u) => b.rolling(s, u),
            Update::Recreate => b.recreate(),
        };
        out.push(b.build());
    }
    out
}

fn one_pass(
    desired: &DesiredState,
    sim: &Sim,
    book: &mut RetryBook,
    now: Instant,
) -> berth_core::Plan {
    berth_core::pass::pass(
        desired,
        &sim.state,
        book,
        &BTreeSet::new(),
        Backoff::CRASH_LOOP,
        now,
    )
    .plan
}

/// Converges the simulator to `desired` (the starting point of a generated host).
fn converge(sim: &mut Sim, desired: &DesiredState) {
    let mut book = RetryBook::default();
    let now = Instant::now();
    for _ in 0..MAX_PASSES {
        let p = one_pass(desired, sim, &mut book, now);
        if p.is_empty() {
            return;
        }
        sim.apply(&p);
    }
    panic!("the starting state does not converge");
}

/// Applies the generated perturbations to the engine containers berth created.
fn perturb(sim: &mut Sim, perturbations: &[Perturbation]) {
    let names: Vec<String> = sim
        .state
        .containers
        .iter()
        .filter(|c| c.key.is_some())
        .map(|c| c.name.clone())
        .collect();
    for (name, p) in names.iter().zip(perturbations.iter().cycle()) {
        match *p {
            Perturbation::Keep => {}
            Perturbation::Missing => {
                sim.remove(name);
            }
            Perturbation::Exited(code) => {
                sim.stop(name, code);
            }
            Perturbation::Unhealthy => {
                sim.unhealthy(name);
            }
            Perturbation::Stale => {
                sim.stale(name);
            }
            Perturbation::LeftoverNext(state, stale) => {
                sim.leftover(name, "_next", state, stale.then_some("v1-1111111111111111"));
            }
            Perturbation::LeftoverPrev(state, stale) => {
                sim.leftover(name, "_prev", state, stale.then_some("v1-2222222222222222"));
            }
        }
    }
}

/// Per object: replicas (below `replicas`) with a ready container under the replica's name or
/// its surge name; running containers under those names (a `_prev` runs only once a rollback
/// restored it under the replica's name); and the running containers beyond `replicas`: surge
/// containers and replicas being scaled down, which together stay within `maxSurge` (found by
/// this test: replicas 2 → 1 with a stale replica 0 ran `<name>_0_next` next to `<name>_1`).
#[derive(Clone, Copy)]
struct Counts {
    available: u32,
    running: u32,
    beyond: u32,
}

fn counts(state: &ObservedState, key: &ObjectKey, dc: &berth_core::DesiredContainer) -> Counts {
    let mut available = BTreeSet::new();
    let (mut running, mut beyond) = (0, 0);
    for c in state
        .containers
        .iter()
        .filter(|c| c.key.as_ref() == Some(key))
    {
        let Some(r) = c.replica else {
            continue;
        };
        let name = labels::container_name(key, r, dc.container_name.as_deref());
        let surge = c.name == labels::surge_name(&name);
        if c.name != name && !surge {
            continue;
        }
        let up = c.state == RunState::Running;
        if r >= dc.replicas {
            beyond += u32::from(up);
            continue;
        }
        running += u32::from(up);
        beyond += u32::from(up && surge);
        if c.ready() {
            available.insert(r);
        }
    }
    Counts {
        available: available.len() as u32,
        running,
        beyond,
    }
}

fn check_host(h: &Host) -> Result<(), TestCaseError> {
    let mut sim = Sim::default();
    converge(
        &mut sim,
        &resolve(&manifests(h.networks, h.volumes, &[], &h.before)),
    );
    perturb(&mut sim, &h.perturbations);
    if h.foreign {
        sim.foreign("someone_else");
    }
    let foreign: BTreeSet<&String> = sim
        .state
        .foreign_containers
        .iter()
        .chain(&sim.state.foreign_networks)
        .chain(&sim.state.foreign_volumes)
        .collect();
    let foreign: BTreeSet<String> = foreign.into_iter().cloned().collect();
    // An incomplete source declares only the first Container (and every Network and Volume).
    let mut after = h.after.clone();
    if h.incomplete {
        after.truncate(1);
        if let Some(c) = after.first_mut() {
            c.depends_on = None;
        }
    }
    let mut desired = resolve(&manifests(h.networks, h.volumes, &h.net_edits, &after));
    if h.incomplete {
        desired.incomplete = Some("a file does not parse".into());
    }
    // Budgets: at least min(replicas - maxUnavailable, available now) available (none for a
    // `Recreate` update or a Container on a replaced network), at most
    // max(replicas + maxSurge, running now) running, and at most max(maxSurge, as many now)
    // running beyond `replicas`, for every declared Container.
    let budgets: BTreeMap<ObjectKey, (u32, u32, u32)> = desired
        .containers
        .iter()
        .map(|(k, dc)| {
            let now = counts(&sim.state, k, dc);
            // A Container on a replaced network is recreated directly (nothing can stay
            // attached to the old network), like a `Recreate` update.
            let on_replaced = dc.networks.iter().any(|n| {
                n.name
                    .strip_prefix('n')
                    .and_then(|i| i.parse::<usize>().ok())
                    .is_some_and(|i| h.net_edits[i])
            });
            let floor = if dc.rollout.recreate || on_replaced {
                0
            } else {
                now.available
                    .min(dc.replicas.saturating_sub(dc.rollout.max_unavailable))
            };
            let ceiling = now.running.max(dc.replicas + dc.rollout.max_surge);
            (
                k.clone(),
                (floor, ceiling, now.beyond.max(dc.rollout.max_surge)),
            )
        })
        .collect();
    let mut book = RetryBook::default();
    let mut now = Instant::now();
    let mut violation: Option<String> = None;
    for pass in 0..MAX_PASSES {
        now += Duration::from_secs(h.ticks[pass]);
        let p = one_pass(&desired, &sim, &mut book, now);
        let start_state = sim.state.containers.clone();
        if p.is_empty() {
            return match violation {
                Some(v) => Err(TestCaseError::fail(v)),
                None => Ok(()),
            };
        }
        sim.apply_checked(&p, |state, action| {
            if violation.is_some() {
                return;
            }
            let touched = names_touched(action);
            if let Some(t) = touched.iter().find(|t| foreign.contains(*t)) {
                violation = Some(format!("pass {pass}: {action} touches {t}, which berth did not create"));
                return;
            }
            if h.incomplete
                && let Some(key) = removed_key(action)
                && !desired.containers.contains_key(&key)
            {
                violation = Some(format!("pass {pass}: {action} removes {key} while a source is incomplete"));
                return;
            }
            for (k, dc) in &desired.containers {
                let (floor, ceiling, surge) = budgets[k];
                let Counts { available, running, beyond } = counts(state, k, dc);
                if available < floor || running > ceiling || beyond > surge {
                    violation = Some(format!(
                        "pass {pass}: after {action}, {k} has {available} available (at least {floor}), {running} running (at most {ceiling}), {beyond} beyond its replicas (at most {surge})"
                    ));
                    return;
                }
            }
        });
        if let Some(v) = violation {
            let plan: Vec<String> = p
                .actions
                .iter()
                .map(|a| format!("{} {a:?}", a.id))
                .collect();
            return Err(TestCaseError::fail(format!(
                "{v}\nplan:\n{}\nobserved before the pass: {:?}",
                plan.join("\n"),
                start_state
                    .iter()
                    .map(|c| (&c.name, c.replica, c.state, &c.hash))
                    .collect::<Vec<_>>()
            )));
        }
    }
    Err(TestCaseError::fail(format!(
        "no empty plan after {MAX_PASSES} passes; containers: {:#?}",
        sim.state.containers
    )))
}

/// The engine names (and IDs) an action touches.
fn names_touched(action: &Action) -> Vec<String> {
    let mut out = common::touches(action);
    match action {
        Action::CreateNetwork { name, .. }
        | Action::RemoveNetwork { name, .. }
        | Action::CreateVolume { name, .. }
        | Action::RemoveVolume { name } => out.push(name.clone()),
        _ => {}
    }
    out
}

/// The object whose container an action removes.
fn removed_key(action: &Action) -> Option<ObjectKey> {
    match action {
        Action::RemoveContainer { name, .. } => key_of_name(name),
        _ => None,
    }
}

/// `app_c1_0` → Container app/c1 (generated names only).
fn key_of_name(name: &str) -> Option<ObjectKey> {
    let mut parts = name.split('_');
    let (ns, obj) = (parts.next()?, parts.next()?);
    Some(ObjectKey::new(berth_api::Kind::Container, ns, obj))
}

proptest! {
    #![proptest_config(Config {
        cases: 1000,
        rng_algorithm: RngAlgorithm::ChaCha,
        rng_seed: RngSeed::Fixed(0x0062_6572_7468),
        failure_persistence: None,
        ..Config::default()
    })]

    /// Every generated host converges within [`MAX_PASSES`] with the invariants held.
    #[test]
    fn applying_plans_converges_and_keeps_the_budgets(h in host()) {
        check_host(&h)?;
    }
}
