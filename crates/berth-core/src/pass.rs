//! One pure pass: the bookkeeping around [`plan`](crate::plan::plan) that the agent, `berth
//! apply`, `berth diff` and the tests all share.
//!
//! In order: forget restart counts that expired, observe rolling-update progress (rolling back
//! an update past its deadline), plan, drop the owners whose earlier actions are still being
//! carried out, and count the restarts the plan makes (CrashLoopBackOff). No clock and no I/O:
//! the caller passes `now` and logs what [`Pass`] reports.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::backoff::{Backoff, RetryBook};
use crate::desired::{DesiredState, Owner};
use crate::intent::Intent;
use crate::observed::{ObservedState, RunState};
use crate::plan::{Plan, plan};
use crate::rollout::RolledBack;

/// How long a restarted container must run before its CrashLoopBackOff count is forgotten
/// (Kubernetes: 10 minutes).
pub const CRASH_RESET: Duration = Duration::from_secs(600);

/// A restart the plan makes, as counted in the retry book.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Restart {
    /// The replica.
    pub owner: Owner,
    /// True for a running container failing its health check or liveness probe; false for
    /// an exited one.
    pub unhealthy: bool,
    /// Restarts counted so far, this one included.
    pub attempts: u32,
    /// No further restart before this instant.
    pub not_before: Instant,
}

/// What one pass decided.
#[derive(Clone, Debug, Default)]
pub struct Pass {
    /// The plan to execute (busy owners' actions left out).
    pub plan: Plan,
    /// Rolling updates that passed their progress deadline in this pass.
    pub rolled_back: Vec<RolledBack>,
    /// Restarts the plan makes, already counted in the retry book.
    pub restarts: Vec<Restart>,
}

/// One pass over `desired` and `observed` at `now`: expire restarts → observe rollouts →
/// plan → drop `busy` owners → record restarts (with `crash_backoff`). Updates `book`.
pub fn pass(
    desired: &DesiredState,
    observed: &ObservedState,
    book: &mut RetryBook,
    busy: &BTreeSet<Owner>,
    crash_backoff: Backoff,
    now: Instant,
) -> Pass {
    let running: BTreeSet<Owner> = observed
        .containers
        .iter()
        .filter(|c| c.state == RunState::Running && !c.failing())
        .filter_map(|c| Some(Owner::replica(c.key.clone()?, c.replica?)))
        .collect();
    book.expire_restarts(
        now,
        CRASH_RESET,
        |owner, hash| wanted(desired, owner, hash),
        |owner| running.contains(owner),
    );
    book.settle_replacements(|owner, hash| settled(observed, owner, hash));
    let rolled_back = book.rollouts.observe(desired, observed, now);
    let mut plan = plan(desired, observed, book, now);
    if !busy.is_empty() {
        plan = plan.without_owners(busy);
    }
    let mut restarts = Vec::new();
    for a in &plan.actions {
        let (unhealthy, exit_code) = match &a.intent {
            Intent::Restart { exit_code, .. } => (false, *exit_code),
            Intent::RestartUnhealthy { .. } => (true, None),
            _ => continue,
        };
        let e = book.record_restart(a.owner.clone(), &a.hash, now, crash_backoff, exit_code);
        restarts.push(Restart {
            owner: a.owner.clone(),
            unhealthy,
            attempts: e.attempts,
            not_before: e.not_before,
        });
    }
    Pass {
        plan,
        rolled_back,
        restarts,
    }
}

/// True when `owner`'s replica runs spec `hash` and is ready, and nothing of it runs or is
/// kept at another spec (no `_prev` to roll back to): its update is done.
fn settled(observed: &ObservedState, owner: &Owner, hash: &str) -> bool {
    let mut ready = false;
    for c in observed
        .containers
        .iter()
        .filter(|c| c.key.as_ref() == Some(&owner.key) && c.replica == owner.replica)
    {
        if c.hash.as_deref() != Some(hash) {
            return false;
        }
        ready |= c.ready();
    }
    ready
}

/// True when the desired state still wants `owner` at `hash` (its retry entry stays relevant).
pub fn wanted(desired: &DesiredState, owner: &Owner, hash: &str) -> bool {
    let key = &owner.key;
    desired.containers.get(key).is_some_and(|c| c.hash == hash)
        || desired.networks.get(key).is_some_and(|n| n.hash == hash)
        || desired.volumes.get(key).is_some_and(|v| v.hash == hash)
}
