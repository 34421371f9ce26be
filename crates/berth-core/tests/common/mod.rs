//! Shared by the integration tests of berth-core: an in-memory engine model that applies plans
//! ([`Sim`]), the ordering checks the executor relies on, and chainable fixture builders for
//! desired states ([`ContainerBuilder`], [`network`], [`volume`]) and observed states (the
//! `Sim` perturbations: [`Sim::stop`], [`Sim::remove`], [`Sim::unhealthy`], [`Sim::leftover`],
//! [`Sim::foreign`]).

#![allow(dead_code)]

use std::collections::BTreeSet;

use berth_api::*;
use berth_core::labels;
use berth_core::observed::Health;
use berth_core::{
    Action, ObservedContainer, ObservedNetwork, ObservedState, ObservedVolume, Plan, RunState,
};

pub fn meta(ns: &str, name: &str) -> ManifestMetadata {
    ManifestMetadata {
        name: name.into(),
        namespace: Some(ns.into()),
        ..Default::default()
    }
}

/// A model of the engine good enough to apply plans: IDs are counters.
#[derive(Default)]
pub struct Sim {
    pub state: ObservedState,
    pub next: u32,
    pub calls: Vec<String>,
}

impl Sim {
    pub fn id(&mut self) -> String {
        self.next += 1;
        format!("id{}", self.next)
    }

    /// Applies `p` in index order (a valid order of its DAG), checking the ordering the executor
    /// relies on and that no engine name is taken twice.
    pub fn apply(&mut self, p: &Plan) {
        self.apply_checked(p, |_, _| {});
    }

    /// [`Sim::apply`], calling `check` with the engine's state after every action.
    pub fn apply_checked(&mut self, p: &Plan, mut check: impl FnMut(&ObservedState, &Action)) {
        check_ordering(p, &self.state);
        for a in &p.actions {
            for d in &a.after {
                assert!(*d < a.id, "dependencies point backwards");
            }
            self.calls.push(a.action.to_string());
            match &a.action {
                Action::EnsureImage { .. } => {}
                Action::BuildImage { tags, hash, .. } => {
                    for t in tags {
                        self.state.built_images.insert(
                            t.clone(),
                            berth_core::ObservedImage {
                                id: format!("sha256:{hash}"),
                                build_hash: Some(hash.clone()),
                            },
                        );
                    }
                }
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
                Action::RemoveNetwork { id, name } => {
                    let attached: Vec<&str> = self
                        .state
                        .containers
                        .iter()
                        .filter(|c| c.networks.values().any(|n| n == id))
                        .map(|c| c.name.as_str())
                        .collect();
                    assert!(
                        attached.is_empty(),
                        "network {name} has active endpoints: {attached:?}"
                    );
                    self.state.networks.retain(|n| &n.id != id)
                }
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
                                .map(|n| n.id.clone())
                                .or_else(|| {
                                    self.state.foreign_network_ids.get(&a.network).cloned()
                                });
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
                        // A declared health check passes at once (the simulator has no time).
                        health: config.health_check.as_ref().map(|_| Health::Healthy),
                        probe: None,
                        network_mode: config.network_mode.as_ref().map(|m| match m {
                            NetworkMode::Container(target) => {
                                let id = self
                                    .state
                                    .containers
                                    .iter()
                                    .find(|t| &t.name == target)
                                    .map(|t| t.id.clone());
                                NetworkMode::Container(id.expect("target exists before dependent"))
                            }
                            m => m.clone(),
                        }),
                        image_id: self.state.image_ids.get(&config.image).cloned(),
                    });
                }
                Action::RestartContainer { id, .. } => {
                    let c = self
                        .state
                        .containers
                        .iter_mut()
                        .find(|c| &c.id == id)
                        .expect("exists");
                    c.state = RunState::Running;
                    c.health = c.health.map(|_| Health::Healthy);
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
                Action::UnpauseContainer { id, .. } => {
                    let c = self
                        .state
                        .containers
                        .iter_mut()
                        .find(|c| &c.id == id)
                        .expect("exists");
                    assert_eq!(c.state, RunState::Paused);
                    c.state = RunState::Running;
                }
                Action::StopContainer { id, .. } => {
                    let c = self
                        .state
                        .containers
                        .iter_mut()
                        .find(|c| &c.id == id)
                        .expect("exists");
                    if c.state == RunState::Running {
                        (c.state, c.exit_code) = (RunState::Exited, Some(143));
                    }
                }
                Action::RenameContainer { id, to, .. } => {
                    let c = self
                        .state
                        .containers
                        .iter_mut()
                        .find(|c| &c.id == id)
                        .expect("exists");
                    c.name = to.clone();
                }
            }
            let mut seen = BTreeSet::new();
            for c in &self.state.containers {
                assert!(
                    seen.insert(c.name.clone()),
                    "engine name {} taken twice after {}",
                    c.name,
                    a.action
                );
            }
            check(&self.state, &a.action);
        }
    }

    pub fn container_id(&self, name: &str) -> String {
        self.state
            .containers
            .iter()
            .find(|c| c.name == name)
            .map(|c| c.id.clone())
            .expect("container")
    }
}

/// The engine names (and IDs) of the containers an action touches.
pub fn touches(a: &Action) -> Vec<String> {
    match a {
        Action::CreateContainer { name, .. } | Action::StartContainer { name, .. } => {
            vec![name.clone()]
        }
        Action::RemoveContainer { id, name, .. }
        | Action::RestartContainer { id, name, .. }
        | Action::StopContainer { id, name, .. }
        | Action::UnpauseContainer { id, name } => vec![id.clone(), name.clone()],
        Action::RenameContainer { id, from, to } => vec![id.clone(), from.clone(), to.clone()],
        _ => vec![],
    }
}

/// What the executor relies on, which applying actions in index order would not show: two
/// actions on one container name or ID are ordered (one runs after the other, transitively),
/// so that the engine never sees both at once (409 Conflict); and a network is removed only
/// after every container attached to it was removed.
pub fn check_ordering(p: &Plan, state: &ObservedState) {
    // before[j]: every action that runs before action j (transitively).
    let mut before: Vec<BTreeSet<usize>> = Vec::with_capacity(p.actions.len());
    for a in &p.actions {
        let mut set = BTreeSet::new();
        for &d in &a.after {
            set.insert(d);
            set.extend(before[d].iter().copied());
        }
        before.push(set);
    }
    for (j, b) in p.actions.iter().enumerate() {
        for (i, a) in p.actions[..j].iter().enumerate() {
            let shared: Vec<String> = touches(&a.action)
                .into_iter()
                .filter(|t| touches(&b.action).contains(t))
                .collect();
            assert!(
                shared.is_empty() || before[j].contains(&i),
                "{} and {} both act on {shared:?} in one pass without an order",
                a.action,
                b.action
            );
        }
    }
    for (j, a) in p.actions.iter().enumerate() {
        let Action::RemoveNetwork { id, name } = &a.action else {
            continue;
        };
        for c in state
            .containers
            .iter()
            .filter(|c| c.networks.values().any(|n| n == id))
        {
            let gone = before[j].iter().any(|&i| {
                matches!(&p.actions[i].action, Action::RemoveContainer { id, .. } if *id == c.id)
            });
            assert!(
                gone,
                "network {name} is removed while {} may still be attached",
                c.name
            );
        }
    }
}

impl Sim {
    fn find_mut(&mut self, name: &str) -> &mut ObservedContainer {
        self.state
            .containers
            .iter_mut()
            .find(|c| c.name == name)
            .expect("container")
    }

    /// The container `name` exited with `code` (or was stopped: 143).
    pub fn stop(&mut self, name: &str, code: i64) -> &mut Self {
        let c = self.find_mut(name);
        (c.state, c.exit_code) = (RunState::Exited, Some(code));
        self
    }

    /// The container `name` is gone (removed by hand, or never created).
    pub fn remove(&mut self, name: &str) -> &mut Self {
        self.state.containers.retain(|c| c.name != name);
        self
    }

    /// The engine's health check reports the container `name` unhealthy.
    pub fn unhealthy(&mut self, name: &str) -> &mut Self {
        self.find_mut(name).health = Some(Health::Unhealthy);
        self
    }

    /// Another spec hash on the container `name` (it was created from an older spec).
    pub fn stale(&mut self, name: &str) -> &mut Self {
        self.find_mut(name).hash = Some("v1-0000000000000000".into());
        self
    }

    /// A copy of the container `name` left over by an interrupted update under `name<suffix>`
    /// (`_next` or `_prev`), in `state`, with the hash `hash` (`None`: the original's).
    pub fn leftover(
        &mut self,
        name: &str,
        suffix: &str,
        state: RunState,
        hash: Option<&str>,
    ) -> &mut Self {
        let id = self.id();
        let original = self
            .state
            .containers
            .iter()
            .find(|c| c.name == name)
            .expect("container")
            .clone();
        self.state.containers.push(ObservedContainer {
            id,
            name: format!("{name}{suffix}"),
            state,
            exit_code: (state == RunState::Exited).then_some(0),
            hash: hash.map(str::to_string).or(original.hash.clone()),
            ..original
        });
        self
    }

    /// A container, a network and a volume berth did not create, each named `name`.
    pub fn foreign(&mut self, name: &str) -> &mut Self {
        self.state.foreign_containers.insert(name.into());
        self.state.foreign_networks.insert(name.into());
        self.state.foreign_volumes.insert(name.into());
        self
    }
}

/// A Network in namespace `ns`.
pub fn network(ns: &str, name: &str) -> Manifest {
    Manifest::Network {
        metadata: meta(ns, name),
        spec: NetworkSpec::default(),
    }
}

/// An internal Network in namespace `ns` (a spec edit of [`network`]: recreated).
pub fn internal_network(ns: &str, name: &str) -> Manifest {
    Manifest::Network {
        metadata: meta(ns, name),
        spec: NetworkSpec {
            internal: true,
            ..NetworkSpec::default()
        },
    }
}

/// A Volume in namespace `ns`.
pub fn volume(ns: &str, name: &str) -> Manifest {
    Manifest::Volume {
        metadata: meta(ns, name),
        spec: VolumeSpec::default(),
    }
}

/// A chainable Container fixture: `ContainerBuilder::new("app", "web").image("busybox:2")
/// .replicas(3).network("net").rolling(1, 0).build()`.
#[derive(Clone, Debug)]
pub struct ContainerBuilder {
    metadata: ManifestMetadata,
    spec: ContainerSpec,
}

impl ContainerBuilder {
    /// A Container running `busybox:1` with nothing else set.
    pub fn new(ns: &str, name: &str) -> Self {
        ContainerBuilder {
            metadata: meta(ns, name),
            spec: ContainerSpec {
                image: Some("busybox:1".into()),
                ..Default::default()
            },
        }
    }

    pub fn image(mut self, image: &str) -> Self {
        self.spec.image = Some(image.into());
        self
    }

    pub fn replicas(mut self, n: u32) -> Self {
        self.spec.replicas = Some(n);
        self
    }

    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.spec.env.push(EnvVar {
            name: name.into(),
            value: value.into(),
            ..Default::default()
        });
        self
    }

    /// Attached to the Network `name`.
    pub fn network(mut self, name: &str) -> Self {
        self.spec.networks.push(NetworkAttachment {
            name: name.into(),
            ..Default::default()
        });
        self
    }

    /// The Volume `name` mounted read-write at `/<name>`.
    pub fn volume(mut self, name: &str) -> Self {
        self.spec.mounts.push(Mount {
            mount_path: format!("/{name}"),
            volume: Some(name.into()),
            ..Default::default()
        });
        self
    }

    /// Started only once every replica of Container `name` started.
    pub fn depends_on(mut self, name: &str) -> Self {
        self.spec.depends_on.push(Dependency {
            name: name.into(),
            condition: DependencyCondition::Started,
        });
        self
    }

    /// Started only once every replica of Container `name` is healthy.
    pub fn depends_on_healthy(mut self, name: &str) -> Self {
        self.spec.depends_on.push(Dependency {
            name: name.into(),
            condition: DependencyCondition::Healthy,
        });
        self
    }

    /// A native health check (`HEALTHCHECK`), which the simulator reports healthy.
    pub fn health_check(mut self) -> Self {
        self.spec.health_check = Some(HealthCheck {
            test: vec!["CMD".into(), "true".into()],
            ..Default::default()
        });
        self
    }

    /// Publishes container port 80 on `host_port` (which makes updates stop-first).
    pub fn host_port(mut self, host_port: u16) -> Self {
        self.spec.ports.push(ContainerPort {
            container_port: 80,
            host_port: Some(host_port),
            ..Default::default()
        });
        self
    }

    /// `updateStrategy: RollingUpdate` with these absolute `maxSurge` and `maxUnavailable`.
    pub fn rolling(mut self, max_surge: i32, max_unavailable: i32) -> Self {
        self.spec.update_strategy = Some(UpdateStrategy {
            type_: UpdateStrategyType::RollingUpdate,
            rolling_update: Some(RollingUpdate {
                max_surge: Some(IntOrString::Int(max_surge)),
                max_unavailable: Some(IntOrString::Int(max_unavailable)),
            }),
        });
        self
    }

    /// `updateStrategy: Recreate`.
    pub fn recreate(mut self) -> Self {
        self.spec.update_strategy = Some(UpdateStrategy {
            type_: UpdateStrategyType::Recreate,
            rolling_update: None,
        });
        self
    }

    /// The manifest.
    pub fn build(self) -> Manifest {
        Manifest::Container {
            metadata: self.metadata,
            spec: std::sync::Arc::new(self.spec),
        }
    }
}
