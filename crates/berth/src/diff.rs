//! `berth diff DIR`: what would change, object by object, as `kubectl diff` shows it — the
//! spec fields that differ between what runs and what is declared (names only: values of env
//! and files are never printed), next to the actions they cause.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Instant;

use berth_api::ObjectKey;
use berth_api::PullPolicy;
use berth_core::backoff::{Backoff, RetryBook};
use berth_core::fields::{FIELD_DIGESTS, changed_fields, field_digests};
use berth_core::{Action, DesiredState};
use berth_engine::DockerEngine;
use bollard::query_parameters::ListContainersOptionsBuilder;
use serde::Serialize;

use crate::cli::{DiffArgs, DiffOutput};
use crate::host::HostIdentity;
use crate::images;

/// One object's pending change.
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectDiff {
    /// `Container`, `Network` or `Volume`.
    pub kind: String,
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Spec paths that differ between the running containers and the declaration
    /// (`spec.args`, `spec.files[0].content`, `spec.env[2]`); empty for a new object, a repair
    /// or a removal.
    pub fields: Vec<String>,
    /// True when a running container was created by a berth that recorded no field digests
    /// (the spec hash differs, the fields are unknown).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub fields_unknown: bool,
    /// The actions, in plan order: `{action, reason}`.
    pub actions: Vec<ActionDiff>,
}

/// One planned action.
#[derive(Debug, Default, Serialize)]
pub struct ActionDiff {
    /// What is done (`create container shop_web_0 (nginx:1.27)`).
    pub action: String,
    /// Why.
    pub reason: String,
}

/// The whole diff (`-o json`).
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Diff {
    /// Objects with pending changes.
    pub changes: Vec<ObjectDiff>,
    /// Objects that are not converging: `{object, reason, message}`.
    pub waiting: Vec<BTreeMap<String, String>>,
}

/// Field digests recorded on the instance's containers: engine name → (spec hash, digests).
async fn recorded(
    engine: &DockerEngine,
    instance: &str,
) -> anyhow::Result<BTreeMap<String, Option<BTreeMap<String, String>>>> {
    let filters = std::collections::HashMap::from([(
        "label".to_string(),
        vec![format!("{}={instance}", berth_core::labels::INSTANCE)],
    )]);
    let opts = ListContainersOptionsBuilder::default()
        .all(true)
        .filters(&filters)
        .build();
    let list = engine.client().list_containers(Some(opts)).await?;
    Ok(list
        .into_iter()
        .filter_map(|c| {
            let name = c.names?.first()?.trim_start_matches('/').to_string();
            let digests = c
                .labels
                .and_then(|l| l.get(FIELD_DIGESTS).cloned())
                .and_then(|d| serde_json::from_str(&d).ok());
            Some((name, digests))
        })
        .collect())
}

/// Computes the diff of `desired` against the engine.
pub async fn compute(engine: &DockerEngine, desired: &DesiredState) -> anyhow::Result<Diff> {
    // Build contexts are read (never built): a changed context shows as "build" with why.
    let desired = &*crate::builds::with_contexts(desired).await;
    let observed = images::observe(engine, desired).await?;
    // The same pass as `apply` and the agent, with a fresh retry book (what the agent would do
    // on its first pass).
    let p = berth_core::pass::pass(
        desired,
        &observed,
        &mut RetryBook::default(),
        &Default::default(),
        Backoff::CRASH_LOOP,
        Instant::now(),
    )
    .plan;
    let digests = recorded(engine, &desired.instance).await?;
    let mut by_key: BTreeMap<ObjectKey, ObjectDiff> = BTreeMap::new();
    for a in &p.actions {
        // An image that is already present is not a change (pullPolicy Always re-resolves
        // through the registry, which diff does not contact).
        if let Action::EnsureImage { image, policy, .. } = &a.action
            && *policy != PullPolicy::Always
            && engine.client().inspect_image(image).await.is_ok()
        {
            continue;
        }
        let key = &a.owner.key;
        let d = by_key.entry(key.clone()).or_insert_with(|| ObjectDiff {
            kind: key.kind.as_str().into(),
            namespace: key.namespace.clone(),
            name: key.name.clone(),
            ..Default::default()
        });
        d.actions.push(ActionDiff {
            action: a.action.to_string(),
            reason: a.intent.to_string(),
        });
    }
    for (key, d) in by_key.iter_mut() {
        let Some(dc) = desired.containers.get(key) else {
            continue;
        };
        let declared = field_digests(&dc.config);
        let mut fields = Vec::new();
        for c in observed
            .containers
            .iter()
            .filter(|c| c.key.as_ref() == Some(key))
        {
            if c.hash.as_deref() == Some(dc.hash.as_str()) {
                continue;
            }
            match digests.get(&c.name) {
                Some(Some(running)) => fields.extend(changed_fields(running, &declared)),
                _ => d.fields_unknown = true,
            }
        }
        fields.sort();
        fields.dedup();
        d.fields = fields;
    }
    let waiting = p
        .waiting
        .iter()
        .map(|w| {
            BTreeMap::from([
                ("object".to_string(), w.owner.to_string()),
                ("reason".to_string(), w.reason.to_string()),
                ("message".to_string(), w.message.clone()),
            ])
        })
        .collect();
    Ok(Diff {
        changes: by_key
            .into_values()
            .filter(|d| !d.actions.is_empty())
            .collect(),
        waiting,
    })
}

fn print_text(d: &Diff) {
    if !d.waiting.is_empty() {
        crate::outln!("not converging:");
        for w in &d.waiting {
            crate::outln!(
                "  {} {}: {}",
                w.get("object").map(String::as_str).unwrap_or(""),
                w.get("reason").map(String::as_str).unwrap_or(""),
                w.get("message").map(String::as_str).unwrap_or("")
            );
        }
    }
    if d.changes.is_empty() {
        crate::outln!("no changes");
        return;
    }
    crate::outln!("{} object(s) with pending changes:", d.changes.len());
    for c in &d.changes {
        crate::outln!("{} {}/{}", c.kind, c.namespace, c.name);
        if !c.fields.is_empty() {
            crate::outln!("  changed: {}", c.fields.join(", "));
        }
        if c.fields_unknown {
            crate::outln!(
                "  changed: spec (fields unknown: a container created by an older berth)"
            );
        }
        for a in &c.actions {
            crate::outln!("  {:<55} ({})", a.action, a.reason);
        }
    }
}

/// `berth diff DIR [-o json]`: exit 0 no changes, 1 changes pending, 2 bad input or no engine.
pub async fn diff(instance: &str, host: &HostIdentity, args: DiffArgs) -> anyhow::Result<ExitCode> {
    let desired =
        match crate::report::read_strict(instance, host, &args.dir, args.policy.as_deref())? {
            Ok((_, desired)) => desired,
            Err(code) => return Ok(code),
        };
    let engine = DockerEngine::connect().await?;
    let d = compute(&engine, &desired).await?;
    match args.output {
        Some(DiffOutput::Json) => crate::outln!("{}", serde_json::to_string_pretty(&d)?),
        None => print_text(&d),
    }
    Ok(if d.changes.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
