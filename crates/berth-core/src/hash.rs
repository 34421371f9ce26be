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

/// The build hash of `spec.build`: `v1-<16 hex digits>` of the context digest (from the engine
/// adapter's context walk: kept paths, types, modes and contents), the Dockerfile path, the
/// build arguments and the target. Stored as a label on the built image; a rebuild is due
/// exactly when it differs from the label of the image the tag names. The context's location
/// on disk is not part of it (moving the manifest directory rebuilds nothing).
pub fn build_hash(context_digest: &str, build: &berth_api::Build) -> String {
    #[derive(Serialize)]
    struct BuildInput<'a> {
        context: &'a str,
        dockerfile: &'a str,
        #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
        args: &'a std::collections::BTreeMap<String, String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        target: Option<&'a str>,
    }
    spec_hash(&BuildInput {
        context: context_digest,
        dockerfile: build.dockerfile_or_default(),
        args: &build.args,
        target: build.target.as_deref(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Golden values: a change here rebuilds every built image on every upgraded host.
    #[test]
    fn golden_build_hashes() {
        let mut b = berth_api::Build {
            context: "/srv/a".into(),
            ..Default::default()
        };
        let digest = "sha256:00";
        assert_eq!(build_hash(digest, &b), "v1-b98b38f2f1f94900");
        b.context = "/elsewhere".into();
        assert_eq!(
            build_hash(digest, &b),
            "v1-b98b38f2f1f94900",
            "location is not hashed"
        );
        b.dockerfile = Some("Dockerfile".into());
        assert_eq!(
            build_hash(digest, &b),
            "v1-b98b38f2f1f94900",
            "default spelled out"
        );
        b.args.insert("VERSION".into(), "1.2".into());
        b.target = Some("runtime".into());
        assert_eq!(build_hash(digest, &b), "v1-64925e177a2d6f92");
        assert_ne!(build_hash("sha256:01", &b), build_hash(digest, &b));
    }
}
