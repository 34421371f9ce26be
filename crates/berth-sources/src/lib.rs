#![forbid(unsafe_code)]
//! Sources of desired state. Each source publishes full sets ("everything I declare now"),
//! never deltas; see [`directory::DirectorySource`].

pub mod decode;
pub mod directory;
