//! What a plan is made of: [`Action`]s with their owner, [`Intent`] and ordering
//! ([`PlannedAction`]), the objects that wait ([`Waiting`]), and the [`Plan`] itself.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use berth_api::PullPolicy;

use crate::desired::{ContainerConfig, NetworkConfig, Owner, VolumeConfig};
use crate::intent::Intent;
use crate::reason::WaitReason;

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
    /// Build an image from a Dockerfile context (`spec.build`) and give it `tags`. The engine
    /// adapter reads the context again when it builds and labels the image with the build
    /// hash of what it sent (`berth.dev/build-hash`, besides `labels`).
    BuildImage {
        /// Tags the image gets (several when Containers with different tags share one build).
        tags: Vec<String>,
        /// The build (absolute context).
        build: berth_api::Build,
        /// The build hash planned (`v1-…`).
        hash: String,
        /// berth's labels for the image (`managed-by`, `instance`).
        labels: BTreeMap<String, String>,
        /// How the `FROM` images are resolved: `Always` pulls them on every build,
        /// `IfNotPresent` (and `Never`: the classic builder cannot refuse) when missing.
        policy: PullPolicy,
        /// Credential files (`imagePullSecrets`) for the `FROM` images' registries.
        pull_secrets: Vec<String>,
        /// The replicas that wait for this image, with their retry-book hash: a failed build
        /// backs off each of them.
        users: Vec<(Owner, String)>,
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
            Action::BuildImage { tags, build, .. } => {
                write!(
                    f,
                    "build image {} (context {})",
                    tags.join(", "),
                    build.context
                )
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

impl Action {
    /// True for the actions that make an image present (pull or build), shared by every
    /// container of a plan that needs the image.
    pub fn is_image(&self) -> bool {
        matches!(self, Action::EnsureImage { .. } | Action::BuildImage { .. })
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

impl Waiting {
    /// What makes a wait news to whoever saw the previous pass's (the agent's log, an Event in
    /// `berth events`): the owner, the reason and the message — so that a refusal whose
    /// violations changed is news again, as Kubernetes' event aggregation keys on the message
    /// too — except for back-offs, whose messages count attempts and change on every pass.
    pub fn identity(&self) -> (Owner, WaitReason, String) {
        let message = if self.reason.is_backoff() {
            String::new()
        } else {
            self.message.clone()
        };
        (self.owner.clone(), self.reason, message)
    }
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
            if self.actions[i].action.is_image() && busy.contains(&self.actions[i].owner) {
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
        let mut dropped: Vec<bool> = self
            .actions
            .iter()
            .map(|a| busy.contains(&a.owner))
            .collect();
        self.cascade(&mut dropped);
        self.drop_actions(&dropped, |_| {
            (
                WaitReason::InProgress,
                "earlier actions for this object are still being carried out".into(),
            )
        });
        self
    }

    /// Extends `dropped` to every action that depends on a dropped one (in any order of
    /// `after`), and to image actions whose every user is dropped: kept alone, such an action
    /// would finish at once and trigger another pass with the same plan, over and over.
    pub(crate) fn cascade(&self, dropped: &mut [bool]) {
        loop {
            let mut changed = false;
            for (i, a) in self.actions.iter().enumerate() {
                if !dropped[i] && a.after.iter().any(|d| dropped[*d]) {
                    dropped[i] = true;
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
        for (i, a) in self.actions.iter().enumerate() {
            if dropped[i] || !a.action.is_image() {
                continue;
            }
            let mut users = self
                .actions
                .iter()
                .enumerate()
                .filter(|(_, u)| u.after.contains(&i))
                .peekable();
            if users.peek().is_some() && users.all(|(j, _)| dropped[j]) {
                dropped[i] = true;
            }
        }
    }

    /// Removes the `dropped` actions (closed under [`Plan::cascade`]) and renumbers the rest;
    /// each owner that lost an action is listed as waiting, with what `why` says (unless it
    /// already waits for another reason).
    pub(crate) fn drop_actions(
        &mut self,
        dropped: &[bool],
        why: impl Fn(&PlannedAction) -> (WaitReason, String),
    ) {
        let mut new_id = vec![usize::MAX; dropped.len()];
        let mut kept = Vec::with_capacity(self.actions.len());
        let mut waiting_owners = BTreeSet::new();
        for (i, mut a) in std::mem::take(&mut self.actions).into_iter().enumerate() {
            if dropped[i] {
                let listed = self.waiting.iter().any(|w| w.owner == a.owner);
                if !listed && waiting_owners.insert(a.owner.clone()) {
                    let (reason, message) = why(&a);
                    self.waiting.push(Waiting {
                        owner: a.owner,
                        reason,
                        message,
                        until: None,
                    });
                }
                continue;
            }
            new_id[i] = kept.len();
            a.id = new_id[i];
            kept.push(a);
        }
        for a in &mut kept {
            a.after = a.after.iter().map(|d| new_id[*d]).collect();
        }
        self.actions = kept;
    }

    pub(crate) fn push(
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

    pub(crate) fn wait(
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
