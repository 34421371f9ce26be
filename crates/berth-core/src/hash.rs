//! Versioned spec hashes: the recreate decision.
//!
//! `hash = "v1-" + first 16 hex digits of SHA-256(JSON of the config)`. The config structs are
//! explicit allowlists ([`crate::desired::ContainerConfig`] and friends) whose default-valued
//! fields are left out of the JSON, so adding a field does not change existing hashes. The
//! golden tests below pin values: if they change, every container on every host restarts on
//! upgrade — bump the version prefix deliberately instead.

use serde::Serialize;
use sha2::{Digest, Sha256};

/// Prefix naming the hash scheme.
pub const HASH_VERSION: &str = "v1";

/// Hashes a config struct: `v1-<16 lower-case hex digits>`.
pub fn spec_hash<T: Serialize>(config: &T) -> String {
    // Serialising plain structs of strings, numbers, vectors and BTreeMaps cannot fail.
    let json = serde_json::to_vec(config).unwrap_or_default();
    let digest = Sha256::digest(&json);
    let mut out = String::with_capacity(HASH_VERSION.len() + 17);
    out.push_str(HASH_VERSION);
    out.push('-');
    for b in &digest[..8] {
        out.push_str(&format!("{b:02x}"));
    }
    out
}
