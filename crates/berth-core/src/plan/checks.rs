//! The checks of the per-replica decision: dependency order and conditions (`dependsOn`), and
//! the drift that makes an up-to-date container be recreated.

use std::collections::{BTreeMap, BTreeSet};

use berth_api::{DependencyCondition, NetworkMode, ObjectKey, PullPolicy, RestartPolicy};

use crate::desired::{ContainerConfig, DesiredContainer, DesiredState};
use crate::intent::Drift;
use crate::labels;
use crate::observed::{ObservedContainer, ObservedState, RunState};

/// Whether `restartPolicy` wants an exited container started again.
pub(super) fn restart_wanted(policy: RestartPolicy, c: &ObservedContainer) -> bool {
    match policy {
        RestartPolicy::Always => true,
        RestartPolicy::OnFailure => c.exit_code != Some(0),
        RestartPolicy::Never => false,
    }
}

/// Containers in an order where every container comes after its dependencies (cycles were
/// removed by `resolve`; should one remain, its members come last in key order).
pub(super) fn dependency_order(desired: &DesiredState) -> Vec<&ObjectKey> {
    let mut order: Vec<&ObjectKey> = Vec::with_capacity(desired.containers.len());
    let mut placed: BTreeSet<&ObjectKey> = BTreeSet::new();
    while order.len() < desired.containers.len() {
        let before = order.len();
        for (k, c) in &desired.containers {
            if !placed.contains(k)
                && c.depends_on
                    .iter()
                    .all(|(d, _)| placed.contains(d) || !desired.containers.contains_key(d))
            {
                placed.insert(k);
                order.push(k);
            }
        }
        if order.len() == before {
            for k in desired.containers.keys() {
                if placed.insert(k) {
                    order.push(k);
                }
            }
        }
    }
    order
}

/// Why `dc` may not be created or started yet: the first dependency whose condition does not
/// hold (every replica must satisfy it), or that is being changed in this very plan.
pub(super) fn dependency_gate(
    dc: &DesiredContainer,
    desired: &DesiredState,
    by_replica: &BTreeMap<(&ObjectKey, u32), Vec<&ObservedContainer>>,
    changing: &BTreeSet<&ObjectKey>,
) -> Option<String> {
    for (dk, cond) in &dc.depends_on {
        let Some(dep) = desired.containers.get(dk) else {
            return Some(format!("dependency {dk} is not declared or blocked"));
        };
        if changing.contains(dk) {
            // Say what the dependency is now, not only that it changes: a restart of an
            // unhealthy dependency reads differently from its first creation.
            let name = labels::container_name(dk, 0, dep.container_name.as_deref());
            let now = by_replica
                .get(&(dk, 0))
                .and_then(|cs| cs.iter().find(|c| c.name == name))
                .map_or_else(|| "not created yet".to_string(), |c| observed_state(c));
            return Some(format!(
                "dependency {name} is being created or changed (now {now})"
            ));
        }
        for r in 0..dep.replicas {
            let name = labels::container_name(dk, r, dep.container_name.as_deref());
            let Some(c) = by_replica
                .get(&(dk, r))
                .and_then(|cs| cs.iter().find(|c| c.name == name))
            else {
                return Some(format!("dependency {name} does not exist yet"));
            };
            let exited = |what: &str| {
                format!(
                    "dependency {name} exited with code {} ({what})",
                    c.exit_code.map_or("unknown".to_string(), |x| x.to_string())
                )
            };
            let ok = match cond {
                DependencyCondition::Started => c.state == RunState::Running,
                DependencyCondition::Healthy => c.state == RunState::Running && c.healthy(),
                DependencyCondition::Completed => {
                    c.state == RunState::Exited && c.exit_code == Some(0)
                }
            };
            if !ok {
                return Some(match (cond, c.state, c.health) {
                    (DependencyCondition::Completed, RunState::Exited, _) => {
                        exited("condition Completed needs code 0")
                    }
                    (DependencyCondition::Completed, _, _) => {
                        format!("waiting for dependency {name} to complete")
                    }
                    (_, RunState::Exited, _) => exited("condition needs it running"),
                    (DependencyCondition::Healthy, RunState::Running, None)
                        if c.probe.as_ref().and_then(|p| p.ready).is_none() =>
                    {
                        format!(
                            "dependency {name} has no health check or readiness probe, so condition Healthy cannot hold"
                        )
                    }
                    (DependencyCondition::Healthy, RunState::Running, None) => {
                        format!("waiting for dependency {name} to become ready (readiness probe)")
                    }
                    (DependencyCondition::Healthy, RunState::Running, Some(h)) => {
                        format!("waiting for dependency {name} to become healthy (now {h:?})")
                    }
                    _ => format!("waiting for dependency {name} to run"),
                });
            }
        }
    }
    None
}

/// A container's observed state in a few words, for waiting messages: `running, unhealthy`,
/// `exited with code 1`.
fn observed_state(c: &ObservedContainer) -> String {
    match (c.state, c.health) {
        (RunState::Exited, _) => format!(
            "exited with code {}",
            c.exit_code.map_or("unknown".to_string(), |x| x.to_string())
        ),
        (RunState::Running, Some(h)) => format!("running, {}", format!("{h:?}").to_lowercase()),
        (state, _) => format!("{state:?}").to_lowercase(),
    }
}

/// Why a container sharing another's network namespace must be recreated: the other container
/// was replaced (its ID differs from the one the namespace was taken from).
pub(super) fn namespace_drift(
    c: &ObservedContainer,
    dc: &DesiredContainer,
    by_replica: &BTreeMap<(&ObjectKey, u32), Vec<&ObservedContainer>>,
) -> Option<Drift> {
    let target = dc.network_target.as_ref()?;
    let Some(NetworkMode::Container(target_name)) = &dc.config.network_mode else {
        return None;
    };
    let current = by_replica
        .get(&(target, 0))
        .and_then(|cs| cs.iter().find(|t| &t.name == target_name))?;
    let want = NetworkMode::Container(current.id.clone());
    (c.network_mode.as_ref() != Some(&want)).then(|| Drift::NamespaceTargetReplaced {
        target: target_name.clone(),
    })
}

/// Why a `pullPolicy: Always` container must be recreated: the image its reference names now
/// (after the agent re-pulled it) is not the one it runs. Other policies never follow a moved tag.
pub(super) fn image_drift(
    c: &ObservedContainer,
    dc: &DesiredContainer,
    observed: &ObservedState,
) -> Option<Drift> {
    if dc.pull_policy != PullPolicy::Always {
        return None;
    }
    let now = observed.image_ids.get(&dc.config.image)?;
    let running = c.image_id.as_ref()?;
    (running != now).then(|| Drift::ImageMoved {
        image: dc.config.image.clone(),
        now: short_id(now).to_string(),
        running: short_id(running).to_string(),
    })
}

/// `sha256:0123456789ab…` → `0123456789ab` (as `docker images` shows IDs).
pub(super) fn short_id(id: &str) -> &str {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    hex.get(..12).unwrap_or(hex)
}

/// Why an up-to-date container must still be recreated because of its networks.
pub(super) fn network_drift(
    c: &ObservedContainer,
    config: &ContainerConfig,
    net_ids: &BTreeMap<String, String>,
    replaced: &BTreeSet<String>,
) -> Option<Drift> {
    for a in &config.networks {
        let network = a.network.clone();
        if replaced.contains(&a.network) {
            return Some(Drift::NetworkReplacing { network });
        }
        match (c.networks.get(&a.network), net_ids.get(&a.network)) {
            (Some(have), Some(want)) if have == want => {}
            (None, _) => return Some(Drift::NotAttached { network }),
            _ => return Some(Drift::NetworkReplaced { network }),
        }
    }
    None
}
