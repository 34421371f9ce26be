//! `DirectorySource`: a directory of YAML manifests (subdirectories included).
//!
//! Which files count: names ending in `.yaml` or `.yml` whose name, and every directory above
//! them, does not start with `.`. Editor leftovers are therefore ignored: `x.yaml.bak`,
//! `x.yaml~`, `.x.yaml.swp`, vim's `4913`, emacs' `#x.yaml#` and `.#x.yaml`.
//!
//! Rules (the safety contract):
//! - every scan re-reads the whole directory and publishes the full set;
//! - a file that does not decode keeps its last-known-good objects (and is reported);
//! - a file that was never good contributes nothing; a deleted file's objects go;
//! - two files declaring one object: a conflict, reported, neither new version applied;
//! - a scan that cannot list the directory fails as a whole: the caller keeps the last set;
//! - files are read defensively ([`crate::read`]): only regular files, non-blocking, bounded;
//!   a FIFO, device or socket named like a manifest, or a manifest whose name is not UTF-8, is
//!   reported and skipped (it never makes the set incomplete);
//! - an emptied directory declares nothing (its objects go, as when each file is deleted); a
//!   missing one cannot be listed (the last set stays). The watch follows the directory when it
//!   is deleted and recreated or replaced by a rename (deploy tools' atomic switch).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use berth_api::ObjectKey;
use berth_core::merge::{Conflict, Declaration, merge};
use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::{mpsc, watch};

use crate::compose;
use crate::decode::{DecodeError, Located, decode_with};
use crate::read::{ReadLimits, read_manifest};

/// Failure to read the directory itself (not one file).
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The directory (or a subdirectory) could not be listed.
    #[error("cannot read manifest directory {path}: {source}")]
    ReadDir {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file watcher could not be started.
    #[error("cannot watch manifest directory {path}: {message}")]
    Watch {
        /// The directory.
        path: PathBuf,
        /// The watcher's error.
        message: String,
    },
}

/// One complete view of a source: everything it declares now.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Snapshot {
    /// Objects in force (including last-known-good objects of files that now fail).
    pub objects: BTreeMap<ObjectKey, Declaration>,
    /// Current errors, per file (or custom resource), sorted by file.
    pub errors: Vec<DecodeError>,
    /// Objects declared by more than one file.
    pub conflicts: Vec<Conflict>,
    /// Why this set may lack objects: files that have not decoded once since this source
    /// started (their objects are unknown), or conflicts with no previously applied version.
    /// Consumers must not remove undeclared objects while this is set.
    pub incomplete: Option<String>,
    /// Kubernetes source only: the cluster's identity of each object in force (for status).
    pub cluster: BTreeMap<ObjectKey, ClusterMeta>,
}

/// A custom resource's identity in the cluster.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClusterMeta {
    /// `metadata.generation` (changes with the spec only, not with status writes).
    pub generation: i64,
    /// `metadata.uid`.
    pub uid: String,
}

impl Snapshot {
    /// The manifests in force.
    pub fn manifests(&self) -> impl Iterator<Item = &berth_api::Manifest> {
        self.objects.values().map(|d| &d.manifest)
    }
}

#[derive(Default)]
struct FileState {
    content: Option<String>,
    good: Vec<Located>,
    errors: Vec<DecodeError>,
    /// Not a file that can hold manifests (FIFO, device, socket, non-UTF-8 name): reported,
    /// but never makes the set incomplete.
    skipped: bool,
    /// Compose projects: warnings already logged.
    warnings: Vec<compose::Finding>,
}

/// (Re)loads a Compose project on every scan: it reads several files (`.env`, env files,
/// includes), so its main file's content alone says nothing about a change.
/// The main file goes through the defensive reader's checks first: a FIFO, device or socket
/// named like a Compose file is reported and skipped, like any manifest.
fn load_compose(main: &Path, show: &dyn Fn(&Path) -> String, state: &mut FileState) {
    if let Err(e) = crate::read::check_regular(main) {
        state.skipped = e.is_not_regular();
        state.errors = vec![DecodeError {
            file: show(main),
            line: 0,
            column: 0,
            field: None,
            message: e.to_string(),
        }];
        return;
    }
    let is_main = main
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| compose::load::FILE_NAMES.contains(&n));
    if !is_main {
        state.errors = vec![DecodeError {
            file: show(main),
            line: 0,
            column: 0,
            field: None,
            message: "a Compose override file without its Compose file next to it".into(),
        }];
        return;
    }
    let (result, warnings) =
        match compose::load_project(main, show, &compose::Environment::process()) {
            Ok(p) => (Ok(p.objects), p.warnings),
            Err(findings) => {
                let (warnings, errors): (Vec<_>, Vec<_>) = findings
                    .into_iter()
                    .partition(|f| f.kind == compose::FindingKind::Warning);
                (Err(errors), warnings)
            }
        };
    if warnings != state.warnings {
        for w in &warnings {
            tracing::warn!(warning = %w, "Compose project");
        }
        state.warnings = warnings;
    }
    match result {
        Ok(objects) => {
            state.good = objects;
            state.errors.clear();
        }
        Err(errors) => {
            state.errors = errors
                .iter()
                .map(compose::Finding::to_decode_error)
                .collect()
        }
    }
}

/// Reads a manifest directory, remembering each file's last-known-good objects.
pub struct DirectorySource {
    root: PathBuf,
    files: BTreeMap<PathBuf, FileState>,
    previous: BTreeMap<ObjectKey, Declaration>,
    limits: ReadLimits,
}

/// True when `name` is a manifest file name (see the module docs).
pub fn is_manifest_name(name: &str) -> bool {
    !name.starts_with('.') && (name.ends_with(".yaml") || name.ends_with(".yml"))
}

impl DirectorySource {
    /// A source for `root`; nothing is read until [`DirectorySource::scan`].
    pub fn new(root: impl Into<PathBuf>) -> Self {
        DirectorySource {
            root: root.into(),
            files: BTreeMap::new(),
            previous: BTreeMap::new(),
            limits: ReadLimits::default(),
        }
    }

    /// The same source with other size limits (default: [`ReadLimits::default`]).
    #[must_use]
    pub fn with_limits(mut self, limits: ReadLimits) -> Self {
        self.limits = limits;
        self
    }

    /// The directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Every object the files of the last scan declare (their last-known-good versions), in
    /// file order, duplicates included: `validate` resolves references over these, so that an
    /// object declared twice is reported once, as a conflict, and not also as missing.
    pub fn declared(&self) -> impl Iterator<Item = &Located> {
        self.files.values().flat_map(|f| f.good.iter())
    }

    /// Re-reads every manifest file and returns the full set.
    ///
    /// # Errors
    /// [`SourceError::ReadDir`] when a directory cannot be listed; the source's memory is then
    /// unchanged and the caller should keep its previous snapshot.
    pub fn scan(&mut self) -> Result<Snapshot, SourceError> {
        let mut paths = Vec::new();
        collect(&self.root, &mut paths)?;
        let mut files = BTreeMap::new();
        let base = if self.root.is_file() {
            self.root
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_default()
        } else {
            self.root.clone()
        };
        // Compose projects work with absolute paths; show them relative to the directory too.
        let base_abs = std::path::absolute(&base).unwrap_or_else(|_| base.clone());
        let show = |p: &Path| {
            p.strip_prefix(&base_abs)
                .or_else(|_| p.strip_prefix(&base))
                .unwrap_or(p)
                .display()
                .to_string()
        };
        for path in paths {
            let rel = path.strip_prefix(&base).unwrap_or(&path).to_path_buf();
            let display = rel.display().to_string();
            let mut state = self.files.remove(&rel).unwrap_or_default();
            state.skipped = false;
            if path.file_name().and_then(|n| n.to_str()).is_none() {
                state.content = None;
                state.skipped = true;
                state.errors = vec![DecodeError {
                    file: display,
                    line: 0,
                    column: 0,
                    field: None,
                    message: "the file name is not valid UTF-8 (shown with \u{FFFD}); skipped, rename the file".into(),
                }];
                files.insert(rel, state);
                continue;
            }
            let is_compose = path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(compose::is_compose_name);
            if is_compose {
                load_compose(&path, &show, &mut state);
                files.insert(rel, state);
                continue;
            }
            match read_manifest(&path, &self.limits) {
                Ok(text) if state.content.as_deref() == Some(text.as_str()) => {}
                Ok(text) => {
                    match decode_with(&display, &text, &self.limits) {
                        Ok(mut objs) => {
                            // A bare file name (`berth apply app.yaml`) has the parent "",
                            // which is the current directory.
                            let base = path
                                .parent()
                                .filter(|p| !p.as_os_str().is_empty())
                                .unwrap_or(Path::new("."));
                            let base = std::path::absolute(base).unwrap_or(base.to_path_buf());
                            for o in &mut objs {
                                crate::decode::resolve_build_context(&mut o.manifest, &base);
                            }
                            state.good = objs;
                            state.errors.clear();
                        }
                        Err(errs) => state.errors = errs,
                    }
                    state.content = Some(text);
                }
                // Unreadable, too large, a dangling or looping symlink, or vanished between
                // listing and reading: an error for this file (its last-known-good objects
                // stay; while it never decoded, nothing is removed). A FIFO, device or socket
                // is skipped.
                Err(e) => {
                    state.content = None;
                    state.skipped = e.is_not_regular();
                    state.errors = vec![DecodeError {
                        file: display,
                        line: 0,
                        column: 0,
                        field: None,
                        message: e.to_string(),
                    }];
                }
            }
            files.insert(rel, state);
        }
        self.files = files;
        let declarations = self
            .files
            .values()
            .flat_map(|f| f.good.iter())
            .map(|l| Declaration {
                manifest: l.manifest.clone(),
                origin: l.origin.clone(),
                fields: l.fields.clone(),
            })
            .collect();
        let merged = merge(&self.previous, declarations);
        let mut unknown: Vec<String> = self
            .files
            .iter()
            .filter(|(_, f)| !f.errors.is_empty() && f.good.is_empty() && !f.skipped)
            .map(|(p, _)| p.display().to_string())
            .collect();
        unknown.extend(
            merged
                .conflicts
                .iter()
                .filter(|c| !merged.objects.contains_key(&c.key))
                .map(|c| c.key.to_string()),
        );
        let incomplete = (!unknown.is_empty()).then(|| {
            format!(
                "not decoded yet, or in conflict, since the agent started: {}",
                unknown.join(", ")
            )
        });
        self.previous = merged.objects.clone();
        Ok(Snapshot {
            incomplete,
            objects: merged.objects,
            errors: self
                .files
                .values()
                .flat_map(|f| f.errors.iter().cloned())
                .collect(),
            conflicts: merged.conflicts,
            cluster: BTreeMap::new(),
        })
    }

    /// Scans now, then again after every change (debounced by `debounce`) and every `resync`,
    /// publishing each complete snapshot on the returned channel. The channel holds `None` until
    /// the first complete scan; a failed scan publishes nothing (the last set stays in force).
    ///
    /// Scans after the first run on a blocking thread, so a slow disk never stalls the caller's
    /// runtime. The watch is re-established when the directory is deleted and recreated or
    /// replaced by a rename (the parent directory is watched for that), and SIGHUP forces a
    /// rescan (logged).
    ///
    /// # Errors
    /// [`SourceError::Watch`] when the file watcher cannot be started.
    pub fn watch(
        mut self,
        debounce: Duration,
        resync: Duration,
    ) -> Result<watch::Receiver<Option<Arc<Snapshot>>>, SourceError> {
        let (tx, rx) = watch::channel(None);
        let (ev_tx, mut ev_rx) = mpsc::unbounded_channel::<Change>();
        // Absolute paths throughout, so that events of the parent's watch compare equal.
        let root = std::path::absolute(&self.root).unwrap_or_else(|_| self.root.clone());
        let watch_err = |e: notify::Error| SourceError::Watch {
            path: self.root.clone(),
            message: e.to_string(),
        };
        let parent = root.parent().map(Path::to_path_buf);
        let (root_ev, parent_ev) = (root.clone(), parent.clone());
        // Set when an event names the directory itself (created, removed, renamed: seen by the
        // parent's watch): the loop then watches it again even if the new directory reuses the
        // old one's inode number (a deleted directory's watch is gone for good).
        let root_touched = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let touched = root_touched.clone();
        let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            // Not for reads: every scan opens the directory, which its own watch and the
            // parent's report as an access to it.
            if let Ok(ev) = &res
                && !matches!(ev.kind, notify::EventKind::Access(_))
                && ev.paths.iter().any(|p| p == &root_ev)
            {
                touched.store(true, std::sync::atomic::Ordering::SeqCst);
            }
            // Reads (our own scans open every file) are not changes; errors (e.g. a queue
            // overflow) just trigger a full rescan.
            let change = match res {
                Ok(ev) if ev.need_rescan() => Some(Change::Done),
                Ok(ev)
                    if !ev.paths.iter().any(|p| {
                        // The parent's watch reports its other entries too: only the
                        // directory itself matters there.
                        if p.parent() == parent_ev.as_deref() {
                            p == &root_ev
                        } else {
                            relevant_path(p)
                        }
                    }) =>
                {
                    None
                }
                Ok(ev) => Change::of(&ev.kind),
                Err(_) => Some(Change::Done),
            };
            if let Some(c) = change {
                let _ = ev_tx.send(c);
            }
        })
        .map_err(watch_err)?;
        watcher
            .watch(&root, RecursiveMode::Recursive)
            .map_err(watch_err)?;
        // The parent, so that the directory's own replacement is seen.
        if let Some(parent) = &parent
            && let Err(e) = watcher.watch(parent, RecursiveMode::NonRecursive)
        {
            tracing::debug!(error = %e, parent = %parent.display(), "cannot watch the manifest directory's parent; a replaced directory is noticed at the next resync");
        }
        let mut watched = identity(&root);
        let mut reported: Vec<DecodeError> = Vec::new();
        let mut publish =
            move |result: Result<Snapshot, SourceError>,
                  tx: &watch::Sender<Option<Arc<Snapshot>>>| {
                match result {
                    Ok(snap) => {
                        // Each error once, not on every rescan.
                        for e in snap.errors.iter().filter(|e| !reported.contains(e)) {
                            tracing::warn!(error = %e, "manifest file rejected; its last-known-good objects stay in force");
                        }
                        reported = snap.errors.clone();
                        for c in &snap.conflicts {
                            tracing::warn!(conflict = %c, "conflicting declarations; neither new version applied");
                        }
                        tx.send_if_modified(|cur| {
                            if cur.as_deref() == Some(&snap) {
                                false
                            } else {
                                *cur = Some(Arc::new(snap));
                                true
                            }
                        });
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "manifest directory scan failed; keeping the last complete set")
                    }
                }
            };
        let first = self.scan();
        publish(first, &tx);
        let mut hangup =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(resync);
            tick.tick().await;
            let mut source = Some(self);
            loop {
                tokio::select! {
                    ev = ev_rx.recv() => {
                        let Some(first) = ev else { break };
                        // Debounce: let a burst of writes (an editor's save) finish first.
                        if !settle(&mut ev_rx, first, debounce).await { break; }
                        tracing::debug!("manifest directory changed; rescanning");
                    }
                    _ = tick.tick() => tracing::trace!("periodic manifest rescan"),
                    Some(()) = async { match hangup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => {
                        tracing::info!(dir = %root.display(), "SIGHUP: re-reading the manifest directory");
                    }
                    _ = tx.closed() => break,
                }
                // A directory deleted and recreated, or replaced by a rename, is a new inode:
                // watch it again.
                let now = identity(&root);
                let touched = root_touched.swap(false, std::sync::atomic::Ordering::SeqCst);
                if now != watched || (touched && now.is_some()) {
                    let _ = watcher.unwatch(&root);
                    match watcher.watch(&root, RecursiveMode::Recursive) {
                        Ok(()) => {
                            tracing::info!(dir = %root.display(), "manifest directory was replaced; watching the new one");
                            watched = now;
                        }
                        Err(e) => {
                            // Missing: whatever appears under the name next is new.
                            watched = None;
                            tracing::debug!(error = %e, "manifest directory not watchable yet")
                        }
                    }
                }
                let Some(mut src) = source.take() else { break };
                let Ok((src, result)) = tokio::task::spawn_blocking(move || {
                    let r = src.scan();
                    (src, r)
                })
                .await
                else {
                    tracing::error!(
                        "manifest directory scan panicked; the directory is no longer watched"
                    );
                    break;
                };
                source = Some(src);
                publish(result, &tx);
            }
            drop(watcher); // the watch stops when this task ends
        });
        Ok(rx)
    }
}

/// A change in the directory, as far as the debounce is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Change {
    /// A file is being written (created, truncated, appended to): more is likely to follow.
    Writing,
    /// A write is complete: a file was closed after writing, renamed or removed.
    Done,
}

impl Change {
    /// What an event says; `None` for reads (our own scans open and read every file).
    fn of(kind: &EventKind) -> Option<Change> {
        use notify::event::{AccessKind, AccessMode, ModifyKind};
        match kind {
            EventKind::Access(AccessKind::Close(AccessMode::Write))
            | EventKind::Modify(ModifyKind::Name(_))
            | EventKind::Remove(_) => Some(Change::Done),
            EventKind::Access(_) => None,
            _ => Some(Change::Writing),
        }
    }
}

/// Quiet time after a completed write before the directory is re-read: long enough for the
/// other files of a burst (a `git checkout`, `cp -r`) to follow, short enough not to count.
const SETTLE_AFTER_DONE: Duration = Duration::from_millis(20);

/// Waits for a burst of changes that began with `first` to end: [`SETTLE_AFTER_DONE`] after
/// the latest event when that event completed a write, else until `debounce` after the first
/// event — whichever comes first. An editor's save (write, close) is thus re-read after 20 ms,
/// a file still being written after `debounce`. Returns false when the watcher stopped.
async fn settle(
    rx: &mut mpsc::UnboundedReceiver<Change>,
    first: Change,
    debounce: Duration,
) -> bool {
    let deadline = tokio::time::Instant::now() + debounce;
    let mut last = first;
    loop {
        let until = match last {
            Change::Done => deadline.min(tokio::time::Instant::now() + SETTLE_AFTER_DONE),
            Change::Writing => deadline,
        };
        match tokio::time::timeout_at(until, rx.recv()).await {
            Ok(Some(c)) => last = c,
            Ok(None) => return false,
            Err(_) => return true,
        }
    }
}

/// (device, inode) of the directory, `None` when it does not exist.
fn identity(root: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(root).ok().map(|m| (m.dev(), m.ino()))
}

fn relevant_path(path: &Path) -> bool {
    // Directory events matter too (a subdirectory moved in or out).
    path.file_name()
        .and_then(|n| n.to_str())
        .is_none_or(|n| is_manifest_name(n) || !n.contains('.') || n.ends_with(".env"))
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), SourceError> {
    if dir.is_file() {
        // `berth apply FILE`: that file alone (a Compose file brings its project).
        out.push(dir.to_path_buf());
        return Ok(());
    }
    let mut visited = std::collections::BTreeSet::new();
    if let Ok(c) = std::fs::canonicalize(dir) {
        visited.insert(c);
    }
    collect_in(dir, out, &mut visited)
}

/// Walks `dir`; symlinked files and directories are followed (each directory once, so link
/// loops end); a manifest-named link that cannot be followed is listed, so that reading it
/// reports the error.
fn collect_in(
    dir: &Path,
    out: &mut Vec<PathBuf>,
    visited: &mut std::collections::BTreeSet<PathBuf>,
) -> Result<(), SourceError> {
    let err = |source| SourceError::ReadDir {
        path: dir.to_path_buf(),
        source,
    };
    // A directory with a Compose file is a Compose project: the project reads what it needs
    // (overrides, .env, env files, includes); nothing else in or under it is a berth manifest
    // (its subdirectories are build contexts and data directories).
    if let Some(main) = compose::compose_file_in(dir) {
        out.push(main);
        return Ok(());
    }
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(err)?
        .collect::<Result<_, _>>()
        .map_err(err)?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let os_name = entry.file_name();
        // A name that is not UTF-8 is judged by its bytes, listed when it looks like a
        // manifest, and reported by the scan.
        let name = os_name.to_string_lossy();
        if name.starts_with('.') {
            continue;
        }
        let path = entry.path();
        let Ok(ft) = entry.file_type() else { continue };
        let target = if ft.is_symlink() {
            std::fs::metadata(&path).ok()
        } else {
            None
        };
        let is_dir = ft.is_dir() || target.as_ref().is_some_and(|m| m.is_dir());
        if is_dir {
            let first_visit = std::fs::canonicalize(&path).is_ok_and(|c| visited.insert(c));
            if first_visit {
                collect_in(&path, out, visited)?;
            }
        } else if is_manifest_name(&name) {
            // Regular files, links to files, and links that cannot be followed (reported).
            out.push(path);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const NET: &str = "apiVersion: berth.dev/v1alpha1\nkind: Network\nmetadata: {name: net}\n";
    const VOL: &str = "apiVersion: berth.dev/v1alpha1\nkind: Volume\nmetadata: {name: vol}\n";

    /// How long `settle` waits after `events` (sent at the given offsets from the first, in ms).
    async fn settled_after(events: &[(u64, Change)]) -> Duration {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let start = tokio::time::Instant::now();
        let first = events[0].1;
        let rest: Vec<(u64, Change)> = events[1..].to_vec();
        tokio::spawn(async move {
            for (at, c) in rest {
                tokio::time::sleep_until(start + Duration::from_millis(at)).await;
                let _ = tx.send(c);
            }
            std::future::pending::<()>().await;
        });
        assert!(settle(&mut rx, first, Duration::from_millis(100)).await);
        start.elapsed()
    }

    #[tokio::test(start_paused = true)]
    async fn a_completed_save_is_read_after_a_short_quiet_a_running_write_after_the_debounce() {
        use Change::{Done, Writing};
        let ms = Duration::from_millis;
        // write + close: 20 ms after the close.
        assert_eq!(settled_after(&[(0, Writing), (1, Done)]).await, ms(21));
        // Still writing: the whole debounce.
        assert_eq!(settled_after(&[(0, Writing), (30, Writing)]).await, ms(100));
        // A second file follows within the quiet time: 20 ms after it is done.
        assert_eq!(
            settled_after(&[(0, Done), (10, Writing), (15, Done)]).await,
            ms(35)
        );
        // A burst longer than the debounce is read at the debounce (and again later).
        assert_eq!(
            settled_after(&[
                (0, Done),
                (15, Done),
                (30, Done),
                (45, Done),
                (60, Done),
                (75, Done),
                (90, Done)
            ])
            .await,
            ms(100)
        );
    }

    fn keys(s: &Snapshot) -> Vec<String> {
        s.objects.keys().map(ToString::to_string).collect()
    }

    #[test]
    fn editor_leftovers_and_hidden_files_are_ignored() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("a.yaml"), NET).expect("write");
        for junk in [
            "a.yaml.bak",
            "a.yaml~",
            ".a.yaml.swp",
            "4913",
            "#a.yaml#",
            ".#a.yaml",
            "notes.txt",
        ] {
            std::fs::write(dir.path().join(junk), "garbage: [").expect("write");
        }
        std::fs::create_dir(dir.path().join(".git")).expect("mkdir");
        std::fs::write(dir.path().join(".git/x.yaml"), VOL).expect("write");
        std::fs::create_dir(dir.path().join("sub")).expect("mkdir");
        std::fs::write(dir.path().join("sub/v.yml"), VOL).expect("write");
        let snap = DirectorySource::new(dir.path()).scan().expect("scan");
        assert_eq!(
            keys(&snap),
            vec!["Network/default/net", "Volume/default/vol"]
        );
        assert!(snap.errors.is_empty(), "{:?}", snap.errors);
    }

    #[test]
    fn broken_file_keeps_last_known_good_and_deleted_file_goes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = dir.path().join("a.yaml");
        std::fs::write(&a, format!("{NET}---\n{VOL}")).expect("write");
        let mut src = DirectorySource::new(dir.path());
        assert_eq!(src.scan().expect("scan").objects.len(), 2);
        std::fs::write(&a, &NET[..40]).expect("truncate");
        let snap = src.scan().expect("scan");
        assert_eq!(snap.objects.len(), 2, "truncated file keeps its objects");
        assert_eq!(snap.errors.len(), 1);
        assert!(
            snap.errors[0].to_string().starts_with("a.yaml:"),
            "{}",
            snap.errors[0]
        );
        std::fs::write(&a, "").expect("empty");
        assert_eq!(
            src.scan().expect("scan").objects.len(),
            2,
            "emptied file keeps its objects"
        );
        std::fs::remove_file(&a).expect("rm");
        assert!(src.scan().expect("scan").objects.is_empty());
    }

    #[test]
    fn never_good_file_contributes_nothing_and_others_carry_on() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("bad.yaml"), "kind: [").expect("write");
        std::fs::write(dir.path().join("good.yaml"), NET).expect("write");
        let snap = DirectorySource::new(dir.path()).scan().expect("scan");
        assert_eq!(keys(&snap), vec!["Network/default/net"]);
        assert_eq!(snap.errors.len(), 1);
    }

    #[test]
    fn duplicate_across_files_is_a_conflict_keeping_the_applied_version() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("a.yaml"), NET).expect("write");
        let mut src = DirectorySource::new(dir.path());
        let first = src.scan().expect("scan");
        std::fs::write(
            dir.path().join("b.yaml"),
            NET.replace("{name: net}", "{name: net}\nspec: {internal: true}"),
        )
        .expect("write");
        let snap = src.scan().expect("scan");
        assert_eq!(snap.conflicts.len(), 1);
        assert_eq!(snap.objects, first.objects, "neither new version applied");
        std::fs::remove_file(dir.path().join("a.yaml")).expect("rm");
        let snap = src.scan().expect("scan");
        assert!(snap.conflicts.is_empty());
        assert_eq!(snap.objects.len(), 1);
    }

    #[test]
    fn a_file_never_decoded_since_start_marks_the_set_incomplete() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("a.yaml"), "kind: [").expect("write");
        std::fs::write(dir.path().join("b.yaml"), NET).expect("write");
        let mut src = DirectorySource::new(dir.path());
        let snap = src.scan().expect("scan");
        assert!(
            snap.incomplete
                .as_deref()
                .is_some_and(|w| w.contains("a.yaml")),
            "{:?}",
            snap.incomplete
        );
        std::fs::write(dir.path().join("a.yaml"), VOL).expect("write");
        assert_eq!(src.scan().expect("scan").incomplete, None);
        std::fs::write(dir.path().join("a.yaml"), "kind: [").expect("write");
        assert_eq!(
            src.scan().expect("scan").incomplete,
            None,
            "last-known-good is known"
        );
    }

    #[test]
    fn symlinks_are_followed_and_dangling_ones_reported() {
        let dir = tempfile::tempdir().expect("tempdir");
        let real = tempfile::tempdir().expect("tempdir");
        std::fs::write(real.path().join("n.yaml"), NET).expect("write");
        std::os::unix::fs::symlink(real.path(), dir.path().join("linked")).expect("link dir");
        std::os::unix::fs::symlink(dir.path(), dir.path().join("loop")).expect("link loop");
        std::os::unix::fs::symlink("/nonexistent/v.yaml", dir.path().join("dangling.yaml"))
            .expect("link");
        let snap = DirectorySource::new(dir.path()).scan().expect("scan");
        assert_eq!(keys(&snap), vec!["Network/default/net"]);
        assert_eq!(snap.errors.len(), 1, "{:?}", snap.errors);
        assert!(snap.errors[0].file.contains("dangling.yaml"));
        assert!(snap.incomplete.is_some());
    }

    #[test]
    fn special_files_are_skipped_and_too_large_keeps_last_known_good() {
        use std::os::unix::ffi::OsStrExt;
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("a.yaml"), NET).expect("write");
        std::fs::write(dir.path().join("b.yaml"), VOL).expect("write");
        let st = std::process::Command::new("mkfifo")
            .arg(dir.path().join("fifo.yaml"))
            .status()
            .expect("mkfifo");
        assert!(st.success());
        std::os::unix::fs::symlink("/dev/zero", dir.path().join("zero.yaml")).expect("link");
        let bad_name = std::ffi::OsStr::from_bytes(b"bad-\xff.yaml");
        std::fs::write(dir.path().join(bad_name), VOL).expect("write");
        let limits = ReadLimits {
            max_file_bytes: 200,
            ..ReadLimits::default()
        };
        let mut src = DirectorySource::new(dir.path()).with_limits(limits);
        let snap = src.scan().expect("scan");
        assert_eq!(
            keys(&snap),
            vec!["Network/default/net", "Volume/default/vol"]
        );
        let errs: Vec<String> = snap.errors.iter().map(ToString::to_string).collect();
        assert_eq!(errs.len(), 3, "{errs:#?}");
        assert!(errs[0].contains("bad-\u{FFFD}.yaml") && errs[0].contains("not valid UTF-8"));
        // A whole-file problem has no line and column (positions are 1-based).
        assert_eq!(errs[1], "fifo.yaml: not a regular file (a FIFO); skipped");
        assert_eq!(
            errs[2],
            "zero.yaml: not a regular file (a character device); skipped"
        );
        assert_eq!(snap.incomplete, None, "special files never hold objects");
        // Grown past the limit: reported, last-known-good kept.
        std::fs::write(
            dir.path().join("b.yaml"),
            format!("{VOL}{}", "#".repeat(300)),
        )
        .expect("write");
        let snap = src.scan().expect("scan");
        assert_eq!(snap.objects.len(), 2);
        assert!(
            snap.errors
                .iter()
                .any(|e| e.file == "b.yaml"
                    && e.message.contains("more than the limit of 200 bytes")),
            "{:?}",
            snap.errors
        );
    }

    #[tokio::test]
    async fn the_watch_follows_a_deleted_and_recreated_directory() {
        let parent = tempfile::tempdir().expect("tempdir");
        let root = parent.path().join("m");
        std::fs::create_dir(&root).expect("mkdir");
        std::fs::write(root.join("a.yaml"), NET).expect("write");
        let mut rx = DirectorySource::new(&root)
            .watch(Duration::from_millis(20), Duration::from_secs(3600))
            .expect("watch");
        let wait_for = |rx: &mut watch::Receiver<Option<Arc<Snapshot>>>, n: usize| {
            let mut rx = rx.clone();
            async move {
                tokio::time::timeout(Duration::from_secs(2), async {
                    loop {
                        if rx
                            .borrow_and_update()
                            .as_ref()
                            .is_some_and(|s| s.objects.len() == n)
                        {
                            return;
                        }
                        rx.changed().await.expect("open");
                    }
                })
                .await
                .expect("converges within 2 s")
            }
        };
        wait_for(&mut rx, 1).await;
        std::fs::remove_dir_all(&root).expect("rm");
        tokio::time::sleep(Duration::from_millis(200)).await;
        std::fs::create_dir(&root).expect("mkdir");
        std::fs::write(root.join("a.yaml"), NET).expect("write");
        std::fs::write(root.join("b.yaml"), VOL).expect("write");
        wait_for(&mut rx, 2).await;
        // Replaced by a rename, as deploy tools switch directories atomically.
        let next = parent.path().join("m.next");
        std::fs::create_dir(&next).expect("mkdir");
        std::fs::write(next.join("a.yaml"), NET).expect("write");
        std::fs::rename(&next, &root)
            .map_err(|e| e.to_string())
            .err();
        if root.join("b.yaml").exists() {
            // rename(2) cannot replace a non-empty directory: swap through a third name.
            let old = parent.path().join("m.old");
            std::fs::rename(&root, &old).expect("mv old");
            std::fs::rename(&next, &root).expect("mv new");
        }
        wait_for(&mut rx, 1).await;
        std::fs::write(root.join("b.yaml"), VOL).expect("write");
        wait_for(&mut rx, 2).await;
    }

    #[test]
    fn missing_directory_is_an_error_not_an_empty_set() {
        let mut src = DirectorySource::new("/nonexistent/berth-test");
        assert!(matches!(src.scan(), Err(SourceError::ReadDir { .. })));
    }
}
