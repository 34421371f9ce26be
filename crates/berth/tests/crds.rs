//! The CRDs: committed files equal what the types generate, and they (and the example
//! manifests, as custom resources) pass offline validation with real schema validators.

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs `python3 e2e/k8s/validate.py ARGS…` and fails with its output. The Python packages
/// (`kubernetes-validate`, `helm-python-sdk`) are installed by `e2e/test.sh`; a missing one is a
/// test failure, never a skip.
pub fn validate_py(args: &[&str]) {
    let out = Command::new("python3")
        .arg(repo().join("e2e/k8s/validate.py"))
        .args(args)
        .current_dir(repo())
        .output()
        .expect("python3 must be installed (bash e2e/test.sh installs the validators)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "e2e/k8s/validate.py {args:?} failed (missing packages? run the tests with: bash e2e/test.sh):\n{text}"
    );
    println!("{text}");
}

#[test]
fn committed_crds_equal_what_the_types_generate() {
    let dir = repo().join("manifests/crds");
    let mut expected_files = Vec::new();
    for crd in berth::crd::crds() {
        let name = berth::crd::file_name(&crd);
        let want = berth::crd::to_yaml(&crd).expect("yaml");
        let got = std::fs::read_to_string(dir.join(&name)).unwrap_or_default();
        assert!(
            got == want,
            "manifests/crds/{name} differs from the types; regenerate with `cargo run -p berth -- crd --write manifests/crds`"
        );
        expected_files.push(name);
    }
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .expect("manifests/crds")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    expected_files.sort();
    assert_eq!(files, expected_files, "stray files in manifests/crds");
}

#[test]
fn berth_crd_prints_the_committed_files() {
    let out = berth::crd::all_yaml().expect("yaml");
    let mut joined = String::new();
    for crd in berth::crd::crds() {
        joined.push_str("---\n");
        joined.push_str(
            &std::fs::read_to_string(
                repo()
                    .join("manifests/crds")
                    .join(berth::crd::file_name(&crd)),
            )
            .expect("crd file"),
        );
    }
    assert_eq!(out, joined);
}

#[test]
fn crds_validate_offline() {
    validate_py(&["crds", "manifests/crds"]);
}

/// The manifest-directory examples are valid custom resources, unchanged.
#[test]
fn examples_validate_against_the_crd_schemas() {
    validate_py(&["examples", "manifests/crds", "manifests/examples"]);
}

/// The chart's CRDs are the generated ones.
#[test]
fn chart_crds_equal_manifests_crds() {
    for crd in berth::crd::crds() {
        let name = berth::crd::file_name(&crd);
        let chart = std::fs::read_to_string(repo().join("charts/berth/crds").join(&name))
            .unwrap_or_default();
        assert!(
            chart == berth::crd::to_yaml(&crd).expect("yaml"),
            "charts/berth/crds/{name} differs; regenerate with `cargo run -p berth -- crd --write charts/berth/crds`"
        );
    }
}

/// Helm's own lint (strict) and offline render (helm-python-sdk) with several value sets; every
/// rendered object passes kubernetes-validate; values.schema.json rejects bad values.
#[test]
fn chart_lints_renders_and_validates_offline() {
    let sets = r#"[{}, {"daemonSet": {"enabled": true, "nodeLabels": {"zone": "eu"}}},
                  {"watchNamespaces": ["shop", "blog"], "remoteHosts": {"enabled": true}, "leaseNamespace": "berth-leases"}]"#;
    let out = Command::new("python3")
        .arg(repo().join("e2e/k8s/validate.py"))
        .args(["chart", "charts/berth"])
        .env("BERTH_CHART_VALUE_SETS", sets)
        .current_dir(repo())
        .output()
        .expect("python3 must be installed (bash e2e/test.sh installs the validators)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "chart validation failed (missing packages? run the tests with: bash e2e/test.sh):\n{text}"
    );
    assert_eq!(text.matches("object(s) rendered").count(), 3, "{text}");
}
