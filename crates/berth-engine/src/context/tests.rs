//! The matcher against moby's own `patternmatcher` test tables (`TestMatches`, multi-pattern
//! cases, `TestMatch`'s syntax errors), and the walk/digest/tar on real directories.

use super::*;

fn ignored(patterns: &[&str], path: &str) -> bool {
    IgnoreRules::new(patterns)
        .unwrap_or_else(|e| panic!("{patterns:?}: {e:?}"))
        .is_ignored(path)
}

/// moby `TestMatches` (MatchesOrParentMatches: `exact` and `inexact` both match).
#[test]
fn moby_test_matches() {
    let cases: &[(&str, &str, bool)] = &[
        ("**", "file", true),
        ("**", "file/", true),
        ("**/", "file", true),
        ("**/", "file/", true),
        ("**", "/", true),
        ("**/", "/", true),
        ("**", "dir/file", true),
        ("**/", "dir/file", true),
        ("**", "dir/file/", true),
        ("**/", "dir/file/", true),
        ("**/**", "dir/file", true),
        ("**/**", "dir/file/", true),
        ("dir/**", "dir/file", true),
        ("dir/**", "dir/file/", true),
        ("dir/**", "dir/dir2/file", true),
        ("dir/**", "dir/dir2/file/", true),
        ("**/dir", "dir", true),
        ("**/dir", "dir/file", true),
        ("**/dir2/*", "dir/dir2/file", true),
        ("**/dir2/*", "dir/dir2/file/", true),
        ("**/dir2/**", "dir/dir2/dir3/file", true),
        ("**/dir2/**", "dir/dir2/dir3/file/", true),
        ("**file", "file", true),
        ("**file", "dir/file", true),
        ("**/file", "dir/file", true),
        ("**file", "dir/dir/file", true),
        ("**/file", "dir/dir/file", true),
        ("**/file*", "dir/dir/file", true),
        ("**/file*", "dir/dir/file.txt", true),
        ("**/file*txt", "dir/dir/file.txt", true),
        ("**/file*.txt", "dir/dir/file.txt", true),
        ("**/file*.txt*", "dir/dir/file.txt", true),
        ("**/**/*.txt", "dir/dir/file.txt", true),
        ("**/**/*.txt2", "dir/dir/file.txt", false),
        ("**/*.txt", "file.txt", true),
        ("**/**/*.txt", "file.txt", true),
        ("a**/*.txt", "a/file.txt", true),
        ("a**/*.txt", "a/dir/file.txt", true),
        ("a**/*.txt", "a/dir/dir/file.txt", true),
        ("a/*.txt", "a/dir/file.txt", false),
        ("a/*.txt", "a/file.txt", true),
        ("a/*.txt**", "a/file.txt", true),
        ("a[b-d]e", "ae", false),
        ("a[b-d]e", "ace", true),
        ("a[b-d]e", "aae", false),
        ("a[^b-d]e", "aze", true),
        (".*", ".foo", true),
        (".*", "foo", false),
        ("abc.def", "abcdef", false),
        ("abc.def", "abc.def", true),
        ("abc.def", "abcZdef", false),
        ("abc?def", "abcZdef", true),
        ("abc?def", "abcdef", false),
        ("**/foo/bar", "foo/bar", true),
        ("**/foo/bar", "dir/foo/bar", true),
        ("**/foo/bar", "dir/dir2/foo/bar", true),
        ("abc/**", "abc", false),
        ("abc/**", "abc/def", true),
        ("abc/**", "abc/def/ghi", true),
        ("**/.foo", ".foo", true),
        ("**/.foo", "bar.foo", false),
        ("a(b)c/def", "a(b)c/def", true),
        ("a(b)c/def", "a(b)c/xyz", false),
        ("a.|)$(}+{bc", "a.|)$(}+{bc", true),
        (
            "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
            "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
            true,
        ),
        (
            "dist/*.whl",
            "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
            true,
        ),
        ("a\\\\", "a\\", true),
        ("a\\*b", "a*b", true),
    ];
    for (pattern, path, want) in cases {
        assert_eq!(
            ignored(&[pattern], path),
            *want,
            "pattern {pattern:?} path {path:?}"
        );
    }
}

/// moby's multi-pattern cases and folder exceptions: the last match wins, `!` re-includes.
#[test]
fn moby_exceptions_last_match_wins() {
    let whl = "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl";
    assert!(!ignored(&["**", "!util/docker/web"], "util/docker/web/foo"));
    assert!(ignored(
        &["**", "!util/docker/web", "util/docker/web/foo"],
        "util/docker/web/foo"
    ));
    assert!(!ignored(&["**", &format!("!{whl}")], whl));
    assert!(!ignored(&["**", "!dist/*.whl"], whl));
    assert!(ignored(&["!fileutils.go", "*.go"], "fileutils.go"));
    assert!(!ignored(&["*.go", "!fileutils.go"], "fileutils.go"));
    for folder in ["docs", "docs/", "docs/*"] {
        assert!(!ignored(&[folder, "!docs/README.md"], "docs/README.md"));
        assert!(ignored(&[folder, "!docs/README.md"], "docs/other.md"));
    }
    assert!(!ignored(&["*.go"], "."), "the root is never ignored");
    assert!(!ignored(&[], "any/path"));
}

/// moby `TestMatch` (Go's `filepath.Match` table) through the ignore rules, and its syntax
/// errors.
#[test]
fn moby_test_match_and_bad_patterns() {
    let cases: &[(&str, &str, bool)] = &[
        ("abc", "abc", true),
        ("*", "abc", true),
        ("*c", "abc", true),
        ("a*", "a", true),
        ("a*", "abc", true),
        ("a*/b", "abc/b", true),
        ("a*/b", "a/c/b", false),
        ("a*b*c*d*e*/f", "axbxcxdxe/f", true),
        ("a*b*c*d*e*/f", "axbxcxdxexxx/f", true),
        ("a*b*c*d*e*/f", "axbxcxdxe/xxx/f", false),
        ("a*b*c*d*e*/f", "axbxcxdxexxx/fff", false),
        ("a*b?c*x", "abxbbxdbxebxczzx", true),
        ("a*b?c*x", "abxbbxdbxebxczzy", false),
        ("ab[c]", "abc", true),
        ("ab[b-d]", "abc", true),
        ("ab[e-g]", "abc", false),
        ("ab[^c]", "abc", false),
        ("ab[^b-d]", "abc", false),
        ("ab[^e-g]", "abc", true),
        ("a\\*b", "a*b", true),
        ("a\\*b", "ab", false),
        ("a?b", "a☺b", true),
        ("a[^a]b", "a☺b", true),
        ("a???b", "a☺b", false),
        ("a[^a][^a][^a]b", "a☺b", false),
        ("[a-ζ]*", "α", true),
        ("*[a-ζ]", "A", false),
        ("a?b", "a/b", false),
        ("a*b", "a/b", false),
        ("[\\]a]", "]", true),
        ("[\\-]", "-", true),
        ("[x\\-]", "x", true),
        ("[x\\-]", "-", true),
        ("[x\\-]", "z", false),
        ("[\\-x]", "x", true),
        ("[\\-x]", "-", true),
        ("[\\-x]", "a", false),
        ("*x", "xxx", true),
    ];
    for (pattern, path, want) in cases {
        assert_eq!(
            ignored(&[pattern], path),
            *want,
            "pattern {pattern:?} path {path:?}"
        );
    }
    for bad in [
        "[]a]", "[-]", "[x-]", "[-x]", "\\", "[a-b-c]", "[", "[^", "[^bc", "a[", "!",
    ] {
        assert!(IgnoreRules::new(&[bad]).is_err(), "{bad:?} must be refused");
    }
}

/// moby `ignorefile.ReadAll`: comments, blank lines, a leading `/`, `!` with spaces.
#[test]
fn ignore_file_syntax() {
    let rules = IgnoreRules::parse(
        "\u{feff}# comment\n\n/secret.txt\n  *.log  \ntmp/\n! tmp/keep\n #not-a-comment\n",
    )
    .expect("valid");
    assert!(rules.is_ignored("secret.txt"));
    assert!(rules.is_ignored("a.log"));
    assert!(rules.is_ignored("tmp/x"));
    assert!(!rules.is_ignored("tmp/keep"));
    assert!(
        rules.is_ignored("#not-a-comment"),
        "only a # in column 1 starts a comment"
    );
    assert!(!rules.is_ignored("dir/secret.txt"));
}

#[test]
fn clean_is_go_filepath_clean() {
    for (input, want) in [
        ("", "."),
        ("a/b/", "a/b"),
        ("a//b", "a/b"),
        ("./a", "a"),
        ("a/../b", "b"),
        ("../a", "../a"),
        ("/../a", "/a"),
        ("/", "/"),
        ("a/b/../..", "."),
    ] {
        assert_eq!(clean(input), want, "{input:?}");
    }
}

fn write(root: &Path, rel: &str, content: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
    std::fs::write(p, content).expect("write");
}

fn paths(c: &Context) -> Vec<&str> {
    c.entries.iter().map(|e| e.path.as_str()).collect()
}

#[test]
fn walk_honours_dockerignore_and_keeps_the_dockerfile() {
    let dir = tempfile::tempdir().expect("tmp");
    let root = dir.path();
    write(root, "Dockerfile", "FROM scratch\n");
    write(root, "index.html", "hi\n");
    write(root, "secret.txt", "no\n");
    write(root, "logs/a.log", "x");
    write(root, "logs/keep.txt", "y");
    write(
        root,
        ".dockerignore",
        "secret.txt\nlogs\n!logs/keep.txt\nDockerfile\n.dockerignore\n",
    );
    let c = Context::walk(root, "Dockerfile").expect("walk");
    assert_eq!(
        paths(&c),
        vec![".dockerignore", "Dockerfile", "index.html", "logs/keep.txt"]
    );
    // `<dockerfile>.dockerignore` beside the Dockerfile wins over `.dockerignore`.
    write(root, "Dockerfile.dockerignore", "index.html\n");
    let c = Context::walk(root, "Dockerfile").expect("walk");
    assert_eq!(
        paths(&c),
        vec![
            ".dockerignore",
            "Dockerfile",
            "Dockerfile.dockerignore",
            "logs",
            "logs/a.log",
            "logs/keep.txt",
            "secret.txt"
        ]
    );
}

#[test]
fn digest_changes_with_content_mode_and_paths_but_not_with_touch() {
    let dir = tempfile::tempdir().expect("tmp");
    let root = dir.path();
    write(root, "Dockerfile", "FROM scratch\nCOPY . /\n");
    write(root, "index.html", "v1\n");
    let d0 = Context::walk(root, "Dockerfile").expect("walk").digest;
    // touch: same content, new mtime
    let f = std::fs::File::options()
        .write(true)
        .open(root.join("index.html"))
        .expect("open");
    f.set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(3600))
        .expect("touch");
    drop(f);
    assert_eq!(Context::walk(root, "Dockerfile").expect("walk").digest, d0);
    write(root, "index.html", "v2\n");
    let d1 = Context::walk(root, "Dockerfile").expect("walk").digest;
    assert_ne!(d1, d0);
    std::fs::set_permissions(
        root.join("index.html"),
        std::fs::Permissions::from_mode(0o600),
    )
    .expect("chmod");
    let d2 = Context::walk(root, "Dockerfile").expect("walk").digest;
    assert_ne!(d2, d1);
    std::fs::rename(root.join("index.html"), root.join("other.html")).expect("mv");
    assert_ne!(Context::walk(root, "Dockerfile").expect("walk").digest, d2);
    // An ignored file never counts.
    write(root, ".dockerignore", "junk\n");
    let d3 = Context::walk(root, "Dockerfile").expect("walk").digest;
    write(root, "junk", "anything");
    assert_eq!(Context::walk(root, "Dockerfile").expect("walk").digest, d3);
}

#[test]
fn symlinks_are_archived_never_followed() {
    let outside = tempfile::tempdir().expect("tmp");
    write(outside.path(), "passwd", "secret");
    let dir = tempfile::tempdir().expect("tmp");
    let root = dir.path();
    write(root, "Dockerfile", "FROM scratch\n");
    std::os::unix::fs::symlink(outside.path().join("passwd"), root.join("link")).expect("ln");
    std::os::unix::fs::symlink(outside.path(), root.join("dirlink")).expect("ln");
    std::os::unix::fs::symlink("loop", root.join("loop")).expect("ln");
    let c = Context::walk(root, "Dockerfile").expect("walk");
    assert_eq!(paths(&c), vec!["Dockerfile", "dirlink", "link", "loop"]);
    assert!(matches!(c.entries[2].kind, EntryKind::Symlink { .. }));
    let tar = c.tar().expect("tar");
    assert!(
        !tar.windows(6).any(|w| w == b"secret"),
        "the target's content is never read"
    );
    let mut a = tar::Archive::new(tar.as_slice());
    let names: Vec<(String, tar::EntryType)> = a
        .entries()
        .expect("entries")
        .map(|e| {
            let e = e.expect("entry");
            (
                e.path().expect("path").to_string_lossy().into_owned(),
                e.header().entry_type(),
            )
        })
        .collect();
    assert_eq!(names[2], ("link".to_string(), tar::EntryType::Symlink));
}

#[test]
fn bad_contexts_are_clear_errors() {
    let dir = tempfile::tempdir().expect("tmp");
    let root = dir.path();
    let missing = Context::walk(&root.join("nope"), "Dockerfile").expect_err("missing");
    assert!(
        matches!(missing, ContextError::NotADirectory { .. }),
        "{missing}"
    );
    std::os::unix::fs::symlink("self", root.join("self")).expect("ln");
    let looped = Context::walk(&root.join("self"), "Dockerfile").expect_err("loop");
    assert!(
        matches!(looped, ContextError::NotADirectory { .. }),
        "{looped}"
    );
    let no_file = Context::walk(root, "Dockerfile").expect_err("no Dockerfile");
    assert!(
        no_file
            .to_string()
            .contains("Dockerfile \"Dockerfile\" not found"),
        "{no_file}"
    );
    write(root, "Dockerfile", "FROM scratch\n");
    write(root, ".dockerignore", "[\n");
    let bad = Context::walk(root, "Dockerfile").expect_err("bad pattern");
    assert!(matches!(bad, ContextError::BadPattern { .. }), "{bad}");
}

#[test]
fn tar_holds_the_kept_files_with_their_modes() {
    let dir = tempfile::tempdir().expect("tmp");
    let root = dir.path();
    write(root, "Dockerfile", "FROM scratch\n");
    write(root, "bin/run.sh", "#!/bin/sh\n");
    std::fs::set_permissions(
        root.join("bin/run.sh"),
        std::fs::Permissions::from_mode(0o755),
    )
    .expect("chmod");
    let c = Context::walk(root, "Dockerfile").expect("walk");
    let tar = c.tar().expect("tar");
    let mut a = tar::Archive::new(tar.as_slice());
    let mut seen = Vec::new();
    for e in a.entries().expect("entries") {
        let mut e = e.expect("entry");
        let path = e.path().expect("path").to_string_lossy().into_owned();
        let mode = e.header().mode().expect("mode");
        let mut body = String::new();
        e.read_to_string(&mut body).expect("read");
        seen.push((path, mode, body));
    }
    assert_eq!(
        seen,
        vec![
            ("Dockerfile".into(), 0o644, "FROM scratch\n".into()),
            ("bin/".into(), 0o755, String::new()),
            ("bin/run.sh".into(), 0o755, "#!/bin/sh\n".into()),
        ]
    );
}
