//! Backoff arithmetic and the retry book (no clock: callers pass `now`).
//!
//! Two kinds of entries, both keyed by owner and valid only for one spec hash (so fixing the
//! spec resets them):
//! - **failures** of planned actions (pull, create, start…): retried after an exponential delay;
//! - **restarts** of exited containers: Kubernetes' CrashLoopBackOff — 10 s, doubling, capped at
//!   300 s, forgotten after the container has run 10 minutes without a restart.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::time::{Duration, Instant};

use crate::desired::Owner;
use crate::reason::{Failure, FailureKind};

/// Delays of one backoff sequence: `initial · 2^(n-1)` for the n-th attempt, capped at `cap`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// Delay after the first attempt.
    pub initial: Duration,
    /// Largest delay.
    pub cap: Duration,
}

impl Backoff {
    /// Kubernetes' CrashLoopBackOff: 10 s initial, 300 s cap.
    pub const CRASH_LOOP: Backoff = Backoff {
        initial: Duration::from_secs(10),
        cap: Duration::from_secs(300),
    };

    /// Failed actions: 1 s initial, 300 s cap.
    pub const FAILURE: Backoff = Backoff {
        initial: Duration::from_secs(1),
        cap: Duration::from_secs(300),
    };

    /// Delay before the attempt that follows `attempts` earlier ones (`attempts` ≥ 1).
    pub fn delay(&self, attempts: u32) -> Duration {
        let exp = attempts.saturating_sub(1).min(31);
        self.initial.saturating_mul(1u32 << exp).min(self.cap)
    }
}

/// What an entry counts. An owner has at most one entry of each kind, so a failed action does
/// not reset its CrashLoopBackOff count, nor a restart its failure backoff.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum RetryKind {
    /// Failed actions.
    Failure,
    /// Restarts of an exited container.
    Restart,
}

/// Retry state of one owner.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryEntry {
    /// Spec hash the entry applies to; another hash means a fresh start.
    pub hash: String,
    /// What is counted.
    pub kind: RetryKind,
    /// Attempts so far (failures, or restarts).
    pub attempts: u32,
    /// No new attempt before this instant.
    pub not_before: Instant,
    /// When the last attempt was made.
    pub last_attempt: Instant,
    /// Last error message (failures only).
    pub last_error: Option<String>,
    /// Kind of the last failure (failures only): decides the waiting reason.
    pub failure: Option<FailureKind>,
    /// Exit code of the run before the last restart (restarts of exited containers only).
    pub exit_code: Option<i64>,
}

/// Retry state of every owner, and the progress of rolling updates.
#[derive(Clone, Debug, Default)]
pub struct RetryBook {
    entries: BTreeMap<(Owner, RetryKind), RetryEntry>,
    /// Rolling-update progress and readiness times; updated by
    /// [`RolloutBook::observe`](crate::rollout::RolloutBook::observe) before each plan.
    pub rollouts: crate::rollout::RolloutBook,
}

impl RetryBook {
    /// `owner`'s entry of `kind`, if it applies to `hash`.
    pub fn get(&self, owner: &Owner, hash: &str, kind: RetryKind) -> Option<&RetryEntry> {
        self.entries
            .get(&(owner.clone(), kind))
            .filter(|e| e.hash == hash)
    }

    /// When the next attempt after a failure for (`owner`, `hash`) may happen, if that is after
    /// `now`.
    pub fn blocked_until(&self, owner: &Owner, hash: &str, now: Instant) -> Option<Instant> {
        self.get(owner, hash, RetryKind::Failure)
            .map(|e| e.not_before)
            .filter(|t| *t > now)
    }

    /// Records a failed attempt; `delay` maps the attempt count to a delay (jitter is the caller's).
    pub fn record_failure(
        &mut self,
        owner: Owner,
        hash: &str,
        now: Instant,
        failure: Failure,
        delay: impl Fn(u32) -> Duration,
    ) -> &RetryEntry {
        let e = self.record(owner, hash, RetryKind::Failure, now, delay);
        e.last_error = Some(failure.message);
        e.failure = Some(failure.kind);
        e
    }

    /// Records a restart of a container that exited with `exit_code` (`None`: restarted while
    /// running, for failing its health check or liveness probe).
    pub fn record_restart(
        &mut self,
        owner: Owner,
        hash: &str,
        now: Instant,
        backoff: Backoff,
        exit_code: Option<i64>,
    ) -> &RetryEntry {
        let e = self.record(owner, hash, RetryKind::Restart, now, |n| backoff.delay(n));
        e.exit_code = exit_code;
        e
    }

    /// Counts one more attempt of (`owner`, `kind`) at `hash` (the first, for another hash) and
    /// sets its delay; the caller fills in the details.
    fn record(
        &mut self,
        owner: Owner,
        hash: &str,
        kind: RetryKind,
        now: Instant,
        delay: impl Fn(u32) -> Duration,
    ) -> &mut RetryEntry {
        let key = (owner, kind);
        let attempts = match self.entries.get(&key) {
            Some(e) if e.hash == hash => e.attempts + 1,
            _ => 1,
        };
        let entry = RetryEntry {
            hash: hash.to_string(),
            kind,
            attempts,
            not_before: now
                .checked_add(delay(attempts))
                .unwrap_or(now + Backoff::FAILURE.cap),
            last_attempt: now,
            last_error: None,
            failure: None,
            exit_code: None,
        };
        match self.entries.entry(key) {
            Entry::Occupied(mut o) => {
                o.insert(entry);
                o.into_mut()
            }
            Entry::Vacant(v) => v.insert(entry),
        }
    }

    /// Forgets an owner's failures at `hash` (its actions for that spec all succeeded). A
    /// failure at another hash stays: restoring the previous container after a failed
    /// replacement succeeds without clearing the new spec's back-off. Restart entries are
    /// kept: they expire through [`RetryBook::expire_restarts`].
    ///
    /// An undone replacement ([`FailureKind::ReplacementStopped`]) stays too: each new attempt's
    /// actions succeed (its container is created and started, then stops), so clearing it
    /// then would keep the count at 1 and retry every 10 s for ever; it is forgotten once the
    /// update is done ([`RetryBook::settle_replacements`]).
    pub fn clear_failures(&mut self, owner: &Owner, hash: &str) {
        let key = (owner.clone(), RetryKind::Failure);
        if self
            .entries
            .get(&key)
            .is_some_and(|e| e.hash == hash && e.failure != Some(FailureKind::ReplacementStopped))
        {
            self.entries.remove(&key);
        }
    }

    /// Forgets the undone replacements of owners that now run their spec (`settled` says so
    /// for an owner and the spec hash of its entry).
    pub fn settle_replacements(&mut self, settled: impl Fn(&Owner, &str) -> bool) {
        self.entries.retain(|(owner, kind), e| {
            !(*kind == RetryKind::Failure
                && e.failure == Some(FailureKind::ReplacementStopped)
                && settled(owner, &e.hash))
        });
    }

    /// Forgets restart counts of containers that have been running (`running` returns true)
    /// for `reset_after` since their last restart, and entries whose owner/hash is no longer
    /// wanted (`keep` returns false). Kubernetes resets CrashLoopBackOff after 10 minutes of
    /// running.
    pub fn expire_restarts(
        &mut self,
        now: Instant,
        reset_after: Duration,
        keep: impl Fn(&Owner, &str) -> bool,
        running: impl Fn(&Owner) -> bool,
    ) {
        self.entries.retain(|(owner, _), e| {
            keep(owner, &e.hash)
                && !(e.kind == RetryKind::Restart
                    && running(owner)
                    && now.saturating_duration_since(e.last_attempt) >= reset_after)
        });
    }

    /// All entries.
    pub fn iter(&self) -> impl Iterator<Item = (&Owner, &RetryEntry)> {
        self.entries.iter().map(|((owner, _), e)| (owner, e))
    }

    /// Earliest `not_before` after `now`, or rolling-update time ([`RolloutBook::next_due`]):
    /// when the next pass falls due.
    ///
    /// [`RolloutBook::next_due`]: crate::rollout::RolloutBook::next_due
    pub fn next_due(&self, now: Instant) -> Option<Instant> {
        self.entries
            .values()
            .map(|e| e.not_before)
            .chain(self.rollouts.next_due(now))
            .filter(|t| *t > now)
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_api::{Kind, ObjectKey};

    #[test]
    fn crash_loop_sequence_matches_kubernetes() {
        let d: Vec<u64> = (1..=7)
            .map(|n| Backoff::CRASH_LOOP.delay(n).as_secs())
            .collect();
        assert_eq!(d, vec![10, 20, 40, 80, 160, 300, 300]);
        assert_eq!(Backoff::CRASH_LOOP.delay(1000).as_secs(), 300);
    }

    /// Found by a new-user review: a crash-looping new version was retried every few seconds
    /// for ever, each attempt stopping the old container: the success of the next attempt's
    /// create cleared the count, which never passed 1.
    #[test]
    fn an_undone_replacement_counts_until_the_update_is_done() {
        let owner = Owner::replica(ObjectKey::new(Kind::Container, "default", "web"), 0);
        let t0 = Instant::now();
        let mut book = RetryBook::default();
        let undone = || Failure::new(FailureKind::ReplacementStopped, "stopped");
        book.record_failure(owner.clone(), "v1-b", t0, undone(), |n| {
            Backoff::FAILURE.delay(n)
        });
        book.clear_failures(&owner, "v1-b");
        let e = book.record_failure(owner.clone(), "v1-b", t0, undone(), |n| {
            Backoff::FAILURE.delay(n)
        });
        assert_eq!(
            e.attempts, 2,
            "the next attempt's success does not reset the count"
        );
        book.settle_replacements(|_, _| false);
        assert!(book.get(&owner, "v1-b", RetryKind::Failure).is_some());
        book.settle_replacements(|o, h| o == &owner && h == "v1-b");
        assert!(book.get(&owner, "v1-b", RetryKind::Failure).is_none());
        // Other failures are still cleared by success.
        let engine = Failure::new(FailureKind::Engine, "409");
        book.record_failure(owner.clone(), "v1-b", t0, engine, |n| {
            Backoff::FAILURE.delay(n)
        });
        book.clear_failures(&owner, "v1-b");
        assert!(book.get(&owner, "v1-b", RetryKind::Failure).is_none());
    }

    #[test]
    fn a_failure_keeps_the_crash_loop_count() {
        let owner = Owner::replica(ObjectKey::new(Kind::Container, "default", "web"), 0);
        let t0 = Instant::now();
        let mut book = RetryBook::default();
        for _ in 0..3 {
            book.record_restart(owner.clone(), "v1-a", t0, Backoff::CRASH_LOOP, Some(1));
        }
        let failure = Failure::new(FailureKind::Engine, "rename failed");
        book.record_failure(owner.clone(), "v1-a", t0, failure, |n| {
            Backoff::FAILURE.delay(n)
        });
        book.clear_failures(&owner, "v0-other");
        assert!(book.get(&owner, "v1-a", RetryKind::Failure).is_some());
        book.clear_failures(&owner, "v1-a");
        let e = book.record_restart(owner.clone(), "v1-a", t0, Backoff::CRASH_LOOP, Some(1));
        assert_eq!(e.attempts, 4, "the fourth restart waits 80 s, not 10 s");
        assert_eq!(e.not_before, t0 + Duration::from_secs(80));
        assert!(book.get(&owner, "v1-a", RetryKind::Failure).is_none());
    }

    #[test]
    fn spec_change_resets_and_restart_expires() {
        let owner = Owner::replica(ObjectKey::new(Kind::Container, "default", "web"), 0);
        let t0 = Instant::now();
        let mut book = RetryBook::default();
        book.record_restart(owner.clone(), "v1-a", t0, Backoff::CRASH_LOOP, Some(1));
        let e = book.record_restart(owner.clone(), "v1-a", t0, Backoff::CRASH_LOOP, Some(1));
        assert_eq!(e.attempts, 2);
        assert_eq!(
            book.get(&owner, "v1-a", RetryKind::Restart)
                .map(|e| e.not_before),
            Some(t0 + Duration::from_secs(20))
        );
        assert_eq!(
            book.get(&owner, "v1-b", RetryKind::Restart),
            None,
            "new hash: no backoff"
        );
        let ten_min = Duration::from_secs(600);
        book.expire_restarts(t0 + ten_min, ten_min, |_, _| true, |_| false);
        assert!(
            book.get(&owner, "v1-a", RetryKind::Restart).is_some(),
            "not running: kept"
        );
        book.expire_restarts(
            t0 + Duration::from_secs(599),
            ten_min,
            |_, _| true,
            |_| true,
        );
        assert!(
            book.get(&owner, "v1-a", RetryKind::Restart).is_some(),
            "running for less than 10 minutes: kept"
        );
        book.expire_restarts(t0 + ten_min, ten_min, |_, _| true, |_| true);
        assert!(
            book.get(&owner, "v1-a", RetryKind::Restart).is_none(),
            "running for 10 minutes: forgotten"
        );
    }
}
