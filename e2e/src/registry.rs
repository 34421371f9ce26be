//! A private, password-protected registry on 127.0.0.1 for one test (`e2e/registry/start.sh`),
//! stopped and cleaned up when dropped — also when the test fails.
//!
//! Images are pushed through the alias `localhost:PORT` and pulled by berth as
//! `127.0.0.1:PORT/...`: the same registry under two local names, so that pushing a new image
//! under a tag never moves the local tag berth uses (only a pull by berth can).
//!
//! Every `docker` CLI call uses the registry's own `DOCKER_CONFIG` directory, never the real
//! `~/.docker/config.json`.

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine;

use crate::repo_root;

/// User name the registry accepts.
pub const USER: &str = "berth";
/// Password of [`USER`].
pub const PASSWORD: &str = "pw-5f1c2a";

/// A running registry.
pub struct Registry {
    /// `127.0.0.1:PORT`: the name berth pulls from.
    pub addr: String,
    /// `localhost:PORT`: the same registry, the name tests push to.
    pub alias: String,
    dir: PathBuf,
    /// Docker CLI configuration directory (logged in to both names).
    pub docker_config: tempfile::TempDir,
}

impl Registry {
    /// Starts a registry on a free port (installing `docker-registry` and `apache2-utils` with
    /// apt-get when missing) and logs the Docker CLI in to it.
    pub fn start() -> Registry {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("find a free port")
            .port();
        let out = Command::new("bash")
            .arg(repo_root().join("e2e/registry/start.sh"))
            .args(["--port", &port.to_string(), "--user", USER])
            .args(["--password", PASSWORD, "--ttl", "900"])
            .output()
            .expect("run e2e/registry/start.sh");
        assert!(
            out.status.success(),
            "e2e/registry/start.sh failed:\n{}",
            crate::text(&out)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        let var = |name: &str| {
            stdout
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{name}=")))
                .unwrap_or_else(|| panic!("start.sh printed no {name}: {stdout}"))
                .to_string()
        };
        let reg = Registry {
            addr: var("REGISTRY_ADDR"),
            alias: format!("localhost:{port}"),
            dir: PathBuf::from(var("REGISTRY_DIR")),
            docker_config: tempfile::tempdir().expect("tempdir"),
        };
        for name in [&reg.addr, &reg.alias] {
            reg.docker(&["login", name, "-u", USER, "-p", PASSWORD]);
        }
        reg
    }

    /// Runs the `docker` CLI with this registry's `DOCKER_CONFIG`; returns stdout.
    pub fn docker(&self, args: &[&str]) -> String {
        let out = Command::new("docker")
            .args(args)
            .env("DOCKER_CONFIG", self.docker_config.path())
            .output()
            .expect("docker cli");
        assert!(
            out.status.success(),
            "docker {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Reference berth pulls: `127.0.0.1:PORT/<repo_tag>`.
    pub fn image(&self, repo_tag: &str) -> String {
        format!("{}/{repo_tag}", self.addr)
    }

    /// Pushes local image `local` as `<repo_tag>` (through the `localhost:PORT` alias, whose
    /// local tag is removed again). Local tags under `127.0.0.1:PORT` are left untouched.
    pub fn push(&self, local: &str, repo_tag: &str) {
        let via = format!("{}/{repo_tag}", self.alias);
        self.docker(&["tag", local, &via]);
        self.docker(&["push", &via]);
        self.docker(&["rmi", &via]);
    }

    /// Writes a credentials file (Docker config format, `auths` with a base64 `auth`) for this
    /// registry with the given password into `dir`; returns its path.
    pub fn credentials_file(&self, dir: &Path, name: &str, password: &str) -> PathBuf {
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{password}"));
        let p = dir.join(name);
        std::fs::write(
            &p,
            format!(r#"{{"auths": {{"{}": {{"auth": "{auth}"}}}}}}"#, self.addr),
        )
        .expect("write credentials file");
        p
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(repo_root().join("e2e/registry/stop.sh"))
            .arg(&self.dir)
            .status();
        // Untag what this registry's names left behind, tags and digest references (the
        // images themselves stay under their own tags).
        let out = Command::new("docker")
            .args(["images", "--digests", "--format"])
            .arg("{{.Repository}} {{.Tag}} {{.Digest}}")
            .output();
        let Ok(out) = out else { return };
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let mut f = line.split(' ');
            let (Some(repo), Some(tag), Some(digest)) = (f.next(), f.next(), f.next()) else {
                continue;
            };
            if ![&self.addr, &self.alias]
                .iter()
                .any(|n| repo.starts_with(&format!("{n}/")))
            {
                continue;
            }
            if tag != "<none>" {
                let _ = Command::new("docker")
                    .args(["rmi", &format!("{repo}:{tag}")])
                    .output();
            }
            if digest != "<none>" {
                let _ = Command::new("docker")
                    .args(["rmi", &format!("{repo}@{digest}")])
                    .output();
            }
        }
    }
}
