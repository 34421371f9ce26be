//! Compose files as a source format: a Compose project (compose-spec, as Docker Compose v2 reads
//! it) is loaded into berth's own `Container`, `Network` and `Volume` objects, each with the
//! position of the service or resource that declared it. Everything after loading (merge,
//! resolve, plan, engine) is unchanged.
//!
//! Loading follows Compose: the project's `.env` and the process environment (which wins) feed
//! interpolation of every file; `*.override.*` files and `include` are merged; `extends` is
//! resolved; services whose `profiles` are not selected (`COMPOSE_PROFILES`, from the process
//! environment or the project's `.env`) are left out. Every key berth does not understand is a
//! [`Finding`], all of them in one run, each with its position: a project with any finding is
//! refused as a whole (its last-known-good objects stay in force).

pub mod dotenv;
pub mod interpolate;
pub mod load;
mod map;
mod runtime;
pub mod tree;

use std::fmt;

pub use load::{Environment, Project, compose_file_in, is_compose_name, load_project};

/// What kind of problem a finding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FindingKind {
    /// Not valid Compose (a key Compose does not know, a value of the wrong shape).
    Invalid,
    /// Valid Compose that berth does not implement; the project is refused rather than run
    /// without it.
    Unsupported,
    /// Accepted, with a note (an obsolete key, a meaning that differs from Compose's).
    Warning,
}

/// One problem of a Compose project, located.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// Kind.
    pub kind: FindingKind,
    /// File as shown to the user.
    pub file: String,
    /// 1-based line (0 for the whole file).
    pub line: u64,
    /// 1-based column (0 when unknown).
    pub column: u64,
    /// Key path, e.g. `services.web.ports[0]`.
    pub key: String,
    /// What is wrong, and what would be accepted.
    pub message: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A finding about a whole file (line 0) has no position.
        if self.line == 0 {
            write!(f, "{}: ", self.file)?;
        } else {
            write!(f, "{}:{}:{}: ", self.file, self.line, self.column)?;
        }
        write!(
            f,
            "{}: {}{}",
            self.key,
            match self.kind {
                FindingKind::Invalid => "not valid Compose: ",
                FindingKind::Unsupported => "valid Compose that berth does not implement: ",
                FindingKind::Warning => "warning: ",
            },
            self.message
        )
    }
}

impl Finding {
    /// The finding as a [`crate::decode::DecodeError`] (the directory source's error type).
    pub fn to_decode_error(&self) -> crate::decode::DecodeError {
        crate::decode::DecodeError {
            file: self.file.clone(),
            line: self.line,
            column: self.column,
            field: Some(self.key.clone()),
            message: format!(
                "{}{}",
                match self.kind {
                    FindingKind::Invalid => "not valid Compose: ",
                    FindingKind::Unsupported => "valid Compose that berth does not implement: ",
                    FindingKind::Warning => "warning: ",
                },
                self.message
            ),
        }
    }
}
#[cfg(test)]
mod tests;
