//! berth's image-reference parser against the maintained one (oci-spec's
//! `distribution::Reference`) on generated references: the same components for every ASCII
//! reference either accepts, the same error for every one both refuse. The only intended
//! difference is non-ASCII tags, which oci-spec's Unicode `\w` accepts and Docker refuses.

use berth_api::image_ref::{self, ImageReference};
use oci_spec::distribution::Reference;
use proptest::prelude::*;

/// Both parsers' verdicts in one comparable shape: components, or the error message (the two
/// error enums share upstream's messages).
fn ours(s: &str) -> Result<(String, String, Option<String>, Option<String>), String> {
    image_ref::parse(s)
        .map(
            |ImageReference {
                 registry,
                 repository,
                 tag,
                 digest,
             }| (registry, repository, tag, digest),
        )
        .map_err(|e| e.to_string())
}

fn theirs(s: &str) -> Result<(String, String, Option<String>, Option<String>), String> {
    s.parse::<Reference>()
        .map(|r| {
            (
                r.registry().to_owned(),
                r.repository().to_owned(),
                r.tag().map(str::to_owned),
                r.digest().map(str::to_owned),
            )
        })
        .map_err(|e| e.to_string())
}

/// A host-name-ish component: mostly valid DNS labels, sometimes with a leading or trailing
/// hyphen or an underscore (invalid), an optional port (sometimes not a number).
fn domain() -> impl Strategy<Value = String> {
    let label = prop_oneof![
        12 => "[a-zA-Z0-9]([a-zA-Z0-9-]{0,6}[a-zA-Z0-9])?",
        1 => "-[a-z]{1,3}|[a-z]{1,3}-|[a-z_]{1,4}",
    ];
    let port = prop_oneof![8 => "[0-9]{1,5}", 1 => "[a-z]{1,2}", 1 => Just(String::new())];
    (
        prop::collection::vec(label, 1..4),
        prop::option::of(port),
        prop::sample::select(vec![false, false, false, true]),
    )
        .prop_map(|(labels, port, localhost)| {
            let mut d = if localhost {
                "localhost".to_owned()
            } else {
                labels.join(".")
            };
            if let Some(p) = port {
                d.push(':');
                d.push_str(&p);
            }
            d
        })
}

/// A path component: lower-case alphanumerics joined by the grammar's separators, with some
/// invalid ones (upper case, doubled dots, triple underscores, a trailing separator).
fn component() -> impl Strategy<Value = String> {
    let alnum = prop_oneof![20 => "[a-z0-9]{1,5}", 1 => "[A-Z][a-z]{0,2}"];
    let sep = prop_oneof![20 => "\\.|_|__|-{1,3}", 1 => "___|\\.\\.|_-"];
    (
        prop::collection::vec((sep, alnum), 0..3),
        "[a-z0-9]{1,5}",
        prop::option::weighted(0.05, "[._-]"),
    )
        .prop_map(|(parts, first, trailing)| {
            let mut c = first;
            for (sep, a) in parts {
                c.push_str(&sep);
                c.push_str(&a);
            }
            c.extend(trailing);
            c
        })
}

/// A digest: usually a supported algorithm with a hex string of the right length.
fn digest() -> impl Strategy<Value = String> {
    let alg = prop_oneof![
        12 => prop::sample::select(vec![("sha256", 64usize), ("sha384", 96), ("sha512", 128)]),
        2 => prop::sample::select(vec![("md5", 32usize), ("sha256+b64", 64), ("Sha512", 128), ("a-b", 40)]),
        1 => prop::sample::select(vec![("1ab", 64usize), ("", 64)]),
    ];
    let hex = prop::char::ranges(vec!['0'..='9', 'a'..='f', 'A'..='F'].into());
    (
        alg,
        prop_oneof![6 => Just(0i32), 2 => -30i32..40],
        prop::bool::weighted(0.1),
    )
        .prop_flat_map(move |((alg, len), off, not_hex)| {
            let len = (len as i32 + off).max(0) as usize;
            prop::collection::vec(hex.clone(), len).prop_map(move |h| {
                let mut h: String = h.into_iter().collect();
                if not_hex && !h.is_empty() {
                    h.replace_range(0..1, "g");
                }
                format!("{alg}:{h}")
            })
        })
}

/// References built from the grammar's parts, valid and nearly valid.
fn reference() -> impl Strategy<Value = String> {
    (
        prop::option::of(domain()),
        prop::collection::vec(component(), 1..4),
        prop::option::of(prop_oneof![
            12 => "[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}",
            2 => "[A-Za-z0-9_][A-Za-z0-9_.-]{120,130}",
            1 => "[.-][a-z]{0,3}|",
        ]),
        prop::option::weighted(0.5, digest()),
        prop::sample::select(vec![0usize, 0, 0, 0, 0, 0, 1, 2]),
    )
        .prop_map(|(domain, path, tag, digest, long)| {
            let mut s = String::new();
            if let Some(d) = domain {
                s.push_str(&d);
                s.push('/');
            }
            let mut path = path.join("/");
            // Now and then a repository path near the 255-byte limit.
            for _ in 0..long {
                path.push('/');
                path.push_str(&"x".repeat(126));
            }
            s.push_str(&path);
            if let Some(t) = tag {
                s.push(':');
                s.push_str(&t);
            }
            if let Some(d) = digest {
                s.push('@');
                s.push_str(&d);
            }
            s
        })
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 1024,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn agrees_with_oci_spec_on_generated_references(s in reference()) {
        prop_assert_eq!(ours(&s), theirs(&s), "{:?}", s);
    }

    #[test]
    fn agrees_with_oci_spec_on_arbitrary_ascii(s in "[a-zA-Z0-9._:/@+-]{0,40}") {
        prop_assert_eq!(ours(&s), theirs(&s), "{:?}", s);
    }

    #[test]
    fn refuses_every_non_ascii_reference(s in reference(), c in "[^\\x00-\\x7f]", at in 0usize..200) {
        let mut s = s;
        let at = (0..=at.min(s.len())).rev().find(|i| s.is_char_boundary(*i)).unwrap_or(0);
        s.insert_str(at, &c);
        prop_assert!(image_ref::parse(&s).is_err(), "{:?}", s);
    }
}

/// The intended difference: Go's (and Docker's) `\w` is ASCII, oci-spec's is Unicode.
#[test]
fn non_ascii_tags_are_refused_as_docker_does() {
    for s in ["app:café", "app:日本", "registry.io/app:vé1"] {
        assert!(theirs(s).is_ok(), "oci-spec accepts {s}");
        assert_eq!(ours(s), Err("invalid reference format".into()), "{s}");
    }
}

/// The generator reaches every verdict (otherwise the comparison above proves little).
#[test]
fn generated_references_reach_every_verdict() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let strategy = reference();
    let mut seen = std::collections::BTreeMap::<String, usize>::new();
    for _ in 0..2000 {
        let s = strategy.new_tree(&mut runner).expect("a value").current();
        let verdict = match ours(&s) {
            Ok((registry, _, tag, digest)) => format!(
                "ok registry={} tag={} digest={}",
                registry != "docker.io",
                tag.is_some(),
                digest.is_some()
            ),
            Err(e) => e,
        };
        *seen.entry(verdict).or_default() += 1;
    }
    eprintln!("{seen:#?}");
    for e in [
        "invalid reference format",
        "repository name must not be more than 255 characters",
        "invalid checksum digest length",
        "unsupported digest algorithm",
        "ok registry=true tag=true digest=true",
        "ok registry=false tag=true digest=false",
        "ok registry=true tag=false digest=true",
    ] {
        assert!(seen.get(e).copied().unwrap_or(0) >= 5, "{e}: {seen:#?}");
    }
}
