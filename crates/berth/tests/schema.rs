//! `berth schema`: the committed schema equals what the types generate, and a real JSON Schema
//! validator (Python's `jsonschema`, draft-07) accepts every example and rejects a wrong type
//! and an unknown field.

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs `e2e/schema/check.py SCHEMA MODE FILES…`; returns its output, failing the test when
/// it fails. `jsonschema` and PyYAML come with `kubernetes-validate` (installed by `.ci/run`).
fn check(mode: &str, files: &[PathBuf]) -> String {
    let out = Command::new("python3")
        .arg(repo().join("e2e/schema/check.py"))
        .arg(repo().join("manifests/schema/berth.schema.json"))
        .arg(mode)
        .args(files)
        .output()
        .expect("python3 must be installed (see .ci/run)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "check.py {mode} failed:\n{text}");
    text
}

#[test]
fn committed_schema_equals_what_the_types_generate() {
    let got = std::fs::read_to_string(repo().join("manifests/schema/berth.schema.json"))
        .unwrap_or_default();
    assert!(
        got == format!("{}\n", berth::schema::manifest_schema_json()),
        "manifests/schema/berth.schema.json differs from the types; regenerate with `cargo run -p berth -- schema > manifests/schema/berth.schema.json`"
    );
}

#[test]
fn schema_accepts_every_example_and_they_carry_the_modeline() {
    let mut files = Vec::new();
    for dir in ["manifests/examples/hello", "manifests/examples/blog"] {
        for e in std::fs::read_dir(repo().join(dir)).expect("examples") {
            let path = e.expect("entry").path();
            let text = std::fs::read_to_string(&path).expect("read");
            assert!(
                text.starts_with(
                    "# yaml-language-server: $schema=../../schema/berth.schema.json\n"
                ),
                "{} lacks the yaml-language-server modeline",
                path.display()
            );
            files.push(path);
        }
    }
    let out = check("accept", &files);
    assert!(out.matches("ok ").count() >= 6, "{out}");
}

#[test]
fn schema_rejects_a_wrong_type_and_an_unknown_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases = [
        (
            "wrong-type.yaml",
            "apiVersion: berth.dev/v1alpha1\nkind: Container\nmetadata: {name: web}\nspec: {image: nginx, replicas: three}\n",
        ),
        (
            "unknown-field.yaml",
            "apiVersion: berth.dev/v1alpha1\nkind: Container\nmetadata: {name: web}\nspec: {image: nginx, imagePullPolicy: Always}\n",
        ),
        (
            "unknown-network-field.yaml",
            "apiVersion: berth.dev/v1alpha1\nkind: Network\nmetadata: {name: front}\nspec: {driver: bridge, subnet: 10.0.0.0/24}\n",
        ),
        (
            "unknown-kind.yaml",
            "apiVersion: berth.dev/v1alpha1\nkind: Pod\nmetadata: {name: web}\nspec: {}\n",
        ),
        (
            "unknown-top-level.yaml",
            "apiVersion: berth.dev/v1alpha1\nkind: Volume\nmetadata: {name: data}\nstatus: {}\n",
        ),
    ];
    let files: Vec<PathBuf> = cases
        .iter()
        .map(|(name, text)| {
            let p = dir.path().join(name);
            std::fs::write(&p, text).expect("write");
            p
        })
        .collect();
    let out = check("reject", &files);
    assert!(out.contains("replicas"), "{out}");
    assert!(out.contains("imagePullPolicy"), "{out}");
}

#[test]
fn man_page_and_completions_name_the_subcommands() {
    let page = berth::man_page().expect("man page");
    assert!(
        page.starts_with(".ie") || page.contains(".TH berth 1"),
        "{page}"
    );
    for section in ["BERTH AGENT", "BERTH APPLY", "BERTH DIFF", "BERTH SCHEMA"] {
        assert!(page.contains(section), "man page lacks {section}");
    }
    assert!(
        page.contains("\\-\\-manifests"),
        "agent options are documented"
    );
}

/// Runs the built `berth` binary with `args`; returns stdout, failing unless it exits 0.
fn berth(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(args)
        .output()
        .expect("run berth");
    assert!(out.status.success(), "berth {args:?}: {out:?}");
    String::from_utf8(out.stdout).expect("utf-8")
}

#[test]
fn completions_and_schema_commands_print_what_they_should() {
    let bash = berth(&["completions", "bash"]);
    assert!(
        bash.contains("_berth()") && bash.contains("complete -F _berth"),
        "{bash}"
    );
    assert!(
        bash.contains("--manifests"),
        "subcommand flags are completed"
    );
    let zsh = berth(&["completions", "zsh"]);
    assert!(zsh.starts_with("#compdef berth"), "{zsh}");
    let fish = berth(&["completions", "fish"]);
    assert!(fish.contains("complete -c berth"), "{fish}");
    let schema: serde_json::Value =
        serde_json::from_str(&berth(&["schema"])).expect("schema is JSON");
    assert_eq!(schema["$schema"], "http://json-schema.org/draft-07/schema#");
    let man = berth(&["man"]);
    assert!(man.contains(".TH berth 1"), "{man}");
}
