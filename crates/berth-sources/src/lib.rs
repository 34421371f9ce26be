#![forbid(unsafe_code)]
//! Sources of desired state. Each source publishes full sets ("everything I declare now"),
//! never deltas; see [`directory::DirectorySource`] and [`kube::KubeSource`].

pub mod compose;
pub mod decode;
pub mod directory;
#[cfg(any(test, feature = "fake-api"))]
pub mod fake_api;
pub mod kube;
pub mod read;
pub mod strict;
