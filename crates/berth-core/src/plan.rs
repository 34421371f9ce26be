//! `plan(desired, observed, retries, now) -> Plan`: the one place where berth decides.
//!
//! Pure and deterministic: the same inputs give the same actions in the same order. The plan is
//! a small DAG — each action lists the actions it must wait for — so that the executor can run
//! independent objects in parallel while keeping per-object order:
//!
//! - images are present before a running container is stopped (`EnsureImage` → `RemoveContainer`);
//!   a failed pull therefore leaves the old container running;
//! - networks and volumes exist before the containers that use them;
//! - containers attached to a network are removed before the network is removed or replaced.
//!
//! A failed action fails its owner only; actions of other owners do not depend on it (except a
//! shared `EnsureImage`, whose failure fails every owner that needs that image).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use berth_api::{DependencyCondition, ObjectKey, PullPolicy, RestartPolicy};

use crate::backoff::{RetryBook, RetryKind};
use crate::desired::{ContainerConfig, DesiredState, NetworkConfig, Owner, VolumeConfig};
use crate::intent::{Drift, Intent};
use crate::labels;
use crate::observed::{ObservedContainer, ObservedState, RunState};
use crate::reason::{FailureKind, WaitReason};

/// One change to the engine.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Make `image` present according to `policy` (inspect, pull if needed).
    EnsureImage {
        /// Image reference.
        image: String,
        /// Pull policy.
        policy: PullPolicy,
        /// Credential files (`imagePullSecrets`) to try first, in order.
        pull_secrets: Vec<String>,
    },
    /// Create a network.
    CreateNetwork {
        /// Engine name.
        name: String,
        /// Configuration.
        config: NetworkConfig,
        /// All labels (berth's and the user's).
        labels: BTreeMap<String, String>,
    },
    /// Remove a network.
    RemoveNetwork {
        /// Engine ID.
        id: String,
        /// Engine name.
        name: String,
    },
    /// Create a volume.
    CreateVolume {
        /// Engine name.
        name: String,
        /// Configuration.
        config: VolumeConfig,
        /// All labels.
        labels: BTreeMap<String, String>,
    },
    /// Remove a volume.
    RemoveVolume {
        /// Engine name.
        name: String,
    },
    /// Stop (graceful, `stop_timeout` seconds) and remove a container.
    RemoveContainer {
        /// Engine ID.
        id: String,
        /// Engine name.
        name: String,
        /// Seconds between the stop signal and SIGKILL.
        stop_timeout: u32,
    },
    /// Create a container (and copy its files in).
    CreateContainer {
        /// Engine name.
        name: String,
        /// Configuration.
        config: Box<ContainerConfig>,
        /// All labels.
        labels: BTreeMap<String, String>,
    },
    /// Restart a running container (stop with its grace period, start again); counts as a
    /// restart for CrashLoopBackOff.
    RestartContainer {
        /// Engine ID.
        id: String,
        /// Engine name.
        name: String,
        /// Seconds between the stop signal and SIGKILL.
        stop_timeout: u32,
    },
    /// Stop a container (graceful, `stop_timeout` seconds) and keep it; a no-op when it is not
    /// running.
    StopContainer {
        /// Engine ID.
        id: String,
        /// Engine name.
        name: String,
        /// Seconds between the stop signal and SIGKILL.
        stop_timeout: u32,
    },
    /// Rename a container (rolling updates: `_next` → replica name, replica name → `_prev`).
    RenameContainer {
        /// Engine ID.
        id: String,
        /// Current engine name.
        from: String,
        /// New engine name.
        to: String,
    },
    /// Unpause a container paused by hand (`docker pause`): drift from the desired running state.
    UnpauseContainer {
        /// Engine ID.
        id: String,
        /// Engine name.
        name: String,
    },
    /// Start a container.
    StartContainer {
        /// Engine name.
        name: String,
        /// True when this starts an exited container again (counts as a restart).
        restart: bool,
    },
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Action::EnsureImage { image, policy, .. } => {
                write!(f, "ensure image {image} (pull policy {policy:?})")
            }
            Action::CreateNetwork { name, .. } => write!(f, "create network {name}"),
            Action::RemoveNetwork { name, .. } => write!(f, "remove network {name}"),
            Action::CreateVolume { name, .. } => write!(f, "create volume {name}"),
            Action::RemoveVolume { name } => write!(f, "remove volume {name}"),
            Action::RemoveContainer { name, .. } => write!(f, "remove container {name}"),
            Action::CreateContainer { name, config, .. } => {
                write!(f, "create container {name} ({})", config.image)
            }
            Action::RestartContainer { name, .. } => {
                write!(f, "restart unhealthy container {name}")
            }
            Action::StopContainer { name, .. } => write!(f, "stop container {name}"),
            Action::UnpauseContainer { name, .. } => write!(f, "unpause container {name}"),
            Action::RenameContainer { from, to, .. } => {
                write!(f, "rename container {from} to {to}")
            }
            Action::StartContainer {
                name,
                restart: false,
            } => write!(f, "start container {name}"),
            Action::StartContainer {
                name,
                restart: true,
            } => write!(f, "restart container {name}"),
        }
    }
}

/// An action with its owner and ordering constraints.
#[derive(Clone, Debug, PartialEq)]
pub struct PlannedAction {
    /// Index of this action in [`Plan::actions`].
    pub id: usize,
    /// Object (replica) the action is for; its failure is charged to this owner.
    pub owner: Owner,
    /// Desired spec hash of the owner (empty for orphans); the retry book key.
    pub hash: String,
    /// Why the action is needed: matched on downstream; its text is for logs and `berth diff`.
    pub intent: Intent,
    /// The change.
    pub action: Action,
    /// Actions that must succeed first.
    pub after: Vec<usize>,
}

/// Something that keeps an object from converging now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Waiting {
    /// The object (replica).
    pub owner: Owner,
    /// Why it waits (see [`WaitReason`] for the list and how each is reported).
    pub reason: WaitReason,
    /// Human-readable detail.
    pub message: String,
    /// When a retry falls due, for backoffs.
    pub until: Option<Instant>,
}

/// The result of planning: actions to execute and objects that wait.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    /// Actions in a valid execution order (every `after` points backwards).
    pub actions: Vec<PlannedAction>,
    /// Objects that are not converging, and why.
    pub waiting: Vec<Waiting>,
}

impl Plan {
    /// True when there is nothing to do: the host is converged (objects may still wait).
    pub fn is_empty(&self) -> bool {
        self.actions.is_empty()
    }

    /// The plan without the actions of `busy` owners (their earlier actions are still being
    /// carried out) and without every action that depends on a dropped one. Each dropped owner
    /// is listed as waiting with reason `InProgress`.
    pub fn without_owners(mut self, busy: &BTreeSet<Owner>) -> Plan {
        let n = self.actions.len();
        // A shared image action belongs to whoever needs it first; hand it to an owner that is
        // not busy, so that its other users are not held back.
        for i in 0..n {
            if matches!(self.actions[i].action, Action::EnsureImage { .. })
                && busy.contains(&self.actions[i].owner)
            {
                let heir = self
                    .actions
                    .iter()
                    .find(|a| a.after.contains(&i) && !busy.contains(&a.owner))
                    .map(|a| (a.owner.clone(), a.hash.clone()));
                if let Some((owner, hash)) = heir {
                    self.actions[i].owner = owner;
                    self.actions[i].hash = hash;
                }
            }
        }
        let mut dropped = vec![false; n];
        // `after` points backwards, so one forward sweep cascades.
        for i in 0..n {
            let a = &self.actions[i];
            dropped[i] = busy.contains(&a.owner) || a.after.iter().any(|d| dropped[*d]);
        }
        // An image action whose every user was dropped goes too: kept alone, it would finish at
        // once and trigger another pass with the same plan, over and over, while the busy
        // owner's actions run.
        for i in 0..n {
            if !dropped[i] && matches!(self.actions[i].action, Action::EnsureImage { .. }) {
                let mut users = self
                    .actions
                    .iter()
                    .enumerate()
                    .filter(|(_, a)| a.after.contains(&i));
                let mut any = false;
                if users.all(|(j, _)| {
                    any = true;
                    dropped[j]
                }) && any
                {
                    dropped[i] = true;
                }
            }
        }
        let mut new_id = vec![usize::MAX; n];
        let mut out = Plan {
            actions: Vec::new(),
            waiting: self.waiting,
        };
        let mut waiting_owners = BTreeSet::new();
        for (i, mut a) in self.actions.into_iter().enumerate() {
            if dropped[i] {
                if waiting_owners.insert(a.owner.clone()) {
                    out.waiting.push(Waiting {
                        owner: a.owner,
                        reason: WaitReason::InProgress,
                        message: "earlier actions for this object are still being carried out"
                            .into(),
                        until: None,
                    });
                }
                continue;
            }
            new_id[i] = out.actions.len();
            a.id = new_id[i];
            a.after = a.after.iter().map(|d| new_id[*d]).collect();
            out.actions.push(a);
        }
        out
    }

    fn push(
        &mut self,
        owner: &Owner,
        hash: &str,
        intent: Intent,
        action: Action,
        after: Vec<usize>,
    ) -> usize {
        let id = self.actions.len();
        self.actions.push(PlannedAction {
            id,
            owner: owner.clone(),
            hash: hash.to_string(),
            intent,
            action,
            after,
        });
        id
    }

    fn wait(
        &mut self,
        owner: &Owner,
        reason: WaitReason,
        message: impl Into<String>,
        until: Option<Instant>,
    ) {
        self.waiting.push(Waiting {
            owner: owner.clone(),
            reason,
            message: message.into(),
            until,
        });
    }
}

/// State of a dependency (network or volume) during planning.
#[derive(Clone, Debug)]
enum Dep {
    /// Exists as wanted, with this engine ID (networks) or name (volumes).
    Ready(String),
    /// Created by this action in this plan; `replaced` when an older one is removed first.
    Creating { action: usize, replaced: bool },
    /// Cannot be used now.
    Unavailable(String),
}

/// Computes the actions that take `observed` to `desired`.
///
/// `retries` holds per-owner backoff; owners whose retry is not yet due are left alone and
/// listed in [`Plan::waiting`]. `now` is only compared with retry times.
pub fn plan(
    desired: &DesiredState,
    observed: &ObservedState,
    retries: &RetryBook,
    now: Instant,
) -> Plan {
    let mut p = Plan::default();

    for (key, why) in &desired.blocked {
        p.wait(
            &Owner::object(key.clone()),
            WaitReason::InvalidReference,
            why.clone(),
            None,
        );
    }

    // ---- networks: decide creates now, removals after the containers are known.
    let mut nets: BTreeMap<&ObjectKey, Dep> = BTreeMap::new();
    let mut net_removals: Vec<(Owner, String, String, Option<usize>)> = Vec::new(); // owner, id, name, create to delay
    let mut seen_nets = BTreeSet::new();
    for (key, dn) in &desired.networks {
        let owner = Owner::object(key.clone());
        let existing = observed
            .networks
            .iter()
            .find(|n| n.key.as_ref() == Some(key) && n.name == dn.engine_name);
        if let Some(n) = existing {
            seen_nets.insert(n.id.as_str());
        }
        if observed.foreign_networks.contains(&dn.engine_name) {
            let msg = format!(
                "a network named {:?} exists and is not managed by berth instance {:?}; it is left alone",
                dn.engine_name, desired.instance
            );
            p.wait(&owner, WaitReason::Conflict, msg.clone(), None);
            nets.insert(key, Dep::Unavailable(msg));
            continue;
        }
        if let Some(until) = retries.blocked_until(&owner, &dn.hash, now) {
            p.wait(
                &owner,
                WaitReason::BackOff,
                retry_message(retries, &owner, &dn.hash),
                Some(until),
            );
            nets.insert(
                key,
                match existing {
                    Some(n) => Dep::Ready(n.id.clone()),
                    None => Dep::Unavailable(format!("network {} is backing off", dn.engine_name)),
                },
            );
            continue;
        }
        let labels = merged_labels(&desired.instance, key, None, &dn.hash, &dn.config.labels);
        let create = Action::CreateNetwork {
            name: dn.engine_name.clone(),
            config: dn.config.clone(),
            labels,
        };
        match existing {
            Some(n) if n.hash.as_deref() == Some(dn.hash.as_str()) => {
                nets.insert(key, Dep::Ready(n.id.clone()));
            }
            Some(n) => {
                let a = p.push(&owner, &dn.hash, Intent::RecreateNetwork, create, vec![]);
                net_removals.push((owner, n.id.clone(), n.name.clone(), Some(a)));
                nets.insert(
                    key,
                    Dep::Creating {
                        action: a,
                        replaced: true,
                    },
                );
            }
            None => {
                let a = p.push(&owner, &dn.hash, Intent::CreateNetwork, create, vec![]);
                nets.insert(
                    key,
                    Dep::Creating {
                        action: a,
                        replaced: false,
                    },
                );
            }
        }
    }
    for n in &observed.networks {
        if !seen_nets.contains(n.id.as_str()) && desired.incomplete.is_none() {
            let owner = orphan_owner(n.key.as_ref(), &n.name);
            net_removals.push((owner, n.id.clone(), n.name.clone(), None));
        }
    }

    // ---- volumes: create when missing; never recreate (data); remove orphans only with Delete.
    let mut vols: BTreeMap<&ObjectKey, Dep> = BTreeMap::new();
    let mut vol_removals: Vec<(Owner, String)> = Vec::new();
    for (key, dv) in &desired.volumes {
        let owner = Owner::object(key.clone());
        if observed.foreign_volumes.contains(&dv.engine_name) {
            let msg = format!(
                "a volume named {:?} exists and is not managed by berth instance {:?}; it is left alone",
                dv.engine_name, desired.instance
            );
            p.wait(&owner, WaitReason::Conflict, msg.clone(), None);
            vols.insert(key, Dep::Unavailable(msg));
            continue;
        }
        match observed.volumes.iter().find(|v| v.name == dv.engine_name) {
            Some(v) => {
                if v.hash.as_deref() != Some(dv.hash.as_str()) {
                    p.wait(
                        &owner,
                        WaitReason::VolumeSpecChanged,
                        format!("volume {} differs from its spec; volumes are never recreated (remove it by hand to apply)", dv.engine_name),
                        None,
                    );
                }
                vols.insert(key, Dep::Ready(v.name.clone()));
            }
            None => {
                if let Some(until) = retries.blocked_until(&owner, &dv.hash, now) {
                    p.wait(
                        &owner,
                        WaitReason::BackOff,
                        retry_message(retries, &owner, &dv.hash),
                        Some(until),
                    );
                    vols.insert(
                        key,
                        Dep::Unavailable(format!("volume {} is backing off", dv.engine_name)),
                    );
                    continue;
                }
                let mut labels =
                    merged_labels(&desired.instance, key, None, &dv.hash, &dv.config.labels);
                labels.insert(
                    labels::RECLAIM_POLICY.into(),
                    dv.reclaim_policy.as_str().into(),
                );
                let a = p.push(
                    &owner,
                    &dv.hash,
                    Intent::CreateVolume,
                    Action::CreateVolume {
                        name: dv.engine_name.clone(),
                        config: dv.config.clone(),
                        labels,
                    },
                    vec![],
                );
                vols.insert(
                    key,
                    Dep::Creating {
                        action: a,
                        replaced: false,
                    },
                );
            }
        }
    }
    for v in &observed.volumes {
        let declared = v
            .key
            .as_ref()
            .is_some_and(|k| desired.volumes.contains_key(k));
        if !declared && v.delete_when_orphaned && desired.incomplete.is_none() {
            vol_removals.push((orphan_owner(v.key.as_ref(), &v.name), v.name.clone()));
        }
    }

    // ---- containers
    let mut images: BTreeMap<(String, PullPolicy, &[String]), usize> = BTreeMap::new();
    let mut claimed: BTreeSet<&str> = BTreeSet::new();
    let mut removing: BTreeMap<&str, usize> = BTreeMap::new(); // container id → remove action
    let mut by_replica: BTreeMap<(&ObjectKey, u32), Vec<&ObservedContainer>> = BTreeMap::new();
    for c in &observed.containers {
        if let (Some(k), Some(r)) = (&c.key, c.replica) {
            by_replica.entry((k, r)).or_default().push(c);
        }
    }
    let mut changing: BTreeSet<&ObjectKey> = BTreeSet::new();
    // Creates that publish host ports; they wait for orphan removals (a renamed object's old
    // container may hold the same port).
    let mut publishing: Vec<usize> = Vec::new();
    for key in dependency_order(desired) {
        let Some(dc) = desired.containers.get(key) else {
            continue;
        };
        let actions_before = p.actions.len();
        // Dependencies: every network and volume must be usable.
        let mut deps = Vec::new();
        let mut blocked = None;
        let mut replaced_nets = BTreeSet::new();
        let mut net_ids: BTreeMap<String, &str> = BTreeMap::new();
        for nk in &dc.networks {
            let engine = labels::network_name(&nk.namespace, &nk.name);
            match nets.get(nk) {
                Some(Dep::Ready(id)) => {
                    net_ids.insert(engine, id.as_str());
                }
                Some(Dep::Creating { action, replaced }) => {
                    deps.push(*action);
                    if *replaced {
                        replaced_nets.insert(engine);
                    }
                }
                Some(Dep::Unavailable(why)) => blocked = Some(why.clone()),
                None => blocked = Some(format!("network {nk} is not declared")),
            }
        }
        for vk in &dc.volumes {
            match vols.get(vk) {
                Some(Dep::Ready(_)) => {}
                Some(Dep::Creating { action, .. }) => deps.push(*action),
                Some(Dep::Unavailable(why)) => blocked = Some(why.clone()),
                None => blocked = Some(format!("volume {vk} is not declared")),
            }
        }
        let slots: Vec<Slot> = (0..dc.replicas)
            .map(|r| Slot::of(key, r, dc, &by_replica))
            .collect();
        let steps: Vec<SlotPlan> = if replaced_nets.is_empty() {
            rollout_steps(key, dc, &slots, retries, now)
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
        let mut object_stops: Vec<usize> = Vec::new();
        let mut object_creates: Vec<usize> = Vec::new();
        // Surge creates wait for the old containers this plan stops, so that no more than
        // `replicas + maxSurge` containers ever run.
        let mut surges: Vec<usize> = Vec::new();
        for (slot, sp) in slots.iter().zip(steps) {
            let r = slot.replica;
            let owner = Owner::replica(key.clone(), r);
            let name = slot.name.clone();
            for c in slot.all() {
                claimed.insert(c.id.as_str());
            }
            if let Some(why) = &blocked {
                p.wait(&owner, WaitReason::DependencyBlocked, why.clone(), None);
                continue;
            }
            if observed.foreign_containers.contains(&name) {
                p.wait(
                    &owner,
                    WaitReason::Conflict,
                    format!("a container named {name:?} exists and is not managed by berth instance {:?}; it is left alone", desired.instance),
                    None,
                );
                continue;
            }
            let entry = retries.get(&owner, &dc.hash, RetryKind::Restart);
            if let Some(e) = retries
                .get(&owner, &dc.hash, RetryKind::Failure)
                .filter(|e| e.not_before > now && sp.step != Step::RollBack)
            {
                p.wait(
                    &owner,
                    WaitReason::after_failure(e.failure.unwrap_or(FailureKind::Engine)),
                    retry_message(retries, &owner, &dc.hash),
                    Some(e.not_before),
                );
                continue;
            }
            let current = slot.canon;
            let mut extra_removals = Vec::new();
            for x in &slot.extras {
                let a = p.push(
                    &owner,
                    &dc.hash,
                    Intent::RemoveDuplicate {
                        replica: name.clone(),
                    },
                    Action::RemoveContainer {
                        id: x.id.clone(),
                        name: x.name.clone(),
                        stop_timeout: dc.config.stop_timeout(),
                    },
                    vec![],
                );
                removing.insert(x.id.as_str(), a);
                extra_removals.push(a);
            }
            let mut prev_removal = None;
            let mut next_removal = None;
            for (drop, c, why) in [
                (sp.drop_next, slot.next, Intent::DropSurge),
                (sp.drop_prev, slot.prev, Intent::RetirePrevious),
            ] {
                if let (true, Some(c)) = (drop, c) {
                    let a = p.push(
                        &owner,
                        &dc.hash,
                        why,
                        Action::RemoveContainer {
                            id: c.id.clone(),
                            name: c.name.clone(),
                            stop_timeout: dc.config.stop_timeout(),
                        },
                        vec![],
                    );
                    removing.insert(c.id.as_str(), a);
                    if c.name == labels::previous_name(&name) {
                        prev_removal = Some(a);
                    } else {
                        next_removal = Some(a);
                    }
                }
            }
            // The names a step takes must not belong to someone else.
            let taken = match &sp.step {
                Step::Surge => Some(labels::surge_name(&name)),
                Step::StopFirst | Step::Promote if current.is_some() => {
                    Some(labels::previous_name(&name))
                }
                _ => None,
            }
            .filter(|n| observed.foreign_containers.contains(n));
            if let Some(n) = taken {
                p.wait(
                    &owner,
                    WaitReason::Conflict,
                    format!("a container named {n:?} exists and is not managed by berth instance {:?}; the rolling update needs that name and waits (the old container keeps running)", desired.instance),
                    None,
                );
                continue;
            }
            let rolling = match &sp.step {
                Step::Normal | Step::KeepOld => None,
                other => Some(other),
            };
            if let Some(step) = rolling {
                if matches!(step, Step::Surge | Step::StopFirst)
                    && let Some(why) = dependency_gate(dc, desired, &by_replica, &changing)
                {
                    p.wait(&owner, WaitReason::WaitingForDependency, why, None);
                    continue;
                }
                match step {
                    Step::Hold(msg) => p.wait(&owner, WaitReason::RollingUpdate, msg.clone(), None),
                    Step::WaitNext(msg) => {
                        let Some(x) = slot.next else { continue };
                        if x.state == RunState::Created {
                            p.push(
                                &owner,
                                &dc.hash,
                                Intent::StartSurge,
                                Action::StartContainer {
                                    name: x.name.clone(),
                                    restart: false,
                                },
                                vec![],
                            );
                        } else if !restart_if_due(&mut p, &owner, dc, x, entry, now) {
                            p.wait(&owner, WaitReason::RollingUpdate, msg.clone(), None);
                        }
                    }
                    Step::Promote => {
                        let Some(x) = slot.next else { continue };
                        let mut after = extra_removals.clone();
                        if let Some(c) = current {
                            let (stop, ren) = retire(
                                &mut p,
                                &mut removing,
                                &mut prev_removal,
                                slot,
                                &owner,
                                dc,
                                c,
                                Intent::RetireForPromote {
                                    new: x.name.clone(),
                                },
                                vec![],
                            );
                            object_stops.push(stop);
                            after.push(ren);
                        }
                        p.push(
                            &owner,
                            &dc.hash,
                            Intent::Promote,
                            Action::RenameContainer {
                                id: x.id.clone(),
                                from: x.name.clone(),
                                to: name.clone(),
                            },
                            after,
                        );
                    }
                    Step::RollBack => {
                        let mut after = extra_removals.clone();
                        // The restore is the previous spec's: its success does not clear the
                        // back-off of the spec that failed.
                        let restored = slot
                            .prev
                            .and_then(|pv| pv.hash.as_deref())
                            .unwrap_or(dc.hash.as_str());
                        if let Some(c) = current {
                            let rm = p.push(
                                &owner,
                                restored,
                                Intent::RollBackRemoveNew,
                                Action::RemoveContainer {
                                    id: c.id.clone(),
                                    name: c.name.clone(),
                                    stop_timeout: dc.config.stop_timeout(),
                                },
                                vec![],
                            );
                            removing.insert(c.id.as_str(), rm);
                            after.push(rm);
                        }
                        if let Some(pv) = slot.prev {
                            let ren = p.push(
                                &owner,
                                restored,
                                Intent::RollBackRestore,
                                Action::RenameContainer {
                                    id: pv.id.clone(),
                                    from: pv.name.clone(),
                                    to: name.clone(),
                                },
                                after,
                            );
                            p.push(
                                &owner,
                                restored,
                                Intent::RollBackStart,
                                Action::StartContainer {
                                    name: name.clone(),
                                    restart: false,
                                },
                                vec![ren],
                            );
                        }
                    }
                    Step::Surge | Step::StopFirst => {
                        let img = ensure_image(&mut p, &mut images, &owner, dc);
                        let mut create_after = deps.clone();
                        create_after.push(img);
                        create_after.extend(&extra_removals);
                        // A superseded surge container gives its name up first.
                        create_after.extend(next_removal);
                        let target = if matches!(step, Step::Surge) {
                            labels::surge_name(&name)
                        } else {
                            if let Some(c) = current {
                                let (stop, ren) = retire(
                                    &mut p,
                                    &mut removing,
                                    &mut prev_removal,
                                    slot,
                                    &owner,
                                    dc,
                                    c,
                                    Intent::RetireStopFirst,
                                    vec![img],
                                );
                                object_stops.push(stop);
                                create_after.push(ren);
                            }
                            name.clone()
                        };
                        let why = if matches!(step, Step::Surge) {
                            Intent::Surge
                        } else {
                            Intent::StopFirst
                        };
                        let create = create_and_start(
                            &mut p,
                            &desired.instance,
                            &owner,
                            dc,
                            target,
                            why,
                            create_after,
                        );
                        if matches!(step, Step::Surge) {
                            surges.push(create);
                        } else {
                            object_creates.push(create);
                        }
                        if dc.config.ports.iter().any(|pc| pc.host_port.is_some()) {
                            publishing.push(create);
                        }
                    }
                    Step::Normal | Step::KeepOld => {}
                }
                continue;
            }
            if let Step::KeepOld = sp.step {
                p.wait(
                    &owner,
                    WaitReason::RolledBack,
                    format!(
                        "the update to spec {} made no new replica available within progressDeadlineSeconds ({} s) and was rolled back; this replica keeps its previous spec until the spec changes",
                        dc.hash,
                        dc.rollout.progress_deadline.as_secs()
                    ),
                    None,
                );
            }
            let recreate = match current {
                Some(_) if sp.step == Step::KeepOld => None,
                None => Some(Intent::Create),
                Some(c) if c.hash.as_deref() != Some(dc.hash.as_str()) => {
                    Some(Intent::Recreate(Drift::SpecChanged))
                }
                Some(c) if c.state == RunState::Created => {
                    Some(Intent::Recreate(Drift::NeverStarted))
                }
                Some(c) if c.state == RunState::Dead => Some(Intent::Recreate(Drift::Dead)),
                Some(c) => network_drift(c, &dc.config, &net_ids, &replaced_nets)
                    .or_else(|| namespace_drift(c, dc, &by_replica))
                    .or_else(|| image_drift(c, dc, observed))
                    .map(Intent::Recreate),
            };
            let needs_start = match (&recreate, current) {
                (Some(_), _) => true,
                (None, Some(c)) => {
                    c.state == RunState::Exited && restart_wanted(dc.restart_policy, c)
                }
                (None, None) => false,
            };
            if needs_start && let Some(why) = dependency_gate(dc, desired, &by_replica, &changing) {
                p.wait(&owner, WaitReason::WaitingForDependency, why, None);
                continue;
            }
            match (recreate, current) {
                (Some(reason), current) => {
                    let img = ensure_image(&mut p, &mut images, &owner, dc);
                    let mut create_after = deps.clone();
                    create_after.push(img);
                    create_after.extend(&extra_removals);
                    if let Some(c) = current {
                        let rm = p.push(
                            &owner,
                            &dc.hash,
                            reason.clone(),
                            Action::RemoveContainer {
                                id: c.id.clone(),
                                name: c.name.clone(),
                                stop_timeout: dc.config.stop_timeout(),
                            },
                            vec![img],
                        );
                        removing.insert(c.id.as_str(), rm);
                        create_after.push(rm);
                    }
                    let create = create_and_start(
                        &mut p,
                        &desired.instance,
                        &owner,
                        dc,
                        name,
                        reason,
                        create_after,
                    );
                    object_creates.push(create);
                    if dc.config.ports.iter().any(|pc| pc.host_port.is_some()) {
                        publishing.push(create);
                    }
                }
                (None, Some(c)) if c.state == RunState::Paused => {
                    p.push(
                        &owner,
                        &dc.hash,
                        Intent::Unpause,
                        Action::UnpauseContainer {
                            id: c.id.clone(),
                            name: c.name.clone(),
                        },
                        vec![],
                    );
                }
                (None, Some(c)) => {
                    restart_if_due(&mut p, &owner, dc, c, entry, now);
                }
                (None, None) => {}
            }
        }
        if dc.rollout.recreate {
            for c in &object_creates {
                p.actions[*c].after.extend(&object_stops);
            }
        }
        for c in &surges {
            p.actions[*c].after.extend(&object_stops);
        }
        if p.actions.len() > actions_before {
            changing.insert(key);
        }
    }

    // Orphans: berth's containers no declared replica claims. Objects that are declared but
    // blocked keep their containers.
    for c in &observed.containers {
        if claimed.contains(c.id.as_str()) || removing.contains_key(c.id.as_str()) {
            continue;
        }
        if c.key
            .as_ref()
            .is_some_and(|k| desired.blocked.contains_key(k))
        {
            continue;
        }
        let owner = orphan_owner(c.key.as_ref(), &c.name);
        if let Some(why) = &desired.incomplete {
            p.wait(
                &owner,
                WaitReason::RemovalPaused,
                format!(
                    "{} is not removed while the desired set is incomplete: {why}",
                    c.name
                ),
                None,
            );
            continue;
        }
        let scaled_down = c
            .key
            .as_ref()
            .is_some_and(|k| desired.containers.contains_key(k));
        let a = p.push(
            &owner,
            "",
            if scaled_down {
                Intent::ScaleDown
            } else {
                Intent::Orphan
            },
            Action::RemoveContainer {
                id: c.id.clone(),
                name: c.name.clone(),
                stop_timeout: 10,
            },
            vec![],
        );
        removing.insert(c.id.as_str(), a);
    }

    let orphan_removals: Vec<usize> = p
        .actions
        .iter()
        .filter(|a| {
            matches!(a.action, Action::RemoveContainer { .. }) && a.intent.is_orphan_removal()
        })
        .map(|a| a.id)
        .collect();
    for c in &publishing {
        p.actions[*c].after.extend(&orphan_removals);
    }

    // Network removals wait for the removal of every container attached to them; a network that
    // a container keeps using is not removed (an orphan) or fails and backs off (a replacement).
    for (owner, id, name, create) in net_removals {
        let attached: Vec<&ObservedContainer> = observed
            .containers
            .iter()
            .filter(|c| c.networks.values().any(|n| *n == id))
            .collect();
        let staying: Vec<&str> = attached
            .iter()
            .filter(|c| !removing.contains_key(c.id.as_str()))
            .map(|c| c.name.as_str())
            .collect();
        if create.is_none() && !staying.is_empty() {
            p.wait(
                &owner,
                WaitReason::NetworkInUse,
                format!(
                    "network {name} is no longer declared but still used by {}",
                    staying.join(", ")
                ),
                None,
            );
            continue;
        }
        let after = attached
            .iter()
            .filter_map(|c| removing.get(c.id.as_str()).copied())
            .collect();
        let hash = create
            .map(|a| p.actions[a].hash.clone())
            .unwrap_or_default();
        let rm = p.push(
            &owner,
            &hash,
            if create.is_some() {
                Intent::RemoveReplacedNetwork
            } else {
                Intent::Orphan
            },
            Action::RemoveNetwork { id, name },
            after,
        );
        if let Some(a) = create {
            p.actions[a].after.push(rm);
        }
    }
    let all_removals: Vec<usize> = removing.values().copied().collect();
    for (owner, name) in vol_removals {
        p.push(
            &owner,
            "",
            Intent::OrphanVolume,
            Action::RemoveVolume { name },
            all_removals.clone(),
        );
    }

    reorder(&mut p);
    p
}

/// The engine containers of one replica: its container (`name`), and during a rolling update
/// its surge container (`<name>_next`) and previous container (`<name>_prev`).
struct Slot<'a> {
    replica: u32,
    name: String,
    canon: Option<&'a ObservedContainer>,
    next: Option<&'a ObservedContainer>,
    prev: Option<&'a ObservedContainer>,
    /// Containers labelled with this replica under any other name (a renamed object's, say).
    extras: Vec<&'a ObservedContainer>,
}

impl<'a> Slot<'a> {
    fn of<'k>(
        key: &'k ObjectKey,
        replica: u32,
        dc: &crate::desired::DesiredContainer,
        by_replica: &BTreeMap<(&'k ObjectKey, u32), Vec<&'a ObservedContainer>>,
    ) -> Slot<'a> {
        let name = labels::container_name(key, replica, dc.container_name.as_deref());
        let (surge, prev) = (labels::surge_name(&name), labels::previous_name(&name));
        let mut s = Slot {
            replica,
            name,
            canon: None,
            next: None,
            prev: None,
            extras: Vec::new(),
        };
        for c in by_replica.get(&(key, replica)).into_iter().flatten() {
            let place = if c.name == s.name {
                &mut s.canon
            } else if c.name == surge {
                &mut s.next
            } else if c.name == prev {
                &mut s.prev
            } else {
                s.extras.push(c);
                continue;
            };
            if place.is_none() {
                *place = Some(c);
            } else {
                s.extras.push(c);
            }
        }
        s
    }

    fn all(&self) -> impl Iterator<Item = &'a ObservedContainer> + '_ {
        self.canon
            .into_iter()
            .chain(self.next)
            .chain(self.prev)
            .chain(self.extras.iter().copied())
    }
}

/// Retires the replica's current container `c` for a rolling update: stops it (after `stop_after`)
/// and renames it `<name>_prev`, the rollback target, once the older `_prev` is removed (planned
/// here unless `prev_removal` already is). Returns the stop and rename actions.
#[allow(clippy::too_many_arguments)]
fn retire<'o>(
    p: &mut Plan,
    removing: &mut BTreeMap<&'o str, usize>,
    prev_removal: &mut Option<usize>,
    slot: &Slot<'o>,
    owner: &Owner,
    dc: &crate::desired::DesiredContainer,
    c: &ObservedContainer,
    why: Intent,
    stop_after: Vec<usize>,
) -> (usize, usize) {
    let stop = p.push(
        owner,
        &dc.hash,
        why,
        Action::StopContainer {
            id: c.id.clone(),
            name: c.name.clone(),
            stop_timeout: dc.config.stop_timeout(),
        },
        stop_after,
    );
    let mut ren_after = vec![stop];
    if prev_removal.is_none()
        && let Some(pv) = slot.prev
    {
        let a = p.push(
            owner,
            &dc.hash,
            Intent::MakeRoomForPrevious,
            Action::RemoveContainer {
                id: pv.id.clone(),
                name: pv.name.clone(),
                stop_timeout: dc.config.stop_timeout(),
            },
            vec![],
        );
        removing.insert(pv.id.as_str(), a);
        *prev_removal = Some(a);
    }
    ren_after.extend(*prev_removal);
    let ren = p.push(
        owner,
        &dc.hash,
        Intent::KeepAsPrevious,
        Action::RenameContainer {
            id: c.id.clone(),
            from: c.name.clone(),
            to: labels::previous_name(&slot.name),
        },
        ren_after,
    );
    (stop, ren)
}

/// What a replica does in this plan with respect to a rolling update.
#[derive(Clone, Debug, PartialEq)]
enum Step {
    /// No update concerns: converge the replica's container as usual.
    Normal,
    /// The update was rolled back: keep the old container (restarting it per policy).
    KeepOld,
    /// The old container keeps serving until the update's budget allows replacing it.
    Hold(String),
    /// Start-first: create and start the surge container.
    Surge,
    /// The surge container is not available yet.
    WaitNext(String),
    /// The surge container is available: stop the old one, keep it as `_prev`, rename.
    Promote,
    /// Stop-first: stop the old container, keep it as `_prev`, create the new one.
    StopFirst,
    /// Rolled back: remove the new container, restore `_prev`.
    RollBack,
}

/// A replica's step, and which leftovers of an update it removes.
struct SlotPlan {
    step: Step,
    drop_next: bool,
    drop_prev: bool,
}

/// Decides each replica's rolling-update step, as Kubernetes' Deployment controller would: at
/// most `replicas + maxSurge` containers exist and at least `replicas - maxUnavailable` are
/// available; replicas are taken in index order; a replica whose old container is not ready is
/// replaced at once (it serves nothing). `Recreate` replaces every replica stop-first.
fn rollout_steps(
    key: &ObjectKey,
    dc: &crate::desired::DesiredContainer,
    slots: &[Slot],
    retries: &RetryBook,
    now: Instant,
) -> Vec<SlotPlan> {
    let h = dc.hash.as_str();
    let is_new = |c: &ObservedContainer| c.hash.as_deref() == Some(h);
    let book = &retries.rollouts;
    let avail = |c: &ObservedContainer| book.available(c, is_new(c), dc.rollout.min_ready, now);
    let rolled_back = book.get(key).is_some_and(|e| e.hash == h && e.rolled_back);
    let n = dc.replicas;
    // Every replica counts as one container — a missing one is about to be created (or is
    // between the stop and the create of a stop-first step) — plus each surge container beside
    // a replica's container.
    let (mut existing, mut available) = (n, 0u32);
    for s in slots {
        let next = s.next.filter(|x| is_new(x));
        if s.canon.is_some() && next.is_some() {
            existing += 1;
        }
        for c in s.canon.into_iter().chain(next) {
            available += u32::from(avail(c));
        }
    }
    let min_available = n.saturating_sub(dc.rollout.max_unavailable);
    let max_total = n + dc.rollout.max_surge;
    let complete = slots
        .iter()
        .all(|s| s.next.is_none() && s.canon.is_some_and(|c| is_new(c) && avail(c)));
    slots
        .iter()
        .map(|s| {
            let drop_next = s.next.is_some_and(|x| {
                !is_new(x)
                    || rolled_back
                    || x.state == RunState::Dead
                    || s.canon.is_some_and(&is_new)
            });
            let next = s.next.filter(|_| !drop_next);
            let mut drop_prev = false;
            let step = match (s.canon, next) {
                // A stop-first replacement whose new container could not be created or
                // started, or stopped before the update was done: the previous container
                // serves again at once; the new spec is retried after its back-off.
                _ if !rolled_back && failed_replacement(dc, s, &is_new) => Step::RollBack,
                _ if rolled_back => match s.canon {
                    Some(c) if is_new(c) && s.prev.is_some() => Step::RollBack,
                    None if s.prev.is_some() => Step::RollBack,
                    Some(c) if !is_new(c) => {
                        drop_prev = s.prev.is_some();
                        Step::KeepOld
                    }
                    _ => Step::Normal,
                },
                (canon, Some(x)) => {
                    if canon.is_none() || avail(x) {
                        if let Some(c) = canon {
                            existing -= 1;
                            available -= u32::from(avail(c));
                        }
                        Step::Promote
                    } else if x.ready() {
                        Step::WaitNext(format!(
                            "rolling update: new container {} is ready but not yet for minReadySeconds ({} s)",
                            x.name,
                            dc.rollout.min_ready.as_secs()
                        ))
                    } else {
                        Step::WaitNext(format!(
                            "rolling update: waiting for new container {} to become ready",
                            x.name
                        ))
                    }
                }
                // The previous container already runs the desired spec (an update was
                // reverted): restore it rather than create another.
                (Some(c), None) if !is_new(c) && s.prev.is_some_and(&is_new) => Step::RollBack,
                (Some(c), None) if !is_new(c) => {
                    if !c.ready() || dc.rollout.recreate {
                        Step::StopFirst
                    } else if existing < max_total {
                        existing += 1;
                        Step::Surge
                    } else if available > min_available {
                        available -= u32::from(avail(c));
                        Step::StopFirst
                    } else {
                        Step::Hold(format!(
                            "rolling update: replica {} waits its turn ({available} of {n} available, maxUnavailable {}, maxSurge {})",
                            s.replica, dc.rollout.max_unavailable, dc.rollout.max_surge
                        ))
                    }
                }
                (Some(_), None) => {
                    drop_prev = s.prev.is_some() && complete;
                    Step::Normal
                }
                (None, None) => Step::Normal,
            };
            SlotPlan {
                step,
                drop_next,
                drop_prev,
            }
        })
        .collect()
}

/// True when replica slot `s` is in the middle of a stop-first replacement that failed: its
/// previous container (another spec) is kept as `_prev` while the new one is missing (its
/// create failed), never started, dead, or exited though its restart policy wants it running.
fn failed_replacement(
    dc: &crate::desired::DesiredContainer,
    s: &Slot,
    is_new: &impl Fn(&ObservedContainer) -> bool,
) -> bool {
    if s.prev.is_none_or(is_new) {
        return false;
    }
    match s.canon {
        None => true,
        Some(c) => {
            is_new(c)
                && match c.state {
                    RunState::Created | RunState::Dead => true,
                    RunState::Exited => restart_wanted(dc.restart_policy, c),
                    _ => false,
                }
        }
    }
}

/// The action that makes the container's image present, shared by every container of this
/// plan that needs the same image with the same pull settings.
fn ensure_image<'a>(
    p: &mut Plan,
    images: &mut BTreeMap<(String, PullPolicy, &'a [String]), usize>,
    owner: &Owner,
    dc: &'a crate::desired::DesiredContainer,
) -> usize {
    let key = (
        dc.config.image.clone(),
        dc.pull_policy,
        dc.image_pull_secrets.as_slice(),
    );
    if let Some(a) = images.get(&key) {
        return *a;
    }
    let a = p.push(
        owner,
        &dc.hash,
        Intent::EnsureImage,
        Action::EnsureImage {
            image: dc.config.image.clone(),
            policy: dc.pull_policy,
            pull_secrets: dc.image_pull_secrets.clone(),
        },
        vec![],
    );
    images.insert(key, a);
    a
}

/// Restarts container `c` of `owner` when it exited and `restartPolicy` wants it running again,
/// or when it runs but fails its health check or liveness probe — unless its CrashLoopBackOff
/// delay (`entry`, the owner's restart entry) has not passed, then it waits (`CrashLoopBackOff` / `Unhealthy`). Returns
/// false when `c` needs neither.
fn restart_if_due(
    p: &mut Plan,
    owner: &Owner,
    dc: &crate::desired::DesiredContainer,
    c: &ObservedContainer,
    entry: Option<&crate::backoff::RetryEntry>,
    now: Instant,
) -> bool {
    let exited = c.state == RunState::Exited && restart_wanted(dc.restart_policy, c);
    let failing = c.state == RunState::Running && c.failing();
    if !exited && !failing {
        return false;
    }
    if let Some(e) = entry.filter(|e| e.not_before > now) {
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
        p.wait(owner, reason, message, Some(e.not_before));
    } else if exited {
        p.push(
            owner,
            &dc.hash,
            Intent::Restart {
                exit_code: c.exit_code,
                policy: dc.restart_policy,
            },
            Action::StartContainer {
                name: c.name.clone(),
                restart: true,
            },
            vec![],
        );
    } else {
        p.push(
            owner,
            &dc.hash,
            Intent::RestartUnhealthy {
                liveness: match &c.probe {
                    Some(pr) if !pr.live => {
                        Some(pr.message.as_deref().unwrap_or("no detail").to_string())
                    }
                    _ => None,
                },
            },
            Action::RestartContainer {
                id: c.id.clone(),
                name: c.name.clone(),
                stop_timeout: dc.config.stop_timeout(),
            },
            vec![],
        );
    }
    true
}

/// Plans the creation of container `name` for `owner` with the desired spec (after `after`)
/// and its start; returns the create action.
fn create_and_start(
    p: &mut Plan,
    instance: &str,
    owner: &Owner,
    dc: &crate::desired::DesiredContainer,
    name: String,
    intent: Intent,
    after: Vec<usize>,
) -> usize {
    let create = p.push(
        owner,
        &dc.hash,
        intent,
        Action::CreateContainer {
            name: name.clone(),
            config: Box::new(dc.config.clone()),
            labels: merged_labels(
                instance,
                &owner.key,
                owner.replica,
                &dc.hash,
                &dc.config.labels,
            ),
        },
        after,
    );
    p.push(
        owner,
        &dc.hash,
        Intent::StartAfterCreate,
        Action::StartContainer {
            name,
            restart: false,
        },
        vec![create],
    );
    create
}

/// Whether `restartPolicy` wants an exited container started again.
fn restart_wanted(policy: RestartPolicy, c: &ObservedContainer) -> bool {
    match policy {
        RestartPolicy::Always => true,
        RestartPolicy::OnFailure => c.exit_code != Some(0),
        RestartPolicy::Never => false,
    }
}

/// Containers in an order where every container comes after its dependencies (cycles were
/// removed by `resolve`; should one remain, its members come last in key order).
fn dependency_order(desired: &DesiredState) -> Vec<&ObjectKey> {
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
fn dependency_gate(
    dc: &crate::desired::DesiredContainer,
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
fn namespace_drift(
    c: &ObservedContainer,
    dc: &crate::desired::DesiredContainer,
    by_replica: &BTreeMap<(&ObjectKey, u32), Vec<&ObservedContainer>>,
) -> Option<Drift> {
    let target = dc.network_target.as_ref()?;
    let target_name = dc
        .config
        .network_mode
        .as_deref()?
        .strip_prefix("container:")?;
    let current = by_replica
        .get(&(target, 0))
        .and_then(|cs| cs.iter().find(|t| t.name == target_name))?;
    let want = format!("container:{}", current.id);
    (c.network_mode.as_deref() != Some(want.as_str())).then(|| Drift::NamespaceTargetReplaced {
        target: target_name.to_string(),
    })
}

/// Why a `pullPolicy: Always` container must be recreated: the image its reference names now
/// (after the agent re-pulled it) is not the one it runs. Other policies never follow a moved tag.
fn image_drift(
    c: &ObservedContainer,
    dc: &crate::desired::DesiredContainer,
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
fn short_id(id: &str) -> &str {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    hex.get(..12).unwrap_or(hex)
}

/// Why an up-to-date container must still be recreated because of its networks.
fn network_drift(
    c: &ObservedContainer,
    config: &ContainerConfig,
    net_ids: &BTreeMap<String, &str>,
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

fn merged_labels(
    instance: &str,
    key: &ObjectKey,
    replica: Option<u32>,
    hash: &str,
    user: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut l = user.clone();
    l.extend(labels::object_labels(instance, key, replica, hash));
    l
}

fn orphan_owner(key: Option<&ObjectKey>, engine_name: &str) -> Owner {
    match key {
        Some(k) => Owner::object(k.clone()),
        None => Owner::object(ObjectKey::new(berth_api::Kind::Container, "", engine_name)),
    }
}

fn retry_message(retries: &RetryBook, owner: &Owner, hash: &str) -> String {
    match retries.get(owner, hash, RetryKind::Failure) {
        Some(e) => format!(
            "{} failed attempt(s); last error: {}",
            e.attempts,
            e.last_error.as_deref().unwrap_or("unknown")
        ),
        None => String::new(),
    }
}

/// Re-numbers actions into a topological order (dependencies first), keeping the original
/// order among independent actions, so that every `after` points backwards.
fn reorder(p: &mut Plan) {
    let n = p.actions.len();
    let mut placed = vec![false; n];
    let mut order = Vec::with_capacity(n);
    while order.len() < n {
        let before = order.len();
        for i in 0..n {
            if !placed[i] && p.actions[i].after.iter().all(|d| placed[*d]) {
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
