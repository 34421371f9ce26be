//! Rolling updates: which step each replica takes ([`rollout_steps`], Kubernetes'
//! Deployment arithmetic) and the actions of each step ([`Planner::rolling_step`]).
//!
//! A replica's containers are its container (`<name>`), and during an update its surge
//! container (`<name>_next`, start-first) and its stopped previous container (`<name>_prev`,
//! the rollback target). The engine holds this state, so nothing is lost when the agent
//! restarts; progress and deadlines live in [`crate::rollout::RolloutBook`].

use std::collections::BTreeMap;
use std::time::Instant;

use berth_api::ObjectKey;

use super::Planner;
use super::action::Action;
use super::checks::restart_wanted;
use super::containers::{Leftovers, ObjectPlan};
use crate::backoff::{RetryBook, RetryKind};
use crate::desired::{DesiredContainer, Owner};
use crate::intent::Intent;
use crate::labels::{self, ReplicaRole};
use crate::observed::{ObservedContainer, RunState};
use crate::reason::WaitReason;

impl<'a> Planner<'a> {
    /// The actions of a rolling-update `step` for one replica, after the removals of its
    /// `leftovers`.
    pub(super) fn rolling_step(
        &mut self,
        o: &mut ObjectPlan<'a>,
        slot: &Slot<'a>,
        owner: &Owner,
        step: Step,
        leftovers: Leftovers,
    ) {
        let Leftovers {
            extras,
            prev: mut prev_removal,
            next: next_removal,
        } = leftovers;
        let dc = o.dc;
        if matches!(step, Step::Surge | Step::StopFirst)
            && let Some(why) = self.gate(dc)
        {
            self.p
                .wait(owner, WaitReason::WaitingForDependency, why, None);
            return;
        }
        match step {
            Step::Hold(msg) => self.p.wait(owner, WaitReason::RollingUpdate, msg, None),
            Step::WaitNext(msg) => {
                let Some(x) = slot.next else { return };
                if x.state == RunState::Created {
                    let start = Action::StartContainer {
                        name: x.name.clone(),
                        restart: false,
                    };
                    self.p
                        .push(owner, &dc.hash, Intent::StartSurge, start, vec![]);
                } else {
                    let entry = self.retries.get(owner, &dc.hash, RetryKind::Restart);
                    if !self.restart_if_due(owner, dc, x, entry) {
                        self.p.wait(owner, WaitReason::RollingUpdate, msg, None);
                    }
                }
            }
            Step::Promote => {
                let Some(x) = slot.next else { return };
                let mut after = extras;
                if let Some(c) = slot.canon {
                    let intent = Intent::RetireForPromote {
                        new: x.name.clone(),
                    };
                    let (stop, ren) =
                        self.retire(o, slot, owner, c, intent, vec![], &mut prev_removal);
                    o.stops.push(stop);
                    after.push(ren);
                }
                let rename = Action::RenameContainer {
                    id: x.id.clone(),
                    from: x.name.clone(),
                    to: slot.name.clone(),
                };
                self.p.push(owner, &dc.hash, Intent::Promote, rename, after);
            }
            Step::RollBack => self.roll_back(o, slot, owner, extras),
            Step::Surge | Step::StopFirst => {
                let img = self.ensure_image(owner, dc);
                let mut after = o.deps.clone();
                after.push(img);
                after.extend(&extras);
                // A superseded surge container gives its name up first.
                after.extend(next_removal);
                let surge = step == Step::Surge;
                let target = if surge {
                    labels::surge_name(&slot.name)
                } else {
                    if let Some(c) = slot.canon {
                        let intent = Intent::RetireStopFirst;
                        let (stop, ren) =
                            self.retire(o, slot, owner, c, intent, vec![img], &mut prev_removal);
                        o.stops.push(stop);
                        after.push(ren);
                    }
                    slot.name.clone()
                };
                let intent = if surge {
                    Intent::Surge
                } else {
                    Intent::StopFirst
                };
                let create = self.create_and_start(owner, dc, target, intent, after);
                if surge {
                    o.surges.push(create);
                } else {
                    o.creates.push(create);
                }
                self.publishes(dc, create);
            }
            Step::Normal | Step::KeepOld => {}
        }
    }

    /// Roll back: remove the new container, restore `_prev` under the replica's name, start it.
    fn roll_back(
        &mut self,
        o: &ObjectPlan<'a>,
        slot: &Slot<'a>,
        owner: &Owner,
        extras: Vec<usize>,
    ) {
        let dc = o.dc;
        let mut after = extras;
        // The restore is the previous spec's: its success does not clear the back-off of the
        // spec that failed.
        let restored = slot
            .prev
            .and_then(|pv| pv.hash.as_deref())
            .unwrap_or(dc.hash.as_str());
        if let Some(c) = slot.canon {
            let remove = Action::RemoveContainer {
                id: c.id.clone(),
                name: c.name.clone(),
                stop_timeout: dc.config.stop_timeout(),
            };
            let rm = self
                .p
                .push(owner, restored, Intent::RollBackRemoveNew, remove, vec![]);
            self.removing.insert(c.id.as_str(), rm);
            after.push(rm);
        }
        if let Some(pv) = slot.prev {
            let rename = Action::RenameContainer {
                id: pv.id.clone(),
                from: pv.name.clone(),
                to: slot.name.clone(),
            };
            let ren = self
                .p
                .push(owner, restored, Intent::RollBackRestore, rename, after);
            let start = Action::StartContainer {
                name: slot.name.clone(),
                restart: false,
            };
            self.p
                .push(owner, restored, Intent::RollBackStart, start, vec![ren]);
        }
    }

    /// Retires the replica's current container `c` for a rolling update: stops it (after
    /// `stop_after`) and renames it `<name>_prev`, the rollback target, once the older `_prev`
    /// is removed (planned here unless `prev_removal` already is). Returns the stop and rename
    /// actions.
    #[allow(clippy::too_many_arguments)]
    fn retire(
        &mut self,
        o: &ObjectPlan<'a>,
        slot: &Slot<'a>,
        owner: &Owner,
        c: &ObservedContainer,
        why: Intent,
        stop_after: Vec<usize>,
        prev_removal: &mut Option<usize>,
    ) -> (usize, usize) {
        let dc = o.dc;
        let stop = Action::StopContainer {
            id: c.id.clone(),
            name: c.name.clone(),
            stop_timeout: dc.config.stop_timeout(),
        };
        let stop = self.p.push(owner, &dc.hash, why, stop, stop_after);
        let mut ren_after = vec![stop];
        if prev_removal.is_none()
            && let Some(pv) = slot.prev
        {
            *prev_removal = Some(self.remove(owner, dc, Intent::MakeRoomForPrevious, pv, vec![]));
        }
        ren_after.extend(*prev_removal);
        let rename = Action::RenameContainer {
            id: c.id.clone(),
            from: c.name.clone(),
            to: labels::previous_name(&slot.name),
        };
        let ren = self
            .p
            .push(owner, &dc.hash, Intent::KeepAsPrevious, rename, ren_after);
        (stop, ren)
    }
}

/// The engine containers of one replica: its container (`name`), and during a rolling update
/// its surge container (`<name>_next`) and previous container (`<name>_prev`).
pub(super) struct Slot<'a> {
    pub(super) replica: u32,
    pub(super) name: String,
    pub(super) canon: Option<&'a ObservedContainer>,
    pub(super) next: Option<&'a ObservedContainer>,
    pub(super) prev: Option<&'a ObservedContainer>,
    /// Containers labelled with this replica under any other name (a renamed object's, say).
    pub(super) extras: Vec<&'a ObservedContainer>,
}

impl<'a> Slot<'a> {
    pub(super) fn of<'k>(
        key: &'k ObjectKey,
        replica: u32,
        dc: &DesiredContainer,
        by_replica: &BTreeMap<(&'k ObjectKey, u32), Vec<&'a ObservedContainer>>,
    ) -> Slot<'a> {
        let name = labels::container_name(key, replica, dc.container_name.as_deref());
        let mut s = Slot {
            replica,
            name,
            canon: None,
            next: None,
            prev: None,
            extras: Vec::new(),
        };
        for c in by_replica.get(&(key, replica)).into_iter().flatten() {
            let place = match ReplicaRole::of(&c.name, &s.name) {
                ReplicaRole::Current => &mut s.canon,
                ReplicaRole::Surge => &mut s.next,
                ReplicaRole::Previous => &mut s.prev,
                ReplicaRole::Other => {
                    s.extras.push(c);
                    continue;
                }
            };
            if place.is_none() {
                *place = Some(c);
            } else {
                s.extras.push(c);
            }
        }
        s
    }

    pub(super) fn all(&self) -> impl Iterator<Item = &'a ObservedContainer> + '_ {
        self.canon
            .into_iter()
            .chain(self.next)
            .chain(self.prev)
            .chain(self.extras.iter().copied())
    }
}

/// What a replica does in this plan with respect to a rolling update.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Step {
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
pub(super) struct SlotPlan {
    pub(super) step: Step,
    pub(super) drop_next: bool,
    pub(super) drop_prev: bool,
}

/// Decides each replica's rolling-update step, as Kubernetes' Deployment controller would: at
/// most `replicas + maxSurge` containers exist (the `scaling_down` containers of replicas beyond
/// `replicas` that still run included) and at least `replicas - maxUnavailable` are available;
/// replicas are taken in index order; a replica whose old container is not ready is replaced at
/// once (it serves nothing). `Recreate` replaces every replica stop-first.
pub(super) fn rollout_steps(
    key: &ObjectKey,
    dc: &DesiredContainer,
    slots: &[Slot],
    scaling_down: u32,
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
    // a replica's container and each running replica being scaled down (a stale surge
    // container is removed before any surge container starts: `ObjectPlan::stops`).
    let (mut existing, mut available) = (n.saturating_add(scaling_down), 0u32);
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
    dc: &DesiredContainer,
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
