//! Rolling-update bookkeeping (no clock: callers pass `now`).
//!
//! The engine holds the state of an update — which replicas run the new spec hash, which have a
//! surge container (`<name>_next`) or a stopped previous container (`<name>_prev`) — so that
//! nothing is lost when the agent restarts. What the engine cannot hold lives here, in memory:
//!
//! - since when each container has been ready, for `minReadySeconds`;
//! - since when each update has gone without progress (one more new replica available), for
//!   `progressDeadlineSeconds`, and whether it was rolled back. A rolled-back update stays
//!   rolled back until the spec changes (or the agent restarts, which tries it once more).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use berth_api::ObjectKey;

use crate::desired::{DesiredContainer, DesiredState};
use crate::labels;
use crate::observed::{ObservedContainer, ObservedState};

/// Progress of the update of one `Container` object to one spec hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RolloutEntry {
    /// The spec hash being rolled out.
    pub hash: String,
    /// When the update started or last made progress.
    pub progress_at: Instant,
    /// New replicas available at `progress_at` (progress is this number growing).
    pub available: u32,
    /// The update missed its progress deadline and is rolled back.
    pub rolled_back: bool,
}

/// An update that has just been rolled back, for the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RolledBack {
    /// The object.
    pub key: ObjectKey,
    /// The spec hash that did not make progress.
    pub hash: String,
    /// New replicas available when the deadline passed.
    pub available: u32,
    /// The object's `progressDeadlineSeconds`.
    pub deadline: Duration,
}

/// Rolling-update progress of every object being updated, and readiness times of containers.
#[derive(Clone, Debug, Default)]
pub struct RolloutBook {
    entries: BTreeMap<ObjectKey, RolloutEntry>,
    ready_since: BTreeMap<String, Instant>,
    wake: Option<Instant>,
}

/// True when the object has containers an update is not done with: a replica with another spec
/// hash, a surge container or a previous container. `containers` are the object's own.
fn updating(key: &ObjectKey, dc: &DesiredContainer, containers: &[&ObservedContainer]) -> bool {
    containers.iter().any(|c| {
        c.replica.is_some_and(|r| r < dc.replicas)
            && (c.hash.as_deref() != Some(dc.hash.as_str()) || {
                let r = c.replica.unwrap_or(0);
                let name = labels::container_name(key, r, dc.container_name.as_deref());
                matches!(
                    labels::ReplicaRole::of(&c.name, &name),
                    labels::ReplicaRole::Surge | labels::ReplicaRole::Previous
                )
            })
    })
}

impl RolloutBook {
    /// The update of `key`, if one is tracked.
    pub fn get(&self, key: &ObjectKey) -> Option<&RolloutEntry> {
        self.entries.get(key)
    }

    /// True when container `c` counts as available: ready, and — when it runs the spec being
    /// rolled out (`new`) — ready for at least `min_ready`. Old containers count as soon as they
    /// are ready (their readiness time is unknown after an agent restart).
    pub fn available(
        &self,
        c: &ObservedContainer,
        new: bool,
        min_ready: Duration,
        now: Instant,
    ) -> bool {
        c.ready()
            && (!new
                || min_ready.is_zero()
                || self
                    .ready_since
                    .get(&c.id)
                    .is_some_and(|t| now.saturating_duration_since(*t) >= min_ready))
    }

    /// Updates readiness times and update progress from one relist; returns the updates whose
    /// progress deadline passed just now (they are rolled back from now on).
    pub fn observe(
        &mut self,
        desired: &DesiredState,
        observed: &ObservedState,
        now: Instant,
    ) -> Vec<RolledBack> {
        let ids: BTreeSet<&str> = observed.containers.iter().map(|c| c.id.as_str()).collect();
        self.ready_since.retain(|id, _| ids.contains(id.as_str()));
        for c in &observed.containers {
            if c.ready() {
                self.ready_since.entry(c.id.clone()).or_insert(now);
            } else {
                self.ready_since.remove(&c.id);
            }
        }
        let mut wake: Option<Instant> = None;
        let mut soonest = |t: Instant| {
            if t > now {
                wake = Some(wake.map_or(t, |w| w.min(t)));
            }
        };
        let mut rolled_back = Vec::new();
        let mut keep = BTreeSet::new();
        // Each object's containers, found once (not one scan of the engine's list per object).
        let mut by_key: BTreeMap<&ObjectKey, Vec<&ObservedContainer>> = BTreeMap::new();
        for c in &observed.containers {
            if let Some(k) = &c.key {
                by_key.entry(k).or_default().push(c);
            }
        }
        for (key, dc) in &desired.containers {
            let own = by_key.get(key).map_or(&[][..], Vec::as_slice);
            if !updating(key, dc, own) {
                continue;
            }
            keep.insert(key.clone());
            let mut available = 0;
            for c in own.iter().filter(|c| {
                c.replica.is_some_and(|r| r < dc.replicas)
                    && c.hash.as_deref() == Some(dc.hash.as_str())
            }) {
                if self.available(c, true, dc.rollout.min_ready, now) {
                    available += 1;
                } else if let Some(t) = self.ready_since.get(&c.id) {
                    soonest(*t + dc.rollout.min_ready);
                }
            }
            let e = self
                .entries
                .entry(key.clone())
                .and_modify(|e| {
                    if e.hash != dc.hash {
                        *e = RolloutEntry {
                            hash: dc.hash.clone(),
                            progress_at: now,
                            available,
                            rolled_back: false,
                        };
                    }
                })
                .or_insert_with(|| RolloutEntry {
                    hash: dc.hash.clone(),
                    progress_at: now,
                    available,
                    rolled_back: false,
                });
            if e.rolled_back {
                continue;
            }
            if available > e.available {
                e.available = available;
                e.progress_at = now;
            }
            let deadline = e.progress_at + dc.rollout.progress_deadline;
            if now >= deadline {
                e.rolled_back = true;
                rolled_back.push(RolledBack {
                    key: key.clone(),
                    hash: e.hash.clone(),
                    available: e.available,
                    deadline: dc.rollout.progress_deadline,
                });
            } else {
                soonest(deadline);
            }
        }
        self.entries.retain(|k, _| keep.contains(k));
        self.wake = wake;
        rolled_back
    }

    /// True while an update is under way (tracked and not rolled back) as of the last
    /// [`RolloutBook::observe`].
    pub fn in_progress(&self) -> bool {
        self.entries.values().any(|e| !e.rolled_back)
    }

    /// When a readiness time reaches `minReadySeconds` or a progress deadline passes, if after
    /// `now`: a pass is due then.
    pub fn next_due(&self, now: Instant) -> Option<Instant> {
        self.wake.filter(|t| *t > now)
    }
}
