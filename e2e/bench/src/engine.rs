//! Direct engine access: cleaning up the bench's own objects, the raw-engine baseline, engine
//! floors for latency figures, and a start-event listener.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use bollard::Docker;
use bollard::models::{
    ContainerCreateBody, EndpointSettings, HostConfig, NetworkCreateRequest, NetworkingConfig,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, EventsOptionsBuilder, ListContainersOptionsBuilder,
    ListNetworksOptionsBuilder, RemoveContainerOptionsBuilder, StopContainerOptionsBuilder,
};
use futures_util::StreamExt;
use tokio::sync::mpsc;

use crate::workload::{COMMAND, COMPOSE_PROJECT, IMAGE, INSTANCE, RAW_LABEL, RAW_NETWORK};

/// Same parallelism as berth's default (`--parallelism 8`).
pub const RAW_PARALLELISM: usize = 8;

/// Label filters that select everything the bench creates, and nothing else.
fn own_label_filters() -> [String; 3] {
    [
        format!("berth.dev/instance={INSTANCE}"),
        format!("com.docker.compose.project={COMPOSE_PROJECT}"),
        RAW_LABEL.to_string(),
    ]
}

/// Connects with `DOCKER_HOST` or the default socket and negotiates the API version.
pub async fn connect() -> anyhow::Result<Docker> {
    let d = Docker::connect_with_defaults()
        .context("connect to the Docker Engine")?
        .negotiate_version()
        .await
        .context("negotiate the engine API version (is dockerd running?)")?;
    Ok(d)
}

/// `Docker Engine <version> (API <x.yy>)`, and the engine's CPU count.
pub async fn describe(d: &Docker) -> anyhow::Result<(String, i64)> {
    let v = d.version().await.context("engine version")?;
    let info = d.info().await.context("engine info")?;
    Ok((
        format!(
            "Docker Engine {} (API {}, storage driver {})",
            v.version.unwrap_or_default(),
            v.api_version.unwrap_or_default(),
            info.driver.unwrap_or_default()
        ),
        info.ncpu.unwrap_or(0),
    ))
}

/// IDs of containers (all states) carrying label filter `label` (`key` or `key=value`).
pub async fn containers_with(
    d: &Docker,
    label: &str,
    running_only: bool,
) -> anyhow::Result<Vec<String>> {
    let filters = HashMap::from([("label", vec![label])]);
    let mut b = ListContainersOptionsBuilder::default().filters(&filters);
    if !running_only {
        b = b.all(true);
    }
    let list = d
        .list_containers(Some(b.build()))
        .await
        .context("list containers")?;
    Ok(list.into_iter().filter_map(|c| c.id).collect())
}

/// Networks the engine refused to remove for good (IDs).
fn leaked() -> &'static Mutex<BTreeSet<String>> {
    static LEAKED: OnceLock<Mutex<BTreeSet<String>>> = OnceLock::new();
    LEAKED.get_or_init(|| Mutex::new(BTreeSet::new()))
}

/// Removes (force) every container and network the bench created, and only those.
pub async fn clean(d: &Docker) -> anyhow::Result<()> {
    clean_labelled(d, &own_label_filters()).await
}

/// Removes the Compose project's containers and network.
pub async fn clean_compose(d: &Docker) -> anyhow::Result<()> {
    clean_labelled(
        d,
        &[format!("com.docker.compose.project={COMPOSE_PROJECT}")],
    )
    .await
}

/// Removes the raw baseline's containers and network.
pub async fn clean_raw(d: &Docker) -> anyhow::Result<()> {
    clean_labelled(d, &[RAW_LABEL.to_string()]).await
}

async fn clean_labelled(d: &Docker, label_filters: &[String]) -> anyhow::Result<()> {
    let mut ids = Vec::new();
    for f in label_filters {
        ids.extend(containers_with(d, f, false).await?);
    }
    ids.sort();
    ids.dedup();
    let results: Vec<_> = futures_util::stream::iter(ids.iter().map(|id| {
        d.remove_container(
            id,
            Some(
                RemoveContainerOptionsBuilder::default()
                    .force(true)
                    .v(true)
                    .build(),
            ),
        )
    }))
    .buffer_unordered(RAW_PARALLELISM)
    .collect()
    .await;
    for r in results {
        match r {
            Ok(()) => {}
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => {}
            Err(e) => return Err(e).context("remove a bench container"),
        }
    }
    for f in label_filters {
        let filters = HashMap::from([("label", vec![f.as_str()])]);
        let nets = d
            .list_networks(Some(
                ListNetworksOptionsBuilder::default()
                    .filters(&filters)
                    .build(),
            ))
            .await
            .context("list networks")?;
        for n in nets {
            let id = n.id.unwrap_or_default();
            let name = n.name.unwrap_or_default();
            if leaked().lock().is_ok_and(|l| l.contains(&id)) {
                continue;
            }
            // Right after a forced container removal the engine may still hold the endpoint
            // (403 "has active endpoints"): retry for a while. Docker 20.10 sometimes never
            // releases it (a stale endpoint count in libnetwork, cleared only by a daemon
            // restart); such a network is reported once and left alone, which is harmless
            // since every raw round uses a fresh network name and berth and Compose reuse
            // theirs.
            let mut tries = 0;
            loop {
                match d.remove_network(&id).await {
                    Ok(()) => break,
                    Err(bollard::errors::Error::DockerResponseServerError {
                        status_code: 404,
                        ..
                    }) => break,
                    Err(bollard::errors::Error::DockerResponseServerError {
                        status_code: 403,
                        message,
                    }) => {
                        if tries < 20 {
                            tries += 1;
                            tokio::time::sleep(Duration::from_millis(250)).await;
                            continue;
                        }
                        eprintln!(
                            "[bench] warning: the engine cannot remove network {name} ({message}); leaving it"
                        );
                        if let Ok(mut l) = leaked().lock() {
                            l.insert(id.clone());
                        }
                        break;
                    }
                    Err(e) => {
                        return Err(e).with_context(|| format!("remove bench network {name}"));
                    }
                }
            }
        }
    }
    Ok(())
}

/// The create body the raw baseline uses: the same image, command, init and network as the
/// berth and Compose workloads.
fn raw_body(network: &str) -> ContainerCreateBody {
    ContainerCreateBody {
        image: Some(IMAGE.to_string()),
        cmd: Some(COMMAND.iter().map(|s| s.to_string()).collect()),
        labels: Some(HashMap::from([(RAW_LABEL.to_string(), "true".to_string())])),
        host_config: Some(HostConfig {
            init: Some(true),
            network_mode: Some(network.to_string()),
            ..Default::default()
        }),
        networking_config: Some(NetworkingConfig {
            endpoints_config: Some(HashMap::from([(
                network.to_string(),
                EndpointSettings::default(),
            )])),
        }),
        ..Default::default()
    }
}

/// A fresh name for the raw baseline's network: `berthbench-raw-<pid>-<k>`. Fresh, so that a
/// network the engine failed to delete (see [`clean`]) never blocks a later round.
fn raw_network_name() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "{RAW_NETWORK}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

async fn raw_network(d: &Docker) -> anyhow::Result<String> {
    let name = raw_network_name();
    d.create_network(NetworkCreateRequest {
        name: name.clone(),
        driver: Some("bridge".into()),
        labels: Some(HashMap::from([(RAW_LABEL.to_string(), "true".to_string())])),
        ..Default::default()
    })
    .await
    .context("create the raw baseline network")?;
    Ok(name)
}

async fn create_start(d: &Docker, name: &str, network: &str) -> anyhow::Result<()> {
    d.create_container(
        Some(CreateContainerOptionsBuilder::default().name(name).build()),
        raw_body(network),
    )
    .await
    .with_context(|| format!("create {name}"))?;
    d.start_container(name, None)
        .await
        .with_context(|| format!("start {name}"))?;
    Ok(())
}

/// The floor: one network, then create + start of `n` containers, [`RAW_PARALLELISM`] at a
/// time, no planning. Returns the wall time.
pub async fn raw_converge(d: &Docker, n: usize) -> anyhow::Result<Duration> {
    let t = Instant::now();
    let net = raw_network(d).await?;
    let names: Vec<String> = (0..n).map(|i| format!("berthbench-raw-c{i:03}")).collect();
    let results: Vec<_> =
        futures_util::stream::iter(names.iter().map(|n| create_start(d, n, &net)))
            .buffer_unordered(RAW_PARALLELISM)
            .collect()
            .await;
    let took = t.elapsed();
    for r in results {
        r?;
    }
    Ok(took)
}

/// Engine floors for the latency figures, each over `reps` repetitions on one raw container:
/// (create + start, stop + remove + create + start).
pub async fn floors(d: &Docker, reps: usize) -> anyhow::Result<(Vec<Duration>, Vec<Duration>)> {
    let net = raw_network(d).await?;
    let name = "berthbench-raw-floor";
    let mut create_start_t = Vec::new();
    let mut replace_t = Vec::new();
    create_start(d, name, &net).await?;
    for _ in 0..reps {
        // A replacement, as berth does it for a changed spec.
        let t = Instant::now();
        d.stop_container(
            name,
            Some(StopContainerOptionsBuilder::default().t(10).build()),
        )
        .await
        .context("stop")?;
        d.remove_container(
            name,
            Some(RemoveContainerOptionsBuilder::default().force(true).build()),
        )
        .await
        .context("remove")?;
        create_start(d, name, &net).await?;
        replace_t.push(t.elapsed());
        // A re-creation after `docker rm -f`, timed from the removal.
        let t = Instant::now();
        d.remove_container(
            name,
            Some(RemoveContainerOptionsBuilder::default().force(true).build()),
        )
        .await
        .context("remove")?;
        create_start(d, name, &net).await?;
        create_start_t.push(t.elapsed());
    }
    Ok((create_start_t, replace_t))
}

/// Starts following `start` events of the bench instance's containers; each arrives as
/// (arrival instant, container name). Returns once the engine has answered the events request.
pub async fn start_events(
    d: &Docker,
) -> anyhow::Result<mpsc::UnboundedReceiver<(Instant, String)>> {
    let (tx, rx) = mpsc::unbounded_channel();
    let d = d.clone();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let label = format!("berth.dev/instance={INSTANCE}");
        let filters = HashMap::from([
            ("type", vec!["container"]),
            ("event", vec!["start"]),
            ("label", vec![label.as_str()]),
        ]);
        let mut stream = d.events(Some(
            EventsOptionsBuilder::default().filters(&filters).build(),
        ));
        let mut ready = Some(ready_tx);
        loop {
            let next = tokio::time::timeout(Duration::from_millis(200), stream.next()).await;
            // The request is sent on the first poll; a quiet stream after that means it is live.
            if let Some(r) = ready.take() {
                let _ = r.send(());
            }
            match next {
                Err(_) => continue,
                Ok(None) => return,
                Ok(Some(Err(e))) => {
                    eprintln!("[bench] event stream failed: {e}");
                    return;
                }
                Ok(Some(Ok(ev))) => {
                    let name = ev
                        .actor
                        .and_then(|a| a.attributes)
                        .and_then(|mut a| a.remove("name"))
                        .unwrap_or_default();
                    if tx.send((Instant::now(), name)).is_err() {
                        return;
                    }
                }
            }
        }
    });
    ready_rx.await.context("event listener stopped")?;
    Ok(rx)
}
