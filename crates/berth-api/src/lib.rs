#![forbid(unsafe_code)]
//! berth's wire types, `apiVersion: berth.dev/v1alpha1`.
//!
//! The same Rust types serve two purposes:
//! - the documents of a manifest directory (decoded by `berth-sources`), and
//! - Kubernetes custom resources (the `CustomResource` derives generate the CRDs).
//!
//! Semantics follow Kubernetes wherever Kubernetes has the field (`command`/`args`,
//! `restartPolicy`, `pullPolicy`, `hostPath.type`, resource quantities); where it does not,
//! they follow Docker Compose. Every default is written on the field.

pub mod container;
pub mod host;
pub mod image_ref;
pub mod network;
pub mod quantity;
pub mod selector;
pub mod status;
pub mod validate;
pub mod volume;

pub use container::*;
pub use host::*;
pub use network::*;
pub use selector::{LabelSelector, LabelSelectorRequirement, SelectorOperator, targets};
pub use status::*;
pub use validate::{
    FieldError, validate_container, validate_metadata, validate_network, validate_volume,
};
pub use volume::*;

/// The API group of every berth kind.
pub const GROUP: &str = "berth.dev";
/// The API version of every berth kind in this release.
pub const VERSION: &str = "v1alpha1";
/// `apiVersion` as written in manifests: `berth.dev/v1alpha1`.
pub const API_VERSION: &str = "berth.dev/v1alpha1";
/// Largest `replicas` accepted for one Container object (one host runs them all).
pub const MAX_REPLICAS: u32 = 1000;
/// Namespace used when `metadata.namespace` is absent (same as Kubernetes).
pub const DEFAULT_NAMESPACE: &str = "default";

/// Longest duration accepted: 24 hours. Docker sends durations as signed 64-bit nanoseconds;
/// anything near that range is a typo, and a day is longer than any health check or probe
/// interval has reason to be.
pub const MAX_DURATION: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// Parses a duration written like `10s`, `1m30s`, `500ms` or `2h` (humantime syntax), at most
/// [`MAX_DURATION`].
///
/// # Errors
/// A message naming the expected syntax, or the limit.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let d = humantime::parse_duration(s.trim())
        .map_err(|e| format!("expected a duration like 10s, 1m30s or 500ms, got {s:?} ({e})"))?;
    if d > MAX_DURATION {
        return Err(format!("expected a duration of at most 24h, got {s:?}"));
    }
    Ok(d)
}

/// The three kinds berth manages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// A `Network` (declared before containers that attach to it).
    Network,
    /// A `Volume`.
    Volume,
    /// A `Container` (one or more replicas).
    Container,
}

impl Kind {
    /// The kind's name as written in `kind:`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Network => "Network",
            Kind::Volume => "Volume",
            Kind::Container => "Container",
        }
    }

    /// Parses the `kind:` field; `None` for anything but the three berth kinds.
    pub fn parse(s: &str) -> Option<Kind> {
        match s {
            "Network" => Some(Kind::Network),
            "Volume" => Some(Kind::Volume),
            "Container" => Some(Kind::Container),
            _ => None,
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Identity of a declared object: kind, namespace and name. Unique per host.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    /// Which kind.
    pub kind: Kind,
    /// `metadata.namespace` (after defaulting to `default`).
    pub namespace: String,
    /// `metadata.name`.
    pub name: String,
}

impl ObjectKey {
    /// Builds a key.
    pub fn new(kind: Kind, namespace: impl Into<String>, name: impl Into<String>) -> Self {
        ObjectKey {
            kind,
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl std::fmt::Display for ObjectKey {
    /// `Kind/namespace/name`, e.g. `Container/blog/postgres`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}/{}", self.kind, self.namespace, self.name)
    }
}

/// The subset of Kubernetes `ObjectMeta` a manifest file may carry. Unknown fields are errors.
#[derive(
    Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ManifestMetadata {
    /// Object name: a DNS-1123 subdomain (lower-case letters, digits, `-` and `.`), at most 253 characters.
    pub name: String,
    /// Namespace: a DNS-1123 label; defaults to `default`.
    #[serde(default)]
    pub namespace: Option<String>,
    /// Labels of the object itself (used for selection); they are not copied onto engine objects.
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
    /// Annotations, kept for compatibility with Kubernetes tooling; berth ignores them.
    #[serde(default)]
    pub annotations: std::collections::BTreeMap<String, String>,
}

impl ManifestMetadata {
    /// The namespace after defaulting.
    pub fn namespace_or_default(&self) -> &str {
        self.namespace.as_deref().unwrap_or(DEFAULT_NAMESPACE)
    }
}

/// One declared object, whatever its kind: the unit that sources deliver and `berth-core` merges.
#[derive(Clone, Debug, PartialEq)]
pub enum Manifest {
    /// A `Network` object.
    Network {
        /// Its metadata.
        metadata: ManifestMetadata,
        /// Its spec.
        spec: NetworkSpec,
    },
    /// A `Volume` object.
    Volume {
        /// Its metadata.
        metadata: ManifestMetadata,
        /// Its spec.
        spec: VolumeSpec,
    },
    /// A `Container` object.
    Container {
        /// Its metadata.
        metadata: ManifestMetadata,
        /// Its spec.
        spec: std::sync::Arc<ContainerSpec>,
    },
}

impl Manifest {
    /// The object's metadata.
    pub fn metadata_mut(&mut self) -> &mut ManifestMetadata {
        match self {
            Manifest::Network { metadata, .. }
            | Manifest::Volume { metadata, .. }
            | Manifest::Container { metadata, .. } => metadata,
        }
    }

    /// The object's metadata.
    pub fn metadata(&self) -> &ManifestMetadata {
        match self {
            Manifest::Network { metadata, .. }
            | Manifest::Volume { metadata, .. }
            | Manifest::Container { metadata, .. } => metadata,
        }
    }

    /// The object's kind.
    pub fn kind(&self) -> Kind {
        match self {
            Manifest::Network { .. } => Kind::Network,
            Manifest::Volume { .. } => Kind::Volume,
            Manifest::Container { .. } => Kind::Container,
        }
    }

    /// The object's identity.
    pub fn key(&self) -> ObjectKey {
        let m = self.metadata();
        ObjectKey::new(self.kind(), m.namespace_or_default(), m.name.clone())
    }

    /// The object's `spec.hostSelector`.
    pub fn host_selector(&self) -> Option<&LabelSelector> {
        match self {
            Manifest::Network { spec, .. } => spec.host_selector.as_ref(),
            Manifest::Volume { spec, .. } => spec.host_selector.as_ref(),
            Manifest::Container { spec, .. } => spec.host_selector.as_ref(),
        }
    }

    /// Validates metadata and spec; each error carries its field path (`spec.ports[0].hostPort`).
    pub fn validate(&self) -> Vec<FieldError> {
        let mut errors = validate_metadata(self.metadata());
        errors.extend(match self {
            Manifest::Network { spec, .. } => validate_network(spec),
            Manifest::Volume { spec, .. } => validate_volume(spec),
            Manifest::Container { spec, .. } => validate_container(spec),
        });
        errors
    }
}
