//! `berth convert FILE`: a Compose project printed as the equivalent berth manifests.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use berth_api::{API_VERSION, Manifest};
use berth_sources::compose::{self, Environment, FindingKind};

/// Loads the Compose project of `path` (a Compose file, or a directory holding one) and prints
/// its objects as berth manifests (multi-document YAML) on stdout; findings go to stderr. Exit 0
/// when converted, 1 when the project has findings (nothing is printed then).
///
/// # Errors
/// When `path` holds no Compose file, or serialisation fails.
pub fn run(path: &Path) -> anyhow::Result<ExitCode> {
    let main = if path.is_dir() {
        compose::compose_file_in(path)
            .with_context(|| format!("{} holds no Compose file", path.display()))?
    } else {
        path.to_path_buf()
    };
    let main = std::path::absolute(&main).unwrap_or(main);
    let base = main.parent().map(Path::to_path_buf).unwrap_or_default();
    let show = |p: &Path| p.strip_prefix(&base).unwrap_or(p).display().to_string();
    match compose::load_project(&main, &show, &Environment::process()) {
        Ok(project) => {
            for w in &project.warnings {
                crate::errln!("{w}");
            }
            crate::out!("{}", to_yaml(project.objects.iter().map(|l| &l.manifest))?);
            Ok(ExitCode::SUCCESS)
        }
        Err(findings) => {
            for f in &findings {
                crate::errln!(
                    "{}{f}",
                    if f.kind == FindingKind::Warning {
                        ""
                    } else {
                        "error: "
                    }
                );
            }
            Ok(ExitCode::from(1))
        }
    }
}

/// Manifests as multi-document YAML, each `apiVersion`, `kind`, `metadata`, `spec`.
///
/// # Errors
/// When serialisation fails (it does not for these types).
pub fn to_yaml<'a>(manifests: impl Iterator<Item = &'a Manifest>) -> anyhow::Result<String> {
    let mut out = String::new();
    for m in manifests {
        let meta = m.metadata();
        let spec = match m {
            Manifest::Container { spec, .. } => serde_json::to_value(&**spec)?,
            Manifest::Network { spec, .. } => serde_json::to_value(spec)?,
            Manifest::Volume { spec, .. } => serde_json::to_value(spec)?,
        };
        let doc = serde_json::json!({
            "apiVersion": API_VERSION,
            "kind": m.kind().as_str(),
            "metadata": {"name": meta.name, "namespace": meta.namespace},
            "spec": spec,
        });
        out.push_str("---\n");
        out.push_str(&serde_saphyr::to_string(&doc).context("serialise a manifest as YAML")?);
    }
    Ok(out)
}
