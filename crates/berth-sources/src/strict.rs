//! Strict scalar types, as the Kubernetes API server applies them to a custom resource.
//!
//! serde-saphyr is told to be strict where it can be ([`reader_options`]): YAML 1.2 booleans
//! only (`yes`/`on` are strings), a bare number or boolean is no string (`image: 123`),
//! duplicate keys are errors, and a budget bounds YAML bombs. It still converts a quoted
//! `"1"` into a number and reads `1_000` as 1000; those are caught here, on the parsed tree, by
//! walking it along the CRD's own OpenAPI schema (the schema `kubectl apply` would be checked
//! against), with the position of every offending value:
//!
//! - a number field (`replicas`, `hostPort`, …) takes a plain number only: not `"1"`, not
//!   `1_000`, not `0644` (YAML 1.1 would read it as octal; write the decimal value);
//! - a boolean field takes `true` or `false` only: not `"true"`, not `yes`/`on`;
//! - a string field takes no bare number or boolean; `files[].mode` is a quoted octal string
//!   (`"0644"`): a bare `mode: 420` (how `kubectl get -o yaml` prints 0644) is rejected with
//!   "quote it" rather than guessed;
//! - fields that take a number or a percentage (`maxSurge`) take both;
//! - no value (nor key) longer than [`crate::read::ReadLimits::max_scalar_bytes`].

use std::collections::BTreeMap;
use std::fmt;
use std::sync::OnceLock;

use berth_api::Kind;
use serde::Deserialize;
use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde_json::Value as Schema;
use serde_saphyr::Spanned;

/// The YAML reader's options for manifests (see the module docs).
pub fn reader_options() -> serde_saphyr::Options {
    let mut o = serde_saphyr::Options::default();
    o.strict_booleans = true;
    o.no_schema = true;
    o.legacy_octal_numbers = false;
    o.underscored_numbers_as_strings = true;
    o.leading_zero_numbers_as_strings = true;
    o.duplicate_keys = serde_saphyr::DuplicateKeyPolicy::Error;
    o.with_snippet = false;
    o
}

/// One value of the wrong type or size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// 1-based line within the document text.
    pub line: u64,
    /// 1-based column.
    pub column: u64,
    /// Field path as written in YAML (`spec.ports[0].hostPort`).
    pub field: String,
    /// What is wrong and what was expected.
    pub message: String,
}

/// A parsed YAML value with its scalar type as YAML 1.2 resolves it.
enum Tree {
    Map(Vec<(String, Spanned<Tree>)>),
    Seq(Vec<Spanned<Tree>>),
    Str(String),
    Num(String),
    Bool(bool),
    Null,
}

impl<'de> Deserialize<'de> for Tree {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Tree;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any YAML value")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Tree, A::Error> {
                let mut out = Vec::new();
                while let Some(k) = m.next_key::<Key>()? {
                    out.push((k.0, m.next_value()?));
                }
                Ok(Tree::Map(out))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<Tree, A::Error> {
                let mut out = Vec::new();
                while let Some(v) = s.next_element()? {
                    out.push(v);
                }
                Ok(Tree::Seq(out))
            }
            fn visit_bool<E>(self, v: bool) -> Result<Tree, E> {
                Ok(Tree::Bool(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Tree, E> {
                Ok(Tree::Num(v.to_string()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Tree, E> {
                Ok(Tree::Num(v.to_string()))
            }
            fn visit_i128<E>(self, v: i128) -> Result<Tree, E> {
                Ok(Tree::Num(v.to_string()))
            }
            fn visit_u128<E>(self, v: u128) -> Result<Tree, E> {
                Ok(Tree::Num(v.to_string()))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Tree, E> {
                Ok(Tree::Num(v.to_string()))
            }
            fn visit_str<E>(self, v: &str) -> Result<Tree, E> {
                Ok(Tree::Str(v.to_string()))
            }
            fn visit_string<E>(self, v: String) -> Result<Tree, E> {
                Ok(Tree::Str(v))
            }
            fn visit_unit<E>(self) -> Result<Tree, E> {
                Ok(Tree::Null)
            }
            fn visit_none<E>(self) -> Result<Tree, E> {
                Ok(Tree::Null)
            }
            fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<Tree, D::Error> {
                Tree::deserialize(d)
            }
        }
        d.deserialize_any(V)
    }
}

/// A mapping key rendered as text, whatever its YAML type.
struct Key(String);

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a scalar key")
            }
            fn visit_str<E>(self, v: &str) -> Result<Key, E> {
                Ok(Key(v.to_string()))
            }
            fn visit_bool<E>(self, v: bool) -> Result<Key, E> {
                Ok(Key(v.to_string()))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Key, E> {
                Ok(Key(v.to_string()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Key, E> {
                Ok(Key(v.to_string()))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Key, E> {
                Ok(Key(v.to_string()))
            }
            fn visit_unit<E>(self) -> Result<Key, E> {
                Ok(Key("null".into()))
            }
        }
        d.deserialize_any(V)
    }
}

/// The scalar types of `spec` of each kind: the CRDs' OpenAPI schemas pruned to what [`Walk`]
/// reads (`type`, `properties`, `additionalProperties`, `items`,
/// `x-kubernetes-int-or-string`), as `{"Container": …, "Network": …, "Volume": …}`.
///
/// Committed rather than derived at run time: deriving them (kube's `crd()`: schemars and the
/// structural-schema rewrite of three CRDs) cost about a quarter of a no-op `berth apply`'s CPU
/// and left megabytes of heap behind in every process. The test `spec_types_match_the_crds`
/// fails when the types change; `BERTH_BLESS=1 cargo test -p berth-sources spec_types`
/// rewrites the file.
const SPEC_TYPES: &str = include_str!("strict_types.json");

/// The type of a schema node, as [`Walk`] checks scalars against it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SchemaType {
    Integer,
    Number,
    Boolean,
    String,
    /// `object`, `array`, or none given: no scalar check.
    Other,
}

/// What [`Walk`] reads of one node of an OpenAPI schema: kept instead of the JSON it is parsed
/// from (a tenth of its heap, held by every process that decodes a manifest).
#[derive(Debug)]
struct TypeNode {
    ty: SchemaType,
    int_or_string: bool,
    properties: BTreeMap<String, TypeNode>,
    /// `additionalProperties` when it is a schema (not `true`/`false`).
    additional: Option<Box<TypeNode>>,
    items: Option<Box<TypeNode>>,
}

impl TypeNode {
    /// `None` for a null or non-object schema (nothing to check).
    fn from_json(v: &Schema) -> Option<TypeNode> {
        let o = v.as_object()?;
        let ty = match o.get("type").and_then(Schema::as_str) {
            Some("integer") => SchemaType::Integer,
            Some("number") => SchemaType::Number,
            Some("boolean") => SchemaType::Boolean,
            Some("string") => SchemaType::String,
            _ => SchemaType::Other,
        };
        let properties = o
            .get("properties")
            .and_then(Schema::as_object)
            .map(|p| {
                p.iter()
                    .filter_map(|(k, v)| Some((k.clone(), TypeNode::from_json(v)?)))
                    .collect()
            })
            .unwrap_or_default();
        Some(TypeNode {
            ty,
            int_or_string: o
                .get("x-kubernetes-int-or-string")
                .and_then(Schema::as_bool)
                .unwrap_or(false),
            properties,
            additional: o
                .get("additionalProperties")
                .and_then(TypeNode::from_json)
                .map(Box::new),
            items: o.get("items").and_then(TypeNode::from_json).map(Box::new),
        })
    }

    /// The schema of a mapping's entry `key`.
    fn entry(&self, key: &str) -> Option<&TypeNode> {
        self.properties.get(key).or(self.additional.as_deref())
    }
}

/// The pruned OpenAPI schema of `spec` of a kind (see [`SPEC_TYPES`]; parsed once).
fn spec_schema(kind: Kind) -> Option<&'static TypeNode> {
    static SCHEMAS: OnceLock<[Option<TypeNode>; 3]> = OnceLock::new();
    let all = SCHEMAS.get_or_init(|| {
        let all: serde_json::Map<String, Schema> =
            serde_json::from_str(SPEC_TYPES).unwrap_or_default();
        let take = |k: &str| all.get(k).and_then(TypeNode::from_json);
        [take("Container"), take("Network"), take("Volume")]
    });
    match kind {
        Kind::Container => all[0].as_ref(),
        Kind::Network => all[1].as_ref(),
        Kind::Volume => all[2].as_ref(),
    }
}

/// [`SPEC_TYPES`] as the CRDs generated from the Rust types give it (what the committed file
/// must equal).
#[cfg(test)]
fn spec_types_from_crds() -> Schema {
    use kube::CustomResourceExt;
    let spec_of = |crd: k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition| {
        crd.spec
            .versions
            .first()
            .and_then(|v| v.schema.as_ref())
            .and_then(|s| s.open_api_v3_schema.as_ref())
            .and_then(|s| serde_json::to_value(s).ok())
            .and_then(|v| v.pointer("/properties/spec").cloned())
            .map(|v| prune(&v))
            .unwrap_or(Schema::Null)
    };
    serde_json::json!({
        "Container": spec_of(berth_api::Container::crd()),
        "Network": spec_of(berth_api::Network::crd()),
        "Volume": spec_of(berth_api::Volume::crd()),
    })
}

/// A schema reduced to the keys [`Walk`] reads.
#[cfg(test)]
fn prune(schema: &Schema) -> Schema {
    let Some(obj) = schema.as_object() else {
        return schema.clone();
    };
    let mut out = serde_json::Map::new();
    for (k, v) in obj {
        match k.as_str() {
            "type" | "x-kubernetes-int-or-string" => {
                out.insert(k.clone(), v.clone());
            }
            "items" | "additionalProperties" => {
                out.insert(k.clone(), prune(v));
            }
            "properties" => {
                let props = v.as_object().map(|p| {
                    p.iter()
                        .map(|(name, s)| (name.clone(), prune(s)))
                        .collect::<serde_json::Map<_, _>>()
                });
                out.insert(k.clone(), props.map_or(Schema::Null, Schema::Object));
            }
            _ => {}
        }
    }
    Schema::Object(out)
}

fn metadata_schema() -> Option<&'static TypeNode> {
    static SCHEMA: OnceLock<Option<TypeNode>> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            let map =
                serde_json::json!({"type": "object", "additionalProperties": {"type": "string"}});
            TypeNode::from_json(&serde_json::json!({"type": "object", "properties": {
                "name": {"type": "string"}, "namespace": {"type": "string"},
                "labels": map, "annotations": map,
            }}))
        })
        .as_ref()
}

/// Checks one document's scalar types against the kind's schema and every value's size.
/// Returns nothing when the document does not parse as YAML (the decoder then reports that).
pub fn check(text: &str, kind: Kind, max_scalar_bytes: usize) -> Vec<Problem> {
    let Ok(root) = serde_saphyr::from_str_with_options::<Spanned<Tree>>(text, reader_options())
    else {
        return Vec::new();
    };
    let mut w = Walk {
        text,
        max_scalar_bytes,
        out: Vec::new(),
    };
    if let Tree::Map(entries) = &root.value {
        for (k, v) in entries {
            let schema = match k.as_str() {
                "spec" => spec_schema(kind),
                "metadata" => metadata_schema(),
                _ => None,
            };
            w.walk(v, schema, k);
        }
    }
    w.out
}

struct Walk<'a> {
    text: &'a str,
    max_scalar_bytes: usize,
    out: Vec<Problem>,
}

impl Walk<'_> {
    fn problem(&mut self, at: &Spanned<Tree>, field: &str, message: String) {
        self.out.push(Problem {
            line: at.referenced.line(),
            column: at.referenced.column(),
            field: field.to_string(),
            message,
        });
    }

    /// True when the scalar at `at` is written in quotes.
    fn quoted(&self, at: &Spanned<Tree>) -> bool {
        let (line, col) = (at.referenced.line(), at.referenced.column());
        self.text
            .lines()
            .nth(line.saturating_sub(1) as usize)
            .and_then(|l| l.chars().nth(col.saturating_sub(1) as usize))
            .is_some_and(|c| c == '"' || c == '\'')
    }

    fn walk(&mut self, node: &Spanned<Tree>, schema: Option<&TypeNode>, field: &str) {
        if let Tree::Str(s) = &node.value
            && s.len() > self.max_scalar_bytes
        {
            let msg = format!(
                "the value is {} bytes, more than the limit of {} bytes per value",
                s.len(),
                self.max_scalar_bytes
            );
            self.problem(node, field, msg);
            return;
        }
        let ty = schema.map_or(SchemaType::Other, |s| s.ty);
        let int_or_string = schema.is_some_and(|s| s.int_or_string);
        match &node.value {
            Tree::Map(entries) => {
                for (k, v) in entries {
                    if k.len() > self.max_scalar_bytes {
                        let msg = format!(
                            "a key of {} bytes, more than the limit of {} bytes",
                            k.len(),
                            self.max_scalar_bytes
                        );
                        self.problem(v, field, msg);
                        continue;
                    }
                    let sub = schema.and_then(|s| s.entry(k));
                    self.walk(v, sub, &format!("{field}.{k}"));
                }
            }
            Tree::Seq(items) => {
                let sub = schema.and_then(|s| s.items.as_deref());
                for (i, v) in items.iter().enumerate() {
                    self.walk(v, sub, &format!("{field}[{i}]"));
                }
            }
            Tree::Null => {}
            _ if int_or_string => {}
            Tree::Str(s) if matches!(ty, SchemaType::Integer | SchemaType::Number) => {
                let digits = s.trim_start_matches(['-', '+']);
                let msg = if self.quoted(node) {
                    format!("expected a number, got the quoted string \"{s}\"; remove the quotes")
                } else if s.contains('_') && s.chars().any(|c| c.is_ascii_digit()) {
                    format!("expected a number, got {s}; write the digits without '_'")
                } else if digits.len() > 1
                    && digits.starts_with('0')
                    && digits.bytes().all(|b| b.is_ascii_digit())
                {
                    format!(
                        "expected a number, got {s}; a leading 0 is ambiguous (YAML 1.1 reads it as octal), write the decimal value"
                    )
                } else {
                    // Plain text: the decoder says which numbers the field takes.
                    return;
                };
                self.problem(node, field, msg);
            }
            Tree::Bool(b) if matches!(ty, SchemaType::Integer | SchemaType::Number) => {
                self.problem(node, field, format!("expected a number, got {b}"));
            }
            Tree::Str(s) if ty == SchemaType::Boolean => {
                let msg = if self.quoted(node) {
                    format!(
                        "expected true or false, got the quoted string \"{s}\"; remove the quotes"
                    )
                } else {
                    format!(
                        "expected true or false, got {s} (manifests are YAML 1.2: yes/no/on/off are strings)"
                    )
                };
                self.problem(node, field, msg);
            }
            Tree::Num(n) if ty == SchemaType::Boolean => {
                self.problem(node, field, format!("expected true or false, got {n}"));
            }
            Tree::Num(n) if ty == SchemaType::String => {
                let msg = if field.ends_with(".mode") {
                    format!(
                        "expected permission bits as a quoted octal string like \"0644\", got the number {n}; quote it (a bare number is ambiguous: kubectl prints 0644 as 420)"
                    )
                } else {
                    format!("expected a string, got the number {n}; quote it: \"{n}\"")
                };
                self.problem(node, field, msg);
            }
            Tree::Bool(b) if ty == SchemaType::String => {
                let msg = format!("expected a string, got the boolean {b}; quote it: \"{b}\"");
                self.problem(node, field, msg);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(kind: Kind, yaml: &str) -> Vec<String> {
        check(yaml, kind, 100)
            .into_iter()
            .map(|p| format!("{}:{}: {}: {}", p.line, p.column, p.field, p.message))
            .collect()
    }

    #[test]
    fn quoted_numbers_and_booleans_are_rejected_with_positions() {
        let y = "spec:\n  image: x\n  replicas: \"1\"\n  init: \"yes\"\n  ports: [{containerPort: 1_000, hostPort: 0800}]\n";
        assert_eq!(
            problems(Kind::Container, y),
            vec![
                "3:13: spec.replicas: expected a number, got the quoted string \"1\"; remove the quotes",
                "4:9: spec.init: expected true or false, got the quoted string \"yes\"; remove the quotes",
                "5:27: spec.ports[0].containerPort: expected a number, got 1_000; write the digits without '_'",
                "5:44: spec.ports[0].hostPort: expected a number, got 0800; a leading 0 is ambiguous (YAML 1.1 reads it as octal), write the decimal value",
            ]
        );
    }

    #[test]
    fn yaml11_booleans_bare_numbers_and_mode() {
        let y = "metadata: {name: a, labels: {x: 1}}\nspec:\n  image: 123\n  init: on\n  files: [{path: /a, content: b, mode: 420}]\n  updateStrategy: {rollingUpdate: {maxSurge: 1, maxUnavailable: 25%}}\n";
        let p = problems(Kind::Container, y);
        assert_eq!(p.len(), 4, "{p:#?}");
        assert!(p[0].starts_with("1:33: metadata.labels.x: expected a string"));
        assert!(p[1].starts_with("3:10: spec.image: expected a string, got the number 123"));
        assert!(p[2].contains("spec.init: expected true or false, got on (manifests are YAML 1.2"));
        assert!(
            p[3].contains("spec.files[0].mode: expected permission bits as a quoted octal string")
        );
    }

    #[test]
    fn long_values_are_rejected() {
        let y = format!("spec:\n  image: {}\n", "a".repeat(101));
        assert_eq!(
            problems(Kind::Container, &y),
            vec![
                "2:10: spec.image: the value is 101 bytes, more than the limit of 100 bytes per value"
            ]
        );
    }

    #[test]
    fn spec_types_match_the_crds() {
        let derived = spec_types_from_crds();
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/src/strict_types.json");
        if std::env::var_os("BERTH_BLESS").is_some() {
            let text = serde_json::to_string_pretty(&derived).expect("json") + "\n";
            std::fs::write(path, text).expect("write strict_types.json");
            return; // the build embedded the previous file; the next run compares
        }
        let committed: Schema = serde_json::from_str(SPEC_TYPES).expect("strict_types.json parses");
        assert!(
            committed == derived,
            "{path} differs from the CRDs' schemas; regenerate it with \
             BERTH_BLESS=1 cargo test -p berth-sources spec_types"
        );
        for kind in [Kind::Container, Kind::Network, Kind::Volume] {
            assert!(
                spec_schema(kind).is_some_and(|s| !s.properties.is_empty()),
                "{kind:?}"
            );
        }
    }
}
