//! This host's identity: its name and labels (what `spec.hostSelector` is matched against).

use std::collections::BTreeMap;

/// Label holding the host's name (as a kubelet sets it on its Node).
pub const HOSTNAME_LABEL: &str = "kubernetes.io/hostname";
/// Label holding the operating system (`linux`).
pub const OS_LABEL: &str = "kubernetes.io/os";
/// Label holding the CPU architecture in Go/Kubernetes terms (`amd64`, `arm64`…).
pub const ARCH_LABEL: &str = "kubernetes.io/arch";

/// Name and labels of the host an agent runs on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostIdentity {
    /// DNS-1123 subdomain; the `Host` object's name and the `status.hosts[].name` key.
    pub name: String,
    /// Labels: the `--node-label` flags plus [`HOSTNAME_LABEL`], [`OS_LABEL`], [`ARCH_LABEL`]
    /// (a flag overrides an automatic label).
    pub labels: BTreeMap<String, String>,
}

impl HostIdentity {
    /// From the command line: `--node-name` (default: the system host name, lower-cased, with
    /// characters a DNS name cannot hold replaced by `-`) and `--node-label` pairs.
    pub fn from_cli(node_name: Option<&str>, labels: &[(String, String)]) -> HostIdentity {
        let name = node_name
            .map(str::to_string)
            .unwrap_or_else(system_host_name);
        let mut l = BTreeMap::new();
        l.insert(HOSTNAME_LABEL.to_string(), name.clone());
        l.insert(OS_LABEL.to_string(), std::env::consts::OS.to_string());
        l.insert(
            ARCH_LABEL.to_string(),
            go_arch(std::env::consts::ARCH).to_string(),
        );
        for (k, v) in labels {
            l.insert(k.clone(), v.clone());
        }
        HostIdentity { name, labels: l }
    }
}

fn go_arch(rust: &str) -> &str {
    match rust {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// The system's host name as a DNS-1123 subdomain (`localhost` when unknown).
pub fn system_host_name() -> String {
    let raw = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .unwrap_or_default();
    let cleaned: String = raw
        .trim()
        .to_ascii_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let cleaned = cleaned.trim_matches(|c| c == '-' || c == '.').to_string();
    if cleaned.is_empty() {
        "localhost".into()
    } else {
        cleaned
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn automatic_labels_and_overrides() {
        let h = HostIdentity::from_cli(
            Some("edge-1"),
            &[
                ("zone".into(), "eu".into()),
                (OS_LABEL.into(), "custom".into()),
            ],
        );
        assert_eq!(h.name, "edge-1");
        assert_eq!(h.labels[HOSTNAME_LABEL], "edge-1");
        assert_eq!(h.labels["zone"], "eu");
        assert_eq!(h.labels[OS_LABEL], "custom");
        assert!(h.labels.contains_key(ARCH_LABEL));
        assert!(berth_api::validate::is_dns1123_subdomain(
            &system_host_name()
        ));
    }
}
