//! `berth get`, `describe` and `events`: read the running agent's view from its local API
//! socket and print it with kubectl's habits. Without an agent, `get` says so and lists what
//! the engine's labels tell.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use berth_core::RunState;
use berth_engine::{DockerEngine, Engine};
use serde_json::{Value, json};

use crate::api::{fetch_view, socket_path};
use crate::cli::{DescribeArgs, EventsArgs, GetArgs, GetOutput, GetWhat};
use crate::observe::{AgentView, EventView, ObjectView, ReplicaView};

fn kind_matches(what: GetWhat, kind: &str) -> bool {
    match what {
        GetWhat::All => true,
        GetWhat::Containers => kind == "Container",
        GetWhat::Networks => kind == "Network",
        GetWhat::Volumes => kind == "Volume",
    }
}

/// READY column: ready/declared replicas for containers, `1/1` or `0/1` for the others.
fn ready_column(o: &ObjectView) -> String {
    match o.status.hosts.first() {
        Some(e) if e.replicas.is_some() => format!(
            "{}/{}",
            e.ready_replicas.unwrap_or(0),
            e.replicas.unwrap_or(0)
        ),
        Some(e) => {
            let ready = e.state == berth_api::HostObjectState::Ready;
            format!("{}/1", u8::from(ready))
        }
        None => "-".into(),
    }
}

/// STATUS column: `Running`/`Ready` when ready, else the waiting reason.
fn status_column(o: &ObjectView) -> String {
    match o.status.hosts.first() {
        Some(e) if !e.reason.is_empty() => e.reason.clone(),
        Some(e) => e.state.as_str().to_string(),
        None => "Unknown".into(),
    }
}

/// Age of an RFC 3339 time, as kubectl prints it (`45s`, `3m`, `2h`, `4d`).
fn age(since: Option<&str>) -> String {
    let Some(t) = since.and_then(|s| s.parse::<k8s_openapi::jiff::Timestamp>().ok()) else {
        return "-".into();
    };
    let secs = (k8s_openapi::jiff::Timestamp::now().as_second() - t.as_second()).max(0);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

fn table(rows: &[Vec<String>]) -> String {
    let mut widths = vec![0; rows.first().map(Vec::len).unwrap_or(0)];
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let mut out = String::new();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
            .collect();
        out.push_str(line.join("   ").trim_end());
        out.push('\n');
    }
    out
}

/// The image a Container runs: the agent's defaulted image (`spec.image`, or the tag berth
/// builds for `spec.build`), else the declared `spec.image`.
fn image_of(o: &ObjectView) -> Option<&str> {
    o.status
        .image
        .as_deref()
        .or_else(|| o.spec.get("image").and_then(Value::as_str))
}

/// The `get` table: NAMESPACE, NAME (`kind/name` with `all`), READY, STATUS, RESTARTS, AGE,
/// IMAGE, and with `wide` SPEC-HASH, ORIGIN and MESSAGE.
pub fn render_table(objects: &[&ObjectView], what: GetWhat, wide: bool) -> String {
    let mut head = vec![
        "NAMESPACE",
        "NAME",
        "READY",
        "STATUS",
        "RESTARTS",
        "AGE",
        "IMAGE",
    ];
    if wide {
        head.extend(["SPEC-HASH", "ORIGIN", "MESSAGE"]);
    }
    let mut rows = vec![head.iter().map(|s| s.to_string()).collect::<Vec<_>>()];
    for o in objects {
        let e = o.status.hosts.first();
        let name = if what == GetWhat::All {
            format!("{}/{}", o.kind.to_lowercase(), o.metadata.name)
        } else {
            o.metadata.name.clone()
        };
        let mut row = vec![
            o.metadata.namespace.clone(),
            name,
            ready_column(o),
            status_column(o),
            e.and_then(|e| e.restart_count)
                .map(|n| n.to_string())
                .unwrap_or_else(|| "0".into()),
            age(o.metadata.creation_timestamp.as_deref()),
            image_of(o).unwrap_or("-").to_string(),
        ];
        if wide {
            row.push(o.status.spec_hash.clone());
            row.push(
                o.metadata
                    .annotations
                    .get("berth.dev/origin")
                    .cloned()
                    .unwrap_or_default(),
            );
            row.push(e.map(|e| e.message.clone()).unwrap_or_default());
        }
        rows.push(row);
    }
    table(&rows)
}

/// A `List` in the CRD shape (`apiVersion: v1`, `kind: List`, `items`).
fn list(objects: &[&ObjectView]) -> Value {
    json!({"apiVersion": "v1", "kind": "List", "items": objects})
}

/// What `get` and `describe` print first (on stderr) when the agent cannot reach the Docker
/// Engine: since when and its latest error, and that the states shown are not current.
fn engine_outage_line(view: &AgentView) -> Option<String> {
    let o = view.engine_unreachable.as_ref()?;
    let shown =
        if view.last_pass.as_ref().is_some_and(|p| p.error.is_none()) || !view.objects.is_empty() {
            "the states below are the agent's last view before, not current"
        } else {
            "the agent has not observed the engine yet"
        };
    Some(format!(
        "warning: the agent cannot reach the Docker Engine: unreachable since {}: {}; {shown}",
        o.since, o.error
    ))
}

/// `berth get`. Exit 0; 1 when what is shown is not current: no agent answers (what the
/// engine's labels tell is printed), or the agent cannot reach the engine (its last view is).
pub async fn get(instance: &str, socket: Option<&Path>, args: GetArgs) -> anyhow::Result<ExitCode> {
    let path = socket_path(socket, instance);
    let (view, live) = match fetch_view(&path).await {
        Ok(v) => {
            let outage = engine_outage_line(&v);
            if let Some(line) = &outage {
                crate::errln!("{line}");
            }
            (v, outage.is_none())
        }
        Err(e) => match from_engine(instance).await {
            Ok(v) => {
                crate::errln!(
                    "no agent is running for instance {instance:?} ({e:#}); showing what the engine's labels tell (no spec, no reasons)"
                );
                (v, false)
            }
            Err(engine) => anyhow::bail!(
                "no agent is running for instance {instance:?} ({e:#}), and the engine's labels cannot be read: {engine:#}"
            ),
        },
    };
    let objects: Vec<&ObjectView> = view
        .objects
        .iter()
        .filter(|o| kind_matches(args.what, &o.kind))
        .filter(|o| {
            args.namespace
                .as_deref()
                .is_none_or(|ns| o.metadata.namespace == ns)
        })
        .collect();
    match args.output {
        Some(GetOutput::Json) => {
            crate::outln!("{}", serde_json::to_string_pretty(&list(&objects))?)
        }
        Some(GetOutput::Yaml) => crate::out!("{}", serde_saphyr::to_string(&list(&objects))?),
        wide => {
            if objects.is_empty() {
                crate::outln!("No resources found.");
            } else {
                crate::out!(
                    "{}",
                    render_table(&objects, args.what, wide == Some(GetOutput::Wide))
                );
            }
        }
    }
    Ok(if live {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// What the engine's labels tell about `instance`'s objects, in the view's shape: each object
/// with its containers and a state read from them (`Ready` when every container runs).
pub async fn from_engine(instance: &str) -> anyhow::Result<AgentView> {
    let engine = DockerEngine::connect().await?;
    let observed = Engine::observe(&engine, instance)
        .await
        .context("observe the engine")?;
    let mut objects: BTreeMap<berth_api::ObjectKey, ObjectView> = BTreeMap::new();
    let mut blank = |key: &berth_api::ObjectKey| {
        objects.entry(key.clone()).or_insert_with(|| ObjectView {
            api_version: berth_api::API_VERSION.into(),
            kind: key.kind.as_str().into(),
            metadata: crate::observe::MetaView {
                name: key.name.clone(),
                namespace: key.namespace.clone(),
                annotations: [(
                    "berth.dev/source".to_string(),
                    "engine labels (no agent running)".to_string(),
                )]
                .into(),
                creation_timestamp: None,
            },
            spec: Value::Null,
            status: Default::default(),
        });
    };
    for n in &observed.networks {
        if let Some(k) = &n.key {
            blank(k);
        }
    }
    for v in &observed.volumes {
        if let Some(k) = &v.key {
            blank(k);
        }
    }
    for c in &observed.containers {
        if let Some(k) = &c.key {
            blank(k);
        }
    }
    for (key, o) in objects.iter_mut() {
        let containers: Vec<ReplicaView> = observed
            .containers
            .iter()
            .filter(|c| c.key.as_ref() == Some(key))
            .map(|c| ReplicaView {
                name: c.name.clone(),
                id: c.id.clone(),
                replica: c.replica,
                state: format!("{:?}", c.state).to_lowercase(),
                exit_code: c.exit_code,
                health: None,
                ready: None,
                current: true,
            })
            .collect();
        let running = observed
            .containers
            .iter()
            .filter(|c| c.key.as_ref() == Some(key) && c.state == RunState::Running)
            .count() as u32;
        let is_container = key.kind == berth_api::Kind::Container;
        let ready = !is_container || running as usize == containers.len();
        o.status.hosts = vec![berth_api::HostEntry {
            state: if ready {
                berth_api::HostObjectState::Ready
            } else {
                berth_api::HostObjectState::Progressing
            },
            reason: if !is_container {
                "Exists".into()
            } else if ready {
                "Running".into()
            } else {
                "NotRunning".into()
            },
            replicas: is_container.then_some(containers.len() as u32),
            ready_replicas: is_container.then_some(running),
            ..Default::default()
        }];
        o.status.containers = containers;
    }
    Ok(AgentView {
        instance: instance.into(),
        objects: objects.into_values().collect(),
        ..Default::default()
    })
}

fn describe_text(o: &ObjectView, events: &[EventView]) -> String {
    let mut out = String::new();
    let mut line = |k: &str, v: String| out.push_str(&format!("{k:<16}{v}\n"));
    line("Name:", o.metadata.name.clone());
    line("Namespace:", o.metadata.namespace.clone());
    line("Kind:", o.kind.clone());
    if let Some(origin) = o.metadata.annotations.get("berth.dev/origin") {
        line("Declared in:", origin.clone());
    }
    line("Spec hash:", o.status.spec_hash.clone());
    if let Some(image) = image_of(o) {
        line("Image:", image.to_string());
    }
    if let Some(context) = o.spec.pointer("/build/context").and_then(Value::as_str) {
        line("Built from:", context.to_string());
    }
    for field in ["command", "args"] {
        if let Some(v) = o.spec.get(field).filter(|v| !v.is_null()) {
            line(&format!("{}:", capitalise(field)), v.to_string());
        }
    }
    if let Some(e) = o.status.hosts.first() {
        line("State:", e.state.as_str().to_string());
        line("Reason:", e.reason.clone());
        if !e.message.is_empty() {
            line("Message:", e.message.clone());
        }
        if let (Some(r), Some(ready)) = (e.replicas, e.ready_replicas) {
            line("Replicas:", format!("{ready}/{r} ready"));
        }
        line("Restarts:", e.restart_count.unwrap_or(0).to_string());
        if let Some(code) = e.last_exit_code {
            line("Last exit code:", code.to_string());
        }
    }
    if !o.status.containers.is_empty() {
        out.push_str("Containers:\n");
        let mut rows = vec![vec![
            "  ENGINE NAME".to_string(),
            "ID".into(),
            "REPLICA".into(),
            "STATE".into(),
            "EXIT".into(),
            "HEALTH".into(),
            "SPEC".into(),
        ]];
        for c in &o.status.containers {
            rows.push(vec![
                format!("  {}", c.name),
                c.id.chars().take(12).collect(),
                c.replica.map(|r| r.to_string()).unwrap_or_default(),
                c.state.clone(),
                c.exit_code.map(|c| c.to_string()).unwrap_or_default(),
                c.health.clone().unwrap_or_default(),
                if c.current { "current" } else { "old" }.into(),
            ]);
        }
        out.push_str(&table(&rows));
    }
    if !o.status.waiting.is_empty() {
        out.push_str("Waiting:\n");
        for w in &o.status.waiting {
            let replica = w
                .replica
                .map(|r| format!(" replica {r}"))
                .unwrap_or_default();
            let next = w
                .next_retry
                .as_ref()
                .map(|t| format!(" (next retry {t})"))
                .unwrap_or_default();
            out.push_str(&format!("  {}{replica}: {}{next}\n", w.reason, w.message));
        }
    }
    if !o.status.conditions.is_empty() {
        out.push_str("Conditions:\n");
        let mut rows = vec![vec![
            "  TYPE".to_string(),
            "STATUS".into(),
            "REASON".into(),
            "SINCE".into(),
        ]];
        for c in &o.status.conditions {
            rows.push(vec![
                format!("  {}", c.type_),
                c.status.clone(),
                c.reason.clone(),
                c.last_transition_time.clone(),
            ]);
        }
        out.push_str(&table(&rows));
    }
    out.push_str("Events:\n");
    let object = format!("{}/{}/{}", o.kind, o.metadata.namespace, o.metadata.name);
    let mine: Vec<&EventView> = events.iter().filter(|e| e.object == object).collect();
    if mine.is_empty() {
        out.push_str("  <none>\n");
    }
    for e in mine {
        out.push_str(&format!(
            "  {}  {:<7}  {:<16}  {}\n",
            e.time, e.type_, e.reason, e.message
        ));
    }
    out
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
        .unwrap_or_default()
}

/// `berth describe KIND NS/NAME`. Exit 0; 1 when the object is unknown, no agent runs, or the
/// agent cannot reach the engine (the object is shown as it last saw it).
pub async fn describe(
    instance: &str,
    socket: Option<&Path>,
    args: DescribeArgs,
) -> anyhow::Result<ExitCode> {
    let (ns, name) = args
        .name
        .split_once('/')
        .unwrap_or((berth_api::DEFAULT_NAMESPACE, args.name.as_str()));
    let path = socket_path(socket, instance);
    let view = match fetch_view(&path).await {
        Ok(v) => v,
        Err(e) => {
            crate::errln!("no agent is running for instance {instance:?}: {e:#}");
            return Ok(ExitCode::from(1));
        }
    };
    let found = view.objects.iter().find(|o| {
        kind_matches(args.kind, &o.kind) && o.metadata.namespace == ns && o.metadata.name == name
    });
    let outage = engine_outage_line(&view);
    if let Some(line) = &outage {
        crate::errln!("{line}");
    }
    match found {
        Some(o) => {
            crate::out!("{}", describe_text(o, &view.events));
            Ok(if outage.is_none() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        None => {
            crate::errln!("error: {ns}/{name} not found");
            Ok(ExitCode::from(1))
        }
    }
}

fn print_events(events: &[EventView]) {
    for e in events {
        crate::outln!(
            "{}  {:<7}  {:<18}  {:<40}  {}",
            e.time,
            e.type_,
            e.reason,
            e.object,
            e.message
        );
    }
}

/// `berth events [--watch]`.
pub async fn events(
    instance: &str,
    socket: Option<&Path>,
    args: EventsArgs,
) -> anyhow::Result<ExitCode> {
    let path = socket_path(socket, instance);
    let view = match fetch_view(&path).await {
        Ok(v) => v,
        Err(e) => {
            crate::errln!("no agent is running for instance {instance:?}: {e:#}");
            return Ok(ExitCode::from(1));
        }
    };
    if let Some(line) = engine_outage_line(&view) {
        crate::errln!("{line}");
    }
    crate::outln!(
        "{:<20}  {:<7}  {:<18}  {:<40}  MESSAGE",
        "TIME",
        "TYPE",
        "REASON",
        "OBJECT"
    );
    print_events(&view.events);
    if !args.watch {
        return Ok(ExitCode::SUCCESS);
    }
    let mut last = view.events.last().cloned();
    loop {
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        let view = fetch_view(&path).await?;
        // Events are kept in order; print those after the last one printed.
        let seen = last.as_ref().map_or(0, |e| e.seq);
        let new: Vec<EventView> = view
            .events
            .iter()
            .filter(|e| e.seq > seen)
            .cloned()
            .collect();
        print_events(&new);
        if let Some(e) = new.last() {
            last = Some(e.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::{EngineOutage, PassSummary};

    fn built(image: Option<&str>) -> ObjectView {
        let mut o = ObjectView {
            kind: "Container".into(),
            spec: json!({"build": {"context": "/srv/site"}}),
            ..Default::default()
        };
        o.metadata.name = "site".into();
        o.metadata.namespace = "web".into();
        o.status.image = image.map(str::to_string);
        o
    }

    #[test]
    fn a_built_container_shows_the_tag_berth_builds() {
        let o = built(Some("berth.local/web/site:latest"));
        let table = render_table(&[&o], GetWhat::Containers, false);
        let row = table.lines().nth(1).unwrap_or_default();
        assert!(row.ends_with("berth.local/web/site:latest"), "{table}");
        let text = describe_text(&o, &[]);
        assert!(
            text.contains("Image:          berth.local/web/site:latest\n")
                && text.contains("Built from:     /srv/site\n"),
            "{text}"
        );
        // Without the agent's image (an older agent), the declared image, else `-`.
        let table = render_table(&[&built(None)], GetWhat::Containers, false);
        assert!(
            table.lines().nth(1).unwrap_or_default().ends_with(" -"),
            "{table}"
        );
    }

    #[test]
    fn an_unreachable_engine_is_said_with_since_when_and_the_error() {
        let mut v = AgentView::default();
        assert_eq!(engine_outage_line(&v), None);
        v.engine_unreachable = Some(EngineOutage {
            since: "2026-01-01T00:00:00Z".into(),
            error: "connection refused".into(),
        });
        let line = engine_outage_line(&v).unwrap_or_default();
        assert!(
            line.contains("unreachable since 2026-01-01T00:00:00Z: connection refused")
                && line.contains("has not observed the engine yet"),
            "{line}"
        );
        v.last_pass = Some(PassSummary::default());
        let line = engine_outage_line(&v).unwrap_or_default();
        assert!(line.contains("last view before, not current"), "{line}");
    }
}
