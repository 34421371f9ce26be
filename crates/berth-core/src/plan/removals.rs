//! Phases 5 and 6: orphans, and the order of removals.

use super::dependencies::orphan_owner;
use super::{Action, NetworkRemoval, Plan, PlannedAction, Planner};
use crate::intent::Intent;
use crate::observed::ObservedContainer;
use std::collections::BTreeSet;

use crate::desired::Owner;
use crate::reason::WaitReason;

impl<'a> Planner<'a> {
    /// Phase 5: removes berth's containers that no declared replica claims (orphans, and
    /// replicas beyond `replicas`). Objects that are declared but blocked keep their
    /// containers; nothing is removed while the desired set is incomplete.
    pub(super) fn orphans(&mut self) {
        let (desired, observed) = (self.desired, self.observed);
        for c in &observed.containers {
            if self.claimed.contains(c.id.as_str()) || self.removing.contains_key(c.id.as_str()) {
                continue;
            }
            if c.key
                .as_ref()
                .is_some_and(|k| desired.blocked.contains_key(k) || desired.refused.contains_key(k))
            {
                continue;
            }
            let owner = orphan_owner(c.key.as_ref(), &c.name);
            if let Some(why) = &desired.incomplete {
                let msg = format!(
                    "{} is not removed while the desired set is incomplete: {why}",
                    c.name
                );
                self.p.wait(&owner, WaitReason::RemovalPaused, msg, None);
                continue;
            }
            let scaled_down = c
                .key
                .as_ref()
                .is_some_and(|k| desired.containers.contains_key(k));
            let intent = if scaled_down {
                Intent::ScaleDown
            } else {
                Intent::Orphan
            };
            let remove = Action::RemoveContainer {
                id: c.id.clone(),
                name: c.name.clone(),
                stop_timeout: 10,
            };
            let a = self.p.push(&owner, "", intent, remove, vec![]);
            self.removing.insert(c.id.as_str(), a);
        }
    }

    /// Phase 6: creates that publish host ports wait for orphan removals; network removals
    /// wait for the removal of every container attached to them (a network that a container
    /// keeps using is not removed, and if it changed, it is not recreated: see
    /// [`hold_networks`]); volume removals wait for every container removal.
    pub(super) fn removal_order(&mut self) {
        let orphan_removals: Vec<usize> = self
            .p
            .actions
            .iter()
            .filter(|a| {
                matches!(a.action, Action::RemoveContainer { .. }) && a.intent.is_orphan_removal()
            })
            .map(|a| a.id)
            .collect();
        for c in &self.publishing {
            self.p.actions[*c].after.extend(&orphan_removals);
        }
        for removal in std::mem::take(&mut self.net_removals) {
            self.remove_network(removal);
        }
        let all_removals: Vec<usize> = self.removing.values().copied().collect();
        for (owner, name) in std::mem::take(&mut self.vol_removals) {
            self.p.push(
                &owner,
                "",
                Intent::OrphanVolume,
                Action::RemoveVolume { name },
                all_removals.clone(),
            );
        }
    }

    fn remove_network(&mut self, r: NetworkRemoval) {
        let attached: Vec<&ObservedContainer> = self
            .observed
            .containers
            .iter()
            .filter(|c| c.networks.values().any(|n| *n == r.id))
            .collect();
        let staying: Vec<&str> = attached
            .iter()
            .filter(|c| !self.removing.contains_key(c.id.as_str()))
            .map(|c| c.name.as_str())
            .collect();
        if !staying.is_empty() {
            let msg = match r.create {
                None => format!(
                    "network {} is no longer declared but still used by {}",
                    r.name,
                    staying.join(", ")
                ),
                // A changed network whose containers are not all replaced in this plan (an
                // object that waits for a dependency, is blocked, or is undeclared while a
                // source is incomplete): it keeps its old version, and so do the containers
                // that would move to the new one.
                Some(create) => {
                    self.held_networks.push((create, r.name.clone()));
                    format!(
                        "network {} changed, but is not recreated while {} stays attached to it",
                        r.name,
                        staying.join(", ")
                    )
                }
            };
            self.p.wait(&r.owner, WaitReason::NetworkInUse, msg, None);
            return;
        }
        let after = attached
            .iter()
            .filter_map(|c| self.removing.get(c.id.as_str()).copied())
            .collect();
        let hash = r
            .create
            .map(|a| self.p.actions[a].hash.clone())
            .unwrap_or_default();
        let intent = if r.create.is_some() {
            Intent::RemoveReplacedNetwork
        } else {
            Intent::Orphan
        };
        let remove = Action::RemoveNetwork {
            id: r.id,
            name: r.name,
        };
        let rm = self.p.push(&r.owner, &hash, intent, remove, after);
        if let Some(a) = r.create {
            self.p.actions[a].after.push(rm);
        }
    }
}

/// Leaves out the recreation of each network in `held` (the create action, engine name) and
/// everything of the owners whose actions need the new network: their containers keep the old
/// network until every container attached to it can be replaced in one plan.
pub(super) fn hold_networks(p: &mut Plan, held: &[(usize, String)]) {
    if held.is_empty() {
        return;
    }
    let mut dropped = vec![false; p.actions.len()];
    for (create, _) in held {
        dropped[*create] = true;
    }
    p.cascade(&mut dropped);
    let owners: BTreeSet<Owner> = p
        .actions
        .iter()
        .zip(&dropped)
        .filter(|(_, d)| **d)
        .map(|(a, _)| a.owner.clone())
        .collect();
    for (a, d) in p.actions.iter().zip(dropped.iter_mut()) {
        *d |= owners.contains(&a.owner);
    }
    p.cascade(&mut dropped);
    let networks: Vec<&str> = held.iter().map(|(_, n)| n.as_str()).collect();
    let networks = networks.join(", ");
    p.drop_actions(&dropped, |a| match a.action {
        Action::CreateNetwork { .. } => (
            WaitReason::NetworkInUse,
            format!("network {networks} is not recreated while a container stays attached"),
        ),
        _ => (
            WaitReason::DependencyBlocked,
            format!(
                "waits for network {networks} to be recreated (a container stays attached to it)"
            ),
        ),
    });
}

/// Re-numbers actions into a topological order (dependencies first), keeping the original
/// order among independent actions, so that every `after` points backwards.
pub(super) fn reorder(p: &mut Plan) {
    let n = p.actions.len();
    let mut placed = vec![false; n];
    let mut order = Vec::with_capacity(n);
    while order.len() < n {
        let before = order.len();
        for i in 0..n {
            if !placed[i] && p.actions[i].after.iter().all(|d| placed[*d]) {
                placed[i] = true;
                placed[i] = true;
                order.push(i);
            }
        }
        if order.len() == before {
            // A cycle cannot be built by `plan`; keep the rest in original order.
            order.extend((0..n).filter(|i| !placed[*i]));
            break;
        }
    }
    let mut new_id = vec![0; n];
    for (new, old) in order.iter().enumerate() {
        new_id[*old] = new;
    }
    let mut old: Vec<Option<PlannedAction>> = std::mem::take(&mut p.actions)
        .into_iter()
        .map(Some)
        .collect();
    for (new, o) in order.into_iter().enumerate() {
        if let Some(mut a) = old[o].take() {
            a.id = new;
            a.after = a.after.iter().map(|d| new_id[*d]).collect();
            a.after.sort_unstable();
            a.after.dedup();
            p.actions.push(a);
        }
    }
}
