//! Registry credentials for pulls: per-object `imagePullSecrets` files first, then the Docker
//! client's config file — the same sources, and the same file format, as `docker pull`.
//!
//! A credentials file is Docker's `config.json` format (also the content of a Kubernetes
//! `kubernetes.io/dockerconfigjson` Secret): `auths` entries with `auth` (base64 of
//! `user:password`), `username`/`password` or `identitytoken`, keyed by registry host
//! (`registry.example:5000`, `https://index.docker.io/v1/` for Docker Hub); `credHelpers`
//! (per registry) and `credsStore` (default) name `docker-credential-<helper>` programs, spoken
//! to with the Docker credential-helper protocol. Parsing and the helper protocol come from the
//! `docker_credential` crate.
//!
//! Secrets never appear in errors or logs: errors name the file and what was wrong with it.

use std::path::{Path, PathBuf};

use bollard::auth::DockerCredentials;
use docker_credential::{CredentialRetrievalError, DockerCredential};

/// Key of Docker Hub in Docker config files (the Docker CLI's `IndexServer`).
pub const DOCKER_HUB_KEY: &str = "https://index.docker.io/v1/";

/// Why credentials could not be read. Never carries a secret.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    /// A credentials file could not be read.
    #[error("credentials file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A credentials file is not usable: invalid JSON, a helper that failed, an undecodable
    /// `auth` entry.
    #[error("credentials file {path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong (no secret).
        message: String,
    },
}

/// The registry that serves `image`, as the key Docker config files use for it:
/// `host[:port]`, or [`DOCKER_HUB_KEY`] for Docker Hub (references without a registry part).
pub fn registry_key(image: &str) -> String {
    let host = image
        .split_once('/')
        .map(|(first, _)| first)
        .filter(|first| first.contains('.') || first.contains(':') || *first == "localhost");
    match host {
        None | Some("docker.io" | "index.docker.io" | "registry-1.docker.io") => {
            DOCKER_HUB_KEY.to_string()
        }
        Some(h) => h.to_string(),
    }
}

/// The Docker client's config file: `$DOCKER_CONFIG/config.json`, else
/// `$HOME/.docker/config.json`; `None` when neither variable is set.
pub fn docker_config_file() -> Option<PathBuf> {
    std::env::var_os("DOCKER_CONFIG")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".docker")))
        .map(|d| d.join("config.json"))
}

/// Credentials for pulling `image`: the first of `secret_files` that has an entry (or a
/// helper) for its registry, else the Docker config file (a missing one means anonymous).
/// `Ok(None)`: pull anonymously. Blocking (files, helper programs): call from a blocking
/// context.
///
/// # Errors
/// A listed secret file that is missing or unusable, or an unusable Docker config file.
pub fn credentials_for(
    image: &str,
    secret_files: &[PathBuf],
) -> Result<Option<DockerCredentials>, CredentialsError> {
    let key = registry_key(image);
    for f in secret_files {
        if let Some(c) = from_file(f, &key, true)? {
            return Ok(Some(c));
        }
    }
    match docker_config_file() {
        Some(f) => from_file(&f, &key, false),
        None => Ok(None),
    }
}

/// Credentials for registry `key` from one file; a missing file is an error only when
/// `required`.
fn from_file(
    path: &Path,
    key: &str,
    required: bool,
) -> Result<Option<DockerCredentials>, CredentialsError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(CredentialsError::Read {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    let invalid = |message: String| CredentialsError::Invalid {
        path: path.to_path_buf(),
        message,
    };
    match docker_credential::get_credential_from_reader(bytes.as_slice(), key) {
        Ok(DockerCredential::UsernamePassword(username, password)) => {
            Ok(Some(DockerCredentials {
                username: Some(username),
                password: Some(password),
                serveraddress: Some(key.to_string()),
                ..Default::default()
            }))
        }
        Ok(DockerCredential::IdentityToken(token)) => Ok(Some(DockerCredentials {
            identitytoken: Some(token),
            serveraddress: Some(key.to_string()),
            ..Default::default()
        })),
        Err(CredentialRetrievalError::NoCredentialConfigured) => Ok(None),
        // Helpers answer "credentials not found in native keychain" for unknown registries.
        Err(CredentialRetrievalError::HelperFailure { stdout, .. })
            if stdout.contains("credentials not found") =>
        {
            Ok(None)
        }
        Err(CredentialRetrievalError::HelperFailure { helper, stdout, .. }) => Err(invalid(
            format!(
                "credential helper {helper} failed for {key}: {}",
                first_line(&stdout)
            ),
        )),
        Err(CredentialRetrievalError::ConfigReadError) => Err(invalid(
            "not a Docker config file (expected JSON like {\"auths\": {\"host:port\": {\"auth\": \"…\"}}})"
                .into(),
        )),
        Err(e) => Err(invalid(format!("{e} (registry {key})"))),
    }
}

/// First line of a helper's message, at most 200 characters (helpers print errors, not
/// secrets, on failure; this still keeps the log short).
fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").chars().take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_keys_follow_the_docker_cli() {
        assert_eq!(registry_key("busybox"), DOCKER_HUB_KEY);
        assert_eq!(registry_key("library/busybox:1"), DOCKER_HUB_KEY);
        assert_eq!(registry_key("docker.io/library/busybox"), DOCKER_HUB_KEY);
        assert_eq!(registry_key("berth-test/busybox:v2"), DOCKER_HUB_KEY);
        assert_eq!(registry_key("127.0.0.1:5000/berth/app:1"), "127.0.0.1:5000");
        assert_eq!(registry_key("localhost/app"), "localhost");
        assert_eq!(registry_key("ghcr.io/o/app@sha256:ab"), "ghcr.io");
    }

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).expect("write");
        p
    }

    #[test]
    fn secret_files_are_tried_in_order_and_keys_may_carry_a_scheme() {
        let d = tempfile::tempdir().expect("tempdir");
        // base64("alice:s3cret") and base64("bob:hunter2")
        let other = write(
            d.path(),
            "other.json",
            r#"{"auths": {"other.example": {"auth": "Ym9iOmh1bnRlcjI="}}}"#,
        );
        let ours = write(
            d.path(),
            "ours.json",
            r#"{"auths": {"https://reg.example:5000": {"auth": "YWxpY2U6czNjcmV0"}}}"#,
        );
        let c = credentials_for("reg.example:5000/app:1", &[other.clone(), ours])
            .expect("ok")
            .expect("found");
        assert_eq!(c.username.as_deref(), Some("alice"));
        assert_eq!(c.password.as_deref(), Some("s3cret"));
        let c = credentials_for("other.example/app", &[other])
            .expect("ok")
            .expect("found");
        assert_eq!(c.username.as_deref(), Some("bob"));
    }

    #[test]
    fn unusable_secret_files_are_errors_without_secrets() {
        let d = tempfile::tempdir().expect("tempdir");
        let missing = d.path().join("missing.json");
        let e = credentials_for("r.example/app", &[missing]).expect_err("missing file");
        assert!(e.to_string().contains("missing.json"), "{e}");
        let broken = write(d.path(), "broken.json", "{\"auths\": ");
        let e = credentials_for("r.example/app", &[broken]).expect_err("invalid");
        assert!(e.to_string().contains("not a Docker config file"), "{e}");
        let bad = write(
            d.path(),
            "bad.json",
            r#"{"auths": {"r.example": {"auth": "!!not base64 s3cret!!"}}}"#,
        );
        let e = credentials_for("r.example/app", &[bad]).expect_err("undecodable");
        assert!(!e.to_string().contains("s3cret"), "{e}");
    }
}
