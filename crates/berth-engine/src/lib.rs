#![forbid(unsafe_code)]
//! berth's Docker Engine adapter ([`DockerEngine`]) and the plan executor ([`execute`]).
//!
//! The adapter only observes and carries out actions; it never decides. Works with Engine 20.10
//! (API 1.41) and newer: the API version is negotiated at connect time.

pub mod context;
pub mod credentials;
mod docker;
mod executor;
mod prober;

pub use docker::build::{
    BuildEvent, BuildFailure, BuildLog, BuildProgress, BuildRequest, BuildStep,
    OUTPUT_TAIL as BUILD_OUTPUT_TAIL, from_images,
};
pub use docker::{DockerEngine, EngineError, ImageRefresh, RECONNECT_CAP, reconnect_backoff};
pub use executor::{Engine, Outcome, Progress, Runtime, execute, execute_observed};
pub use prober::{ProbeTarget, Prober};
