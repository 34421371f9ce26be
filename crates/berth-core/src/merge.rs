//! Merging declarations from several origins (files of a directory, or sources) into one set.
//!
//! The rule: one object, one origin. When two origins declare the same object, that is a
//! conflict: it is reported, and neither new version is applied — the previously applied version
//! (if any) stays in force until the conflict is gone.

use std::collections::BTreeMap;
use std::sync::Arc;

use berth_api::{Manifest, ObjectKey};

/// One object as declared by one origin.
#[derive(Clone, Debug, PartialEq)]
pub struct Declaration {
    /// The object.
    pub manifest: Manifest,
    /// Where it came from, shown as `blog/db.yaml:12:1` or `kube:Container/blog/db`.
    pub origin: Origin,
    /// Where each of its fields is written (manifest files only; empty otherwise).
    pub fields: FieldPositions,
}

impl Declaration {
    /// A declaration without field positions (custom resources, Compose entries, tests).
    pub fn new(manifest: Manifest, origin: Origin) -> Declaration {
        Declaration {
            manifest,
            origin,
            fields: FieldPositions::default(),
        }
    }

    /// Where `field` (`spec.capAdd[0]`) is written: its `file:line:column` when the source
    /// recorded it (an absent field: its nearest written parent), else the declaration's origin.
    pub fn origin_of(&self, field: &str) -> Origin {
        match (&self.origin, self.fields.of(field)) {
            (Origin::File { path, .. }, Some((line, column))) => Origin::File {
                path: path.clone(),
                line,
                column,
            },
            _ => self.origin.clone(),
        }
    }
}

/// Where each field of a document is written in its file: the field path as in errors
/// (`spec.mounts[0].hostPath.path`) → 1-based (line, column) of its value. Recorded by the
/// source that read the file, so that later stages (the security policy) can point at the
/// field they judge without reading the file again. Shared, cheap to clone.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldPositions(Arc<BTreeMap<String, (u64, u64)>>);

impl FieldPositions {
    /// Positions by field path.
    pub fn new(positions: BTreeMap<String, (u64, u64)>) -> FieldPositions {
        FieldPositions(Arc::new(positions))
    }

    /// Where `field` is written; for a field that is not written (`spec.user` that a profile
    /// requires), where its nearest written parent is (`spec`). `None` when nothing is known.
    pub fn of(&self, field: &str) -> Option<(u64, u64)> {
        let mut f = field;
        loop {
            if let Some(p) = self.0.get(f) {
                return Some(*p);
            }
            f = &f[..f.rfind(['.', '['])?];
        }
    }
}

/// Where a declaration comes from: parsed once by its source, matched on downstream (status
/// written back to the cluster only for cluster objects, positions of files).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Origin {
    /// A document in a manifest file (or a Compose file), starting at `line:column` (1-based).
    File {
        /// The file, as the source names it.
        path: String,
        /// Line of the document's (or the Compose entry's) first line.
        line: u64,
        /// Column (1 for documents).
        column: u64,
    },
    /// An object of the Kubernetes cluster.
    Cluster {
        /// Its kind as the API server names it (`Container`, `Network`, `Volume`).
        kind: String,
        /// `metadata.namespace`.
        namespace: String,
        /// `metadata.name`.
        name: String,
    },
}

impl Origin {
    /// A document of `path` starting at `line`, column 1.
    pub fn file(path: impl Into<String>, line: u64) -> Origin {
        Origin::File {
            path: path.into(),
            line,
            column: 1,
        }
    }

    /// True for objects of the Kubernetes cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(self, Origin::Cluster { .. })
    }
}

impl std::fmt::Display for Origin {
    /// `path:line:column`, or `kube:Kind/namespace/name`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::File { path, line, column } => write!(f, "{path}:{line}:{column}"),
            Origin::Cluster {
                kind,
                namespace,
                name,
            } => write!(f, "kube:{kind}/{namespace}/{name}"),
        }
    }
}

/// Two or more origins declaring one object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conflict {
    /// The contested object.
    pub key: ObjectKey,
    /// Every origin that declares it, sorted.
    pub origins: Vec<String>,
}

impl std::fmt::Display for Conflict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} is declared more than once: {}",
            self.key,
            self.origins.join(", ")
        )
    }
}

/// The outcome of a merge.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Merged {
    /// Objects in force, by key.
    pub objects: BTreeMap<ObjectKey, Declaration>,
    /// Conflicts found (their objects keep the previously applied version).
    pub conflicts: Vec<Conflict>,
    /// The declarations the security policy refused, as declared (`objects` holds the version
    /// applied before, when one stays in force): what the views show as the object's spec.
    /// Filled by the caller of [`crate::policy::admit`], empty from [`merge`].
    pub refused: BTreeMap<ObjectKey, Declaration>,
}

/// Merges `declarations`; `previous` is the last merge's result, used to keep conflicting
/// objects at their previous version.
pub fn merge(
    previous: &BTreeMap<ObjectKey, Declaration>,
    declarations: Vec<Declaration>,
) -> Merged {
    let mut by_key: BTreeMap<ObjectKey, Vec<Declaration>> = BTreeMap::new();
    for d in declarations {
        by_key.entry(d.manifest.key()).or_default().push(d);
    }
    let mut merged = Merged::default();
    for (key, mut decls) in by_key {
        if decls.len() == 1 {
            if let Some(d) = decls.pop() {
                merged.objects.insert(key, d);
            }
            continue;
        }
        let mut origins: Vec<String> = decls.into_iter().map(|d| d.origin.to_string()).collect();
        origins.sort();
        if let Some(prev) = previous.get(&key) {
            merged.objects.insert(key.clone(), prev.clone());
        }
        merged.conflicts.push(Conflict { key, origins });
    }
    merged
}

/// Keeps the declarations whose `spec.hostSelector` targets a host with `host_labels` (an
/// absent selector targets every host; see [`berth_api::selector`]). Applied to every source's
/// full set before [`merge`], so an object that targets other hosts neither runs here nor
/// conflicts here.
pub fn targeted(
    declarations: impl IntoIterator<Item = Declaration>,
    host_labels: &BTreeMap<String, String>,
) -> Vec<Declaration> {
    declarations
        .into_iter()
        .filter(|d| berth_api::targets(d.manifest.host_selector(), host_labels))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_api::{LabelSelector, ManifestMetadata, VolumeSpec};

    #[test]
    fn only_targeted_declarations_count() {
        let host: BTreeMap<String, String> = [("zone".to_string(), "eu".to_string())].into();
        let with = |name: &str, zone: Option<&str>| {
            let mut d = vol(
                name,
                "local",
                Origin::Cluster {
                    kind: "Volume".into(),
                    namespace: "default".into(),
                    name: name.to_string(),
                },
            );
            if let Manifest::Volume { spec, .. } = &mut d.manifest {
                spec.host_selector = zone.map(|z| LabelSelector {
                    match_labels: [("zone".to_string(), z.to_string())].into(),
                    ..Default::default()
                });
            }
            d
        };
        let kept: Vec<String> = targeted(
            vec![
                with("all", None),
                with("eu", Some("eu")),
                with("us", Some("us")),
            ],
            &host,
        )
        .into_iter()
        .map(|d| d.manifest.metadata().name.clone())
        .collect();
        assert_eq!(kept, vec!["all", "eu"]);
        // An untargeted duplicate is no conflict here.
        let m = merge(
            &BTreeMap::new(),
            targeted(vec![with("x", Some("eu")), with("x", Some("us"))], &host),
        );
        assert!(m.conflicts.is_empty());
        assert_eq!(m.objects.len(), 1);
    }

    fn vol(name: &str, driver: &str, origin: impl Into<OriginArg>) -> Declaration {
        Declaration {
            manifest: Manifest::Volume {
                metadata: ManifestMetadata {
                    name: name.into(),
                    ..Default::default()
                },
                spec: VolumeSpec {
                    driver: Some(driver.into()),
                    ..Default::default()
                },
            },
            origin: origin.into().0,
            fields: FieldPositions::default(),
        }
    }

    /// A file name (line 1) or an origin.
    struct OriginArg(Origin);

    impl From<&str> for OriginArg {
        fn from(path: &str) -> Self {
            OriginArg(Origin::file(path, 1))
        }
    }

    impl From<Origin> for OriginArg {
        fn from(o: Origin) -> Self {
            OriginArg(o)
        }
    }

    #[test]
    fn single_declarations_pass_through() {
        let m = merge(
            &BTreeMap::new(),
            vec![vol("a", "local", "a.yaml"), vol("b", "local", "b.yaml")],
        );
        assert_eq!(m.objects.len(), 2);
        assert!(m.conflicts.is_empty());
    }

    #[test]
    fn duplicate_keeps_previous_version_and_reports() {
        let first = merge(&BTreeMap::new(), vec![vol("a", "local", "a.yaml")]);
        let second = merge(
            &first.objects,
            vec![vol("a", "other", "a.yaml"), vol("a", "third", "b.yaml")],
        );
        assert_eq!(second.conflicts.len(), 1);
        assert_eq!(
            second.conflicts[0].origins,
            vec!["a.yaml:1:1", "b.yaml:1:1"]
        );
        assert_eq!(
            second.objects.values().next(),
            first.objects.values().next()
        );
    }

    #[test]
    fn duplicate_without_previous_applies_nothing() {
        let m = merge(
            &BTreeMap::new(),
            vec![vol("a", "x", "a.yaml"), vol("a", "y", "b.yaml")],
        );
        assert!(m.objects.is_empty());
        assert_eq!(m.conflicts.len(), 1);
    }
}
