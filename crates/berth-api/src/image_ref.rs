//! Image references (`[registry[:port]/]path[:tag][@algorithm:digest]`), parsed with the
//! grammar of `distribution/reference` — the one Docker, containerd and every registry client
//! use — compiled by the `regex` crate **without Unicode classes**.
//!
//! Why not `oci_spec::distribution::Reference` directly: it compiles the same grammar with
//! Unicode enabled, so its tag class `\w` becomes every Unicode word character and the
//! repetition `[\w][\w.-]{0,127}` a very large automaton — about 18 MiB of memory and 50 ms of
//! CPU in every process that validates a manifest (the whole of `berth apply`'s no-op time and
//! most of the idle agent's memory). In the upstream grammar (Go's RE2) `\w` is ASCII
//! `[0-9A-Za-z_]`, so the ASCII build is also the exact one: oci-spec accepts tags like
//! `app:café` that Docker refuses (`invalid reference format`); berth refuses them too.
//! A property test (`tests/image_ref.rs`) compares this parser with oci-spec's on generated
//! ASCII references (components and errors) and checks the one intended difference.

use std::sync::OnceLock;

use regex::{Regex, RegexBuilder};

/// The longest repository path (`repository()`, registry excluded), in bytes; as upstream.
pub const NAME_TOTAL_LENGTH_MAX: usize = 255;

/// `distribution/reference`'s `ReferenceRegexp` (anchored; groups: name, tag, digest), as
/// written in oci-spec 0.10. Compiled without Unicode: `\w` is `[0-9A-Za-z_]`, as in Go.
const REFERENCE_REGEXP: &str = r"^((?:(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])(?:(?:\.(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))+)?(?::[0-9]+)?/)?[a-z0-9]+(?:(?:(?:[._]|__|[-]*)[a-z0-9]+)+)?(?:(?:/[a-z0-9]+(?:(?:(?:[._]|__|[-]*)[a-z0-9]+)+)?)+)?)(?::([\w][\w.-]{0,127}))?(?:@([A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*[:][[:xdigit:]]{32,}))?$";

/// Docker Hub's registry name, as references are normalised (`busybox` is
/// `docker.io/library/busybox:latest`).
const DOCKER_HUB: &str = "docker.io";

fn reference_regexp() -> Option<&'static Regex> {
    static RE: OnceLock<Option<Regex>> = OnceLock::new();
    RE.get_or_init(|| {
        RegexBuilder::new(REFERENCE_REGEXP)
            .unicode(false)
            .build()
            .ok()
    })
    .as_ref()
}

/// Why a string is not an image reference; the messages are upstream's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    /// The string is empty.
    #[error("repository name must have at least one component")]
    NameEmpty,
    /// The string does not match the grammar (also: a non-ASCII tag).
    #[error("invalid reference format")]
    InvalidFormat,
    /// The repository path is longer than [`NAME_TOTAL_LENGTH_MAX`].
    #[error("repository name must not be more than {NAME_TOTAL_LENGTH_MAX} characters")]
    NameTooLong,
    /// The digest has no `algorithm:` part.
    #[error("invalid checksum digest format")]
    DigestInvalidFormat,
    /// A `sha256`/`sha384`/`sha512` digest of the wrong length (64/96/128 hex digits).
    #[error("invalid checksum digest length")]
    DigestInvalidLength,
    /// A digest algorithm other than `sha256`, `sha384`, `sha512`.
    #[error("unsupported digest algorithm")]
    DigestUnsupported,
}

/// A parsed, normalised image reference (same normalisation as Docker and oci-spec).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageReference {
    /// Registry host (and port), `docker.io` when the reference names none.
    pub registry: String,
    /// Repository path within the registry (`library/busybox` for `busybox` on Docker Hub).
    pub repository: String,
    /// Tag; `latest` when the reference has neither tag nor digest.
    pub tag: Option<String>,
    /// Digest (`sha256:…`), if any.
    pub digest: Option<String>,
}

impl std::str::FromStr for ImageReference {
    type Err = ReferenceError;

    fn from_str(s: &str) -> Result<Self, ReferenceError> {
        parse(s)
    }
}

/// Parses and normalises an image reference.
///
/// # Errors
/// [`ReferenceError`] saying what is wrong, in upstream's words.
pub fn parse(s: &str) -> Result<ImageReference, ReferenceError> {
    if s.is_empty() {
        return Err(ReferenceError::NameEmpty);
    }
    let caps = reference_regexp()
        .and_then(|re| re.captures(s))
        .ok_or(ReferenceError::InvalidFormat)?;
    let name = caps.get(1).map_or("", |m| m.as_str());
    let digest = caps.get(3).map(|m| m.as_str().to_owned());
    let tag = match (caps.get(2), &digest) {
        (Some(t), _) => Some(t.as_str().to_owned()),
        (None, None) => Some("latest".to_owned()),
        (None, Some(_)) => None,
    };
    let (registry, repository) = split_domain(name);
    if repository.len() > NAME_TOTAL_LENGTH_MAX {
        return Err(ReferenceError::NameTooLong);
    }
    if let Some(d) = &digest {
        let want = match d.split_once(':') {
            None => return Err(ReferenceError::DigestInvalidFormat),
            Some(("sha256", _)) => 64,
            Some(("sha384", _)) => 96,
            Some(("sha512", _)) => 128,
            Some(_) => return Err(ReferenceError::DigestUnsupported),
        };
        if d.split_once(':').map_or(0, |(_, hex)| hex.len()) != want {
            return Err(ReferenceError::DigestInvalidLength);
        }
    }
    Ok(ImageReference {
        registry,
        repository,
        tag,
        digest,
    })
}

/// Splits a (grammar-checked) name into registry and repository: the first path component is a
/// registry when it contains `.` or `:` or is `localhost` (Docker's `splitDomain`).
fn split_domain(name: &str) -> (String, String) {
    let (mut domain, remainder) = match name.split_once('/') {
        Some((left, right)) if left.contains(['.', ':']) || left == "localhost" => {
            (left.to_owned(), right.to_owned())
        }
        _ => (DOCKER_HUB.to_owned(), name.to_owned()),
    };
    if domain == "index.docker.io" {
        domain = DOCKER_HUB.to_owned();
    }
    if domain == DOCKER_HUB && !remainder.contains('/') {
        return (domain, format!("library/{remainder}"));
    }
    (domain, remainder)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_docker_accepts() {
        let r = parse("busybox").expect("valid");
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str(), r.tag.as_deref()),
            ("docker.io", "library/busybox", Some("latest"))
        );
        let r = parse("localhost:5000/team/app:v1.2_x").expect("valid");
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str(), r.tag.as_deref()),
            ("localhost:5000", "team/app", Some("v1.2_x"))
        );
        let d = format!("sha256:{}", "a".repeat(64));
        let r = parse(&format!("index.docker.io/nginx@{d}")).expect("valid");
        assert_eq!(r.registry, "docker.io");
        assert_eq!(r.repository, "library/nginx");
        assert_eq!((r.tag, r.digest), (None, Some(d)));
    }

    #[test]
    fn references_docker_refuses() {
        assert_eq!(parse(""), Err(ReferenceError::NameEmpty));
        for bad in [
            "Busybox",
            ":tag",
            "a b",
            "app:",
            "app:-x",
            "app:café",
            "app:tag/x",
        ] {
            assert_eq!(parse(bad), Err(ReferenceError::InvalidFormat), "{bad}");
        }
        assert_eq!(
            parse(&format!("a@sha256:{}", "f".repeat(40))),
            Err(ReferenceError::DigestInvalidLength)
        );
        assert_eq!(
            parse(&format!("a@md5:{}", "f".repeat(32))),
            Err(ReferenceError::DigestUnsupported)
        );
        assert_eq!(
            parse(&format!("a:{}", "t".repeat(129))),
            Err(ReferenceError::InvalidFormat)
        );
        assert_eq!(
            parse(&format!("r.io/{}", "a".repeat(256))),
            Err(ReferenceError::NameTooLong)
        );
    }
}
