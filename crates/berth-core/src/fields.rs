//! Field-level digests of a container's engine configuration, for `berth diff`: which fields of
//! `spec` differ between what runs and what is declared, without storing or printing values.
//!
//! A container is created with label [`FIELD_DIGESTS`] holding [`field_digests`] of its
//! configuration (a JSON object: spec path → short SHA-256 of the field's value); `diff`
//! compares it with the digests of the declared configuration ([`changed_fields`]). The values
//! themselves never leave the engine's own configuration.

use std::collections::BTreeMap;

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::desired::ContainerConfig;

/// Label with the field digests of the configuration a container was created from.
pub const FIELD_DIGESTS: &str = "berth.dev/field-digests";

/// The manifest path of a configuration field (`cmd` is `spec.args`, `entrypoint` is
/// `spec.command`, …).
fn spec_path(field: &str) -> String {
    let name = match field {
        "entrypoint" => "command",
        "cmd" => "args",
        "nano_cpus" => "resources.limits.cpu",
        "memory_bytes" => "resources.limits.memory",
        "host_pid" => "hostPID",
        "host_ipc" => "hostIPC",
        "no_new_privileges" => "allowPrivilegeEscalation",
        other => {
            let mut out = String::new();
            let mut up = false;
            for c in other.chars() {
                if c == '_' {
                    up = true;
                } else if up {
                    out.extend(c.to_uppercase());
                    up = false;
                } else {
                    out.push(c);
                }
            }
            return format!("spec.{out}");
        }
    };
    format!("spec.{name}")
}

fn digest(v: &Value) -> String {
    let hex: String = Sha256::digest(v.to_string().as_bytes())
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect();
    hex
}

/// Spec path → digest of its value, for every field the configuration sets. Lists of objects
/// and `env` are split per entry (`spec.env[2]`, `spec.ports[0]`), files per field
/// (`spec.files[0].content`); other lists and maps are one field (`spec.args`).
pub fn field_digests(config: &ContainerConfig) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let Ok(Value::Object(fields)) = serde_json::to_value(config) else {
        return out;
    };
    for (field, value) in fields {
        let path = spec_path(&field);
        match &value {
            Value::Array(items) if field == "env" || items.iter().any(Value::is_object) => {
                for (i, item) in items.iter().enumerate() {
                    match item {
                        Value::Object(sub) if field == "files" => {
                            for (k, v) in sub {
                                out.insert(
                                    format!(
                                        "{path}[{i}].{}",
                                        spec_path(k).trim_start_matches("spec.")
                                    ),
                                    digest(v),
                                );
                            }
                        }
                        _ => {
                            out.insert(format!("{path}[{i}]"), digest(item));
                        }
                    }
                }
            }
            _ => {
                out.insert(path, digest(&value));
            }
        }
    }
    out
}

/// [`field_digests`] as the JSON text of the [`FIELD_DIGESTS`] label.
pub fn field_digests_label(config: &ContainerConfig) -> String {
    serde_json::to_string(&field_digests(config)).unwrap_or_default()
}

/// The spec paths whose digests differ between `running` (from the label) and `declared`,
/// sorted: changed, added and removed fields alike.
pub fn changed_fields(
    running: &BTreeMap<String, String>,
    declared: &BTreeMap<String, String>,
) -> Vec<String> {
    let mut out: Vec<String> = declared
        .iter()
        .filter(|(k, v)| running.get(*k) != Some(*v))
        .map(|(k, _)| k.clone())
        .chain(
            running
                .keys()
                .filter(|k| !declared.contains_key(*k))
                .cloned(),
        )
        .collect();
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::FileConfig;

    fn config(args: &[&str], content: &str) -> ContainerConfig {
        ContainerConfig {
            image: "busybox".into(),
            cmd: Some(args.iter().map(|s| s.to_string()).collect()),
            env: vec!["A=1".into(), "B=secret".into()],
            files: vec![FileConfig {
                path: "/etc/x".into(),
                content: content.into(),
                mode: 0o644,
                uid: 0,
                gid: 0,
            }],
            ..Default::default()
        }
    }

    #[test]
    fn names_the_changed_spec_fields_without_values() {
        let before = field_digests(&config(&["a"], "one"));
        let after = field_digests(&config(&["b"], "two"));
        assert_eq!(
            changed_fields(&before, &after),
            vec!["spec.args", "spec.files[0].content"]
        );
        assert!(before.contains_key("spec.env[1]"));
        let text = serde_json::to_string(&before).unwrap_or_default();
        assert!(!text.contains("secret") && !text.contains("one"), "{text}");
        assert!(changed_fields(&before, &before).is_empty());
    }
}
