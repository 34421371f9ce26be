//! Why `plan` wants an action: the [`Intent`] every planned action carries, and the [`Drift`]
//! that makes a container be recreated.
//!
//! Downstream code (status Events, `apply`'s wait for rolling updates, the restart counter)
//! matches on intents; the [`Display`](std::fmt::Display) text is for people only.

use std::fmt;

use berth_api::RestartPolicy;

/// Why a container that exists must be replaced by a new one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Drift {
    /// Its spec hash is not the desired one.
    SpecChanged,
    /// It was created but never started (its files may be missing).
    NeverStarted,
    /// The engine reports it dead.
    Dead,
    /// A network it is attached to is replaced in this plan.
    NetworkReplacing {
        /// Engine name of the network.
        network: String,
    },
    /// It is not attached to a network it should be attached to.
    NotAttached {
        /// Engine name of the network.
        network: String,
    },
    /// It is attached to an older network of that name.
    NetworkReplaced {
        /// Engine name of the network.
        network: String,
    },
    /// The container whose network namespace it shares (`networkMode: container:`) was
    /// replaced.
    NamespaceTargetReplaced {
        /// Engine name of the other container.
        target: String,
    },
    /// `pullPolicy: Always`: its image reference names another image now.
    ImageMoved {
        /// The image reference.
        image: String,
        /// Short ID the reference names now.
        now: String,
        /// Short ID the container runs.
        running: String,
    },
}

impl fmt::Display for Drift {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Drift::SpecChanged => f.write_str("spec changed"),
            Drift::NeverStarted => f.write_str("created but never started"),
            Drift::Dead => f.write_str("container is dead"),
            Drift::NetworkReplacing { network } => {
                write!(f, "network {network} is being replaced")
            }
            Drift::NotAttached { network } => write!(f, "not attached to network {network}"),
            Drift::NetworkReplaced { network } => write!(f, "network {network} was replaced"),
            Drift::NamespaceTargetReplaced { target } => write!(
                f,
                "the container whose network namespace it shares ({target}) was replaced"
            ),
            Drift::ImageMoved {
                image,
                now,
                running,
            } => write!(
                f,
                "image {image} now names {now} (pullPolicy Always; running {running})"
            ),
        }
    }
}

/// Why an image is built (`spec.build`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BuildReason {
    /// No local image has the tag.
    ImageMissing,
    /// The image the tag names was built from another input (context files, Dockerfile, args
    /// or target), or not by berth: its `berth.dev/build-hash` label differs.
    ContextChanged,
}

impl fmt::Display for BuildReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BuildReason::ImageMissing => f.write_str("image missing"),
            BuildReason::ContextChanged => f.write_str("context changed"),
        }
    }
}

/// Why `plan` wants an action. Every [`PlannedAction`](crate::PlannedAction) has one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Intent {
    /// A declared network is missing: create it.
    CreateNetwork,
    /// A network's spec changed: create the new one (after the old one is removed).
    RecreateNetwork,
    /// A network's spec changed: remove the old one.
    RemoveReplacedNetwork,
    /// A declared volume is missing: create it.
    CreateVolume,
    /// Make the image of a container about to be created present.
    EnsureImage,
    /// Build the image of a container about to be created (`spec.build`).
    Build(BuildReason),
    /// A replica's container is missing: create it.
    Create,
    /// A replica's container drifted: remove it and create it again.
    Recreate(Drift),
    /// Start a container just created.
    StartAfterCreate,
    /// Another container is labelled as this replica under another name (a renamed object's):
    /// remove it.
    RemoveDuplicate {
        /// The replica's engine name.
        replica: String,
    },
    /// Rolling update, start-first: create the surge container (`<name>_next`).
    Surge,
    /// Rolling update, stop-first (or `Recreate` strategy): create the new container.
    StopFirst,
    /// Start a surge container that was created but never started.
    StartSurge,
    /// Rolling update: stop the old container because the new one is available (start-first).
    RetireForPromote {
        /// Engine name of the new container.
        new: String,
    },
    /// Rolling update, stop-first: stop the old container.
    RetireStopFirst,
    /// Rolling update: rename the stopped old container `<name>_prev`, the rollback target.
    KeepAsPrevious,
    /// Remove an older `<name>_prev` to make room for the new one.
    MakeRoomForPrevious,
    /// Rolling update: the surge container takes the replica's name.
    Promote,
    /// A surge container that is no longer needed (stale, dead, or its update was rolled back).
    DropSurge,
    /// The update is done: remove the previous container.
    RetirePrevious,
    /// Roll back: remove the new container.
    RollBackRemoveNew,
    /// Roll back: the previous container takes the replica's name again.
    RollBackRestore,
    /// Roll back: start the restored previous container.
    RollBackStart,
    /// Start an exited container again (`restartPolicy`); counts as a restart.
    Restart {
        /// Exit code of the run that ended, when known.
        exit_code: Option<i64>,
        /// The container's `restartPolicy`.
        policy: RestartPolicy,
    },
    /// Restart a running container that fails its health check or liveness probe; counts as a
    /// restart.
    RestartUnhealthy {
        /// The liveness probe's message, when the probe (not the engine's health check) failed.
        liveness: Option<String>,
    },
    /// Unpause a container paused by hand.
    Unpause,
    /// Remove an object berth created that is no longer declared.
    Orphan,
    /// Remove a replica beyond the declared `replicas`.
    ScaleDown,
    /// Remove a volume that is no longer declared and was created with `reclaimPolicy: Delete`.
    OrphanVolume,
}

impl Intent {
    /// True for the steps of a rolling update (`berth apply` keeps driving while they occur).
    pub fn is_rolling_update(&self) -> bool {
        match self {
            Intent::Surge
            | Intent::StopFirst
            | Intent::RetireForPromote { .. }
            | Intent::RetireStopFirst
            | Intent::KeepAsPrevious
            | Intent::Promote
            | Intent::RetirePrevious
            | Intent::RollBackRemoveNew
            | Intent::RollBackRestore
            | Intent::RollBackStart => true,
            Intent::CreateNetwork
            | Intent::RecreateNetwork
            | Intent::RemoveReplacedNetwork
            | Intent::CreateVolume
            | Intent::EnsureImage
            | Intent::Build(_)
            | Intent::Create
            | Intent::Recreate(_)
            | Intent::StartAfterCreate
            | Intent::RemoveDuplicate { .. }
            | Intent::StartSurge
            | Intent::MakeRoomForPrevious
            | Intent::DropSurge
            | Intent::Restart { .. }
            | Intent::RestartUnhealthy { .. }
            | Intent::Unpause
            | Intent::Orphan
            | Intent::ScaleDown
            | Intent::OrphanVolume => false,
        }
    }

    /// True for removals of objects no declared replica claims (orphans and scaled-down
    /// replicas).
    pub fn is_orphan_removal(&self) -> bool {
        matches!(
            self,
            Intent::Orphan | Intent::ScaleDown | Intent::OrphanVolume
        )
    }

    /// True when the action counts as a restart for CrashLoopBackOff.
    pub fn is_restart(&self) -> bool {
        matches!(
            self,
            Intent::Restart { .. } | Intent::RestartUnhealthy { .. }
        )
    }
}

impl fmt::Display for Intent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Intent::CreateNetwork => f.write_str("network missing"),
            Intent::RecreateNetwork => f.write_str("spec changed: recreate network"),
            Intent::RemoveReplacedNetwork => f.write_str("spec changed: remove old network"),
            Intent::CreateVolume => f.write_str("volume missing"),
            Intent::EnsureImage => f.write_str("image needed for create"),
            Intent::Build(why) => write!(f, "build: {why}"),
            Intent::Create => f.write_str("container missing"),
            Intent::Recreate(d) => d.fmt(f),
            Intent::StartAfterCreate => f.write_str("start after create"),
            Intent::RemoveDuplicate { replica } => write!(f, "replaced by {replica}"),
            Intent::Surge => f.write_str("rolling update (start-first): spec changed"),
            Intent::StopFirst => f.write_str("rolling update (stop-first): spec changed"),
            Intent::StartSurge => f.write_str("surge container created but never started"),
            Intent::RetireForPromote { new } => {
                write!(f, "rolling update: new container {new} is available")
            }
            Intent::RetireStopFirst => f.write_str("rolling update: stop-first"),
            Intent::KeepAsPrevious => {
                f.write_str("rolling update: keep the old container as the rollback target")
            }
            Intent::MakeRoomForPrevious => f.write_str("make room for the previous container"),
            Intent::Promote => {
                f.write_str("rolling update: the new container takes the replica's name")
            }
            Intent::DropSurge => f.write_str("surge container no longer needed"),
            Intent::RetirePrevious => {
                f.write_str("rolling update done: previous container no longer needed")
            }
            Intent::RollBackRemoveNew => {
                f.write_str("rolling update rolled back: remove the new container")
            }
            Intent::RollBackRestore => {
                f.write_str("rolling update rolled back: restore the previous container")
            }
            Intent::RollBackStart => {
                f.write_str("rolling update rolled back: start the previous container")
            }
            Intent::Restart { exit_code, policy } => write!(
                f,
                "exited with code {}, restartPolicy {policy:?}",
                exit_code.unwrap_or(-1)
            ),
            Intent::RestartUnhealthy {
                liveness: Some(message),
            } => write!(f, "liveness probe failed: {message}"),
            Intent::RestartUnhealthy { liveness: None } => {
                f.write_str("health check reports unhealthy")
            }
            Intent::Unpause => f.write_str("paused by hand; the desired state is running"),
            Intent::Orphan => f.write_str("no longer declared"),
            Intent::ScaleDown => f.write_str("replica no longer declared (replicas lowered)"),
            Intent::OrphanVolume => f.write_str("no longer declared, reclaimPolicy Delete"),
        }
    }
}
