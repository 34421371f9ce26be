//! berth's end-to-end tests against the real Docker Engine, in one test binary (one link of
//! the bollard/kube stack instead of one per file). Each module is one area; each test runs in
//! its own label namespace (`test_env!`), so they run in parallel.

mod build;
mod compose;
mod corpus;
mod directory;
mod examples;
mod health;
mod hostile;
mod kube;
mod observe;
mod outage;
mod policy;
mod probes;
mod registry;
mod rollout;
mod updates;
