//! Reading manifest files defensively, before YAML sees them.
//!
//! - Only regular files (or symlinks to one) are read; a FIFO, socket, character or block device
//!   (or a symlink to one) is reported by name and never opened, so a FIFO named `x.yaml` cannot
//!   block and `/dev/zero` cannot be read without end.
//! - The file is opened with `O_NONBLOCK` and checked again on the open descriptor (the path may
//!   have been swapped between the check and the open).
//! - At most [`ReadLimits::max_file_bytes`] are read (default [`DEFAULT_MAX_FILE_BYTES`], 1 MiB;
//!   `berth --max-manifest-bytes`); a larger file is reported and keeps its last-known-good
//!   objects.
//! - The text must be UTF-8.

use std::fmt;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// Default limit of one manifest file: 1 MiB (1,048,576 bytes).
pub const DEFAULT_MAX_FILE_BYTES: u64 = 1 << 20;

/// Default limit of one YAML scalar (one string or number): 256 KiB (262,144 bytes). Applies
/// to every value, e.g. a `files[].content`.
pub const DEFAULT_MAX_SCALAR_BYTES: usize = 256 << 10;

/// Longest message or field path kept in an error (longer ones are truncated with `…`), so that
/// a hostile value cannot make a log line megabytes long.
pub const MAX_MESSAGE_CHARS: usize = 400;

/// Linux's `O_NONBLOCK` (the same value on every Linux architecture Rust supports but alpha,
/// hppa, mips and sparc, which berth does not target).
const O_NONBLOCK: i32 = 0o4000;

static PROCESS_MAX_FILE_BYTES: AtomicU64 = AtomicU64::new(DEFAULT_MAX_FILE_BYTES);

/// Size limits of manifest input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadLimits {
    /// Largest manifest file read, in bytes.
    pub max_file_bytes: u64,
    /// Largest scalar value, in bytes.
    pub max_scalar_bytes: usize,
}

impl Default for ReadLimits {
    /// The process default (see [`ReadLimits::set_process_default`]).
    fn default() -> Self {
        ReadLimits {
            max_file_bytes: PROCESS_MAX_FILE_BYTES.load(Ordering::Relaxed),
            max_scalar_bytes: DEFAULT_MAX_SCALAR_BYTES,
        }
    }
}

impl ReadLimits {
    /// Sets the per-file limit that [`ReadLimits::default`] returns from now on (the binary's
    /// `--max-manifest-bytes` flag); 0 means [`DEFAULT_MAX_FILE_BYTES`].
    pub fn set_process_default(max_file_bytes: u64) {
        let v = if max_file_bytes == 0 {
            DEFAULT_MAX_FILE_BYTES
        } else {
            max_file_bytes
        };
        PROCESS_MAX_FILE_BYTES.store(v, Ordering::Relaxed);
    }
}

/// Why a manifest file was not read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// Not a regular file (after following symlinks).
    #[error("not a regular file ({0}); skipped")]
    NotRegular(FileKind),
    /// Larger than the limit.
    #[error(
        "the file is {size} bytes, more than the limit of {limit} bytes (berth --max-manifest-bytes); not read, its previous objects are kept"
    )]
    TooLarge {
        /// Size in bytes (at least; the file may still be growing).
        size: u64,
        /// The limit in bytes.
        limit: u64,
    },
    /// Not UTF-8 text.
    #[error("the file is not UTF-8 text (byte {0} is invalid)")]
    NotUtf8(usize),
    /// Opening or reading failed (permissions, a dangling symlink, vanished meanwhile).
    #[error("cannot read: {0}")]
    Io(#[from] std::io::Error),
}

impl ReadError {
    /// True when the path can never hold manifests (a FIFO, device or socket): such an entry is
    /// reported but does not make the directory's set incomplete.
    pub fn is_not_regular(&self) -> bool {
        matches!(self, ReadError::NotRegular(_))
    }
}

/// The kind of a non-regular file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    /// A named pipe.
    Fifo,
    /// A Unix socket.
    Socket,
    /// A character device (`/dev/zero`, a terminal).
    CharDevice,
    /// A block device.
    BlockDevice,
    /// A directory (a race: it was a file when listed).
    Directory,
    /// Anything else.
    Other,
}

impl fmt::Display for FileKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FileKind::Fifo => "a FIFO",
            FileKind::Socket => "a socket",
            FileKind::CharDevice => "a character device",
            FileKind::BlockDevice => "a block device",
            FileKind::Directory => "a directory",
            FileKind::Other => "a special file",
        })
    }
}

fn kind_of(ft: std::fs::FileType) -> Option<FileKind> {
    if ft.is_file() {
        None
    } else if ft.is_fifo() {
        Some(FileKind::Fifo)
    } else if ft.is_socket() {
        Some(FileKind::Socket)
    } else if ft.is_char_device() {
        Some(FileKind::CharDevice)
    } else if ft.is_block_device() {
        Some(FileKind::BlockDevice)
    } else if ft.is_dir() {
        Some(FileKind::Directory)
    } else {
        Some(FileKind::Other)
    }
}

/// Reads one manifest file under `limits` (see the module docs). Never blocks on a FIFO or
/// device; reads at most `limits.max_file_bytes + 1` bytes.
///
/// # Errors
/// [`ReadError`] says why the file was not read.
pub fn read_manifest(path: &Path, limits: &ReadLimits) -> Result<String, ReadError> {
    // Follows symlinks: a link to a device is judged by its target, without opening it.
    let meta = std::fs::metadata(path)?;
    if let Some(kind) = kind_of(meta.file_type()) {
        return Err(ReadError::NotRegular(kind));
    }
    let limit = limits.max_file_bytes;
    if meta.len() > limit {
        return Err(ReadError::TooLarge {
            size: meta.len(),
            limit,
        });
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(O_NONBLOCK)
        .open(path)?;
    // The path may have been replaced between the check and the open.
    let meta = file.metadata()?;
    if let Some(kind) = kind_of(meta.file_type()) {
        return Err(ReadError::NotRegular(kind));
    }
    let mut bytes = Vec::with_capacity(meta.len().min(limit) as usize);
    file.take(limit + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(ReadError::TooLarge {
            size: bytes.len() as u64,
            limit,
        });
    }
    String::from_utf8(bytes).map_err(|e| ReadError::NotUtf8(e.utf8_error().valid_up_to()))
}

/// Checks, without opening it, that `path` is (or links to) a regular file.
///
/// # Errors
/// [`ReadError::NotRegular`] for a FIFO, socket, device or directory; [`ReadError::Io`] when
/// it cannot be inspected.
pub fn check_regular(path: &Path) -> Result<(), ReadError> {
    match kind_of(std::fs::metadata(path)?.file_type()) {
        Some(kind) => Err(ReadError::NotRegular(kind)),
        None => Ok(()),
    }
}

/// `s` cut to at most `max` characters, with `…` appended when cut.
pub fn bounded(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}… ({} bytes in all)", &s[..i], s.len()),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifo_and_devices_are_not_opened() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fifo = dir.path().join("x.yaml");
        let st = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("mkfifo");
        assert!(st.success());
        let lim = ReadLimits::default();
        assert!(matches!(
            read_manifest(&fifo, &lim),
            Err(ReadError::NotRegular(FileKind::Fifo))
        ));
        let link = dir.path().join("zero.yaml");
        std::os::unix::fs::symlink("/dev/zero", &link).expect("link");
        let e = read_manifest(&link, &lim).expect_err("device");
        assert!(
            e.to_string().contains("character device"),
            "names the kind: {e}"
        );
    }

    #[test]
    fn size_limit_and_utf8() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("big.yaml");
        std::fs::write(&p, vec![b'a'; 2000]).expect("write");
        let lim = ReadLimits {
            max_file_bytes: 1000,
            max_scalar_bytes: 100,
        };
        assert!(matches!(
            read_manifest(&p, &lim),
            Err(ReadError::TooLarge {
                size: 2000,
                limit: 1000
            })
        ));
        std::fs::write(&p, b"a: \xff\n").expect("write");
        assert!(matches!(
            read_manifest(&p, &lim),
            Err(ReadError::NotUtf8(3))
        ));
        std::fs::write(&p, "a: b\n").expect("write");
        assert_eq!(read_manifest(&p, &lim).expect("read"), "a: b\n");
    }

    #[test]
    fn bounded_cuts_long_text() {
        assert_eq!(bounded("abc", 5), "abc");
        assert_eq!(bounded("abcdef", 3), "abc… (6 bytes in all)");
    }
}
