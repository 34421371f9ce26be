//! Finding and assembling a Compose project: files, `.env`, interpolation, overrides,
//! `include`, `extends`, profiles.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use super::interpolate::interpolate;
use super::tree::{self, Key, Node, Value};
use super::{Finding, FindingKind, dotenv, map};
use crate::decode::Located;

/// Compose file names, in the order Compose looks for them in a directory.
pub const FILE_NAMES: [&str; 4] = [
    "compose.yaml",
    "compose.yml",
    "docker-compose.yaml",
    "docker-compose.yml",
];

/// True when `name` is a Compose file name (`compose.yaml`, `docker-compose.yml`, …) or one of
/// their `*.override.*` files.
pub fn is_compose_name(name: &str) -> bool {
    FILE_NAMES.contains(&name)
        || FILE_NAMES
            .iter()
            .any(|f| override_names(f).contains(&name.to_string()))
}

/// `compose.yaml` → `compose.override.yaml`, `compose.override.yml`.
fn override_names(main: &str) -> Vec<String> {
    let stem = main.rsplit_once('.').map_or(main, |(s, _)| s);
    vec![
        format!("{stem}.override.yaml"),
        format!("{stem}.override.yml"),
    ]
}

/// The Compose file of `dir` (the first of [`FILE_NAMES`] that exists), if any.
pub fn compose_file_in(dir: &Path) -> Option<PathBuf> {
    FILE_NAMES.iter().map(|n| dir.join(n)).find(|p| p.is_file())
}

/// Variables visible to interpolation before the project's `.env` (usually the process
/// environment, which takes precedence over `.env`, as in Compose).
#[derive(Clone, Debug, Default)]
pub struct Environment {
    vars: BTreeMap<String, String>,
}

impl Environment {
    /// The process environment (read now).
    pub fn process() -> Self {
        Environment {
            vars: std::env::vars().collect(),
        }
    }

    /// Exactly these variables (tests, `berth convert --env`).
    pub fn from_map(vars: BTreeMap<String, String>) -> Self {
        Environment { vars }
    }
}

/// A loaded Compose project.
#[derive(Clone, Debug)]
pub struct Project {
    /// Project name = berth namespace.
    pub name: String,
    /// Project directory (the Compose file's).
    pub dir: PathBuf,
    /// berth objects, each with the position of its service, network or volume.
    pub objects: Vec<Located>,
    /// Accepted with a note (e.g. the obsolete `version:`).
    pub warnings: Vec<Finding>,
    /// Every file the project read (Compose files, `.env`, env files, secrets, configs).
    pub files: Vec<PathBuf>,
}

pub(super) struct Ctx<'a> {
    pub dir: PathBuf,
    pub vars: BTreeMap<String, String>,
    pub display: &'a dyn Fn(&Path) -> String,
    pub findings: Vec<Finding>,
    pub files: Vec<PathBuf>,
    /// Shown file name → real path, for paths relative to the file that wrote them.
    pub paths: BTreeMap<String, PathBuf>,
}

impl Ctx<'_> {
    /// The directory of the file `node` was read from (relative paths in it resolve there).
    pub fn dir_of(&self, node: &Node) -> PathBuf {
        self.paths
            .get(&*node.file)
            .and_then(|p| p.parent())
            .map_or_else(|| self.dir.clone(), Path::to_path_buf)
    }

    pub fn lookup(&self, name: &str) -> Option<String> {
        self.vars.get(name).cloned()
    }

    pub fn finding(&mut self, kind: FindingKind, at: &Node, key: &str, message: impl Into<String>) {
        self.findings.push(Finding {
            kind,
            file: at.file.to_string(),
            line: at.line,
            column: at.column,
            key: key.to_string(),
            message: message.into(),
        });
    }

    pub fn key_finding(
        &mut self,
        kind: FindingKind,
        file: &Node,
        k: &Key,
        key: &str,
        message: impl Into<String>,
    ) {
        self.findings.push(Finding {
            kind,
            file: file.file.to_string(),
            line: k.line,
            column: k.column,
            key: key.to_string(),
            message: message.into(),
        });
    }

    pub fn file_finding(&mut self, path: &Path, message: impl Into<String>) {
        self.findings.push(Finding {
            kind: FindingKind::Invalid,
            file: (self.display)(path),
            line: 0,
            column: 0,
            key: "(file)".into(),
            message: message.into(),
        });
    }

    /// Reads a text file defensively ([`crate::read::read_manifest`]: regular files only,
    /// non-blocking, at most the process's manifest size limit, UTF-8), recording it.
    pub fn read_text(&mut self, path: &Path) -> Result<String, String> {
        self.files.push(path.to_path_buf());
        crate::read::read_manifest(path, &crate::read::ReadLimits::default())
            .map_err(|e| format!("{}: {e}", (self.display)(path)))
    }

    /// Reads, parses and interpolates one Compose file.
    pub fn compose_file(&mut self, path: &Path) -> Option<Node> {
        let text = match self.read_text(path) {
            Ok(t) => t,
            Err(e) => {
                self.file_finding(path, e);
                return None;
            }
        };
        let shown = (self.display)(path);
        self.paths.insert(shown.clone(), path.to_path_buf());
        let mut root = match tree::parse(&shown, &text) {
            Ok(n) => n,
            Err(e) => {
                self.findings.push(Finding {
                    kind: FindingKind::Invalid,
                    file: shown,
                    line: e.line,
                    column: e.column,
                    key: "(yaml)".into(),
                    message: e.message,
                });
                return None;
            }
        };
        let mut errors = Vec::new();
        interpolate_node(&mut root, "", &self.vars, &mut errors);
        self.findings.extend(errors);
        Some(root)
    }
}

fn interpolate_node(
    node: &mut Node,
    path: &str,
    vars: &BTreeMap<String, String>,
    errors: &mut Vec<Finding>,
) {
    let lookup = |n: &str| vars.get(n).cloned();
    match &mut node.value {
        Value::Str(s) => match interpolate(s, &lookup) {
            Ok(v) => *s = v,
            Err(e) => errors.push(Finding {
                kind: FindingKind::Invalid,
                file: node.file.to_string(),
                line: node.line,
                column: node.column,
                key: path.to_string(),
                message: e.to_string(),
            }),
        },
        Value::Seq(items) => {
            for (i, n) in items.iter_mut().enumerate() {
                interpolate_node(n, &format!("{path}[{i}]"), vars, errors);
            }
        }
        Value::Map(entries) => {
            for (k, n) in entries.iter_mut() {
                let p = if path.is_empty() {
                    k.name.clone()
                } else {
                    format!("{path}.{}", k.name)
                };
                interpolate_node(n, &p, vars, errors);
            }
        }
        _ => {}
    }
}

/// Loads the project whose main Compose file is `main` (its `*.override.*` file, `.env`,
/// includes and extended files are found from there). `display` renders paths for findings
/// and origins (usually relative to the manifest directory).
///
/// # Errors
/// Every finding of kind [`FindingKind::Invalid`] or [`FindingKind::Unsupported`] (all of
/// them), plus the warnings; nothing is returned when there is one.
pub fn load_project(
    main: &Path,
    display: &dyn Fn(&Path) -> String,
    env: &Environment,
) -> Result<Project, Vec<Finding>> {
    let main = &std::path::absolute(main).unwrap_or_else(|_| main.to_path_buf());
    let dir = main
        .parent()
        .map_or_else(|| PathBuf::from("/"), Path::to_path_buf);
    let mut ctx = Ctx {
        dir: dir.clone(),
        vars: env.vars.clone(),
        display,
        findings: Vec::new(),
        files: Vec::new(),
        paths: BTreeMap::new(),
    };
    // `.env`: the process environment wins (Compose's precedence).
    let dot_env = dir.join(".env");
    if dot_env.is_file() {
        match ctx.read_text(&dot_env) {
            Ok(text) => {
                let process = env.vars.clone();
                match dotenv::parse(&text, &|k| process.get(k).cloned()) {
                    Ok(vars) => {
                        for (k, v) in vars {
                            ctx.vars.entry(k).or_insert(v);
                        }
                    }
                    Err(e) => ctx.findings.push(Finding {
                        kind: FindingKind::Invalid,
                        file: display(&dot_env),
                        line: e.line,
                        column: 1,
                        key: "(.env)".into(),
                        message: e.message,
                    }),
                }
            }
            Err(e) => ctx.file_finding(&dot_env, e),
        }
    }
    let mut root = ctx.compose_file(main);
    let main_name = main.file_name().and_then(|n| n.to_str()).unwrap_or("");
    for o in override_names(main_name) {
        let p = dir.join(&o);
        if p.is_file()
            && let Some(over) = ctx.compose_file(&p)
            && let Some(base) = root.as_mut()
        {
            *base = merge_project(base, &over);
        }
    }
    let Some(mut root) = root else {
        return Err(ctx.findings);
    };
    resolve_includes(&mut ctx, &mut root, 0);
    let name = project_name(&mut ctx, &root, &dir);
    resolve_all_extends(&mut ctx, &mut root);
    let profiles: BTreeSet<String> = ctx
        .lookup("COMPOSE_PROFILES")
        .unwrap_or_default()
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    let objects = map::project(&mut ctx, &root, &name, &profiles);
    let (warnings, errors): (Vec<_>, Vec<_>) = ctx
        .findings
        .into_iter()
        .partition(|f| f.kind == FindingKind::Warning);
    if errors.is_empty() {
        Ok(Project {
            name,
            dir,
            objects,
            warnings,
            files: ctx.files,
        })
    } else {
        let mut all = errors;
        all.extend(warnings);
        all.sort_by(|a, b| (&a.file, a.line, a.column).cmp(&(&b.file, b.line, b.column)));
        Err(all)
    }
}

/// The project name: `name:`, else `COMPOSE_PROJECT_NAME`, else the directory's name; made a
/// DNS-1123 label the way Compose normalises names (lower case, other characters dropped), with
/// `_` (allowed by Compose, not in a berth namespace) turned into `-`.
fn project_name(ctx: &mut Ctx<'_>, root: &Node, dir: &Path) -> String {
    let explicit = root.get("name").and_then(Node::scalar);
    let raw = explicit
        .clone()
        .or_else(|| ctx.lookup("COMPOSE_PROJECT_NAME"))
        .unwrap_or_else(|| {
            std::fs::canonicalize(dir)
                .ok()
                .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
                .unwrap_or_default()
        });
    let name: String = raw
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            'a'..='z' | '0'..='9' | '-' => Some(c),
            '_' => Some('-'),
            _ => None,
        })
        .collect();
    let name = name.trim_matches('-').to_string();
    let valid = !name.is_empty() && name.len() <= 63;
    if !valid || (explicit.is_some() && name != raw) {
        let at = root.get("name").unwrap_or(root).clone();
        ctx.finding(
            if explicit.is_some() && !valid { FindingKind::Invalid } else { FindingKind::Unsupported },
            &at,
            "name",
            format!("project name {raw:?} must be lower-case letters, digits and '-' (at most 63) to be a berth namespace; got {name:?} after normalising"),
        );
    }
    name
}

/// Top-level sections merged by `include` and overrides.
const SECTIONS: [&str; 5] = ["services", "networks", "volumes", "secrets", "configs"];

fn resolve_includes(ctx: &mut Ctx<'_>, root: &mut Node, depth: u32) {
    let Some(include) = root.get("include").cloned() else {
        return;
    };
    if depth > 8 {
        ctx.finding(
            FindingKind::Invalid,
            &include,
            "include",
            "includes nested more than 8 deep (a cycle?)",
        );
        return;
    }
    let base_dir = ctx.dir_of(&include);
    let Value::Seq(items) = &include.value else {
        ctx.finding(
            FindingKind::Invalid,
            &include,
            "include",
            format!("expected a list, got {}", include.kind_name()),
        );
        return;
    };
    for (i, item) in items.iter().enumerate() {
        let key = format!("include[{i}]");
        let paths: Vec<Node> = match &item.value {
            Value::Str(_) => vec![item.clone()],
            Value::Map(entries) => {
                let mut paths = Vec::new();
                for (k, v) in entries {
                    match k.name.as_str() {
                        "path" => match &v.value {
                            Value::Seq(ps) => paths.extend(ps.iter().cloned()),
                            _ => paths.push(v.clone()),
                        },
                        "project_directory" | "env_file" => ctx.key_finding(
                            FindingKind::Unsupported,
                            item,
                            k,
                            &format!("{key}.{}", k.name),
                            "an included file is read with the including project's directory and variables",
                        ),
                        other => ctx.key_finding(FindingKind::Invalid, item, k, &format!("{key}.{other}"), "unknown key; expected path, project_directory or env_file"),
                    }
                }
                paths
            }
            _ => {
                ctx.finding(
                    FindingKind::Invalid,
                    item,
                    &key,
                    "expected a path or a mapping with path",
                );
                continue;
            }
        };
        for p in paths {
            let Some(rel) = p.scalar() else { continue };
            let path = base_dir.join(rel);
            let Some(mut inc) = ctx.compose_file(&path) else {
                continue;
            };
            resolve_includes(ctx, &mut inc, depth + 1);
            for section in SECTIONS {
                let Some(Value::Map(entries)) = inc.get(section).map(|n| n.value.clone()) else {
                    continue;
                };
                for (k, v) in entries {
                    if root.get(section).and_then(|s| s.get(&k.name)).is_some() {
                        ctx.key_finding(
                            FindingKind::Invalid,
                            &v,
                            &k,
                            &format!("{section}.{}", k.name),
                            format!(
                                "declared both by the project and by included file {}",
                                (ctx.display)(&path)
                            ),
                        );
                        continue;
                    }
                    insert_entry(root, section, k, v);
                }
            }
        }
    }
}

fn insert_entry(root: &mut Node, section: &str, k: Key, v: Node) {
    let Value::Map(top) = &mut root.value else {
        return;
    };
    if !top.iter().any(|(key, _)| key.name == section) {
        let node = Node::synthetic(Value::Map(Vec::new()), &v);
        top.push((
            Key {
                name: section.into(),
                line: 0,
                column: 0,
            },
            node,
        ));
    }
    if let Some((_, sec)) = top.iter_mut().find(|(key, _)| key.name == section)
        && let Value::Map(entries) = &mut sec.value
    {
        entries.push((k, v));
    }
}

/// Keys of a service whose list form `K=V` (or `K: V` for extra_hosts) is merged by key.
const KEYED_LISTS: [&str; 4] = ["environment", "labels", "annotations", "sysctls"];
/// Keys whose value an override replaces instead of merging.
const REPLACED: [&str; 3] = ["command", "entrypoint", "test"];

/// A list `["K=V", "K"]` as a mapping (`K: null` for a bare key), keeping positions.
pub(super) fn normalize_keyed(node: &Node, sep: char) -> Node {
    match &node.value {
        // An item that is not a string (`- [A, B]`) is invalid (compose-spec `list_or_dict`):
        // the list is left as it is, for the mapper to report the item.
        Value::Seq(items) if items.iter().any(|i| !matches!(i.value, Value::Str(_))) => {
            node.clone()
        }
        Value::Seq(items) => {
            let entries = items
                .iter()
                .map(|item| {
                    let text = item.scalar().unwrap_or_default();
                    let (k, v) = match text.split_once(sep) {
                        Some((k, v)) => (
                            k.to_string(),
                            Node::synthetic(Value::Str(v.to_string()), item),
                        ),
                        None => (text.clone(), Node::synthetic(Value::Null, item)),
                    };
                    (
                        Key {
                            name: k,
                            line: item.line,
                            column: item.column,
                        },
                        v,
                    )
                })
                .collect();
            Node::synthetic(Value::Map(entries), node)
        }
        _ => node.clone(),
    }
}

fn normalize_service(service: &Node) -> Node {
    let Value::Map(entries) = &service.value else {
        return service.clone();
    };
    let entries = entries
        .iter()
        .map(|(k, v)| {
            if KEYED_LISTS.contains(&k.name.as_str()) {
                (k.clone(), normalize_keyed(v, '='))
            } else {
                (k.clone(), v.clone())
            }
        })
        .collect();
    Node::synthetic(Value::Map(entries), service)
}

/// Merges `over` onto `base` with Compose's rules: mappings merge by key, most lists append
/// (without duplicates), `command`, `entrypoint` and `healthcheck.test` are replaced, scalars
/// are replaced.
pub(super) fn merge(base: &Node, over: &Node, key: &str) -> Node {
    match (&base.value, &over.value) {
        (Value::Map(b), Value::Map(o)) => {
            let mut out = b.clone();
            for (k, v) in o {
                match out.iter_mut().find(|(bk, _)| bk.name == k.name) {
                    Some((bk, bv)) => {
                        *bv = merge(bv, v, &k.name);
                        *bk = k.clone();
                    }
                    None => out.push((k.clone(), v.clone())),
                }
            }
            Node {
                value: Value::Map(out),
                ..over.clone()
            }
        }
        (Value::Seq(b), Value::Seq(o)) if !REPLACED.contains(&key) => {
            let mut out = b.clone();
            for v in o {
                if !out.iter().any(|x| x.value == v.value) {
                    out.push(v.clone());
                }
            }
            Node {
                value: Value::Seq(out),
                ..over.clone()
            }
        }
        _ => over.clone(),
    }
}

/// Merges an override (or extending) project file onto the base.
fn merge_project(base: &Node, over: &Node) -> Node {
    let norm = |n: &Node| -> Node {
        let Value::Map(entries) = &n.value else {
            return n.clone();
        };
        let entries = entries
            .iter()
            .map(|(k, v)| {
                if k.name == "services" {
                    let services = match &v.value {
                        Value::Map(s) => Value::Map(
                            s.iter()
                                .map(|(sk, sv)| (sk.clone(), normalize_service(sv)))
                                .collect(),
                        ),
                        other => other.clone(),
                    };
                    (
                        k.clone(),
                        Node {
                            value: services,
                            ..v.clone()
                        },
                    )
                } else {
                    (k.clone(), v.clone())
                }
            })
            .collect();
        Node {
            value: Value::Map(entries),
            ..n.clone()
        }
    };
    merge(&norm(base), &norm(over), "")
}

fn resolve_all_extends(ctx: &mut Ctx<'_>, root: &mut Node) {
    let Some(Value::Map(services)) = root.get("services").map(|s| s.value.clone()) else {
        return;
    };
    let mut resolved = Vec::new();
    for (k, svc) in &services {
        let mut seen = vec![(svc.file.to_string(), k.name.clone())];
        let s = resolve_extends(ctx, root, svc, &k.name, &mut seen);
        resolved.push((k.clone(), s));
    }
    if let Value::Map(top) = &mut root.value
        && let Some((_, s)) = top.iter_mut().find(|(k, _)| k.name == "services")
    {
        s.value = Value::Map(resolved);
    }
}

/// The service with its `extends` chain merged in (`extends` removed).
fn resolve_extends(
    ctx: &mut Ctx<'_>,
    file_root: &Node,
    service: &Node,
    name: &str,
    seen: &mut Vec<(String, String)>,
) -> Node {
    let Some(ext) = service.get("extends").cloned() else {
        return service.clone();
    };
    let key = format!("services.{name}.extends");
    let (base_name, file) = match &ext.value {
        Value::Str(s) => (s.clone(), None),
        Value::Map(entries) => {
            let mut svc = None;
            let mut file = None;
            for (k, v) in entries {
                match k.name.as_str() {
                    "service" => svc = v.scalar(),
                    "file" => file = v.scalar(),
                    other => ctx.key_finding(
                        FindingKind::Invalid,
                        &ext,
                        k,
                        &format!("{key}.{other}"),
                        "unknown key; expected service or file",
                    ),
                }
            }
            let Some(svc) = svc else {
                ctx.finding(FindingKind::Invalid, &ext, &key, "missing service");
                return strip(service, "extends");
            };
            (svc, file)
        }
        _ => {
            ctx.finding(
                FindingKind::Invalid,
                &ext,
                &key,
                "expected a service name or a mapping with service and file",
            );
            return strip(service, "extends");
        }
    };
    // The extended file, relative to the file that names it.
    let other_root;
    let base_root = match &file {
        Some(f) => {
            let path = ctx.dir_of(&ext).join(f);
            match ctx.compose_file(&path) {
                Some(r) => {
                    other_root = r;
                    &other_root
                }
                None => return strip(service, "extends"),
            }
        }
        None => file_root,
    };
    let marker = (
        file.clone().unwrap_or_else(|| service.file.to_string()),
        base_name.clone(),
    );
    if seen.contains(&marker) {
        ctx.finding(
            FindingKind::Invalid,
            &ext,
            &key,
            format!("extends cycle through service {base_name:?}"),
        );
        return strip(service, "extends");
    }
    seen.push(marker);
    let Some(base) = base_root
        .get("services")
        .and_then(|s| s.get(&base_name))
        .cloned()
    else {
        ctx.finding(
            FindingKind::Invalid,
            &ext,
            &key,
            format!("extends unknown service {base_name:?}"),
        );
        return strip(service, "extends");
    };
    let base = resolve_extends(ctx, base_root, &base, &base_name, seen);
    merge(
        &normalize_service(&base),
        &normalize_service(&strip(service, "extends")),
        "",
    )
}

fn strip(node: &Node, key: &str) -> Node {
    match &node.value {
        Value::Map(entries) => Node {
            value: Value::Map(
                entries
                    .iter()
                    .filter(|(k, _)| k.name != key)
                    .cloned()
                    .collect(),
            ),
            ..node.clone()
        },
        _ => node.clone(),
    }
}
