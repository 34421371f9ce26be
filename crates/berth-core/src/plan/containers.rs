//! Phase 4: containers. Per object (in dependency order): its networks and volumes, its
//! rolling update's step for each replica, then one flat decision per replica.

use std::collections::{BTreeMap, BTreeSet};

use berth_api::ObjectKey;

use super::checks::{
    dependency_gate, dependency_order, image_drift, namespace_drift, network_drift, restart_wanted,
};
use super::dependencies::merged_labels;
use super::rollout::{Slot, SlotPlan, Step, rollout_steps};
use super::{Action, Dep, Planner};
use crate::backoff::{RetryEntry, RetryKind};
use crate::desired::{DesiredContainer, Owner};
use crate::intent::{Drift, Intent};
use crate::labels;
use crate::observed::{ObservedContainer, RunState};
use crate::reason::{FailureKind, WaitReason};

/// Removals planned for a replica before its step: the new container waits for them.
pub(super) struct Leftovers {
    /// Removals of containers labelled as the replica under another name.
    pub(super) extras: Vec<usize>,
    /// Removal of the previous container (`_prev`), if planned.
    pub(super) prev: Option<usize>,
    /// Removal of a superseded surge container (`_next`), if planned: its name is free after it.
    pub(super) next: Option<usize>,
}

/// What the replicas of one object share while they are planned.
pub(super) struct ObjectPlan<'a> {
    pub(super) key: &'a ObjectKey,
    pub(super) dc: &'a DesiredContainer,
    /// Actions creating the networks and volumes it needs.
    pub(super) deps: Vec<usize>,
    /// Why a network or volume it needs is unusable.
    blocked: Option<String>,
    /// Engine names of its networks replaced in this plan.
    replaced_nets: BTreeSet<String>,
    /// Engine name → ID of its networks that exist as wanted.
    net_ids: BTreeMap<String, String>,
    /// Stops of old containers, and removals of running stale surge containers (a `Recreate`
    /// update's creates and every surge wait for all of them).
    pub(super) stops: Vec<usize>,
    /// Creates of replica containers.
    pub(super) creates: Vec<usize>,
    /// Creates of surge containers: they wait for the stops, so that no more than
    /// `replicas + maxSurge` containers ever run.
    pub(super) surges: Vec<usize>,
}

impl<'a> Planner<'a> {
    /// Phase 4: every desired container object, dependencies first.
    pub(super) fn containers(&mut self) {
        for key in dependency_order(self.desired) {
            if let Some(dc) = self.desired.containers.get(key) {
                self.container(key, dc);
            }
        }
    }

    /// One object: its dependencies, its replicas' rolling-update steps, each replica.
    fn container(&mut self, key: &'a ObjectKey, dc: &'a DesiredContainer) {
        let before = self.p.actions.len();
        let mut o = self.object_dependencies(key, dc);
        let slots: Vec<Slot<'a>> = (0..dc.replicas)
            .map(|r| Slot::of(key, r, dc, &self.by_replica))
            .collect();
        let steps: Vec<SlotPlan> = if o.replaced_nets.is_empty() {
            // Replicas being scaled down still run until their removal (which waits while a
            // source is incomplete): they count toward `replicas + maxSurge`.
            let scaling_down = self
                .by_replica
                .range((key, dc.replicas)..=(key, u32::MAX))
                .flat_map(|(_, cs)| cs)
                .filter(|c| c.state == RunState::Running)
                .count();
            let scaling_down = u32::try_from(scaling_down).unwrap_or(u32::MAX);
            rollout_steps(key, dc, &slots, scaling_down, self.retries, self.now)
        } else {
            // A network the container uses is replaced: every container on it goes (the old
            // network cannot be removed while one is attached, and a kept `_prev` could never
            // start again), so the replica is recreated directly, once, after the new network.
            slots
                .iter()
                .map(|s| SlotPlan {
                    step: Step::Normal,
                    drop_next: s.next.is_some(),
                    drop_prev: s.prev.is_some(),
                })
                .collect()
        };
        for (slot, step) in slots.iter().zip(steps) {
            self.replica(&mut o, slot, step);
        }
        if dc.rollout.recreate {
            for c in &o.creates {
                self.p.actions[*c].after.extend(&o.stops);
            }
        }
        for c in &o.surges {
            self.p.actions[*c].after.extend(&o.stops);
        }
        if self.p.actions.len() > before {
            self.changing.insert(key);
        }
    }

    /// The state of the networks and volumes `dc` needs.
    fn object_dependencies(&self, key: &'a ObjectKey, dc: &'a DesiredContainer) -> ObjectPlan<'a> {
        let mut o = ObjectPlan {
            key,
            dc,
            deps: Vec::new(),
            blocked: None,
            replaced_nets: BTreeSet::new(),
            net_ids: BTreeMap::new(),
            stops: Vec::new(),
            creates: Vec::new(),
            surges: Vec::new(),
        };
        for nk in &dc.networks {
            let engine = self.desired.networks.get(nk).map_or_else(
                || labels::network_name(&nk.namespace, &nk.name),
                |n| n.engine_name.clone(),
            );
            match self.nets.get(nk) {
                Some(Dep::Ready(id)) => {
                    o.net_ids.insert(engine, id.clone());
                }
                Some(Dep::Creating { action, replaced }) => {
                    o.deps.push(*action);
                    if *replaced {
                        o.replaced_nets.insert(engine);
                    }
                }
                Some(Dep::Unavailable(why)) => o.blocked = Some(why.clone()),
                None => o.blocked = Some(format!("network {nk} is not declared")),
            }
        }
        for vk in &dc.volumes {
            match self.vols.get(vk) {
                Some(Dep::Ready(_)) => {}
                Some(Dep::Creating { action, .. }) => o.deps.push(*action),
                Some(Dep::Unavailable(why)) => o.blocked = Some(why.clone()),
                None => o.blocked = Some(format!("volume {vk} is not declared")),
            }
        }
        o
    }

    /// One replica's decision, one flat chain (the shape of kubelet's `computePodActions`):
    /// blocked dependencies, a foreign name, a failure backoff, leftovers to remove, a name the
    /// update needs held by someone else — each ends the decision with a waiting reason —
    /// then either a rolling-update step or the ordinary convergence of its container.
    fn replica(&mut self, o: &mut ObjectPlan<'a>, slot: &Slot<'a>, sp: SlotPlan) {
        let owner = Owner::replica(o.key.clone(), slot.replica);
        for c in slot.all() {
            self.claimed.insert(c.id.as_str());
        }
        if let Some(why) = &o.blocked {
            self.p
                .wait(&owner, WaitReason::DependencyBlocked, why.clone(), None);
            return;
        }
        if self.observed.foreign_containers.contains(&slot.name) {
            let msg = format!(
                "a container named {:?} exists and is not managed by berth instance {:?}; it is left alone",
                slot.name, self.desired.instance
            );
            self.p.wait(&owner, WaitReason::Conflict, msg, None);
            return;
        }
        if let Some(e) = self
            .retries
            .get(&owner, &o.dc.hash, RetryKind::Failure)
            .filter(|e| e.not_before > self.now && sp.step != Step::RollBack)
        {
            let reason = WaitReason::after_failure(e.failure.unwrap_or(FailureKind::Engine));
            let msg = super::dependencies::retry_message(self.retries, &owner, &o.dc.hash);
            self.p.wait(&owner, reason, msg, Some(e.not_before));
            return;
        }
        let extras = self.remove_extras(o, slot, &owner);
        let (prev_removal, next_removal) = self.remove_leftovers(o, slot, &sp, &owner);
        if let Some(n) = self.taken_name(slot, &sp.step) {
            let msg = format!(
                "a container named {n:?} exists and is not managed by berth instance {:?}; the rolling update needs that name and waits (the old container keeps running)",
                self.desired.instance
            );
            self.p.wait(&owner, WaitReason::Conflict, msg, None);
            return;
        }
        match sp.step {
            Step::Normal => self.converge(o, slot, &owner, extras, false),
            Step::KeepOld => {
                let msg = format!(
                    "the update to spec {} made no new replica available within progressDeadlineSeconds ({} s) and was rolled back; this replica keeps its previous spec until the spec changes",
                    o.dc.hash,
                    o.dc.rollout.progress_deadline.as_secs()
                );
                self.p.wait(&owner, WaitReason::RolledBack, msg, None);
                self.converge(o, slot, &owner, extras, true);
            }
            step => {
                let leftovers = Leftovers {
                    extras,
                    prev: prev_removal,
                    next: next_removal,
                };
                self.rolling_step(o, slot, &owner, step, leftovers)
            }
        }
    }

    /// Removes containers labelled as this replica under another name (a renamed object's).
    fn remove_extras(&mut self, o: &ObjectPlan<'a>, slot: &Slot<'a>, owner: &Owner) -> Vec<usize> {
        let intent = Intent::RemoveDuplicate {
            replica: slot.name.clone(),
        };
        slot.extras
            .iter()
            .map(|x| self.remove(owner, o.dc, intent.clone(), x, vec![]))
            .collect()
    }

    /// Removes the surge and previous containers the update's step is done with; returns the
    /// removals of the previous and of the surge container, if planned.
    fn remove_leftovers(
        &mut self,
        o: &mut ObjectPlan<'a>,
        slot: &Slot<'a>,
        sp: &SlotPlan,
        owner: &Owner,
    ) -> (Option<usize>, Option<usize>) {
        let next = match (sp.drop_next, slot.next) {
            (true, Some(c)) => {
                let rm = self.remove(owner, o.dc, Intent::DropSurge, c, vec![]);
                if c.state == RunState::Running {
                    o.stops.push(rm);
                }
                Some(rm)
            }
            _ => None,
        };
        let prev = match (sp.drop_prev, slot.prev) {
            (true, Some(c)) => Some(self.remove(owner, o.dc, Intent::RetirePrevious, c, vec![])),
            _ => None,
        };
        (prev, next)
    }

    /// A name the replica's step takes (`_next`, `_prev`) that a foreign container holds.
    fn taken_name(&self, slot: &Slot<'a>, step: &Step) -> Option<String> {
        match step {
            Step::Surge => Some(labels::surge_name(&slot.name)),
            Step::StopFirst | Step::Promote if slot.canon.is_some() => {
                Some(labels::previous_name(&slot.name))
            }
            _ => None,
        }
        .filter(|n| self.observed.foreign_containers.contains(n))
    }

    /// The ordinary convergence of a replica's container: recreate it when missing or
    /// drifted, unpause it, restart it per `restartPolicy` and health. `keep_old`: the update
    /// was rolled back, the old container stays.
    fn converge(
        &mut self,
        o: &mut ObjectPlan<'a>,
        slot: &Slot<'a>,
        owner: &Owner,
        extras: Vec<usize>,
        keep_old: bool,
    ) {
        let dc = o.dc;
        let current = slot.canon;
        let recreate = match current {
            Some(_) if keep_old => None,
            None => Some(Intent::Create),
            Some(c) => self.drift(o, c).map(Intent::Recreate),
        };
        let needs_start = match (&recreate, current) {
            (Some(_), _) => true,
            (None, Some(c)) => c.state == RunState::Exited && restart_wanted(dc.restart_policy, c),
            (None, None) => false,
        };
        if needs_start && let Some(why) = self.gate(dc) {
            self.p
                .wait(owner, WaitReason::WaitingForDependency, why, None);
            return;
        }
        match (recreate, current) {
            (Some(intent), current) => {
                let img = self.ensure_image(owner, dc);
                let mut after = o.deps.clone();
                after.push(img);
                after.extend(&extras);
                if let Some(c) = current {
                    after.push(self.remove(owner, dc, intent.clone(), c, vec![img]));
                }
                let create = self.create_and_start(owner, dc, slot.name.clone(), intent, after);
                o.creates.push(create);
                self.publishes(dc, create);
            }
            (None, Some(c)) if c.state == RunState::Paused => {
                let unpause = Action::UnpauseContainer {
                    id: c.id.clone(),
                    name: c.name.clone(),
                };
                self.p
                    .push(owner, &dc.hash, Intent::Unpause, unpause, vec![]);
            }
            (None, Some(c)) => {
                let entry = self.retries.get(owner, &dc.hash, RetryKind::Restart);
                self.restart_if_due(owner, dc, c, entry);
            }
            (None, None) => {}
        }
    }

    /// Why an existing container must be replaced, if it must.
    fn drift(&self, o: &ObjectPlan<'a>, c: &ObservedContainer) -> Option<Drift> {
        if c.hash.as_deref() != Some(o.dc.hash.as_str()) {
            return Some(Drift::SpecChanged);
        }
        match c.state {
            RunState::Created => return Some(Drift::NeverStarted),
            RunState::Dead => return Some(Drift::Dead),
            _ => {}
        }
        network_drift(c, &o.dc.config, &o.net_ids, &o.replaced_nets)
            .or_else(|| namespace_drift(c, o.dc, &self.by_replica))
            .or_else(|| image_drift(c, o.dc, self.observed))
    }

    /// Why `dc` may not be created or started yet (`dependsOn`).
    pub(super) fn gate(&self, dc: &DesiredContainer) -> Option<String> {
        dependency_gate(dc, self.desired, &self.by_replica, &self.changing)
    }

    /// Records that `create` publishes host ports (it waits for orphan removals).
    pub(super) fn publishes(&mut self, dc: &DesiredContainer, create: usize) {
        if dc.config.ports.iter().any(|pc| pc.host_port.is_some()) {
            self.publishing.push(create);
        }
    }

    /// Plans the removal of container `c` of `owner` (after `after`); returns the action.
    pub(super) fn remove(
        &mut self,
        owner: &Owner,
        dc: &DesiredContainer,
        intent: Intent,
        c: &'a ObservedContainer,
        after: Vec<usize>,
    ) -> usize {
        let remove = Action::RemoveContainer {
            id: c.id.clone(),
            name: c.name.clone(),
            stop_timeout: dc.config.stop_timeout(),
        };
        let a = self.p.push(owner, &dc.hash, intent, remove, after);
        self.removing.insert(c.id.as_str(), a);
        a
    }

    /// Plans the creation of container `name` for `owner` with the desired spec (after
    /// `after`) and its start; returns the create action.
    pub(super) fn create_and_start(
        &mut self,
        owner: &Owner,
        dc: &DesiredContainer,
        name: String,
        intent: Intent,
        after: Vec<usize>,
    ) -> usize {
        let labels = merged_labels(
            &self.desired.instance,
            &owner.key,
            owner.replica,
            &dc.hash,
            &dc.config.labels,
        );
        let create = Action::CreateContainer {
            name: name.clone(),
            config: Box::new(dc.config.clone()),
            labels,
        };
        let create = self.p.push(owner, &dc.hash, intent, create, after);
        let start = Action::StartContainer {
            name,
            restart: false,
        };
        self.p.push(
            owner,
            &dc.hash,
            Intent::StartAfterCreate,
            start,
            vec![create],
        );
        create
    }

    /// Restarts container `c` of `owner` when it exited and `restartPolicy` wants it running
    /// again, or when it runs but fails its health check or liveness probe — unless its
    /// CrashLoopBackOff delay (`entry`, the owner's restart entry) has not passed, then it
    /// waits (`CrashLoopBackOff` / `Unhealthy`). Returns false when `c` needs neither.
    pub(super) fn restart_if_due(
        &mut self,
        owner: &Owner,
        dc: &DesiredContainer,
        c: &ObservedContainer,
        entry: Option<&RetryEntry>,
    ) -> bool {
        let exited = c.state == RunState::Exited && restart_wanted(dc.restart_policy, c);
        let failing = c.state == RunState::Running && c.failing();
        if !exited && !failing {
            return false;
        }
        if let Some(e) = entry.filter(|e| e.not_before > self.now) {
            // Kubernetes' wording: "back-off 40s restarting failed container".
            let back_off = e
                .not_before
                .saturating_duration_since(e.last_attempt)
                .as_secs();
            let (reason, message) = if exited {
                (
                    WaitReason::CrashLoopBackOff,
                    format!(
                        "back-off {back_off}s restarting {}: exited with code {}; {} restart(s) so far",
                        c.name,
                        c.exit_code.unwrap_or(-1),
                        e.attempts
                    ),
                )
            } else {
                (
                    WaitReason::Unhealthy,
                    format!(
                        "back-off {back_off}s restarting {}: health check or liveness probe failing; {} restart(s) so far",
                        c.name, e.attempts
                    ),
                )
            };
            self.p.wait(owner, reason, message, Some(e.not_before));
        } else if exited {
            let intent = Intent::Restart {
                exit_code: c.exit_code,
                policy: dc.restart_policy,
            };
            let start = Action::StartContainer {
                name: c.name.clone(),
                restart: true,
            };
            self.p.push(owner, &dc.hash, intent, start, vec![]);
        } else {
            let liveness = match &c.probe {
                Some(pr) if !pr.live => {
                    Some(pr.message.as_deref().unwrap_or("no detail").to_string())
                }
                _ => None,
            };
            let restart = Action::RestartContainer {
                id: c.id.clone(),
                name: c.name.clone(),
                stop_timeout: dc.config.stop_timeout(),
            };
            self.p.push(
                owner,
                &dc.hash,
                Intent::RestartUnhealthy { liveness },
                restart,
                vec![],
            );
        }
        true
    }
}
