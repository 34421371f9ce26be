//! The bad-input corpus, `e2e/fixtures/bad/<category>/`: each case is a manifest
//! (`<case>.yaml`) or a Compose project (`<case>/compose.yaml`, perhaps with a `.env`), and
//! `<case>.expected` holds exactly what `berth validate` prints for it: every error with
//! `file:line:column`, the field when one is at fault, and the message.
//!
//! - `every_bad_input_is_rejected_where_it_is_wrong`: `berth validate` on each case (a
//!   process each, at most 5 s of CPU time and 100 MiB of data: `ulimit -t` and `ulimit -d`, and
//!   killed after 20 s of wall time — wall time is not the bound on a loaded machine, CPU
//!   time is) exits 1 and prints exactly the expected text (a list of the fields a mapping
//!   takes may have grown). `BERTH_BLESS=1` rewrites the expected files instead (review the diff).
//! - `bad_files_beside_good_ones_change_nothing`: every case in one manifest directory beside
//!   good files, with the agent running: each bad file is reported, nothing of it is created,
//!   the good files converge, a running object whose file turns bad keeps running, and the agent
//!   stays under 100 MB.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use berth_e2e::{BUSYBOX, repo_root, test_env};

/// CPU time a case may use (`ulimit -t`, seconds).
const MAX_CPU_SECONDS: u64 = 5;
/// Wall time after which a case is killed (a blocked read, say).
const MAX_TIME: Duration = Duration::from_secs(20);
/// Data segment limit of each `berth validate` (`ulimit -d`, KiB).
const MAX_DATA_KIB: u64 = 100 * 1024;

struct Case {
    /// `category/name`.
    id: String,
    category: String,
    /// The manifest file, or the Compose project directory.
    input: PathBuf,
    expected: PathBuf,
}

fn corpus_dir() -> PathBuf {
    repo_root().join("e2e/fixtures/bad")
}

fn cases() -> Vec<Case> {
    let mut out = Vec::new();
    let mut categories: Vec<_> = std::fs::read_dir(corpus_dir())
        .expect("e2e/fixtures/bad")
        .filter_map(Result::ok)
        .filter(|e| e.path().is_dir())
        .collect();
    categories.sort_by_key(|e| e.file_name());
    for cat in categories {
        let category = cat.file_name().to_string_lossy().to_string();
        let mut entries: Vec<_> = std::fs::read_dir(cat.path())
            .expect("category")
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.is_dir() || p.extension().is_some_and(|x| x == "yaml"))
            .collect();
        entries.sort();
        for input in entries {
            let stem = input
                .file_stem()
                .expect("name")
                .to_string_lossy()
                .to_string();
            out.push(Case {
                id: format!("{category}/{stem}"),
                category: category.clone(),
                expected: cat.path().join(format!("{stem}.expected")),
                input,
            });
        }
    }
    out
}

/// `berth validate INPUT` bounded in time and memory: (exit code, stderr, time taken).
fn validate(input: &Path) -> (Option<i32>, String, Duration) {
    let start = Instant::now();
    let mut child = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "ulimit -d {MAX_DATA_KIB} -t {MAX_CPU_SECONDS}; exec \"$0\" validate \"$1\""
        ))
        .arg(env!("CARGO_BIN_EXE_berth-e2e-cli"))
        .arg(input)
        .env_remove("BERTH_CORPUS_UNSET")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run berth validate");
    loop {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        if start.elapsed() > MAX_TIME {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let out = child.wait_with_output().expect("wait");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).to_string(),
        start.elapsed(),
    )
}

/// Problems with one case's output besides a text mismatch: every line is an `error:` with a
/// 1-based position (`file:line:column:`), or only a file (`file: …`) for what concerns the
/// whole file; never a position of 0.
fn shape_problems(stderr: &str) -> Vec<String> {
    let mut problems = Vec::new();
    if stderr.trim().is_empty() {
        problems.push("nothing reported".to_string());
    }
    for line in stderr.lines() {
        let Some(rest) = line.strip_prefix("error: ") else {
            problems.push(format!("not an error line: {line}"));
            continue;
        };
        let mut parts = rest.splitn(4, ':');
        let (file, l, c) = (parts.next(), parts.next(), parts.next());
        let numbers = l
            .zip(c)
            .and_then(|(l, c)| Some((l.parse::<u64>().ok()?, c.parse::<u64>().ok()?)));
        match (file, numbers) {
            (Some(f), Some((l, c))) if !f.is_empty() && l > 0 && c > 0 => {}
            (Some(_), Some(_)) => problems.push(format!("a position of 0: {line}")),
            (Some(f), None) if !f.is_empty() && !f.contains(' ') => {
                let whole_file = [
                    "not UTF-8",
                    "holds no document",
                    "cannot read",
                    "not a regular file",
                ];
                if !whole_file.iter().any(|w| rest.contains(w)) {
                    problems.push(format!("no line and column: {line}"));
                }
            }
            _ if rest.contains("is declared more than once") => {}
            _ => problems.push(format!("no file:line:column: {line}")),
        }
    }
    problems
}

#[test]
fn every_bad_input_is_rejected_where_it_is_wrong() {
    let cases = cases();
    assert!(cases.len() >= 150, "only {} cases", cases.len());
    let bless = std::env::var_os("BERTH_BLESS").is_some();
    let results: Vec<(String, Vec<String>)> = std::thread::scope(|s| {
        let chunks: Vec<&[Case]> = cases.chunks(cases.len().div_ceil(2)).collect();
        let handles: Vec<_> = chunks
            .into_iter()
            .map(|chunk| {
                s.spawn(move || {
                    chunk
                        .iter()
                        .map(|case| (case.id.clone(), check(case, bless)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("thread"))
            .collect()
    });
    let failures: Vec<String> = results
        .iter()
        .filter(|(_, p)| !p.is_empty())
        .map(|(id, p)| format!("{id}:\n  {}", p.join("\n  ")))
        .collect();
    let categories: std::collections::BTreeSet<&str> =
        cases.iter().map(|c| c.category.as_str()).collect();
    eprintln!(
        "{} cases in {} categories: {categories:?}",
        cases.len(),
        categories.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

/// One case: exit code, bounds, shape and exact text.
fn check(case: &Case, bless: bool) -> Vec<String> {
    let (code, stderr, took) = validate(&case.input);
    let mut problems = Vec::new();
    if took > MAX_TIME {
        problems.push(format!("took {took:?} (killed after {MAX_TIME:?})"));
    }
    if code != Some(1) {
        problems.push(format!("exit {code:?}, expected 1 (invalid)"));
    }
    problems.extend(shape_problems(&stderr));
    if bless {
        std::fs::write(&case.expected, &stderr).expect("write expected");
        return problems;
    }
    match std::fs::read_to_string(&case.expected) {
        Ok(expected) if same_report(&expected, &stderr) => {}
        Ok(expected) => problems.push(format!(
            "printed:\n{stderr}  expected ({}):\n{expected}",
            case.expected.display()
        )),
        Err(e) => problems.push(format!("{}: {e}", case.expected.display())),
    }
    problems
}

/// The printed report is the expected one: the same lines, except that a list of the fields a
/// mapping takes ("unknown field …; expected one of: a, b") may have grown (a field added to
/// the API must not rewrite the corpus); every field listed before must still be listed.
fn same_report(expected: &str, printed: &str) -> bool {
    const LIST: &str = "; expected one of: ";
    let (e, p): (Vec<&str>, Vec<&str>) = (expected.lines().collect(), printed.lines().collect());
    e.len() == p.len()
        && e.iter()
            .zip(&p)
            .all(|(e, p)| match (e.split_once(LIST), p.split_once(LIST)) {
                (Some((e_head, e_list)), Some((p_head, p_list))) => {
                    let printed: Vec<&str> = p_list.split(", ").collect();
                    e_head == p_head && e_list.split(", ").all(|f| printed.contains(&f))
                }
                _ => e == p,
            })
}

/// Copies the corpus into `dir/<category>/…`.
fn copy_corpus(cases: &[Case], dir: &Path) {
    for case in cases {
        let target = dir.join(&case.category);
        std::fs::create_dir_all(&target).expect("mkdir");
        if case.input.is_dir() {
            let project = target.join(case.input.file_name().expect("name"));
            std::fs::create_dir_all(&project).expect("mkdir");
            for f in std::fs::read_dir(&case.input).expect("project") {
                let f = f.expect("entry").path();
                std::fs::copy(&f, project.join(f.file_name().expect("name"))).expect("copy");
            }
        } else {
            std::fs::copy(
                &case.input,
                target.join(case.input.file_name().expect("name")),
            )
            .expect("copy");
        }
    }
}

/// How the agent names a case in its log: the path of its file (or project) in the directory.
fn shown(case: &Case) -> String {
    let name = case
        .input
        .file_name()
        .expect("name")
        .to_string_lossy()
        .to_string();
    if case.input.is_dir() {
        format!("{}/{name}/", case.category)
    } else {
        format!("{}/{name}", case.category)
    }
}

/// True when the agent's log reports the case: its file by path, or — for a file that decodes
/// but whose object is blocked (a reference to nothing, a dependsOn cycle) — the object, by
/// the key its expected text names (`Container/default/x`).
fn reported(case: &Case, log: &str) -> bool {
    if log.contains(&shown(case)) {
        return true;
    }
    let expected = std::fs::read_to_string(&case.expected).unwrap_or_default();
    let keys: Vec<&str> = expected
        .split([' ', ','])
        .map(|w| w.trim_end_matches(':'))
        .filter(|w| {
            ["Container/", "Network/", "Volume/"]
                .iter()
                .any(|k| w.starts_with(k))
        })
        .collect();
    !keys.is_empty() && keys.iter().all(|k| log.contains(&format!("owner={k} ")))
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_files_beside_good_ones_change_nothing() {
    let env = test_env!("corpus").await;
    env.write("good.yaml", &env.container("good", BUSYBOX, ""));
    env.write("keep.yaml", &env.container("keep", BUSYBOX, ""));
    let mut agent = env.agent();
    env.until("good and keep run", Duration::from_secs(30), || async {
        env.running(&env.cname("good")).await && env.running(&env.cname("keep")).await
    })
    .await;
    let keep_id = env.container_id(&env.cname("keep")).await.expect("keep");

    // The whole corpus at once, and `keep`'s file turns bad (a quoted number).
    let cases = cases();
    copy_corpus(&cases, env.dir.path());
    env.write(
        "keep.yaml",
        &env.container("keep", BUSYBOX, "  replicas: \"2\"\n"),
    );
    let start = Instant::now();
    let mut missing: Vec<String> = Vec::new();
    while start.elapsed() < Duration::from_secs(60) {
        let log = agent.log();
        missing = cases
            .iter()
            .filter(|c| !reported(c, &log))
            .map(shown)
            .chain(
                ["keep.yaml:".to_string()]
                    .into_iter()
                    .filter(|s| !log.contains(s.as_str())),
            )
            .collect();
        if missing.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        missing.is_empty(),
        "not reported by the agent: {missing:?}\nlog:\n{}",
        agent.log()
    );
    eprintln!(
        "{} bad files reported in {:?}",
        cases.len(),
        start.elapsed()
    );

    // The agent keeps converging: a new good file runs, a killed container is restarted.
    env.write("late.yaml", &env.container("late", BUSYBOX, ""));
    env.until("late runs", Duration::from_secs(30), || async {
        env.running(&env.cname("late")).await
    })
    .await;
    env.docker_cli(&["kill", &env.cname("good")]);
    env.until("good restarted", Duration::from_secs(30), || async {
        env.running(&env.cname("good")).await
    })
    .await;
    assert_eq!(
        env.container_id(&env.cname("keep")).await.as_deref(),
        Some(keep_id.as_str()),
        "keep's running container was left alone"
    );
    assert!(env.running(&env.cname("keep")).await);
    // Nothing of the corpus was created.
    let mut names: Vec<String> = env.containers().await.into_keys().collect();
    names.sort();
    assert_eq!(
        names,
        vec![env.cname("good"), env.cname("keep"), env.cname("late")],
        "only the good files' containers"
    );
    assert!(
        env.networks().await.is_empty(),
        "{:?}",
        env.networks().await
    );
    let peak = agent.peak_rss().expect("VmHWM");
    eprintln!("agent peak RSS {} MiB", peak >> 20);
    assert!(peak < 100 << 20, "agent peak RSS {peak} bytes");
    assert!(agent.running());
    agent.stop();
}
