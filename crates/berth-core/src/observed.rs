//! Observed state: what the engine has, as read by one relist.

use std::collections::{BTreeMap, BTreeSet};

use berth_api::{NetworkMode, ObjectKey};

/// One relist of the engine. Only labelled (berth's) objects are listed in full; for everything
/// else only names are kept, to detect name clashes.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ObservedState {
    /// berth's containers.
    pub containers: Vec<ObservedContainer>,
    /// Names of containers berth does not manage.
    pub foreign_containers: BTreeSet<String>,
    /// berth's networks.
    pub networks: Vec<ObservedNetwork>,
    /// Names of networks berth does not manage.
    pub foreign_networks: BTreeSet<String>,
    /// Engine IDs of the networks berth does not manage, by name (for `external` networks).
    pub foreign_network_ids: BTreeMap<String, String>,
    /// berth's volumes.
    pub volumes: Vec<ObservedVolume>,
    /// Names of volumes berth does not manage.
    pub foreign_volumes: BTreeSet<String>,
    /// Local image ID (`sha256:…`) that each image reference of a `pullPolicy: Always`
    /// container names now. References missing locally are absent; so is everything when the
    /// caller did not look (then no container is recreated for its image).
    pub image_ids: BTreeMap<String, String>,
    /// The local image each tag of a Container with `build` names: its ID and its
    /// `berth.dev/build-hash` label. Tags missing locally are absent.
    pub built_images: BTreeMap<String, ObservedImage>,
}

/// A local image a build tag names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObservedImage {
    /// Image ID (`sha256:…`).
    pub id: String,
    /// Its `berth.dev/build-hash` label (absent on an image berth did not build).
    pub build_hash: Option<String>,
}

/// Lifecycle state of a container, as the engine reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunState {
    /// Created, never started.
    Created,
    /// Running.
    Running,
    /// Paused.
    Paused,
    /// Being restarted by the engine.
    Restarting,
    /// Exited.
    Exited,
    /// Being removed.
    Removing,
    /// Dead (failed removal); must be replaced.
    Dead,
}

impl RunState {
    /// Parses the engine's `State` string; unknown strings count as `Dead`.
    pub fn parse(s: &str) -> RunState {
        match s {
            "created" => RunState::Created,
            "running" => RunState::Running,
            "paused" => RunState::Paused,
            "restarting" => RunState::Restarting,
            "exited" => RunState::Exited,
            "removing" => RunState::Removing,
            _ => RunState::Dead,
        }
    }
}

/// A container carrying berth's labels.
#[derive(Clone, Debug, PartialEq)]
pub struct ObservedContainer {
    /// Engine ID.
    pub id: String,
    /// Engine name (without the leading `/`).
    pub name: String,
    /// Owning object from the labels; `None` when the labels are incomplete.
    pub key: Option<ObjectKey>,
    /// Replica index from the labels.
    pub replica: Option<u32>,
    /// Spec hash from the labels.
    pub hash: Option<String>,
    /// Lifecycle state.
    pub state: RunState,
    /// Exit code of the last run (only known for exited containers).
    pub exit_code: Option<i64>,
    /// Attached networks: engine network name → network ID.
    pub networks: BTreeMap<String, String>,
    /// Engine health, when the container has a health check.
    pub health: Option<Health>,
    /// The engine's `HostConfig.NetworkMode` (e.g. `container:<id>`), when not the default.
    pub network_mode: Option<NetworkMode>,
    /// ID (`sha256:…`) of the image the container was created from.
    pub image_id: Option<String>,
    /// Results of the agent-run probes, when the container has any.
    pub probe: Option<ProbeStatus>,
}

/// What the agent's probes say about one running container.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProbeStatus {
    /// The startup probe succeeded (true when there is none).
    pub started: bool,
    /// Readiness: `None` without a readiness probe; `Some(false)` until it passes.
    pub ready: Option<bool>,
    /// False once the liveness (or startup) probe failed `failureThreshold` times in a row.
    pub live: bool,
    /// Last failure message, for reports.
    pub message: Option<String>,
}

/// Health reported by the engine's native health check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Health {
    /// Within the start period, or no result yet.
    Starting,
    /// Passing.
    Healthy,
    /// Failed `retries` times in a row.
    Unhealthy,
}

impl ObservedContainer {
    /// True when the container reports healthy: it has an engine health check or a readiness
    /// probe, and every one of them passes.
    pub fn healthy(&self) -> bool {
        let ready = self.probe.as_ref().and_then(|p| p.ready);
        (self.health.is_some() || ready.is_some())
            && self.health.is_none_or(|h| h == Health::Healthy)
            && ready.is_none_or(|r| r)
    }

    /// True when the container may receive traffic, as a Kubernetes Pod's `Ready` condition:
    /// running, not failing, its engine health check (if any) healthy, its startup probe (if
    /// any) passed and its readiness probe (if any) passing. Without checks: running.
    pub fn ready(&self) -> bool {
        self.state == RunState::Running
            && !self.failing()
            && self.health.is_none_or(|h| h == Health::Healthy)
            && self
                .probe
                .as_ref()
                .is_none_or(|p| p.started && p.ready != Some(false))
    }

    /// True when the engine health check or the liveness/startup probe says restart.
    pub fn failing(&self) -> bool {
        self.health == Some(Health::Unhealthy) || self.probe.as_ref().is_some_and(|p| !p.live)
    }
}

impl Health {
    /// Reads the health from the engine's status text (`Up 5 minutes (healthy)`); `None` when
    /// the text carries no health (no health check).
    pub fn from_status(status: &str) -> Option<Health> {
        if status.contains("(healthy)") {
            Some(Health::Healthy)
        } else if status.contains("(unhealthy)") {
            Some(Health::Unhealthy)
        } else if status.contains("(health: starting)") {
            Some(Health::Starting)
        } else {
            None
        }
    }
}

/// A network carrying berth's labels.
#[derive(Clone, Debug, PartialEq)]
pub struct ObservedNetwork {
    /// Engine ID.
    pub id: String,
    /// Engine name.
    pub name: String,
    /// Owning object from the labels.
    pub key: Option<ObjectKey>,
    /// Spec hash from the labels.
    pub hash: Option<String>,
}

/// A volume carrying berth's labels.
#[derive(Clone, Debug, PartialEq)]
pub struct ObservedVolume {
    /// Engine name.
    pub name: String,
    /// Owning object from the labels.
    pub key: Option<ObjectKey>,
    /// Spec hash from the labels.
    pub hash: Option<String>,
    /// `berth.dev/reclaim-policy` label: true when it says `Delete`.
    pub delete_when_orphaned: bool,
}
