//! Decoding manifest files: multi-document YAML → validated [`Manifest`]s, with every error
//! pointing at file, line and column.
//!
//! Documents are split at `---` / `...` marker lines (YAML's document markers, which may not
//! appear at column 1 inside content), so that each document is decoded on its own and its
//! errors carry positions relative to the whole file.

use std::collections::BTreeMap;
use std::fmt;

use berth_api::{
    API_VERSION, ContainerSpec, Kind, Manifest, ManifestMetadata, NetworkSpec, VolumeSpec,
};
use serde::Deserialize;
use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

use berth_core::merge::{FieldPositions, Origin};

use crate::read::{MAX_MESSAGE_CHARS, ReadLimits, bounded};
use crate::strict::{self, reader_options};

/// A problem with one file, located.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodeError {
    /// The file, as given to [`decode`] (usually relative to the manifest directory).
    pub file: String,
    /// 1-based line; 0 when the problem concerns the whole file.
    pub line: u64,
    /// 1-based column; 0 when unknown.
    pub column: u64,
    /// Field path as written in YAML (`spec.ports[0].hostPort`), when one field is at fault.
    pub field: Option<String>,
    /// What is wrong and what was expected.
    pub message: String,
}

impl fmt::Display for DecodeError {
    /// `file:line:column: field: message`; `file: message` for what concerns a whole file
    /// (line 0: a FIFO, a file that is not UTF-8) or a custom resource (no file position).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: ", self.file)?;
        } else {
            write!(f, "{}:{}:{}: ", self.file, self.line, self.column)?;
        }
        if let Some(field) = &self.field {
            write!(f, "{field}: ")?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for DecodeError {}

/// A decoded object and where it starts (`file:line:column` of its document).
#[derive(Clone, Debug, PartialEq)]
pub struct Located {
    /// The object.
    pub manifest: Manifest,
    /// Where the document starts (`file:line:column` of its first line).
    pub origin: Origin,
    /// Where each field is written (empty for Compose entries).
    pub fields: FieldPositions,
}

/// Decodes and validates every document of one file.
///
/// All-or-nothing: when any document is invalid, all errors of the file are returned and none of
/// its objects, so that the caller keeps the file's last-known-good objects. A file without any
/// document is an error too (an editor may have truncated it mid-write; delete the file to remove
/// its objects).
pub fn decode(file: &str, text: &str) -> Result<Vec<Located>, Vec<DecodeError>> {
    decode_with(file, text, &ReadLimits::default())
}

/// [`decode`] with explicit limits (the per-value limit applies here; the per-file limit is the
/// reader's). Types are strict as the Kubernetes API server's ([`crate::strict`]); messages are
/// bounded to [`MAX_MESSAGE_CHARS`] characters.
pub fn decode_with(
    file: &str,
    text: &str,
    limits: &ReadLimits,
) -> Result<Vec<Located>, Vec<DecodeError>> {
    decode_unbounded(file, text, limits).map_err(|errs| {
        errs.into_iter()
            .map(|mut e| {
                e.message = bounded(&e.message, MAX_MESSAGE_CHARS);
                e.field = e.field.map(|f| bounded(&f, MAX_MESSAGE_CHARS));
                e
            })
            .collect()
    })
}

fn decode_unbounded(
    file: &str,
    text: &str,
    limits: &ReadLimits,
) -> Result<Vec<Located>, Vec<DecodeError>> {
    let mut objects = Vec::new();
    let mut errors = Vec::new();
    for chunk in split_documents(text) {
        match decode_document(file, &chunk, limits) {
            Ok(Some(obj)) => objects.push(obj),
            Ok(None) => {}
            Err(mut e) => errors.append(&mut e),
        }
    }
    if errors.is_empty() && objects.is_empty() {
        errors.push(DecodeError {
            file: file.to_string(),
            line: 0,
            column: 0,
            field: None,
            message: "the file holds no document; its previous objects are kept (delete the file to remove them)".into(),
        });
    }
    if errors.is_empty() {
        Ok(objects)
    } else {
        Err(errors)
    }
}

struct Chunk {
    /// Lines before this chunk.
    line_offset: u64,
    text: String,
}

fn split_documents(text: &str) -> Vec<Chunk> {
    let mut chunks = Vec::new();
    let mut current = String::new();
    let mut start = 0u64;
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let bare = line.trim_end_matches(['\n', '\r']);
        let marker =
            |m: &str| bare == m || bare.starts_with(m) && bare[3..].starts_with([' ', '\t']);
        if marker("---") || marker("...") {
            chunks.push(Chunk {
                line_offset: start,
                text: std::mem::take(&mut current),
            });
            start = i as u64;
            if marker("---") {
                // Keep the rest of the line (e.g. `--- # comment`) with its columns intact.
                current.push_str("   ");
                current.push_str(&line[3..]);
            } else {
                current.push('\n');
            }
            continue;
        }
        if bare.starts_with('%') && is_blank(&current) {
            // A directive (`%YAML 1.2`, `%TAG`) before a document's `---`: berth's schema uses
            // no tags and the reader is YAML 1.2, so it is kept as an empty line (positions
            // stay right).
            current.push('\n');
            continue;
        }
        current.push_str(line);
    }
    chunks.push(Chunk {
        line_offset: start,
        text: current,
    });
    chunks
}

fn is_blank(text: &str) -> bool {
    text.lines().all(|l| {
        let t = l.trim();
        t.is_empty() || t.starts_with('#')
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Head {
    api_version: Option<Spanned<String>>,
    kind: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Doc<S> {
    #[allow(dead_code)]
    api_version: String,
    #[allow(dead_code)]
    kind: String,
    metadata: ManifestMetadata,
    spec: S,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct DocDefaultSpec<S: Default> {
    #[allow(dead_code)]
    api_version: String,
    #[allow(dead_code)]
    kind: String,
    metadata: ManifestMetadata,
    #[serde(default)]
    spec: S,
}

/// Deserializes one YAML document; on error also returns the path of the field being decoded
/// (`spec.ports[0].hostPort`), tracked by `serde_path_to_error`.
fn with_path<T: serde::de::DeserializeOwned>(
    text: &str,
) -> Result<T, Box<(serde_saphyr::Error, Option<String>)>> {
    let mut path = None;
    serde_saphyr::with_deserializer_from_str_with_options(text, reader_options(), |de| {
        serde_path_to_error::deserialize(de).map_err(|e| {
            let p = e.path().to_string();
            path = (p != ".").then_some(p);
            e.into_inner()
        })
    })
    .map_err(|e| Box::new((e, path)))
}

fn decode_document(
    file: &str,
    chunk: &Chunk,
    limits: &ReadLimits,
) -> Result<Option<Located>, Vec<DecodeError>> {
    if is_blank(&chunk.text) {
        return Ok(None);
    }
    let err = |line: u64, column: u64, field: Option<&str>, message: String| DecodeError {
        file: file.to_string(),
        line: line + chunk.line_offset,
        column,
        field: field.map(str::to_string),
        message,
    };
    let from_saphyr_at = |e: serde_saphyr::Error, path: Option<String>| {
        vec![reader_error(file, chunk.line_offset, &e, path)]
    };
    let from_saphyr = |e: serde_saphyr::Error| from_saphyr_at(e, None);
    let from_saphyr_path = |b: Box<(serde_saphyr::Error, Option<String>)>| {
        let (e, path) = *b;
        from_saphyr_at(e, path)
    };
    let head: Head =
        serde_saphyr::from_str_with_options(&chunk.text, reader_options()).map_err(from_saphyr)?;
    let first = first_content_line(&chunk.text);
    let api = head.api_version.ok_or_else(|| {
        vec![err(
            first,
            1,
            Some("apiVersion"),
            format!("missing; expected {API_VERSION}"),
        )]
    })?;
    if api.value != API_VERSION {
        return Err(vec![err(
            api.referenced.line(),
            api.referenced.column(),
            Some("apiVersion"),
            format!("expected {API_VERSION}, got {:?}", api.value),
        )]);
    }
    let kind_s = head.kind.ok_or_else(|| {
        vec![err(
            first,
            1,
            Some("kind"),
            "missing; expected Container, Network or Volume".into(),
        )]
    })?;
    let Some(kind) = Kind::parse(&kind_s.value) else {
        return Err(vec![err(
            kind_s.referenced.line(),
            kind_s.referenced.column(),
            Some("kind"),
            format!(
                "expected Container, Network or Volume, got {:?}",
                kind_s.value
            ),
        )]);
    };
    let strict = strict::check(&chunk.text, kind, limits.max_scalar_bytes);
    if !strict.is_empty() {
        return Err(strict
            .into_iter()
            .map(|p| err(p.line, p.column, Some(&p.field), p.message))
            .collect());
    }
    let manifest = match kind {
        Kind::Container => {
            let d: Doc<ContainerSpec> = with_path(&chunk.text).map_err(from_saphyr_path)?;
            Manifest::Container {
                metadata: d.metadata,
                spec: std::sync::Arc::new(d.spec),
            }
        }
        Kind::Network => {
            let d: DocDefaultSpec<NetworkSpec> =
                with_path(&chunk.text).map_err(from_saphyr_path)?;
            Manifest::Network {
                metadata: d.metadata,
                spec: d.spec,
            }
        }
        Kind::Volume => {
            let d: DocDefaultSpec<VolumeSpec> = with_path(&chunk.text).map_err(from_saphyr_path)?;
            Manifest::Volume {
                metadata: d.metadata,
                spec: d.spec,
            }
        }
    };
    // The document's tree, for the positions of its fields (errors here, and later stages such
    // as the security policy).
    let tree: Option<Spanned<Node>> =
        serde_saphyr::from_str_with_options(&chunk.text, reader_options()).ok();
    let mut problems = manifest.validate();
    problems.extend(directory_only(&manifest));
    if !problems.is_empty() {
        return Err(problems
            .into_iter()
            .map(|p| {
                let (line, col) = tree
                    .as_ref()
                    .map(|t| locate(t, &p.path))
                    .unwrap_or((first, 1));
                err(line, col, Some(&p.path), p.message)
            })
            .collect());
    }
    let mut fields = BTreeMap::new();
    if let Some(t) = &tree {
        positions(t, "", chunk.line_offset, &mut fields);
    }
    Ok(Some(Located {
        manifest,
        origin: Origin::file(file, first + chunk.line_offset),
        fields: FieldPositions::new(fields),
    }))
}

/// Records where every value under `node` is written (`spec.capAdd[0]` → line, column), its
/// lines shifted by `line_offset`.
fn positions(
    node: &Spanned<Node>,
    path: &str,
    line_offset: u64,
    out: &mut BTreeMap<String, (u64, u64)>,
) {
    if !path.is_empty() {
        let at = (
            node.referenced.line() + line_offset,
            node.referenced.column(),
        );
        out.insert(path.to_string(), at);
    }
    match &node.value {
        Node::Map(entries) => {
            for (k, v) in entries {
                let sub = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                positions(v, &sub, line_offset, out);
            }
        }
        Node::Seq(items) => {
            for (i, v) in items.iter().enumerate() {
                positions(v, &format!("{path}[{i}]"), line_offset, out);
            }
        }
        Node::Leaf => {}
    }
}

/// The YAML reader's error `e` (for the field at `path`, when known) located in `file`, in the
/// manifest's words: one line, no Rust type names, the position given once.
fn reader_error(
    file: &str,
    line_offset: u64,
    e: &serde_saphyr::Error,
    path: Option<String>,
) -> DecodeError {
    let (line, column) = e
        .location()
        .map(|l| (l.line(), l.column()))
        .unwrap_or((1, 1));
    let message = first_line(&saphyr_message(e));
    // The position is reported separately.
    let message = match message.rfind(" at line ") {
        Some(i) if message[i..].contains(", column ") => message[..i].to_string(),
        _ => message,
    };
    let message = match message.as_str() {
        "invalid u8" => "expected a whole number from 0 to 255".to_string(),
        "invalid u16" => "expected a whole number from 0 to 65535".to_string(),
        "invalid u32" => "expected a whole number from 0 to 4294967295".to_string(),
        "invalid u64" => "expected a whole number of 0 or more".to_string(),
        "invalid i32" | "invalid i64" => "expected a whole number".to_string(),
        // Rust type names mean nothing to a manifest's author.
        _ => message.replace(
            "expected IntOrString",
            "expected a number or a percentage like \"25%\"",
        ),
    };
    DecodeError {
        file: file.to_string(),
        line: line + line_offset,
        column,
        field: path,
        message,
    }
}

/// Reads a configuration file of one YAML document (berth's security policy) into `T` with
/// the manifest reader's strictness (YAML 1.2 booleans, no duplicate keys, a budget against
/// YAML bombs; `T`'s own `deny_unknown_fields`) and reports a mistake as a manifest's:
/// `file:line:column: field: message`, one line, in the file's words.
///
/// # Errors
/// The first mistake, located.
pub fn decode_config<T: serde::de::DeserializeOwned>(
    file: &str,
    text: &str,
) -> Result<T, DecodeError> {
    with_path(text).map_err(|b| {
        let (e, path) = *b;
        let mut e = reader_error(file, 0, &e, path);
        e.message = bounded(&e.message, MAX_MESSAGE_CHARS);
        e
    })
}

/// Fields a manifest directory cannot honour: `valueFrom` needs Secrets and ConfigMaps, which
/// only the Kubernetes source has.
fn directory_only(manifest: &Manifest) -> Vec<berth_api::FieldError> {
    let mut out = Vec::new();
    if let Manifest::Container { spec, .. } = manifest {
        let msg = "valueFrom needs the Kubernetes source (berth agent --kube): a manifest directory has no Secrets or ConfigMaps; write the value, or declare the object as a custom resource";
        for (i, e) in spec.env.iter().enumerate() {
            if e.value_from.is_some() {
                out.push(berth_api::FieldError {
                    path: format!("spec.env[{i}].valueFrom"),
                    message: msg.into(),
                });
            }
        }
        for (i, f) in spec.files.iter().enumerate() {
            if f.value_from.is_some() {
                out.push(berth_api::FieldError {
                    path: format!("spec.files[{i}].valueFrom"),
                    message: msg.into(),
                });
            }
        }
    }
    out
}

/// Fields only a manifest directory (or a Compose file) can honour: `build` needs a context
/// directory on the host, which a custom resource in a cluster does not have.
fn cluster_forbidden(manifest: &Manifest) -> Vec<berth_api::FieldError> {
    match manifest {
        Manifest::Container { spec, .. } if spec.build.is_some() => vec![berth_api::FieldError {
            path: "spec.build".into(),
            message: "only a manifest directory can declare build (a custom resource has no build context on the host); build the image elsewhere and set spec.image".into(),
        }],
        _ => Vec::new(),
    }
}

/// Makes a relative `spec.build.context` absolute against `base`, the directory of the manifest
/// file that declares it (lexically: `.` and `..` are folded, symlinks are not resolved).
pub fn resolve_build_context(manifest: &mut Manifest, base: &std::path::Path) {
    if let Manifest::Container { spec, .. } = manifest
        && spec.build.is_some()
        && let Some(build) = &mut std::sync::Arc::make_mut(spec).build
    {
        let mut out = std::path::PathBuf::new();
        for c in base.join(&build.context).components() {
            match c {
                std::path::Component::CurDir => {}
                std::path::Component::ParentDir => {
                    out.pop();
                }
                other => out.push(other),
            }
        }
        build.context = out.to_string_lossy().into_owned();
    }
}

/// Decodes one object given as JSON, e.g. a custom resource read from a Kubernetes API server:
/// the same types, the same unknown-field rules and the same validation as [`decode`], minus
/// positions. Only `apiVersion`, `kind`, `metadata.{name,namespace,labels,annotations}` and
/// `spec` are read (the server's own metadata and `status` are ignored). Errors carry `origin`
/// as their file and line 0.
pub fn decode_object(
    origin: &str,
    value: &serde_json::Value,
) -> Result<Manifest, Vec<DecodeError>> {
    let err = |field: Option<&str>, message: String| {
        vec![DecodeError {
            file: origin.to_string(),
            line: 0,
            column: 0,
            field: field.map(str::to_string),
            message,
        }]
    };
    let api = value
        .get("apiVersion")
        .and_then(|v| v.as_str())
        .unwrap_or("");
    if api != API_VERSION {
        return Err(err(
            Some("apiVersion"),
            format!("expected {API_VERSION}, got {api:?}"),
        ));
    }
    let kind_s = value.get("kind").and_then(|v| v.as_str()).unwrap_or("");
    let Some(kind) = Kind::parse(kind_s) else {
        return Err(err(
            Some("kind"),
            format!("expected Container, Network or Volume, got {kind_s:?}"),
        ));
    };
    let meta = value.get("metadata").cloned().unwrap_or_default();
    let mut doc = serde_json::Map::new();
    doc.insert("apiVersion".into(), api.into());
    doc.insert("kind".into(), kind_s.into());
    let mut m = serde_json::Map::new();
    for field in ["name", "namespace", "labels", "annotations"] {
        if let Some(v) = meta.get(field).filter(|v| !v.is_null()) {
            m.insert(field.into(), v.clone());
        }
    }
    doc.insert("metadata".into(), m.into());
    if let Some(spec) = value.get("spec").filter(|v| !v.is_null()) {
        doc.insert("spec".into(), spec.clone());
    }
    let doc = serde_json::Value::Object(doc);
    let from_json = |e: serde_path_to_error::Error<serde_json::Error>| {
        let path = e.path().to_string();
        err(
            (path != ".").then_some(path.as_str()),
            e.into_inner().to_string(),
        )
    };
    let manifest = match kind {
        Kind::Container => {
            let d: Doc<ContainerSpec> = serde_path_to_error::deserialize(doc).map_err(from_json)?;
            Manifest::Container {
                metadata: d.metadata,
                spec: std::sync::Arc::new(d.spec),
            }
        }
        Kind::Network => {
            let d: DocDefaultSpec<NetworkSpec> =
                serde_path_to_error::deserialize(doc).map_err(from_json)?;
            Manifest::Network {
                metadata: d.metadata,
                spec: d.spec,
            }
        }
        Kind::Volume => {
            let d: DocDefaultSpec<VolumeSpec> =
                serde_path_to_error::deserialize(doc).map_err(from_json)?;
            Manifest::Volume {
                metadata: d.metadata,
                spec: d.spec,
            }
        }
    };
    let mut problems = manifest.validate();
    problems.extend(cluster_forbidden(&manifest));
    if problems.is_empty() {
        Ok(manifest)
    } else {
        Err(problems
            .into_iter()
            .map(|p| DecodeError {
                file: origin.to_string(),
                line: 0,
                column: 0,
                field: Some(p.path),
                message: p.message,
            })
            .collect())
    }
}

/// The YAML reader's error in the manifest's words: no Rust types, no library options.
pub(crate) fn saphyr_message(e: &serde_saphyr::Error) -> String {
    use serde_saphyr::Error as E;
    use serde_saphyr::MessageFormatter;
    let e = match e {
        E::WithSnippet { error, .. } => error.as_ref(),
        E::AliasError { error, .. } => error.as_ref(),
        other => other,
    };
    match e {
        E::DuplicateMappingKey { key: Some(k), .. } => {
            format!("the key {k:?} appears twice in this mapping; keep one")
        }
        E::DuplicateMappingKey { key: None, .. } => {
            "a key appears twice in this mapping; keep one".into()
        }
        E::Budget { breach, .. } => format!(
            "the document is too large or nests too deep for a manifest ({}); is it a YAML bomb?",
            budget_words(breach)
        ),
        E::AliasReplayCounterOverflow { .. }
        | E::AliasReplayLimitExceeded { .. }
        | E::AliasExpansionLimitExceeded { .. }
        | E::AliasReplayStackDepthExceeded { .. } => {
            "aliases (*name) expand to too much data for a manifest; is it a YAML bomb?".into()
        }
        E::NullIntoString { .. } | E::InvalidCharNull { .. } => {
            "expected a value, got nothing (null); write a value or remove the field".into()
        }
        E::QuotingRequired { value, .. } => {
            format!("expected a string, got {value}; quote it: \"{value}\"")
        }
        E::InvalidBooleanStrict { .. } => "expected true or false".into(),
        E::InvalidUtf8Input => "the file is not UTF-8 text".into(),
        E::SerdeMissingField { field, .. } => format!("missing required field {field:?}"),
        E::SerdeUnknownField {
            field, expected, ..
        } => format!(
            "unknown field {field:?}; expected one of: {}",
            expected.join(", ")
        ),
        E::SerdeUnknownVariant {
            variant, expected, ..
        } => format!(
            "unknown value {variant:?}; expected one of: {}",
            expected.join(", ")
        ),
        E::UnsupportedTag { tag, .. } => {
            format!("the tag {tag} is not supported in a manifest; remove it")
        }
        other => plain_words(
            serde_saphyr::UserMessageFormatter
                .format_message(other)
                .as_ref(),
        ),
    }
}

/// The reader's remaining messages that speak of its own machinery ("expected sequence start"),
/// in the manifest's words.
fn plain_words(message: &str) -> String {
    const WORDS: [(&str, &str); 6] = [
        ("expected sequence start", "expected a list"),
        (
            "expected mapping start",
            "expected a mapping (key: value lines)",
        ),
        ("expected string scalar", "expected a string"),
        (
            "recursion limit exceeded",
            "the document nests too deep for a manifest",
        ),
        (
            "reference to unknown value",
            "an alias (*name) refers to no anchor (&name) defined before it",
        ),
        ("simple key expected ':'", "expected a key followed by ': '"),
    ];
    WORDS
        .iter()
        .find(|(theirs, _)| message == *theirs)
        .map_or_else(|| message.to_string(), |(_, ours)| (*ours).to_string())
}

/// A YAML budget breach in words.
fn budget_words(b: &serde_saphyr::budget::BudgetBreach) -> String {
    use serde_saphyr::budget::BudgetBreach as B;
    match b {
        B::Nodes { nodes } => format!("more than {} values", nodes.saturating_sub(1)),
        B::Depth { depth } => format!("nested {depth} levels deep"),
        B::Events { events } => format!("more than {} YAML events", events.saturating_sub(1)),
        B::Aliases { aliases } => format!("{aliases} aliases"),
        B::Anchors { anchors } => format!("{anchors} anchors"),
        B::Documents { documents } => format!("{documents} documents"),
        B::ScalarBytes { total_scalar_bytes } => {
            format!("{total_scalar_bytes} bytes of values")
        }
        B::InputBytes { input_bytes } => format!("{input_bytes} bytes"),
        _ => "a reader limit was exceeded".into(),
    }
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or(s).to_string()
}

fn first_content_line(text: &str) -> u64 {
    text.lines()
        .position(|l| {
            let t = l.trim();
            !t.is_empty() && !t.starts_with('#')
        })
        .map_or(1, |i| i as u64 + 1)
}

/// A YAML tree whose every value knows its position; used only to locate validation errors.
enum Node {
    Map(Vec<(String, Spanned<Node>)>),
    Seq(Vec<Spanned<Node>>),
    Leaf,
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Node;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any YAML value")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Node, A::Error> {
                let mut out = Vec::new();
                while let Some(k) = m.next_key::<KeyString>()? {
                    out.push((k.0, m.next_value()?));
                }
                Ok(Node::Map(out))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<Node, A::Error> {
                let mut out = Vec::new();
                while let Some(v) = s.next_element()? {
                    out.push(v);
                }
                Ok(Node::Seq(out))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Node, E> {
                Ok(Node::Leaf)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Node, E> {
                Ok(Node::Leaf)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Node, E> {
                Ok(Node::Leaf)
            }
            fn visit_i128<E>(self, _: i128) -> Result<Node, E> {
                Ok(Node::Leaf)
            }
            fn visit_u128<E>(self, _: u128) -> Result<Node, E> {
                Ok(Node::Leaf)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Node, E> {
                Ok(Node::Leaf)
            }
            fn visit_str<E>(self, _: &str) -> Result<Node, E> {
                Ok(Node::Leaf)
            }
            fn visit_unit<E>(self) -> Result<Node, E> {
                Ok(Node::Leaf)
            }
            fn visit_none<E>(self) -> Result<Node, E> {
                Ok(Node::Leaf)
            }
            fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
                Node::deserialize(d)
            }
        }
        d.deserialize_any(V)
    }
}

/// A mapping key rendered as text, whatever its YAML type.
struct KeyString(String);

impl<'de> Deserialize<'de> for KeyString {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = KeyString;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a scalar key")
            }
            fn visit_str<E>(self, v: &str) -> Result<KeyString, E> {
                Ok(KeyString(v.to_string()))
            }
            fn visit_bool<E>(self, v: bool) -> Result<KeyString, E> {
                Ok(KeyString(v.to_string()))
            }
            fn visit_i64<E>(self, v: i64) -> Result<KeyString, E> {
                Ok(KeyString(v.to_string()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<KeyString, E> {
                Ok(KeyString(v.to_string()))
            }
            fn visit_f64<E>(self, v: f64) -> Result<KeyString, E> {
                Ok(KeyString(v.to_string()))
            }
            fn visit_unit<E>(self) -> Result<KeyString, E> {
                Ok(KeyString("null".into()))
            }
        }
        d.deserialize_any(V)
    }
}

/// Position (line, column) of the value at `path` (`spec.ports[0].hostPort`, keys may contain
/// dots); the deepest existing ancestor when the field itself is absent.
fn locate(root: &Spanned<Node>, path: &str) -> (u64, u64) {
    let mut node = root;
    let mut rest = path;
    loop {
        let pos = (node.referenced.line(), node.referenced.column());
        rest = rest.trim_start_matches('.');
        if rest.is_empty() {
            return pos;
        }
        match &node.value {
            Node::Map(entries) => {
                let found = entries
                    .iter()
                    .filter(|(k, _)| {
                        rest.strip_prefix(k.as_str())
                            .is_some_and(|after| after.is_empty() || after.starts_with(['.', '[']))
                    })
                    .max_by_key(|(k, _)| k.len());
                match found {
                    Some((k, v)) => {
                        rest = &rest[k.len()..];
                        node = v;
                    }
                    None => return pos,
                }
            }
            Node::Seq(items) => {
                let Some(inner) = rest.strip_prefix('[') else {
                    return pos;
                };
                let Some((idx, after)) = inner.split_once(']') else {
                    return pos;
                };
                match idx.parse::<usize>().ok().and_then(|i| items.get(i)) {
                    Some(v) => {
                        rest = after;
                        node = v;
                    }
                    None => return pos,
                }
            }
            Node::Leaf => return pos,
        }
    }
}

/// Keys of `BTreeMap` used by callers that group objects per file.
pub type ByFile = BTreeMap<String, Vec<Located>>;

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "\
# a comment
apiVersion: berth.dev/v1alpha1
kind: Network
metadata:
  name: net
---
apiVersion: berth.dev/v1alpha1
kind: Container
metadata:
  name: web
  namespace: app
spec:
  image: busybox:latest
  ports:
    - containerPort: 80
      hostPort: 8080
";

    fn errors(text: &str) -> Vec<String> {
        decode("f.yaml", text)
            .expect_err("must fail")
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn multi_document_file_decodes() {
        let objs = decode("f.yaml", GOOD).expect("valid");
        assert_eq!(objs.len(), 2);
        assert_eq!(objs[0].origin.to_string(), "f.yaml:2:1");
        assert_eq!(objs[1].origin.to_string(), "f.yaml:7:1");
        assert_eq!(objs[1].manifest.key().to_string(), "Container/app/web");
    }

    #[test]
    fn unknown_field_is_located() {
        let e = errors(&GOOD.replace(
            "    - containerPort: 80",
            "    - containerPort: 80\n      hostprot: 1",
        ));
        assert_eq!(e.len(), 1);
        assert!(e[0].starts_with("f.yaml:16:"), "{e:?}");
        assert!(e[0].contains("hostprot"), "{e:?}");
    }

    #[test]
    fn yaml_directive_before_the_document_is_accepted() {
        let objs = decode("f.yaml", &format!("%YAML 1.2\n---\n{GOOD}")).expect("valid");
        assert_eq!(objs.len(), 2);
        assert_eq!(
            objs[0].origin.to_string(),
            "f.yaml:4:1",
            "positions count the directive line"
        );
    }

    #[test]
    fn wrong_type_is_located() {
        let e = errors(&GOOD.replace("containerPort: 80", "containerPort: eighty"));
        assert!(e[0].starts_with("f.yaml:15:"), "{e:?}");
        assert!(
            e[0].ends_with(
                ": spec.ports[0].containerPort: expected a whole number from 0 to 65535"
            ),
            "names the field and what was expected: {e:?}"
        );
    }

    #[test]
    fn validation_error_names_field_and_position() {
        let e = errors(&GOOD.replace("hostPort: 8080", "hostPort: 0"));
        assert_eq!(
            e,
            vec!["f.yaml:16:17: spec.ports[0].hostPort: expected 1–65535, got 0"]
        );
    }

    #[test]
    fn truncated_file_is_an_error() {
        let cut = &GOOD[..GOOD.len() - 30];
        assert!(!errors(cut).is_empty());
        assert!(errors("")[0].contains("no document"));
        assert!(errors("# only a comment\n")[0].contains("no document"));
    }

    #[test]
    fn wrong_api_version_and_kind() {
        let e = errors(&GOOD.replacen("berth.dev/v1alpha1", "v1", 1));
        assert_eq!(
            e,
            vec!["f.yaml:2:13: apiVersion: expected berth.dev/v1alpha1, got \"v1\""]
        );
        let e = errors(&GOOD.replace("kind: Network", "kind: Pod"));
        assert!(
            e[0].contains("kind: expected Container, Network or Volume"),
            "{e:?}"
        );
    }

    #[test]
    fn value_from_in_a_directory_is_an_error_naming_the_kubernetes_source() {
        let text = "apiVersion: berth.dev/v1alpha1\nkind: Container\nmetadata: {name: c}\nspec:\n  image: busybox:latest\n  env:\n    - name: PASSWORD\n      valueFrom: {secretKeyRef: {name: db, key: password}}\n";
        let e = errors(text);
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].starts_with(
                "f.yaml:8:18: spec.env[0].valueFrom: valueFrom needs the Kubernetes source"
            ),
            "{e:?}"
        );
    }

    const BUILD: &str = "apiVersion: berth.dev/v1alpha1\nkind: Container\nmetadata: {name: backend, namespace: blog}\nspec:\n  build:\n    context: ./backend\n    dockerfile: docker/Dockerfile\n    args: {VERSION: \"1.2\"}\n    target: runtime\n";

    #[test]
    fn build_decodes_without_image_and_its_context_becomes_absolute() {
        let mut objs = decode("blog/app.yaml", BUILD).expect("valid");
        resolve_build_context(&mut objs[0].manifest, std::path::Path::new("/srv/m/blog"));
        let Manifest::Container { spec, .. } = &objs[0].manifest else {
            panic!("a container")
        };
        let build = spec.build.as_ref().expect("build");
        assert_eq!(build.context, "/srv/m/blog/backend");
        assert_eq!(build.dockerfile_or_default(), "docker/Dockerfile");
        assert_eq!(build.args.get("VERSION").map(String::as_str), Some("1.2"));
        assert_eq!(build.target.as_deref(), Some("runtime"));
        assert_eq!(spec.image, None);
        let mut up =
            decode("a.yaml", &BUILD.replace("./backend", "../shared/./ctx")).expect("valid");
        resolve_build_context(&mut up[0].manifest, std::path::Path::new("/srv/m/blog"));
        let Manifest::Container { spec, .. } = &up[0].manifest else {
            panic!("a container")
        };
        assert_eq!(
            spec.build.as_ref().map(|b| b.context.as_str()),
            Some("/srv/m/shared/ctx")
        );
    }

    #[test]
    fn build_errors_name_the_field_and_position() {
        assert_eq!(
            errors(&BUILD.replace("docker/Dockerfile", "../Dockerfile")),
            vec![
                "f.yaml:7:17: spec.build.dockerfile: expected a path relative to the context and inside it, like Dockerfile or docker/app.Dockerfile, got \"../Dockerfile\""
            ]
        );
        assert_eq!(
            errors(&BUILD.replace(
                "    target: runtime\n",
                "    target: runtime\n    cache: true\n"
            ))
            .len(),
            1,
            "unknown fields in build are errors"
        );
        let no_image = errors(&BUILD.replace("  build:\n    context: ./backend\n    dockerfile: docker/Dockerfile\n    args: {VERSION: \"1.2\"}\n    target: runtime\n", "  replicas: 1\n"));
        assert_eq!(
            no_image,
            vec![
                "f.yaml:5:3: spec.image: expected an image reference (required unless spec.build is given)"
            ]
        );
    }

    #[test]
    fn build_in_a_custom_resource_is_an_error_naming_the_manifest_directory() {
        let value = serde_json::json!({
            "apiVersion": "berth.dev/v1alpha1", "kind": "Container",
            "metadata": {"name": "backend", "namespace": "blog"},
            "spec": {"image": "blog/backend:dev", "build": {"context": "."}},
        });
        let e = decode_object("kube:Container/blog/backend", &value).expect_err("refused");
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(e[0].field.as_deref(), Some("spec.build"));
        assert!(
            e[0].message
                .starts_with("only a manifest directory can declare build"),
            "{e:?}"
        );
    }

    #[test]
    fn host_selector_decodes_and_is_checked() {
        let text = "apiVersion: berth.dev/v1alpha1\nkind: Volume\nmetadata: {name: v}\nspec:\n  hostSelector:\n    matchLabels: {zone: eu-1}\n    matchExpressions:\n      - {key: role, operator: In}\n";
        assert_eq!(
            errors(text),
            vec![
                "f.yaml:8:9: spec.hostSelector.matchExpressions[0].values: operator In needs at least one value"
            ]
        );
        let ok = text.replace("operator: In}", "operator: In, values: [edge]}");
        let objs = decode("f.yaml", &ok).expect("valid");
        assert!(objs[0].manifest.host_selector().is_some());
    }

    /// A policy violation points at the offending field (`file:line:column` of its value), not
    /// at the document's start: the decoder records where every field is written, also in a
    /// later document of the file; a field that is absent points at its nearest parent.
    #[test]
    fn policy_violations_point_at_the_offending_field() {
        use berth_core::merge::Declaration;
        use berth_core::policy::{HostFacts, Policy, Profile, Source, admit};
        let text = format!(
            "{GOOD}---\napiVersion: berth.dev/v1alpha1\nkind: Container\nmetadata: {{name: bad, namespace: app}}\nspec:\n  image: busybox:latest\n  networkMode: host\n  capAdd: [CHOWN, SYS_ADMIN]\n"
        );
        let objs = decode("f.yaml", &text).expect("valid");
        let bad = &objs[2];
        assert_eq!(bad.origin.to_string(), "f.yaml:18:1");
        let mut policy = Policy::default();
        policy.sources.directory.profile = Profile::Restricted;
        let d = Declaration {
            manifest: bad.manifest.clone(),
            origin: bad.origin.clone(),
            fields: bad.fields.clone(),
        };
        let (_, refused) = admit(
            &BTreeMap::new(),
            [(Source::Directory, d)],
            &policy,
            &HostFacts::default(),
        );
        let at: Vec<String> = refused[0]
            .violations
            .iter()
            .map(|v| format!("{} {}", v.at.as_ref().expect("a file position"), v.field))
            .collect();
        for want in [
            "f.yaml:23:16 spec.networkMode",
            "f.yaml:24:19 spec.capAdd[1]",
            "f.yaml:22:3 spec.user",
        ] {
            assert!(at.iter().any(|a| a == want), "{want}: {at:?}");
        }
        let shown = refused[0].to_string();
        assert!(
            shown.contains("f.yaml:23:16: spec.networkMode: "),
            "{shown}"
        );
    }

    #[test]
    fn label_keys_with_dots_are_located() {
        let text = "apiVersion: berth.dev/v1alpha1\nkind: Volume\nmetadata: {name: v}\nspec:\n  labels:\n    berth.dev/x: y\n";
        assert_eq!(
            errors(text),
            vec![
                "f.yaml:6:18: spec.labels.berth.dev/x: label keys under berth.dev/ are reserved for berth"
            ]
        );
    }
}
