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
            o.spec
                .get("image")
                .and_then(Value::as_str)
                .unwrap_or("-")
                .to_string(),
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

/// `berth get`. Exit 0; 1 when no agent answers (what the engine's labels tell is printed).
pub async fn get(instance: &str, socket: Option<&Path>, args: GetArgs) -> anyhow::Result<ExitCode> {
    let path = socket_path(socket, instance);
    let (view, live) = match fetch_view(&path).await {
        Ok(v) => (v, true),
        Err(e) => {
            eprintln!(
                "no agent is running for instance {instance:?} ({e:#}); showing what the engine's labels tell (no spec, no reasons)"
            );
            (from_engine(instance).await?, false)
        }
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
        Some(GetOutput::Json) => println!("{}", serde_json::to_string_pretty(&list(&objects))?),
        Some(GetOutput::Yaml) => print!("{}", serde_saphyr::to_string(&list(&objects))?),
        wide => {
            if objects.is_empty() {
                println!("No resources found.");
            } else {
                print!(
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
    if let Some(image) = o.spec.get("image").and_then(Value::as_str) {
        line("Image:", image.to_string());
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

/// `berth describe KIND NS/NAME`. Exit 0; 1 when the object is unknown or no agent runs.
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
            eprintln!("no agent is running for instance {instance:?}: {e:#}");
            return Ok(ExitCode::from(1));
        }
    };
    let found = view.objects.iter().find(|o| {
        kind_matches(args.kind, &o.kind) && o.metadata.namespace == ns && o.metadata.name == name
    });
    match found {
        Some(o) => {
            print!("{}", describe_text(o, &view.events));
            Ok(ExitCode::SUCCESS)
        }
        None => {
            eprintln!("error: {ns}/{name} not found");
            Ok(ExitCode::from(1))
        }
    }
}

fn print_events(events: &[EventView]) {
    for e in events {
        println!(
            "{}  {:<7}  {:<18}  {:<40}  {}",
            e.time, e.type_, e.reason, e.object, e.message
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
            eprintln!("no agent is running for instance {instance:?}: {e:#}");
            return Ok(ExitCode::from(1));
        }
    };
    println!(
        "{:<20}  {:<7}  {:<18}  {:<40}  MESSAGE",
        "TIME", "TYPE", "REASON", "OBJECT"
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
