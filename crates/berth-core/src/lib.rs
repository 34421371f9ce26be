#![forbid(unsafe_code)]
//! berth's pure core: everything between "what the sources declare" and "what to do to the engine".
//!
//! No I/O, no clock, no async: [`plan`] is a deterministic function of its inputs, so most of
//! berth's behaviour is tested here with plain tables.
//!
//! Flow: sources → [`merge::merge`] (one full set per source, conflicts reported) →
//! [`resolve::resolve`] (cross-object references, engine names, spec hashes) →
//! [`plan::plan`] against the [`observed::ObservedState`] → actions for the executor.

pub mod backoff;
pub mod build;
pub mod conditions;
pub mod desired;
pub mod fields;
pub mod hash;
pub mod intent;
pub mod labels;
pub mod merge;
pub mod observed;
pub mod pass;
pub mod plan;
pub mod policy;
pub mod reason;
pub mod resolve;
pub mod rollout;

pub use desired::{DesiredContainer, DesiredNetwork, DesiredState, DesiredVolume, Owner};
pub use intent::{BuildReason, Drift, Intent};
pub use observed::{
    ObservedContainer, ObservedImage, ObservedNetwork, ObservedState, ObservedVolume, RunState,
};
pub use plan::{Action, Plan, PlannedAction, Waiting, plan};
pub use reason::{Failure, FailureKind, HostEffect, WaitReason};
