//! The typed vocabulary between `plan` and everything downstream: why an object waits
//! ([`WaitReason`]) and why an action failed ([`FailureKind`], [`Failure`]).
//!
//! Every consumer — conditions, `apply`/`diff` output, the agent's log, status Events — matches
//! on these types. Each classification below is an exhaustive `match`: a new reason that is
//! not classified does not compile.

use std::fmt;

/// Why an object (replica) does not converge now. The wire string ([`WaitReason::as_str`]) is
/// the CamelCase reason of status entries and log lines; Kubernetes' own where it has one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum WaitReason {
    /// A name berth wants is held by an object berth does not manage (or another source
    /// declares the same object).
    Conflict,
    /// A reference (network, volume, dependency, `networkMode: container:`) names nothing usable.
    InvalidReference,
    /// A network or volume the container needs is unavailable (conflict, backoff).
    DependencyBlocked,
    /// A `dependsOn` condition does not hold yet.
    WaitingForDependency,
    /// The owner's last action failed; retried after a backoff.
    BackOff,
    /// The owner's last pull failed (Kubernetes' `ImagePullBackOff`).
    ImagePullBackOff,
    /// The image is missing and `pullPolicy` is `Never` (Kubernetes' `ErrImageNeverPull`).
    ErrImageNeverPull,
    /// The image's build (`spec.build`) failed; retried after a back-off per spec hash and
    /// build hash (a changed context or Dockerfile retries at once). The old container keeps
    /// running.
    BuildFailed,
    /// An exited container waits for its restart (Kubernetes' `CrashLoopBackOff`).
    CrashLoopBackOff,
    /// A running container fails its health check or liveness probe and waits for its restart.
    Unhealthy,
    /// A network that is no longer declared is still used by a container berth keeps.
    NetworkInUse,
    /// A volume differs from its spec; volumes are never recreated.
    VolumeSpecChanged,
    /// A rolling update is under way: the replica waits its turn or for the new container.
    RollingUpdate,
    /// The update made no progress within `progressDeadlineSeconds` and was rolled back.
    RolledBack,
    /// Nothing is removed while the desired set is incomplete.
    RemovalPaused,
    /// Earlier actions for the object are still being carried out (agent only).
    InProgress,
    /// The security policy refuses the object as declared (see [`crate::policy`]); the
    /// version applied before, if any, stays in force.
    PolicyViolation,
}

/// How a waiting reason shows in the object's host state (and so in its conditions).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostEffect {
    /// The object cannot converge until something changes: `Degraded`.
    Degraded,
    /// The object is on its way: `Progressing`, with this reason and message.
    Progressing,
    /// The state computed from the observed containers and the planned actions stands.
    None,
}

impl WaitReason {
    /// Every reason, for tables and tests.
    pub const ALL: [WaitReason; 17] = [
        WaitReason::Conflict,
        WaitReason::InvalidReference,
        WaitReason::DependencyBlocked,
        WaitReason::WaitingForDependency,
        WaitReason::BackOff,
        WaitReason::ImagePullBackOff,
        WaitReason::ErrImageNeverPull,
        WaitReason::BuildFailed,
        WaitReason::CrashLoopBackOff,
        WaitReason::Unhealthy,
        WaitReason::NetworkInUse,
        WaitReason::VolumeSpecChanged,
        WaitReason::RollingUpdate,
        WaitReason::RolledBack,
        WaitReason::RemovalPaused,
        WaitReason::InProgress,
        WaitReason::PolicyViolation,
    ];

    /// The wire string (CamelCase), as in status entries, logs and `apply` output.
    pub fn as_str(self) -> &'static str {
        match self {
            WaitReason::Conflict => "Conflict",
            WaitReason::InvalidReference => "InvalidReference",
            WaitReason::DependencyBlocked => "DependencyBlocked",
            WaitReason::WaitingForDependency => "WaitingForDependency",
            WaitReason::BackOff => "BackOff",
            WaitReason::ImagePullBackOff => "ImagePullBackOff",
            WaitReason::ErrImageNeverPull => "ErrImageNeverPull",
            WaitReason::BuildFailed => "BuildFailed",
            WaitReason::CrashLoopBackOff => "CrashLoopBackOff",
            WaitReason::Unhealthy => "Unhealthy",
            WaitReason::NetworkInUse => "NetworkInUse",
            WaitReason::VolumeSpecChanged => "VolumeSpecChanged",
            WaitReason::RollingUpdate => "RollingUpdate",
            WaitReason::RolledBack => "RolledBack",
            WaitReason::RemovalPaused => "RemovalPaused",
            WaitReason::InProgress => "InProgress",
            WaitReason::PolicyViolation => "PolicyViolation",
        }
    }

    /// What the reason does to the object's host state: `Degraded` when it cannot converge
    /// until something changes (its input, the engine, a backoff running out while the cause
    /// persists), `Progressing` for a rolling update on its way.
    pub fn host_effect(self) -> HostEffect {
        match self {
            WaitReason::Conflict
            | WaitReason::InvalidReference
            | WaitReason::DependencyBlocked
            | WaitReason::BackOff
            | WaitReason::ImagePullBackOff
            | WaitReason::ErrImageNeverPull
            | WaitReason::BuildFailed
            | WaitReason::CrashLoopBackOff
            | WaitReason::Unhealthy
            | WaitReason::NetworkInUse
            | WaitReason::VolumeSpecChanged
            | WaitReason::RolledBack
            | WaitReason::PolicyViolation => HostEffect::Degraded,
            WaitReason::RollingUpdate => HostEffect::Progressing,
            WaitReason::WaitingForDependency
            | WaitReason::RemovalPaused
            | WaitReason::InProgress => HostEffect::None,
        }
    }

    /// True when the object is `Degraded` while it waits for this reason.
    pub fn degraded(self) -> bool {
        self.host_effect() == HostEffect::Degraded
    }

    /// True when `berth apply` fails (exit 1) while an object still waits for this reason when
    /// it ends: the object is not running as declared (blocked, backing off, crash-looping,
    /// waiting for a dependency or an update at `--timeout`). Only the agent's own
    /// bookkeeping reasons, which a one-shot `apply` never meets, are not listed.
    pub fn blocks_apply(self) -> bool {
        match self {
            WaitReason::Conflict
            | WaitReason::InvalidReference
            | WaitReason::DependencyBlocked
            | WaitReason::NetworkInUse
            | WaitReason::VolumeSpecChanged
            | WaitReason::RolledBack
            | WaitReason::WaitingForDependency
            | WaitReason::BackOff
            | WaitReason::ImagePullBackOff
            | WaitReason::ErrImageNeverPull
            | WaitReason::BuildFailed
            | WaitReason::CrashLoopBackOff
            | WaitReason::Unhealthy
            | WaitReason::RollingUpdate
            | WaitReason::PolicyViolation => true,
            WaitReason::RemovalPaused | WaitReason::InProgress => false,
        }
    }

    /// True for backoffs, whose messages count attempts and change on every pass (the agent
    /// logs such a reason once, not once per message).
    pub fn is_backoff(self) -> bool {
        match self {
            WaitReason::BackOff
            | WaitReason::ImagePullBackOff
            | WaitReason::ErrImageNeverPull
            | WaitReason::BuildFailed
            | WaitReason::CrashLoopBackOff
            | WaitReason::Unhealthy => true,
            WaitReason::Conflict
            | WaitReason::InvalidReference
            | WaitReason::DependencyBlocked
            | WaitReason::WaitingForDependency
            | WaitReason::NetworkInUse
            | WaitReason::VolumeSpecChanged
            | WaitReason::RollingUpdate
            | WaitReason::RolledBack
            | WaitReason::RemovalPaused
            | WaitReason::InProgress
            | WaitReason::PolicyViolation => false,
        }
    }

    /// True when the agent logs the reason as "not converging" (not for `InProgress`: the
    /// object's own actions are running; not for `PolicyViolation`: the agent logs the refusal
    /// itself when it appears or changes, with each field, rule and source).
    pub fn logged(self) -> bool {
        match self {
            WaitReason::InProgress => false,
            WaitReason::Conflict
            | WaitReason::InvalidReference
            | WaitReason::DependencyBlocked
            | WaitReason::WaitingForDependency
            | WaitReason::BackOff
            | WaitReason::ImagePullBackOff
            | WaitReason::ErrImageNeverPull
            | WaitReason::BuildFailed
            | WaitReason::CrashLoopBackOff
            | WaitReason::Unhealthy
            | WaitReason::NetworkInUse
            | WaitReason::VolumeSpecChanged
            | WaitReason::RollingUpdate
            | WaitReason::RolledBack
            | WaitReason::RemovalPaused => true,
            WaitReason::PolicyViolation => false,
        }
    }

    /// The reason an owner waits with after a failure of `kind`: `ImagePullBackOff` after a
    /// failed pull, `ErrImageNeverPull` for a missing image with `pullPolicy: Never`
    /// (Kubernetes' reasons), else `BackOff`.
    pub fn after_failure(kind: FailureKind) -> WaitReason {
        match kind {
            FailureKind::ImagePull => WaitReason::ImagePullBackOff,
            FailureKind::ImageNeverPull => WaitReason::ErrImageNeverPull,
            FailureKind::Build => WaitReason::BuildFailed,
            FailureKind::Engine | FailureKind::ReplacementStopped => WaitReason::BackOff,
        }
    }
}

impl fmt::Display for WaitReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What kind of failure an action had, decided where the engine error is known (the engine
/// adapter) and carried through the executor's outcome into the retry book.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FailureKind {
    /// Pulling the image failed (Kubernetes' `ErrImagePull`).
    ImagePull,
    /// The image is missing and `pullPolicy` is `Never` (Kubernetes' `ErrImageNeverPull`).
    ImageNeverPull,
    /// Building the image (`spec.build`) failed: a step of the Dockerfile, or the context.
    Build,
    /// Any other engine failure (create, start, remove, network, volume…).
    Engine,
    /// The new container of a stop-first replacement started but stopped before the update
    /// was done, so the previous container was restored (decided by the agent, which sees the
    /// restore planned; no engine error).
    ReplacementStopped,
}

/// A failed (or skipped) action: its kind and the message to show.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// The kind; an action skipped because a dependency failed has the dependency's kind.
    pub kind: FailureKind,
    /// Human-readable error (never a Secret value).
    pub message: String,
}

impl Failure {
    /// A failure of `kind` with `message`.
    pub fn new(kind: FailureKind, message: impl Into<String>) -> Failure {
        Failure {
            kind,
            message: message.into(),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

#[cfg(test)]
mod tests {
    use super::*;

    /// The classification as a table, so that a change to it is a visible change here.
    #[test]
    fn classification_table() {
        let degraded: Vec<&str> = WaitReason::ALL
            .iter()
            .filter(|r| r.degraded())
            .map(|r| r.as_str())
            .collect();
        assert_eq!(
            degraded,
            [
                "Conflict",
                "InvalidReference",
                "DependencyBlocked",
                "BackOff",
                "ImagePullBackOff",
                "ErrImageNeverPull",
                "BuildFailed",
                "CrashLoopBackOff",
                "Unhealthy",
                "NetworkInUse",
                "VolumeSpecChanged",
                "RolledBack",
                "PolicyViolation"
            ]
        );
        let blocking: Vec<&str> = WaitReason::ALL
            .iter()
            .filter(|r| r.blocks_apply())
            .map(|r| r.as_str())
            .collect();
        let not_blocking: Vec<&str> = WaitReason::ALL
            .iter()
            .filter(|r| !r.blocks_apply())
            .map(|r| r.as_str())
            .collect();
        assert_eq!(
            not_blocking,
            ["RemovalPaused", "InProgress"],
            "{blocking:?}"
        );
        assert_eq!(
            WaitReason::RollingUpdate.host_effect(),
            HostEffect::Progressing
        );
        assert!(!WaitReason::InProgress.logged());
        assert!(!WaitReason::PolicyViolation.logged(), "logged as a refusal");
    }

    #[test]
    fn failure_kinds_map_to_kubernetes_reasons() {
        assert_eq!(
            WaitReason::after_failure(FailureKind::ImagePull),
            WaitReason::ImagePullBackOff
        );
        assert_eq!(
            WaitReason::after_failure(FailureKind::ImageNeverPull),
            WaitReason::ErrImageNeverPull
        );
        assert_eq!(
            WaitReason::after_failure(FailureKind::Build),
            WaitReason::BuildFailed
        );
        assert_eq!(
            WaitReason::after_failure(FailureKind::Engine),
            WaitReason::BackOff
        );
        assert_eq!(
            WaitReason::after_failure(FailureKind::ReplacementStopped),
            WaitReason::BackOff
        );
    }
}
