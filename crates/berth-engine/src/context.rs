//! Build contexts (`spec.build`): walk the context directory with Docker's `.dockerignore`
//! rules, compute its content digest, and pack it as the tar the engine's build API takes.
//!
//! - **Ignore rules** are Docker's own (moby `patternmatcher` and `ignorefile`): patterns are
//!   relative to the context root (a leading `/` is dropped), cleaned like Go's
//!   `filepath.Clean`; `*` and `?` never match `/`, `**` matches any number of directories;
//!   `!` re-includes; the last matching pattern wins; a pattern that matches a parent directory
//!   matches everything below it. `<dockerfile>.dockerignore` (beside the Dockerfile, e.g.
//!   `docker/app.Dockerfile.dockerignore`) is read instead of `.dockerignore` when it exists, as
//!   BuildKit does. The Dockerfile and the ignore file itself are always sent (as the Docker CLI
//!   does), since the builder needs them.
//! - **Symlinks are never followed**: a symlink in the context is archived as a symlink (its
//!   target string is part of the digest), so nothing outside the context is ever read. Sockets,
//!   FIFOs and devices are left out.
//! - **The digest** covers, for every kept entry in path order: its path, its type, its
//!   permission bits, and a file's content (SHA-256) or a symlink's target. Modification times,
//!   owners and access times are not part of it: `touch` changes nothing.
//! - **Size limit**: the kept regular files may hold at most [`MAX_CONTEXT_BYTES`] together.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// Largest build context accepted: 1 GiB of kept file content. Larger contexts are almost
/// always a missing `.dockerignore` (a `node_modules` or `target` directory), and the whole
/// context is sent to the engine on every build.
pub const MAX_CONTEXT_BYTES: u64 = 1 << 30;

/// Why a build context cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    /// The context path does not exist, or is not a directory.
    #[error("build context {path}: expected a directory: {reason}")]
    NotADirectory {
        /// The context path.
        path: PathBuf,
        /// What was found instead (or the OS error, e.g. a symlink loop).
        reason: String,
    },
    /// The Dockerfile is missing from the context (or is not a regular file).
    #[error(
        "Dockerfile {dockerfile:?} not found in build context {context} (expected a regular file)"
    )]
    MissingDockerfile {
        /// The context path.
        context: PathBuf,
        /// The Dockerfile, relative to the context.
        dockerfile: String,
    },
    /// An ignore file holds a pattern that does not compile.
    #[error("{file}: invalid pattern {pattern:?}: {reason}")]
    BadPattern {
        /// The ignore file.
        file: PathBuf,
        /// The pattern as written.
        pattern: String,
        /// Why it is invalid.
        reason: String,
    },
    /// The kept files hold more than [`MAX_CONTEXT_BYTES`].
    #[error(
        "build context {path} holds more than {limit} bytes of files after .dockerignore; ignore what the build does not need"
    )]
    TooLarge {
        /// The context path.
        path: PathBuf,
        /// The limit in bytes.
        limit: u64,
    },
    /// Reading the context failed.
    #[error("build context {path}: {source}")]
    Io {
        /// The path that could not be read.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ContextError + '_ {
    move |source| ContextError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Lexical path cleaning with Go's `filepath.Clean` rules (Unix): repeated `/` collapsed, `.`
/// removed, `..` folded, no trailing `/`; the empty result is `.`.
pub fn clean(path: &str) -> String {
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|p| *p != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            p => parts.push(p),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".into(),
        (false, false) => joined,
    }
}

/// Go's `filepath.Match` syntax check (the errors moby's `patternmatcher.New` reports): an
/// unclosed or empty `[` class, a range missing an end (`[-x]`, `[x-]`, `[a-b-c]`), a trailing
/// `\\`.
fn check_glob(p: &str) -> Result<(), String> {
    let bad = |why: &str| Err(format!("syntax error in pattern: {why}"));
    let mut chars = p.chars();
    // One class member: a `-` or `]` here is an error; `\\` escapes the next character.
    let esc = |chars: &mut std::str::Chars<'_>, c: char| -> Result<(), String> {
        match c {
            '-' | ']' => Err("syntax error in pattern: a range in [] is missing an end".into()),
            '\\' => chars
                .next()
                .map(|_| ())
                .ok_or_else(|| "syntax error in pattern: trailing \\".into()),
            _ => Ok(()),
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.next().is_none() => return bad("trailing \\"),
            '[' => {
                let mut rest = chars.clone();
                if rest.clone().next() == Some('^') {
                    rest.next();
                }
                let mut count = 0;
                loop {
                    let Some(c) = rest.next() else {
                        return bad("unclosed [");
                    };
                    if c == ']' && count > 0 {
                        break;
                    }
                    esc(&mut rest, c)?;
                    if rest.clone().next() == Some('-') {
                        rest.next();
                        let Some(hi) = rest.next() else {
                            return bad("unclosed [");
                        };
                        esc(&mut rest, hi)?;
                    }
                    count += 1;
                }
                chars = rest;
            }
            _ => {}
        }
    }
    Ok(())
}

#[derive(Debug)]
enum Matcher {
    Exact,
    Prefix(String),
    Suffix(String),
    Regex(regex::Regex),
}

#[derive(Debug)]
struct Pattern {
    exclusion: bool,
    cleaned: String,
    matcher: Matcher,
}

impl Pattern {
    /// Compiles like moby's `Pattern.compile` (Unix separator).
    fn compile(cleaned: &str, exclusion: bool) -> Result<Pattern, String> {
        #[derive(PartialEq)]
        enum T {
            Exact,
            Prefix,
            Suffix,
            Regex,
        }
        let mut re = String::from("^");
        let mut kind = T::Exact;
        let mut chars = cleaned.chars().peekable();
        let mut i = 0;
        while let Some(ch) = chars.next() {
            match ch {
                '*' if chars.peek() == Some(&'*') => {
                    chars.next();
                    if chars.peek() == Some(&'/') {
                        chars.next();
                    }
                    if chars.peek().is_none() {
                        if kind == T::Exact {
                            kind = T::Prefix;
                        } else {
                            re.push_str(".*");
                            kind = T::Regex;
                        }
                    } else {
                        re.push_str("(.*/)?");
                        kind = T::Regex;
                    }
                    if i == 0 {
                        kind = T::Suffix;
                    }
                }
                '*' => {
                    re.push_str("[^/]*");
                    kind = T::Regex;
                }
                '?' => {
                    re.push_str("[^/]");
                    kind = T::Regex;
                }
                '.' | '+' | '(' | ')' | '|' | '{' | '}' | '$' => {
                    re.push('\\');
                    re.push(ch);
                }
                '\\' => match chars.next() {
                    Some(next) => {
                        re.push('\\');
                        re.push(next);
                        kind = T::Regex;
                    }
                    None => re.push_str("\\\\"),
                },
                '[' | ']' => {
                    re.push(ch);
                    kind = T::Regex;
                }
                c => re.push(c),
            }
            i += 1;
        }
        let matcher = match kind {
            T::Exact => Matcher::Exact,
            T::Prefix => Matcher::Prefix(cleaned[..cleaned.len() - 2].to_string()),
            T::Suffix => Matcher::Suffix(cleaned[2..].to_string()),
            T::Regex => {
                re.push('$');
                Matcher::Regex(regex::Regex::new(&re).map_err(|e| e.to_string())?)
            }
        };
        Ok(Pattern {
            exclusion,
            cleaned: cleaned.to_string(),
            matcher,
        })
    }

    fn matches(&self, path: &str) -> bool {
        match &self.matcher {
            Matcher::Exact => path == self.cleaned,
            Matcher::Prefix(prefix) => path.starts_with(prefix.as_str()),
            Matcher::Suffix(suffix) => {
                path.ends_with(suffix.as_str())
                    || suffix.strip_prefix('/').is_some_and(|s| path == s)
            }
            Matcher::Regex(re) => re.is_match(path),
        }
    }
}

/// A compiled `.dockerignore`: Docker's matching rules (see the module documentation).
#[derive(Debug, Default)]
pub struct IgnoreRules {
    patterns: Vec<Pattern>,
}

impl IgnoreRules {
    /// Compiles patterns as moby's `patternmatcher.New` does (each trimmed and cleaned; a
    /// leading `!` makes an exception).
    ///
    /// # Errors
    /// The pattern that does not compile and why (`"!"` alone, an unclosed `[`…).
    pub fn new<S: AsRef<str>>(patterns: &[S]) -> Result<IgnoreRules, (String, String)> {
        let mut out = Vec::new();
        for raw in patterns {
            let p = raw.as_ref().trim();
            if p.is_empty() {
                continue;
            }
            let p = clean(p);
            let (exclusion, body) = match p.strip_prefix('!') {
                Some("") => {
                    return Err((
                        raw.as_ref().into(),
                        "illegal exclusion pattern \"!\"".into(),
                    ));
                }
                Some(rest) => (true, rest.to_string()),
                None => (false, p),
            };
            check_glob(&body).map_err(|e| (raw.as_ref().to_string(), e))?;
            let pattern =
                Pattern::compile(&body, exclusion).map_err(|e| (raw.as_ref().to_string(), e))?;
            out.push(pattern);
        }
        Ok(IgnoreRules { patterns: out })
    }

    /// Parses the text of an ignore file as moby's `ignorefile.ReadAll` does: `#` comment lines,
    /// blank lines skipped, a leading `/` dropped.
    ///
    /// # Errors
    /// As [`IgnoreRules::new`].
    pub fn parse(text: &str) -> Result<IgnoreRules, (String, String)> {
        let mut patterns = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = if n == 0 {
                line.trim_start_matches('\u{feff}')
            } else {
                line
            };
            if line.starts_with('#') {
                continue;
            }
            let mut p = line.trim();
            if p.is_empty() {
                continue;
            }
            let invert = p.starts_with('!');
            if invert {
                p = p[1..].trim();
            }
            let mut p = if p.is_empty() {
                String::new()
            } else {
                clean(p)
            };
            if p.len() > 1 && p.starts_with('/') {
                p.remove(0);
            }
            patterns.push(if invert { format!("!{p}") } else { p });
        }
        IgnoreRules::new(&patterns)
    }

    /// Whether any pattern is an exception (`!`): then an excluded directory must still be
    /// walked, since something below it may be re-included.
    pub fn has_exceptions(&self) -> bool {
        self.patterns.iter().any(|p| p.exclusion)
    }

    /// Whether `path` (slash-separated, relative to the context root) is ignored: moby's
    /// `MatchesOrParentMatches`, the semantics BuildKit and the Docker CLI use.
    pub fn is_ignored(&self, path: &str) -> bool {
        let file = clean(path);
        if file == "." {
            return false;
        }
        let parents: Vec<&str> = match file.rfind('/') {
            Some(i) => file[..i].split('/').collect(),
            None => Vec::new(),
        };
        let mut matched = false;
        for p in &self.patterns {
            if p.exclusion != matched {
                continue;
            }
            let mut hit = p.matches(&file);
            if !hit {
                hit = (1..=parents.len()).any(|n| p.matches(&parents[..n].join("/")));
            }
            if hit {
                matched = !p.exclusion;
            }
        }
        matched
    }
}

/// What one kept context entry is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EntryKind {
    /// A directory.
    Dir,
    /// A regular file: its size in bytes and the SHA-256 of its content (hex).
    File {
        /// Size in bytes.
        size: u64,
        /// SHA-256 of the content, lower-case hex.
        sha256: String,
    },
    /// A symbolic link, never followed: its target as written.
    Symlink {
        /// The link's target.
        target: PathBuf,
    },
}

/// One kept entry of a build context.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Slash-separated path relative to the context root.
    pub path: String,
    /// Permission bits (`mode & 0o7777`).
    pub mode: u32,
    /// Modification time, seconds since the Unix epoch (sent in the tar, never hashed).
    pub mtime: u64,
    /// What it is.
    pub kind: EntryKind,
}

/// A walked build context: its kept entries in path order and their digest.
#[derive(Clone, Debug)]
pub struct Context {
    /// The context directory.
    pub root: PathBuf,
    /// The Dockerfile, relative to the root.
    pub dockerfile: String,
    /// Kept entries, sorted by path.
    pub entries: Vec<Entry>,
    /// `sha256:<hex>` over paths, types, modes and contents (see the module documentation).
    pub digest: String,
}

/// What identifies a file's content without reading it: device, inode, size, modification and
/// change times (nanoseconds). A `touch` changes it, so the file is read again — and gives
/// the same content digest.
type FileStamp = (u64, u64, u64, i64, i64, i64, i64);

/// Content digests of files already read, so that walking an unchanged context again (before
/// every pass of the agent) only stats its files.
static DIGESTS: std::sync::Mutex<Option<std::collections::HashMap<PathBuf, (FileStamp, String)>>> =
    std::sync::Mutex::new(None);

/// Entries kept in [`DIGESTS`] before it is emptied (a bound on memory).
const DIGESTS_KEPT: usize = 200_000;

fn stamp(meta: &std::fs::Metadata) -> FileStamp {
    use std::os::unix::fs::MetadataExt;
    (
        meta.dev(),
        meta.ino(),
        meta.size(),
        meta.mtime(),
        meta.mtime_nsec(),
        meta.ctime(),
        meta.ctime_nsec(),
    )
}

/// The SHA-256 of a file's content, from [`DIGESTS`] when the file is unchanged.
fn sha256_cached(path: &Path, meta: &std::fs::Metadata) -> Result<String, ContextError> {
    let st = stamp(meta);
    {
        let cache = DIGESTS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((s, d)) = cache.as_ref().and_then(|c| c.get(path))
            && *s == st
        {
            return Ok(d.clone());
        }
    }
    let digest = sha256_file(path)?;
    let mut cache = DIGESTS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let map = cache.get_or_insert_with(Default::default);
    if map.len() >= DIGESTS_KEPT {
        map.clear();
    }
    map.insert(path.to_path_buf(), (st, digest.clone()));
    Ok(digest)
}

fn sha256_file(path: &Path) -> Result<String, ContextError> {
    let mut f = std::fs::File::open(path).map_err(io(path))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = f.read(&mut buf).map_err(io(path))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex(&h.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The ignore file that applies: `<dockerfile>.dockerignore` if it exists, else `.dockerignore`
/// (relative to the root), else none.
fn ignore_file(root: &Path, dockerfile: &str) -> Option<String> {
    [format!("{dockerfile}.dockerignore"), ".dockerignore".into()]
        .into_iter()
        .find(|f| std::fs::symlink_metadata(root.join(f)).is_ok_and(|m| m.file_type().is_file()))
}

struct Walk<'a> {
    root: &'a Path,
    rules: &'a IgnoreRules,
    always: [String; 2],
    entries: Vec<Entry>,
    bytes: u64,
}

impl Walk<'_> {
    fn dir(&mut self, rel: &str) -> Result<(), ContextError> {
        let dir = if rel.is_empty() {
            self.root.to_path_buf()
        } else {
            self.root.join(rel)
        };
        let mut names: Vec<_> = std::fs::read_dir(&dir)
            .map_err(io(&dir))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()
            .map_err(io(&dir))?;
        names.sort();
        for name in names {
            let name = name.to_string_lossy().into_owned();
            let path = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            let full = self.root.join(&path);
            let meta = std::fs::symlink_metadata(&full).map_err(io(&full))?;
            let ignored = self.rules.is_ignored(&path) && !self.always.contains(&path);
            let mode = meta.permissions().mode() & 0o7777;
            let mtime = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_secs());
            let ft = meta.file_type();
            let kind = if ft.is_dir() {
                if ignored && !self.rules.has_exceptions() {
                    continue;
                }
                if !ignored {
                    self.entries.push(Entry {
                        path: path.clone(),
                        mode,
                        mtime,
                        kind: EntryKind::Dir,
                    });
                }
                self.dir(&path)?;
                continue;
            } else if ignored {
                continue;
            } else if ft.is_symlink() {
                EntryKind::Symlink {
                    target: std::fs::read_link(&full).map_err(io(&full))?,
                }
            } else if ft.is_file() {
                self.bytes += meta.len();
                if self.bytes > MAX_CONTEXT_BYTES {
                    return Err(ContextError::TooLarge {
                        path: self.root.to_path_buf(),
                        limit: MAX_CONTEXT_BYTES,
                    });
                }
                EntryKind::File {
                    size: meta.len(),
                    sha256: sha256_cached(&full, &meta)?,
                }
            } else {
                continue;
            };
            self.entries.push(Entry {
                path,
                mode,
                mtime,
                kind,
            });
        }
        Ok(())
    }
}

impl Context {
    /// Walks `root` for a build with `dockerfile` (relative to `root`; see the module
    /// documentation for the rules) and computes the digest. Reads every kept file once.
    ///
    /// # Errors
    /// [`ContextError`]: the root is not a directory (or loops), the Dockerfile is missing, an
    /// ignore pattern is invalid, the context is too large, a read failed.
    pub fn walk(root: &Path, dockerfile: &str) -> Result<Context, ContextError> {
        match std::fs::metadata(root) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(ContextError::NotADirectory {
                    path: root.to_path_buf(),
                    reason: "not a directory".into(),
                });
            }
            Err(e) => {
                return Err(ContextError::NotADirectory {
                    path: root.to_path_buf(),
                    reason: e.to_string(),
                });
            }
        }
        let dockerfile = clean(dockerfile);
        let ignore = ignore_file(root, &dockerfile);
        let rules = match &ignore {
            Some(f) => {
                let path = root.join(f);
                let text = std::fs::read_to_string(&path).map_err(io(&path))?;
                IgnoreRules::parse(&text).map_err(|(pattern, reason)| ContextError::BadPattern {
                    file: path,
                    pattern,
                    reason,
                })?
            }
            None => IgnoreRules::default(),
        };
        let mut walk = Walk {
            root,
            rules: &rules,
            always: [dockerfile.clone(), ignore.unwrap_or_default()],
            entries: Vec::new(),
            bytes: 0,
        };
        walk.dir("")?;
        let mut entries = walk.entries;
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        if !entries
            .iter()
            .any(|e| e.path == dockerfile && matches!(e.kind, EntryKind::File { .. }))
        {
            return Err(ContextError::MissingDockerfile {
                context: root.to_path_buf(),
                dockerfile,
            });
        }
        let mut h = Sha256::new();
        for e in &entries {
            h.update(e.path.as_bytes());
            h.update([0]);
            h.update(format!("{:o}", e.mode).as_bytes());
            h.update([0]);
            match &e.kind {
                EntryKind::Dir => h.update(b"d"),
                EntryKind::File { sha256, .. } => {
                    h.update(b"f");
                    h.update(sha256.as_bytes());
                }
                EntryKind::Symlink { target } => {
                    h.update(b"l");
                    h.update(target.as_os_str().as_encoded_bytes());
                }
            }
            h.update([0]);
        }
        Ok(Context {
            root: root.to_path_buf(),
            dockerfile,
            entries,
            digest: format!("sha256:{}", hex(&h.finalize())),
        })
    }

    /// Packs the kept entries as an uncompressed tar (owner 0:0, the files' own modes and
    /// modification times), the body of the engine's `POST /build`.
    ///
    /// # Errors
    /// [`ContextError::Io`] when a file cannot be read (e.g. it vanished since [`Context::walk`]).
    pub fn tar(&self) -> Result<Vec<u8>, ContextError> {
        let mut b = tar::Builder::new(Vec::new());
        for e in &self.entries {
            let full = self.root.join(&e.path);
            let mut header = tar::Header::new_gnu();
            header.set_mode(e.mode);
            header.set_mtime(e.mtime);
            header.set_uid(0);
            header.set_gid(0);
            match &e.kind {
                EntryKind::Dir => {
                    header.set_entry_type(tar::EntryType::Directory);
                    header.set_size(0);
                    b.append_data(&mut header, format!("{}/", e.path), std::io::empty())
                        .map_err(io(&full))?;
                }
                EntryKind::File { size, .. } => {
                    header.set_entry_type(tar::EntryType::Regular);
                    header.set_size(*size);
                    let f = std::fs::File::open(&full).map_err(io(&full))?;
                    b.append_data(&mut header, &e.path, f.take(*size))
                        .map_err(io(&full))?;
                }
                EntryKind::Symlink { target } => {
                    header.set_entry_type(tar::EntryType::Symlink);
                    header.set_size(0);
                    b.append_link(&mut header, &e.path, target)
                        .map_err(io(&full))?;
                }
            }
        }
        b.into_inner().map_err(io(&self.root))
    }
}

#[cfg(test)]
mod tests;
