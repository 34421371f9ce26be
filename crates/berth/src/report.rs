//! One-shot commands: `apply`, `diff`, `validate`, and how they print.

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use berth_core::backoff::{Backoff, RetryBook};
use berth_core::plan::Waiting;
use berth_core::resolve::{resolve, resolve_for};
use berth_core::{Action, DesiredState, Plan, WaitReason};
use berth_engine::{DockerEngine, ImageRefresh, Prober};
use berth_sources::directory::{DirectorySource, Snapshot};

use berth_core::merge::targeted;
use berth_core::policy::{Source, admit};

use std::io::IsTerminal;

use crate::agent::{PassReport, Reconciler};
use crate::builds::{self, BuildOutput};
use crate::cli::{ApplyArgs, EXIT_ERROR, PolicySource, ValidateArgs};
use crate::host::HostIdentity;
use crate::images;
use crate::progress::{self, ApplyProgress, StderrLines};

/// Reads `dir` strictly: any file error or conflict is fatal (there is no last-known-good state
/// for a one-shot command, and applying a partial set would remove the broken file's objects).
pub fn read_strict(
    instance: &str,
    host: &HostIdentity,
    dir: &Path,
    policy: Option<&Path>,
) -> anyhow::Result<Result<(Snapshot, DesiredState), ExitCode>> {
    let policy = crate::policy::load(policy)?;
    let snap = DirectorySource::new(dir).scan()?;
    if !snap.errors.is_empty() || !snap.conflicts.is_empty() {
        print_input_problems(&snap);
        crate::errln!("nothing was changed: fix the manifests first");
        return Ok(Err(ExitCode::from(EXIT_ERROR)));
    }
    // Objects whose hostSelector targets other hosts are not this host's business.
    let mine = targeted(snap.objects.values().cloned(), &host.labels);
    // The security policy: a refused object is not applied (its running containers stay).
    let facts = crate::policy::host_facts(mine.iter().map(|d| &d.manifest), &policy);
    let (admitted, refused) = admit(
        &std::collections::BTreeMap::new(),
        mine.into_iter().map(|d| (Source::Directory, d)),
        &policy,
        &facts,
    );
    let mut desired = resolve_for(instance, admitted.iter().map(|d| &d.manifest));
    desired.refused = refused
        .iter()
        .map(|r| (r.key.clone(), r.to_string()))
        .collect();
    Ok(Ok((snap, desired)))
}

fn print_input_problems(snap: &Snapshot) {
    for e in &snap.errors {
        crate::errln!("error: {e}");
    }
    for c in &snap.conflicts {
        crate::errln!("error: {c}");
    }
}

/// True when the plan takes a step of a rolling update, or replicas wait their turn or for a
/// new replica's readiness (the retry book also knows whether an update is under way).
fn rolling(p: &Plan) -> bool {
    p.waiting
        .iter()
        .any(|w| w.reason == WaitReason::RollingUpdate)
        || p.actions.iter().any(|a| {
            matches!(
                a.action,
                Action::StopContainer { .. } | Action::RenameContainer { .. }
            ) || a.intent.is_rolling_update()
        })
}

fn print_pass(report: &PassReport, started: Instant, output: &BuildOutput) {
    if report.plan.is_empty() {
        return;
    }
    crate::outln!(
        "applied {} action(s) in {:.2?}:",
        report.plan.actions.len(),
        started.elapsed()
    );
    for (a, o) in report.plan.actions.iter().zip(&report.outcomes) {
        let status = match &o.result {
            Ok(()) => "ok".to_string(),
            Err(e) => format!("FAILED: {e}"),
        };
        crate::outln!("  {:<55} {} {status}", a.action.to_string(), a.owner);
        // A failed build shows the builder's last lines.
        if let (Action::BuildImage { tags, .. }, Err(_)) = (&a.action, &o.result)
            && let Some(tag) = tags.first()
            && !o.skipped
        {
            crate::outln!("  builder output of {tag} (last lines):");
            for line in output.tail(tag) {
                crate::outln!("    {line}");
            }
        }
    }
}

/// Reports the objects whose build context cannot be read, with the manifest file.
fn print_unreadable_contexts(snap: &Snapshot, desired: &DesiredState) {
    for (key, why) in &desired.blocked {
        if why.starts_with("spec.build") {
            match snap.objects.get(key) {
                Some(d) => crate::errln!("error: {}: {key}: {why}", d.origin),
                None => crate::errln!("error: {key}: {why}"),
            }
        }
    }
}

fn print_waiting(w: &[Waiting]) {
    for w in w {
        crate::outln!("  {} {}: {}", w.owner, w.reason, w.message);
    }
}

/// The engine, with the progress of its builds followed: each step printed on a terminal
/// (through `lines`, above the progress line), the output kept for a failure report.
async fn connect_following_builds(
    lines: &StderrLines,
) -> anyhow::Result<(DockerEngine, BuildOutput)> {
    let (progress_tx, progress_rx) = tokio::sync::mpsc::unbounded_channel();
    let terminal = std::io::stderr().is_terminal().then(|| lines.clone());
    let output = BuildOutput::follow(progress_rx, terminal);
    let engine = DockerEngine::connect()
        .await?
        .with_build_progress(progress_tx);
    Ok((engine, output))
}

/// `berth apply DIR`.
pub async fn apply(
    instance: &str,
    host: &HostIdentity,
    args: ApplyArgs,
) -> anyhow::Result<ExitCode> {
    let (snap, desired) = match read_strict(instance, host, &args.dir, args.policy.as_deref())? {
        Ok(v) => v,
        Err(code) => return Ok(code),
    };
    let lines = StderrLines::default();
    let (engine, output) = connect_following_builds(&lines).await?;
    print_unreadable_contexts(&snap, &*builds::with_contexts(&desired).await);
    // One converge includes re-resolving `pullPolicy: Always` tags (a failure is reported and
    // leaves the running containers alone, as in the agent).
    let unverified = refresh_always_images(&engine, &desired).await;
    // Probes run while apply waits for rolling updates and dependencies, so that readiness gates
    // each step as in the agent.
    let (probe_tx, mut probe_rx) = tokio::sync::mpsc::channel(16);
    let mut rec = Reconciler {
        prober: Some(Prober::new(engine.client().clone(), probe_tx)),
        engine,
        book: RetryBook::default(),
        parallelism: args.parallelism,
        crash_backoff: Backoff::CRASH_LOOP,
    };
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.timeout);
    // Build contexts are read again before every pass (a build takes the context as it is
    // then).
    let mut report =
        pass_with_progress(&mut rec, &*builds::with_contexts(&desired).await, &lines).await?;
    let mut total = report.plan.actions.len();
    let mut failed = report.failed();
    let mut timed_out = false;
    // Passes that acted without anything to wait for: each is followed by one more pass, which
    // verifies the result or repairs it (a failed replacement is undone), a few at most.
    let mut settling = 0;
    print_pass(&report, started, &output);
    loop {
        // A rolling update takes several passes, one per step, each after the new replica is
        // ready; a dependent is created once its dependency meets its condition. After a
        // failure apply stops waiting: the failed object backs off, the agent retries it.
        let progressing =
            !failed && (waits_for_progress(&report.plan) || rec.book.rollouts.in_progress());
        let acted = !report.plan.actions.is_empty();
        let settle = acted && settling < SETTLE_PASSES;
        if !(progressing || settle) {
            break;
        }
        if Instant::now() >= deadline {
            crate::outln!(
                "not finished after {} s (--timeout); the agent finishes what remains",
                args.timeout
            );
            timed_out = true;
            break;
        }
        if progressing {
            settling = 0;
            tokio::select! {
                _ = probe_rx.recv() => {}
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
        } else {
            settling += 1;
        }
        let t = Instant::now();
        report =
            pass_with_progress(&mut rec, &*builds::with_contexts(&desired).await, &lines).await?;
        total += report.plan.actions.len();
        failed |= report.failed();
        print_pass(&report, t, &output);
    }
    let still_acting = !report.plan.actions.is_empty() && !failed && !timed_out;
    if total == 0 && report.plan.waiting.is_empty() && unverified.is_empty() {
        crate::outln!("nothing to do: the host is converged");
    }
    let blocking: Vec<Waiting> = report
        .plan
        .waiting
        .iter()
        .filter(|w| w.reason.blocks_apply())
        .cloned()
        .collect();
    let warnings: Vec<Waiting> = report
        .plan
        .waiting
        .iter()
        .filter(|w| !w.reason.blocks_apply())
        .cloned()
        .collect();
    if !warnings.is_empty() {
        crate::outln!("warnings:");
        print_waiting(&warnings);
    }
    // Anything declared that is not running as declared: the summary lists each with the
    // reason and the observed state, and apply exits 1.
    if !blocking.is_empty() {
        crate::outln!("not converged:");
        print_waiting(&blocking);
    }
    if still_acting {
        crate::outln!("not converged: the host still changed in the last of several passes");
    }
    if !unverified.is_empty() {
        crate::outln!("could not be verified:");
        for (image, why) in &unverified {
            crate::outln!("  image {image} (pullPolicy Always): {why}");
        }
    }
    let converged =
        !failed && !timed_out && !still_acting && blocking.is_empty() && unverified.is_empty();
    Ok(if converged {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// One pass; on a terminal with a progress line (objects done / total, the slowest action in
/// flight) while it executes.
async fn pass_with_progress(
    rec: &mut Reconciler,
    desired: &DesiredState,
    lines: &StderrLines,
) -> anyhow::Result<PassReport> {
    let line = ApplyProgress::on_stderr(lines);
    if !line.is_drawn() {
        return rec.pass(desired).await;
    }
    let pass = rec.pass_observed(desired, |plan, event| line.on(plan, event));
    tokio::pin!(pass);
    let mut tick = tokio::time::interval(progress::TICK);
    let report = loop {
        tokio::select! {
            r = &mut pass => break r,
            _ = tick.tick() => line.tick(),
        }
    };
    line.finish();
    report
}

/// Passes `apply` runs right after one that acted, to verify or repair its result.
const SETTLE_PASSES: u32 = 3;

/// True when the host is on its way and apply should wait for it: a rolling update takes a step
/// or waits for readiness, or a dependent waits for its dependency.
fn waits_for_progress(p: &Plan) -> bool {
    rolling(p)
        || p.waiting
            .iter()
            .any(|w| w.reason == WaitReason::WaitingForDependency)
}

/// Re-resolves the `pullPolicy: Always` tags, as the agent does in the background; returns the
/// images that could not be re-resolved (so the host cannot be shown to run the declared
/// image), with why. The running containers are left alone either way.
async fn refresh_always_images(
    engine: &DockerEngine,
    desired: &DesiredState,
) -> Vec<(String, String)> {
    let always = images::always_images(desired);
    let mut unverified = Vec::new();
    if always.is_empty() {
        return unverified;
    }
    for (image, r) in images::refresh_images(engine.clone(), always).await {
        match r {
            Ok(ImageRefresh::Moved { after, .. }) => {
                crate::outln!("image {image} moved to {after} (pullPolicy Always)");
            }
            Ok(ImageRefresh::Unchanged) => {}
            Err(e) => {
                crate::outln!("warning: cannot re-resolve image {image}: {e}");
                unverified.push((image, e));
            }
        }
    }
    unverified
}

/// `berth validate DIR`: decode, validate and resolve references, and check every object
/// against the security policy of `--source` (and `--namespace`); no engine needed.
///
/// # Errors
/// The policy file cannot be read.
pub fn validate(args: &ValidateArgs) -> anyhow::Result<ExitCode> {
    let policy = crate::policy::load(args.policy.as_deref())?;
    let mut source = DirectorySource::new(&args.dir);
    let snap = match source.scan() {
        Ok(s) => s,
        Err(e) => {
            crate::errln!("error: {e}");
            return Ok(ExitCode::from(EXIT_ERROR));
        }
    };
    print_input_problems(&snap);
    // References are resolved over every declaration (the first of a duplicated object), so
    // that a conflict is reported once, as a conflict, and not also as a missing object.
    let mut first = std::collections::BTreeMap::new();
    for l in source.declared() {
        first.entry(l.manifest.key()).or_insert(l);
    }
    let desired = resolve(first.values().map(|l| &l.manifest));
    let conflicted: std::collections::BTreeSet<_> = snap.conflicts.iter().map(|c| &c.key).collect();
    for (key, why) in &desired.blocked {
        if conflicted.contains(key) {
            continue;
        }
        match first.get(key) {
            Some(l) => crate::errln!("error: {}: {key}: {why}", l.origin),
            None => crate::errln!("error: {key}: {why}"),
        }
    }
    let refused = policy_check(args, &policy, first.values().copied());
    // One line per violation, as a decoding error: `file:line:column: field: …`.
    for (origin, r) in &refused {
        for v in &r.violations {
            let at =
                v.at.as_ref()
                    .map_or_else(|| origin.clone(), ToString::to_string);
            crate::errln!(
                "error: {at}: {}: PolicyViolation: {} is refused by the {} profile of the {} source: {}",
                v.field,
                r.key,
                r.profile.as_str(),
                r.source.as_str(),
                v.explain()
            );
        }
    }
    let clean = snap.errors.is_empty() && snap.conflicts.is_empty() && desired.blocked.is_empty();
    Ok(if clean && refused.is_empty() {
        crate::outln!("{} object(s) valid", snap.objects.len());
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The objects `args.source`'s profile refuses, with their origins (objects without a
/// namespace get `--namespace`).
fn policy_check<'a>(
    args: &ValidateArgs,
    policy: &berth_core::policy::Policy,
    declared: impl Iterator<Item = &'a berth_sources::decode::Located>,
) -> Vec<(String, berth_core::policy::Refusal)> {
    let source = match args.source {
        PolicySource::Directory => Source::Directory,
        PolicySource::Kubernetes => Source::Kubernetes,
    };
    let decls: Vec<(Source, berth_core::merge::Declaration)> = declared
        .map(|l| {
            let mut manifest = l.manifest.clone();
            if let Some(ns) = &args.namespace
                && manifest.metadata().namespace.is_none()
            {
                manifest.metadata_mut().namespace = Some(ns.clone());
            }
            let d = berth_core::merge::Declaration {
                manifest,
                origin: l.origin.clone(),
                fields: l.fields.clone(),
            };
            (source, d)
        })
        .collect();
    let origins: std::collections::BTreeMap<berth_api::ObjectKey, String> = decls
        .iter()
        .map(|(_, d)| (d.manifest.key(), d.origin.to_string()))
        .collect();
    let facts = crate::policy::host_facts(decls.iter().map(|(_, d)| &d.manifest), policy);
    admit(&std::collections::BTreeMap::new(), decls, policy, &facts)
        .1
        .into_iter()
        .map(|r| (origins.get(&r.key).cloned().unwrap_or_default(), r))
        .collect()
}
