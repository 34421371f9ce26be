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
//!
//! # Phases
//!
//! [`plan`] reads as the list of its phases, each a method of the [`Planner`] that owns what
//! the phases share (the plan being built, the state of each network and volume, the shared
//! image actions, the containers claimed and being removed):
//!
//! 1. **blocked objects** (`InvalidReference`) and objects the policy refuses
//!    (`PolicyViolation`) — [`Planner::blocked_objects`];
//! 2. **networks**: create, or recreate on a spec change (the removal of the old one is
//!    ordered in phase 6) — `dependencies.rs`;
//! 3. **volumes**: create when missing, never recreate — `dependencies.rs`;
//! 4. **containers**, in dependency order: per object its networks and volumes, its rolling
//!    update's step per replica (`rollout.rs`), then one flat decision per replica
//!    (`containers.rs`, the shape of kubelet's `computePodActions`); images are planned with
//!    the first create that needs them and shared: pulled, or built (`spec.build`, when the
//!    tag's image is missing or carries another build hash — `images.rs`);
//! 5. **orphans**: berth's containers that no declared replica claims — `removals.rs`;
//! 6. **removal order**: networks after the containers attached to them, volumes last, and a
//!    topological renumbering — `removals.rs`.
//!
//! [`crate::pass::pass`] wraps `plan` with the bookkeeping around it (restart expiry, rolling
//! update progress, busy owners, restart counts).

mod action;
mod checks;
mod containers;
mod dependencies;
mod images;
mod removals;
mod rollout;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use berth_api::{ObjectKey, PullPolicy};

pub use action::{Action, Plan, PlannedAction, Waiting};

use crate::backoff::RetryBook;
use crate::desired::{DesiredState, Owner};
use crate::observed::{ObservedContainer, ObservedState};
use crate::reason::WaitReason;

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
    let mut planner = Planner::new(desired, observed, retries, now);
    planner.blocked_objects();
    planner.networks();
    planner.volumes();
    planner.containers();
    planner.orphans();
    planner.removal_order();
    planner.finish()
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

/// A network to remove once its containers are gone: an orphan, or the old network of a
/// network being recreated (`create` is then the action creating the new one).
struct NetworkRemoval {
    owner: Owner,
    id: String,
    name: String,
    create: Option<usize>,
}

/// What the phases of one [`plan`] share.
pub(crate) struct Planner<'a> {
    desired: &'a DesiredState,
    observed: &'a ObservedState,
    retries: &'a RetryBook,
    now: Instant,
    /// The plan being built.
    p: Plan,
    /// Every desired network's state for the containers that use it.
    nets: BTreeMap<&'a ObjectKey, Dep>,
    /// Networks to remove, ordered in [`Planner::removal_order`].
    net_removals: Vec<NetworkRemoval>,
    /// Every desired volume's state for the containers that use it.
    vols: BTreeMap<&'a ObjectKey, Dep>,
    /// Volumes to remove (owner, engine name): undeclared, `reclaimPolicy: Delete`.
    vol_removals: Vec<(Owner, String)>,
    /// The shared `EnsureImage` action per (image, pull policy, pull secrets).
    images: BTreeMap<(String, PullPolicy, &'a [String]), usize>,
    /// The shared `BuildImage` action per build hash (`spec.build`).
    builds: BTreeMap<&'a str, usize>,
    /// IDs of containers a declared replica claims (not orphans).
    claimed: BTreeSet<&'a str>,
    /// Container ID → the action removing it.
    removing: BTreeMap<&'a str, usize>,
    /// Observed containers by (object, replica label).
    by_replica: BTreeMap<(&'a ObjectKey, u32), Vec<&'a ObservedContainer>>,
    /// Objects this plan changes (their dependents wait).
    changing: BTreeSet<&'a ObjectKey>,
    /// Creates that publish host ports; they wait for orphan removals (a renamed object's old
    /// container may hold the same port).
    publishing: Vec<usize>,
    /// Recreations of networks left out of this plan (create action, engine name): a container
    /// that this plan does not replace stays attached to the old network.
    held_networks: Vec<(usize, String)>,
}

impl<'a> Planner<'a> {
    fn new(
        desired: &'a DesiredState,
        observed: &'a ObservedState,
        retries: &'a RetryBook,
        now: Instant,
    ) -> Self {
        let mut by_replica: BTreeMap<(&ObjectKey, u32), Vec<&ObservedContainer>> = BTreeMap::new();
        for c in &observed.containers {
            if let (Some(k), Some(r)) = (&c.key, c.replica) {
                by_replica.entry((k, r)).or_default().push(c);
            }
        }
        Planner {
            desired,
            observed,
            retries,
            now,
            p: Plan::default(),
            nets: BTreeMap::new(),
            net_removals: Vec::new(),
            vols: BTreeMap::new(),
            vol_removals: Vec::new(),
            images: BTreeMap::new(),
            builds: BTreeMap::new(),
            claimed: BTreeSet::new(),
            removing: BTreeMap::new(),
            by_replica,
            changing: BTreeSet::new(),
            publishing: Vec::new(),
            held_networks: Vec::new(),
        }
    }

    /// Phase 1: objects whose references cannot be resolved, or that the security policy
    /// refuses, wait (their engine objects stay).
    fn blocked_objects(&mut self) {
        for (key, why) in &self.desired.blocked {
            self.p.wait(
                &Owner::object(key.clone()),
                WaitReason::InvalidReference,
                why.clone(),
                None,
            );
        }
        for (key, why) in &self.desired.refused {
            self.p.wait(
                &Owner::object(key.clone()),
                WaitReason::PolicyViolation,
                why.clone(),
                None,
            );
        }
    }

    /// The plan, in a valid execution order.
    fn finish(mut self) -> Plan {
        removals::hold_networks(&mut self.p, &self.held_networks);
        removals::reorder(&mut self.p);
        self.p
    }
}
