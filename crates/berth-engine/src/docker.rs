//! [`DockerEngine`]: observe and act on a Docker Engine through bollard.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use berth_api::NetworkMode;
use berth_core::desired::{
    ContainerConfig, HostPathTypeConfig, MountSource, NetworkConfig, ProfileConfig, VolumeConfig,
};
use berth_core::labels;
use berth_core::observed::Health;
use berth_core::{
    Action, ObservedContainer, ObservedNetwork, ObservedState, ObservedVolume, RunState,
};
use bollard::Docker;
use bollard::auth::DockerCredentials;
use bollard::errors::Error as BollardError;
use bollard::models::HealthConfig;
use bollard::models::{
    ContainerCreateBody, DeviceMapping, EndpointIpamConfig, EndpointSettings, HostConfig,
    HostConfigLogConfig, Ipam, IpamConfig, Mount, MountTmpfsOptions, MountType,
    NetworkConnectRequest, NetworkCreateRequest, NetworkingConfig, PortBinding, ResourcesUlimits,
    VolumeCreateRequest,
};
use bollard::query_parameters::RestartContainerOptionsBuilder;
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, CreateImageOptionsBuilder, EventsOptionsBuilder,
    ListContainersOptionsBuilder, RemoveContainerOptionsBuilder, RenameContainerOptionsBuilder,
    StopContainerOptionsBuilder, UploadToContainerOptionsBuilder,
};
use futures_util::StreamExt;
use tokio::sync::mpsc;

use crate::credentials;
use crate::executor::Runtime;

pub mod build;

/// Errors talking to the engine. Each names what was being done.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The engine could not be reached or its API version negotiated.
    #[error(
        "cannot connect to the Docker Engine at {address}: {source} (is dockerd running, and is DOCKER_HOST right?)"
    )]
    Connect {
        /// Where it was looked for (`DOCKER_HOST=…`, or the default socket).
        address: String,
        /// Why it did not answer.
        #[source]
        source: BollardError,
    },
    /// An API call failed.
    #[error("{what}: {source}")]
    Api {
        /// What was being done, e.g. `create container blog_db_0`.
        what: String,
        /// The engine's answer.
        #[source]
        source: BollardError,
    },
    /// A `hostPath` check failed before create.
    #[error("hostPath {path}: {message}")]
    HostPath {
        /// The host path.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// The image is missing and `pullPolicy` is `Never`.
    #[error("image {0} is not present and pullPolicy is Never (ErrImageNeverPull)")]
    ImageNeverPull(String),
    /// A build (`spec.build`) failed: the failing step and the builder's error.
    #[error("build {tag}: {failure}")]
    Build {
        /// The (first) tag being built.
        tag: String,
        /// What failed.
        failure: build::BuildFailure,
    },
    /// A build context cannot be read (missing, no Dockerfile, too large, unreadable).
    #[error("build {tag}: {source}")]
    Context {
        /// The (first) tag being built.
        tag: String,
        /// Why the context cannot be read.
        #[source]
        source: crate::context::ContextError,
    },
    /// A pull failed.
    #[error("pull {image}: {message} (ErrImagePull)")]
    Pull {
        /// The image.
        image: String,
        /// The registry's or engine's message.
        message: String,
    },
}

impl EngineError {
    /// The kind of failure, for the retry book's waiting reason: a failed pull is
    /// `ImagePull`, a missing image under `pullPolicy: Never` `ImageNeverPull`.
    pub fn kind(&self) -> berth_core::FailureKind {
        use berth_core::FailureKind;
        match self {
            EngineError::Pull { .. } => FailureKind::ImagePull,
            EngineError::ImageNeverPull(_) => FailureKind::ImageNeverPull,
            EngineError::Build { .. } | EngineError::Context { .. } => FailureKind::Build,
            EngineError::Connect { .. }
            | EngineError::Api { .. }
            | EngineError::HostPath { .. } => FailureKind::Engine,
        }
    }
}

/// Where the engine is looked for, as an error names it: `DOCKER_HOST`, else the default
/// socket (what `Docker::connect_with_defaults` reads; bollard does not export its constant).
fn engine_address() -> String {
    match std::env::var("DOCKER_HOST") {
        Ok(host) => format!("DOCKER_HOST={host}"),
        Err(_) => "unix:///var/run/docker.sock (the default; DOCKER_HOST is not set)".into(),
    }
}

fn connect_error(source: BollardError) -> EngineError {
    EngineError::Connect {
        address: engine_address(),
        source,
    }
}

fn api(what: impl Into<String>) -> impl FnOnce(BollardError) -> EngineError {
    let what = what.into();
    move |source| EngineError::Api { what, source }
}

fn status_of(e: &BollardError) -> Option<u16> {
    match e {
        BollardError::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

/// Longest wait between two attempts to reach an engine that does not answer.
pub const RECONNECT_CAP: Duration = Duration::from_secs(5);

/// Delays between attempts to reach an engine that does not answer: 250 ms doubling to
/// [`RECONNECT_CAP`] (5 s), without end (a node agent waits for its engine). No jitter: one
/// agent talks to one engine, and backon's jitter would add up to the whole delay again.
pub fn reconnect_backoff() -> impl Iterator<Item = Duration> + Send {
    use backon::BackoffBuilder;
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(250))
        .with_max_delay(RECONNECT_CAP)
        .without_max_times()
        .build()
}

/// Longest time spent reading the credentials of one pull (files and helper programs).
const CREDENTIALS_TIMEOUT: Duration = Duration::from_secs(30);

/// What [`DockerEngine::refresh_image`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImageRefresh {
    /// The local image already is the one the tag names in the registry.
    Unchanged,
    /// The tag was pulled and now names another local image.
    Moved {
        /// Local image ID before the pull (`None`: the image was not present).
        before: Option<String>,
        /// Local image ID now.
        after: String,
    },
}

/// A connected Docker Engine.
#[derive(Clone)]
pub struct DockerEngine {
    docker: Docker,
    calls: Arc<AtomicU64>,
    /// One lock per build context: at most one build of a context at a time.
    build_locks: Arc<std::sync::Mutex<BTreeMap<String, Arc<tokio::sync::Mutex<()>>>>>,
    /// Where build progress goes (`berth apply` on a terminal), if anywhere.
    build_progress: Option<mpsc::UnboundedSender<build::BuildProgress>>,
}

impl DockerEngine {
    /// Connects using `DOCKER_HOST` (default: the local UNIX socket) and negotiates the API
    /// version, retrying for a few seconds while the engine starts (one-shot commands; the
    /// agent waits without limit, see [`DockerEngine::connect_once`]).
    ///
    /// # Errors
    /// [`EngineError::Connect`] when the engine does not answer.
    pub async fn connect() -> Result<Self, EngineError> {
        let docker = (|| async { Docker::connect_with_defaults()?.negotiate_version().await })
            .retry(
                ExponentialBuilder::default()
                    .with_max_times(4)
                    .with_min_delay(Duration::from_millis(200)),
            )
            .notify(
                |e, d| tracing::warn!(error = %e, retry_in = ?d, "Docker Engine not reachable yet"),
            )
            .await
            .map_err(connect_error)?;
        Ok(Self::from_client(docker))
    }

    /// One attempt to connect and negotiate the API version, without retries or logging (the
    /// agent's own wait loop retries with [`reconnect_backoff`]).
    ///
    /// # Errors
    /// [`EngineError::Connect`] when the engine does not answer.
    pub async fn connect_once() -> Result<Self, EngineError> {
        let docker = Docker::connect_with_defaults()
            .map_err(connect_error)?
            .negotiate_version()
            .await
            .map_err(connect_error)?;
        Ok(Self::from_client(docker))
    }

    fn from_client(docker: Docker) -> Self {
        DockerEngine {
            docker,
            calls: Arc::new(AtomicU64::new(0)),
            build_locks: Arc::default(),
            build_progress: None,
        }
    }

    /// This engine handle, sending the progress of its builds to `tx`.
    pub fn with_build_progress(mut self, tx: mpsc::UnboundedSender<build::BuildProgress>) -> Self {
        self.build_progress = Some(tx);
        self
    }

    /// The underlying bollard client.
    pub fn client(&self) -> &Docker {
        &self.docker
    }

    /// Number of engine API calls made so far by this handle (for benchmarks and logs).
    pub fn api_calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    fn count(&self) {
        self.calls.fetch_add(1, Ordering::Relaxed);
    }

    /// `Version (API x.yy)` of the connected engine.
    ///
    /// # Errors
    /// [`EngineError::Api`] when the engine does not answer.
    pub async fn version(&self) -> Result<String, EngineError> {
        self.count();
        let v = self
            .docker
            .version()
            .await
            .map_err(api("read engine version"))?;
        Ok(format!(
            "{} (API {})",
            v.version.unwrap_or_default(),
            v.api_version.unwrap_or_default()
        ))
    }

    /// Reads the engine's containers, networks and volumes: three list calls, plus one inspect
    /// per exited berth container (for its exit code). Only objects of berth instance
    /// `instance` count as berth's; all others are foreign.
    ///
    /// # Errors
    /// [`EngineError::Api`] when a list call fails; the caller should not plan on partial data.
    pub async fn observe(&self, instance: &str) -> Result<ObservedState, EngineError> {
        let list_opts = ListContainersOptionsBuilder::default().all(true).build();
        self.calls.fetch_add(3, Ordering::Relaxed);
        let (containers, networks, volumes) = tokio::join!(
            self.docker.list_containers(Some(list_opts)),
            self.docker
                .list_networks(None::<bollard::query_parameters::ListNetworksOptions>),
            self.docker
                .list_volumes(None::<bollard::query_parameters::ListVolumesOptions>),
        );
        let containers = containers.map_err(api("list containers"))?;
        let networks = networks.map_err(api("list networks"))?;
        let volumes = volumes.map_err(api("list volumes"))?;
        let mut obs = ObservedState::default();
        for c in containers {
            let name = c
                .names
                .as_ref()
                .and_then(|n| n.first())
                .map(|n| n.trim_start_matches('/').to_string())
                .unwrap_or_default();
            let l: BTreeMap<String, String> = c.labels.unwrap_or_default().into_iter().collect();
            if !labels::is_managed(&l, instance) {
                obs.foreign_containers.insert(name);
                continue;
            }
            let state = RunState::parse(&c.state.map(|s| s.to_string()).unwrap_or_default());
            let health = c.status.as_deref().and_then(Health::from_status);
            let network_mode = c
                .host_config
                .and_then(|h| h.network_mode)
                .map(NetworkMode::from)
                .filter(|m| {
                    matches!(
                        m,
                        NetworkMode::Container(_) | NetworkMode::Host | NetworkMode::None
                    )
                });
            let nets = c
                .network_settings
                .and_then(|s| s.networks)
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.network_id.unwrap_or_default()))
                .collect();
            obs.containers.push(ObservedContainer {
                id: c.id.unwrap_or_default(),
                name,
                key: labels::key_from_labels(&l),
                replica: labels::replica_from_labels(&l),
                hash: l.get(labels::SPEC_HASH).cloned(),
                state,
                exit_code: None,
                networks: nets,
                health,
                network_mode,
                probe: None,
                image_id: c.image_id,
            });
        }
        let exited: Vec<usize> = (0..obs.containers.len())
            .filter(|i| obs.containers[*i].state == RunState::Exited)
            .collect();
        let codes = futures_util::future::join_all(exited.iter().map(|i| {
            self.count();
            self.docker.inspect_container(&obs.containers[*i].id, None)
        }))
        .await;
        for (i, r) in exited.into_iter().zip(codes) {
            // A container removed meanwhile just has no exit code; the next relist sees it gone.
            if let Ok(info) = r {
                obs.containers[i].exit_code = info.state.and_then(|s| s.exit_code);
            }
        }
        for n in networks {
            let name = n.name.unwrap_or_default();
            let l: BTreeMap<String, String> = n.labels.unwrap_or_default().into_iter().collect();
            if labels::is_managed(&l, instance) {
                obs.networks.push(ObservedNetwork {
                    id: n.id.unwrap_or_default(),
                    name,
                    key: labels::key_from_labels(&l),
                    hash: l.get(labels::SPEC_HASH).cloned(),
                });
            } else {
                obs.foreign_network_ids
                    .insert(name.clone(), n.id.unwrap_or_default());
                obs.foreign_networks.insert(name);
            }
        }
        for v in volumes.volumes.unwrap_or_default() {
            let l: BTreeMap<String, String> = v.labels.into_iter().collect();
            if labels::is_managed(&l, instance) {
                obs.volumes.push(ObservedVolume {
                    name: v.name,
                    key: labels::key_from_labels(&l),
                    hash: l.get(labels::SPEC_HASH).cloned(),
                    delete_when_orphaned: l.get(labels::RECLAIM_POLICY).map(String::as_str)
                        == Some("Delete"),
                });
            } else {
                obs.foreign_volumes.insert(v.name);
            }
        }
        Ok(obs)
    }

    /// Engine events that should trigger a relist (container, network and volume events),
    /// delivered as unit messages. The stream reconnects by itself: when it fails or ends, the
    /// engine is pinged with [`reconnect_backoff`] until it answers, then one message is sent
    /// (something may have changed while disconnected: the agent resyncs) and the stream is
    /// opened again. The loss and the reconnection are each logged once, not every attempt.
    pub fn events(&self, instance: &str) -> mpsc::Receiver<()> {
        let (tx, rx) = mpsc::channel(64);
        let docker = self.docker.clone();
        let instance = instance.to_string();
        tokio::spawn(async move {
            let mut filters = HashMap::new();
            filters.insert("type", vec!["container", "network", "volume"]);
            loop {
                let opts = EventsOptionsBuilder::default().filters(&filters).build();
                let mut stream = docker.events(Some(opts));
                let mut why = "the engine closed it".to_string();
                while let Some(ev) = stream.next().await {
                    match ev {
                        Ok(ev) if !relevant_event(&ev, &instance) => {}
                        Ok(_) => {
                            if tx.try_send(()).is_err() && tx.is_closed() {
                                return;
                            }
                        }
                        Err(e) => {
                            why = e.to_string();
                            break;
                        }
                    }
                }
                if tx.is_closed() {
                    return;
                }
                tracing::warn!(error = %why, "engine event stream lost; reconnecting with back-off");
                let lost = tokio::time::Instant::now();
                let mut delays = reconnect_backoff();
                loop {
                    tokio::time::sleep(delays.next().unwrap_or(RECONNECT_CAP)).await;
                    match docker.ping().await {
                        Ok(_) => break,
                        Err(e) => {
                            tracing::debug!(error = %e, "engine event stream: the engine does not answer yet")
                        }
                    }
                    if tx.is_closed() {
                        return;
                    }
                }
                tracing::info!(after = ?lost.elapsed(), "engine event stream reconnected");
                // Something may have changed while disconnected.
                let _ = tx.try_send(());
            }
        });
        rx
    }

    async fn ensure_image(
        &self,
        image: &str,
        policy: berth_api::PullPolicy,
        pull_secrets: &[String],
    ) -> Result<(), EngineError> {
        use berth_api::PullPolicy;
        if policy != PullPolicy::Always {
            self.count();
            match self.docker.inspect_image(image).await {
                Ok(_) => return Ok(()),
                Err(e) if status_of(&e) == Some(404) => {
                    if policy == PullPolicy::Never {
                        return Err(EngineError::ImageNeverPull(image.to_string()));
                    }
                }
                Err(e) => return Err(api(format!("inspect image {image}"))(e)),
            }
        }
        self.pull_with(image, pull_secrets).await
    }

    /// Pulls `image` (tag `latest` when none is given) with the credentials of the Docker
    /// config file, if it has any for the image's registry.
    ///
    /// # Errors
    /// [`EngineError::Pull`] with the registry's message.
    pub async fn pull(&self, image: &str) -> Result<(), EngineError> {
        self.pull_with(image, &[]).await
    }

    /// Registry credentials for `image` (see [`crate::credentials::credentials_for`]); read on
    /// a blocking thread (files, helper programs), for at most [`CREDENTIALS_TIMEOUT`] (a hung
    /// credential helper fails the pull instead of holding up the pass).
    async fn credentials(
        image: &str,
        pull_secrets: &[String],
    ) -> Result<Option<DockerCredentials>, EngineError> {
        let files: Vec<PathBuf> = pull_secrets.iter().map(PathBuf::from).collect();
        let owned = image.to_string();
        let fail = |message: String| EngineError::Pull {
            image: image.to_string(),
            message,
        };
        let read =
            tokio::task::spawn_blocking(move || credentials::credentials_for(&owned, &files));
        tokio::time::timeout(CREDENTIALS_TIMEOUT, read)
            .await
            .map_err(|_| {
                fail(format!(
                    "reading credentials took more than {CREDENTIALS_TIMEOUT:?} (a credential helper hangs?)"
                ))
            })?
            .map_err(|e| fail(format!("reading credentials: {e}")))?
            .map_err(|e| fail(e.to_string()))
    }

    /// Pulls `image` with credentials from `pull_secrets` (Docker config files, tried in order)
    /// or else from the Docker config file.
    ///
    /// # Errors
    /// [`EngineError::Pull`] with the registry's message, or naming the unusable credentials
    /// file.
    pub async fn pull_with(&self, image: &str, pull_secrets: &[String]) -> Result<(), EngineError> {
        let creds = Self::credentials(image, pull_secrets).await?;
        let (repo, tag) = split_reference(image);
        let opts = CreateImageOptionsBuilder::default()
            .from_image(repo)
            .tag(tag)
            .build();
        self.count();
        let mut stream = self.docker.create_image(Some(opts), None, creds);
        while let Some(item) = stream.next().await {
            let info = item.map_err(|e| EngineError::Pull {
                image: image.to_string(),
                message: e.to_string(),
            })?;
            if let Some(err) = info.error_detail.and_then(|d| d.message) {
                return Err(EngineError::Pull {
                    image: image.to_string(),
                    message: err,
                });
            }
        }
        Ok(())
    }

    /// Local image IDs (`sha256:…`) of the given references; references missing locally (or
    /// that cannot be inspected) are left out. One inspect per reference, no registry access.
    pub async fn local_image_ids<'a>(
        &self,
        images: impl IntoIterator<Item = &'a str>,
    ) -> BTreeMap<String, String> {
        let images: Vec<&str> = images.into_iter().collect();
        self.calls.fetch_add(images.len() as u64, Ordering::Relaxed);
        let found =
            futures_util::future::join_all(images.iter().map(|i| self.docker.inspect_image(i)))
                .await;
        images
            .into_iter()
            .zip(found)
            .filter_map(|(i, r)| Some((i.to_string(), r.ok()?.id?)))
            .collect()
    }

    /// Re-resolves tag `image` against its registry (`pullPolicy: Always`): asks the registry
    /// for the digest the tag names now (a manifest HEAD request through the engine, cheap and
    /// not counted by registry pull limits) and pulls only when the local image for `image`
    /// does not have that digest. Digest references never move and are not looked up.
    ///
    /// # Errors
    /// [`EngineError::Pull`] when the registry cannot be asked or the pull fails (the local
    /// image is unchanged then).
    pub async fn refresh_image(
        &self,
        image: &str,
        pull_secrets: &[String],
    ) -> Result<ImageRefresh, EngineError> {
        if image.contains('@') {
            return Ok(ImageRefresh::Unchanged);
        }
        let creds = Self::credentials(image, pull_secrets).await?;
        self.calls.fetch_add(2, Ordering::Relaxed);
        let (remote, local) = tokio::join!(
            self.docker.inspect_registry_image(image, creds),
            self.docker.inspect_image(image)
        );
        let digest = remote
            .map_err(|e| EngineError::Pull {
                image: image.to_string(),
                message: e.to_string(),
            })?
            .descriptor
            .digest
            .unwrap_or_default();
        let before = local.ok();
        let current = before.as_ref().is_some_and(|i| {
            i.repo_digests
                .iter()
                .flatten()
                .any(|d| !digest.is_empty() && d.ends_with(&format!("@{digest}")))
        });
        if current {
            return Ok(ImageRefresh::Unchanged);
        }
        self.pull_with(image, pull_secrets).await?;
        let before = before.and_then(|i| i.id);
        self.count();
        let after = self
            .docker
            .inspect_image(image)
            .await
            .map_err(api(format!("inspect image {image}")))?
            .id
            .unwrap_or_default();
        Ok(if before.as_deref() == Some(after.as_str()) {
            ImageRefresh::Unchanged
        } else {
            ImageRefresh::Moved { before, after }
        })
    }

    async fn create_network(
        &self,
        name: &str,
        c: &NetworkConfig,
        l: &BTreeMap<String, String>,
    ) -> Result<(), EngineError> {
        let req = NetworkCreateRequest {
            name: name.to_string(),
            driver: Some(c.driver.clone()),
            internal: Some(c.internal),
            attachable: Some(c.attachable),
            enable_ipv6: Some(c.enable_ipv6),
            ipam: Some(Ipam {
                driver: Some(c.ipam_driver.clone()),
                config: Some(
                    c.ipam_config
                        .iter()
                        .map(|(subnet, gateway, range)| IpamConfig {
                            subnet: Some(subnet.clone()),
                            gateway: gateway.clone(),
                            ip_range: range.clone(),
                            ..Default::default()
                        })
                        .collect(),
                ),
                options: None,
            }),
            options: Some(c.options.clone().into_iter().collect()),
            labels: Some(l.clone().into_iter().collect()),
            ..Default::default()
        };
        self.count();
        self.docker
            .create_network(req)
            .await
            .map_err(api(format!("create network {name}")))?;
        Ok(())
    }

    async fn create_volume(
        &self,
        name: &str,
        c: &VolumeConfig,
        l: &BTreeMap<String, String>,
    ) -> Result<(), EngineError> {
        self.count();
        self.docker
            .create_volume(VolumeCreateRequest {
                name: Some(name.to_string()),
                driver: Some(c.driver.clone()),
                driver_opts: Some(c.driver_opts.clone().into_iter().collect()),
                labels: Some(l.clone().into_iter().collect()),
                ..Default::default()
            })
            .await
            .map_err(api(format!("create volume {name}")))?;
        Ok(())
    }

    /// Stops a container gracefully (`stop_timeout` seconds, then SIGKILL); one that is not
    /// running (304) or gone (404) counts as stopped.
    async fn stop_container(
        &self,
        id: &str,
        name: &str,
        stop_timeout: u32,
    ) -> Result<(), EngineError> {
        let t = i32::try_from(stop_timeout).unwrap_or(i32::MAX);
        self.count();
        match self
            .docker
            .stop_container(
                id,
                Some(StopContainerOptionsBuilder::default().t(t).build()),
            )
            .await
        {
            Ok(()) => Ok(()),
            Err(e) if matches!(status_of(&e), Some(304) | Some(404)) => Ok(()),
            Err(e) => Err(api(format!("stop container {name}"))(e)),
        }
    }

    async fn remove_container(
        &self,
        id: &str,
        name: &str,
        stop_timeout: u32,
    ) -> Result<(), EngineError> {
        self.stop_container(id, name, stop_timeout).await?;
        self.count();
        match self
            .docker
            .remove_container(
                id,
                Some(RemoveContainerOptionsBuilder::default().force(true).build()),
            )
            .await
        {
            Ok(()) => Ok(()),
            Err(e) if status_of(&e) == Some(404) => Ok(()),
            Err(e) => Err(api(format!("remove container {name}"))(e)),
        }
    }

    async fn create_container(
        &self,
        name: &str,
        c: &ContainerConfig,
        l: &BTreeMap<String, String>,
    ) -> Result<(), EngineError> {
        prepare_host_paths(c)?;
        // Which fields the container was created with (digests, no values), for `berth diff`.
        let mut l = l.clone();
        l.insert(
            berth_core::fields::FIELD_DIGESTS.to_string(),
            berth_core::fields::field_digests_label(c),
        );
        let l = &l;
        let mut body = container_body(c, l);
        if let Some(hc) = body.host_config.as_mut() {
            hc.security_opt = security_opt(c)?;
        }
        // `container:<name>` is pinned to the target's current ID, so that a replaced target is
        // visible as drift (the observed mode then names a dead ID).
        if let Some(NetworkMode::Container(target)) = &c.network_mode {
            self.count();
            let id = self
                .docker
                .inspect_container(target, None)
                .await
                .map_err(api(format!(
                    "find container {target} whose network namespace {name} shares"
                )))?
                .id
                .unwrap_or_default();
            if let Some(hc) = body.host_config.as_mut() {
                hc.network_mode = Some(NetworkMode::Container(id).to_string());
            }
        }
        if let Some(h) = body.healthcheck.as_mut()
            && h.start_interval.is_some()
        {
            let v = self.docker.client_version();
            if (v.major_version, v.minor_version) < (1, 44) {
                tracing::warn!(
                    container = name,
                    api = %format!("{}.{}", v.major_version, v.minor_version),
                    "healthCheck.startInterval needs Engine API 1.44 or newer; not sent to this engine"
                );
                h.start_interval = None;
            }
        }
        self.count();
        self.docker
            .create_container(
                Some(CreateContainerOptionsBuilder::default().name(name).build()),
                body,
            )
            .await
            .map_err(api(format!("create container {name}")))?;
        let rest = async {
            // API 1.41 accepts one network at create; the others are connected before start.
            for a in c.networks.iter().skip(1) {
                self.count();
                self.docker
                    .connect_network(
                        &a.network,
                        NetworkConnectRequest {
                            container: name.to_string(),
                            endpoint_config: Some(endpoint(a)),
                        },
                    )
                    .await
                    .map_err(api(format!(
                        "connect container {name} to network {}",
                        a.network
                    )))?;
            }
            if !c.files.is_empty() {
                let tar = files_tar(c).map_err(|e| EngineError::HostPath {
                    path: "(files archive)".into(),
                    message: e.to_string(),
                })?;
                self.count();
                self.docker
                    .upload_to_container(
                        name,
                        Some(UploadToContainerOptionsBuilder::default().path("/").build()),
                        bollard::body_full(tar.into()),
                    )
                    .await
                    .map_err(api(format!("copy files into container {name}")))?;
            }
            Ok::<(), EngineError>(())
        };
        if let Err(e) = rest.await {
            // Leave nothing half-made behind; if this fails too, the next pass replaces it
            // (a never-started container is always recreated).
            self.count();
            let _ = self
                .docker
                .remove_container(
                    name,
                    Some(RemoveContainerOptionsBuilder::default().force(true).build()),
                )
                .await;
            return Err(e);
        }
        Ok(())
    }

    async fn start_container(&self, name: &str) -> Result<(), EngineError> {
        self.count();
        match self.docker.start_container(name, None).await {
            Ok(()) => Ok(()),
            Err(e) if status_of(&e) == Some(304) => Ok(()),
            Err(e) => Err(api(format!("start container {name}"))(e)),
        }
    }
}

impl crate::executor::Engine for DockerEngine {
    async fn observe(&self, instance: &str) -> Result<ObservedState, EngineError> {
        DockerEngine::observe(self, instance).await
    }

    async fn local_image_ids<'a>(
        &'a self,
        refs: impl Iterator<Item = &'a str> + Send + 'a,
    ) -> BTreeMap<String, String> {
        DockerEngine::local_image_ids(self, refs).await
    }

    async fn built_images<'a>(
        &'a self,
        tags: Vec<&'a str>,
    ) -> BTreeMap<String, berth_core::ObservedImage> {
        DockerEngine::built_images(self, tags).await
    }
}

impl Runtime for DockerEngine {
    async fn execute(&self, action: &Action) -> Result<(), EngineError> {
        match action {
            Action::EnsureImage {
                image,
                policy,
                pull_secrets,
            } => self.ensure_image(image, *policy, pull_secrets).await,
            Action::BuildImage {
                tags,
                build,
                labels,
                policy,
                pull_secrets,
                ..
            } => {
                let req = build::BuildRequest {
                    tags,
                    labels,
                    policy: *policy,
                    pull_secrets,
                };
                self.build_image(build, req).await.map(|_| ())
            }
            Action::CreateNetwork {
                name,
                config,
                labels,
            } => self.create_network(name, config, labels).await,
            Action::RemoveNetwork { id, name } => {
                self.count();
                match self.docker.remove_network(id).await {
                    Ok(()) => Ok(()),
                    Err(e) if status_of(&e) == Some(404) => Ok(()),
                    Err(e) => Err(api(format!("remove network {name}"))(e)),
                }
            }
            Action::CreateVolume {
                name,
                config,
                labels,
            } => self.create_volume(name, config, labels).await,
            Action::RemoveVolume { name } => {
                self.count();
                match self
                    .docker
                    .remove_volume(name, None::<bollard::query_parameters::RemoveVolumeOptions>)
                    .await
                {
                    Ok(()) => Ok(()),
                    Err(e) if status_of(&e) == Some(404) => Ok(()),
                    Err(e) => Err(api(format!("remove volume {name}"))(e)),
                }
            }
            Action::RemoveContainer {
                id,
                name,
                stop_timeout,
            } => self.remove_container(id, name, *stop_timeout).await,
            Action::CreateContainer {
                name,
                config,
                labels,
            } => self.create_container(name, config, labels).await,
            Action::StartContainer { name, .. } => self.start_container(name).await,
            Action::StopContainer {
                id,
                name,
                stop_timeout,
            } => self.stop_container(id, name, *stop_timeout).await,
            Action::UnpauseContainer { id, name } => {
                self.count();
                match self.docker.unpause_container(id).await {
                    Ok(()) => Ok(()),
                    // Not paused (any more): nothing to do.
                    Err(e) if status_of(&e) == Some(409) => Ok(()),
                    Err(e) => Err(api(format!("unpause container {name}"))(e)),
                }
            }
            Action::RenameContainer { id, from, to } => {
                self.count();
                self.docker
                    .rename_container(
                        id,
                        RenameContainerOptionsBuilder::default().name(to).build(),
                    )
                    .await
                    .map_err(api(format!("rename container {from} to {to}")))
            }
            Action::RestartContainer {
                id,
                name,
                stop_timeout,
            } => {
                let t = i32::try_from(*stop_timeout).unwrap_or(i32::MAX);
                self.count();
                self.docker
                    .restart_container(
                        id,
                        Some(RestartContainerOptionsBuilder::default().t(t).build()),
                    )
                    .await
                    .map_err(api(format!("restart container {name}")))
            }
        }
    }
}

/// Whether an engine event may change what berth instance `instance` sees: any network or
/// volume event, and container events of the instance's own containers except exec events
/// (probes and health checks exec every few seconds).
fn relevant_event(ev: &bollard::models::EventMessage, instance: &str) -> bool {
    use bollard::models::EventMessageTypeEnum;
    match ev.typ {
        Some(EventMessageTypeEnum::CONTAINER) => {
            let ours = ev
                .actor
                .as_ref()
                .and_then(|a| a.attributes.as_ref())
                .and_then(|a| a.get(labels::INSTANCE))
                .is_some_and(|i| i == instance);
            let exec = ev.action.as_deref().is_some_and(|a| a.starts_with("exec_"));
            ours && !exec
        }
        _ => true,
    }
}

/// Splits `name[:tag]` / `name@digest` into (repository, tag-or-digest); default tag `latest`.
fn split_reference(image: &str) -> (&str, &str) {
    if let Some((repo, digest)) = image.split_once('@') {
        return (repo, digest);
    }
    let slash = image.rfind('/').map_or(0, |i| i + 1);
    match image[slash..].rfind(':') {
        Some(i) => (&image[..slash + i], &image[slash + i + 1..]),
        None => (image, "latest"),
    }
}

fn endpoint(a: &berth_core::desired::AttachmentConfig) -> EndpointSettings {
    EndpointSettings {
        aliases: (!a.aliases.is_empty()).then(|| a.aliases.clone()),
        ipam_config: a.ipv4_address.as_ref().map(|ip| EndpointIpamConfig {
            ipv4_address: Some(ip.clone()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The engine's create body for `c`. No engine restart policy: berth restarts containers itself.
fn container_body(c: &ContainerConfig, l: &BTreeMap<String, String>) -> ContainerCreateBody {
    let mut exposed = Vec::new();
    let mut bindings: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
    for p in &c.ports {
        let key = format!("{}/{}", p.container_port, p.protocol.engine_name());
        if !exposed.contains(&key) {
            exposed.push(key.clone());
        }
        if let Some(hp) = p.host_port {
            bindings
                .entry(key)
                .or_insert_with(|| Some(Vec::new()))
                .get_or_insert_with(Vec::new)
                .push(PortBinding {
                    host_ip: p.host_ip.clone(),
                    host_port: Some(hp.to_string()),
                });
        }
    }
    let mounts = c
        .mounts
        .iter()
        .map(|m| {
            let mut mount = Mount {
                target: Some(m.target.clone()),
                read_only: Some(m.read_only),
                ..Default::default()
            };
            match &m.source {
                MountSource::Volume(name) => {
                    mount.typ = Some(MountType::VOLUME);
                    mount.source = Some(name.clone());
                }
                MountSource::Bind { path, .. } => {
                    mount.typ = Some(MountType::BIND);
                    mount.source = Some(path.clone());
                }
                MountSource::Tmpfs { size_bytes } => {
                    mount.typ = Some(MountType::TMPFS);
                    mount.tmpfs_options = size_bytes.map(|s| MountTmpfsOptions {
                        size_bytes: Some(i64::try_from(s).unwrap_or(i64::MAX)),
                        ..Default::default()
                    });
                }
            }
            mount
        })
        .collect();
    let ns_i64 = |v: Option<u64>| v.map(|n| i64::try_from(n).unwrap_or(i64::MAX));
    let healthcheck = c.health_check.as_ref().map(|h| HealthConfig {
        test: Some(h.test.clone()),
        interval: ns_i64(h.interval_ns),
        timeout: ns_i64(h.timeout_ns),
        retries: h.retries.map(i64::from),
        start_period: ns_i64(h.start_period_ns),
        start_interval: ns_i64(h.start_interval_ns),
    });
    let networking = c.networks.first().map(|a| NetworkingConfig {
        endpoints_config: Some(HashMap::from([(a.network.clone(), endpoint(a))])),
    });
    ContainerCreateBody {
        image: Some(c.image.clone()),
        entrypoint: c.entrypoint.clone(),
        cmd: c.cmd.clone(),
        env: Some(c.env.clone()),
        working_dir: c.working_dir.clone(),
        user: c.user.clone(),
        hostname: c.hostname.clone(),
        labels: Some(l.clone().into_iter().collect()),
        exposed_ports: (!exposed.is_empty()).then_some(exposed),
        stop_signal: c.stop_signal.clone(),
        stop_timeout: Some(i64::from(c.stop_timeout())),
        networking_config: networking,
        healthcheck,
        host_config: Some(HostConfig {
            port_bindings: (!bindings.is_empty()).then_some(bindings),
            mounts: Some(mounts),
            nano_cpus: c.nano_cpus.map(|v| i64::try_from(v).unwrap_or(i64::MAX)),
            memory: c.memory_bytes.map(|v| i64::try_from(v).unwrap_or(i64::MAX)),
            cap_add: (!c.cap_add.is_empty()).then(|| c.cap_add.clone()),
            cap_drop: (!c.cap_drop.is_empty()).then(|| c.cap_drop.clone()),
            readonly_rootfs: Some(c.read_only_root_filesystem),
            init: c.init.then_some(true),
            extra_hosts: (!c.extra_hosts.is_empty()).then(|| c.extra_hosts.clone()),
            network_mode: c
                .network_mode
                .as_ref()
                .map(NetworkMode::to_string)
                .or_else(|| c.networks.first().map(|a| a.network.clone())),
            ..host_access(c)
        }),
        tty: c.tty.then_some(true),
        open_stdin: c.stdin.then_some(true),
        ..Default::default()
    }
}

/// The host-access and runtime fields of the engine's `HostConfig` (`--privileged`,
/// `--device`, `--pid`, `--ipc`, `--sysctl`, `--shm-size`, `--ulimit`, `--dns*`,
/// `--log-driver`/`--log-opt`); security options are added by [`security_opt`].
fn host_access(c: &ContainerConfig) -> HostConfig {
    let list = |v: &Vec<String>| (!v.is_empty()).then(|| v.clone());
    HostConfig {
        privileged: c.privileged.then_some(true),
        devices: (!c.devices.is_empty()).then(|| {
            c.devices
                .iter()
                .map(|d| DeviceMapping {
                    path_on_host: Some(d.host_path.clone()),
                    path_in_container: Some(d.container_path.clone()),
                    cgroup_permissions: Some(d.permissions.clone()),
                })
                .collect()
        }),
        pid_mode: c.host_pid.then(|| "host".to_string()),
        ipc_mode: c.host_ipc.then(|| "host".to_string()),
        sysctls: (!c.sysctls.is_empty()).then(|| c.sysctls.clone().into_iter().collect()),
        shm_size: c.shm_size.map(|v| i64::try_from(v).unwrap_or(i64::MAX)),
        ulimits: (!c.ulimits.is_empty()).then(|| {
            c.ulimits
                .iter()
                .map(|u| ResourcesUlimits {
                    name: Some(u.name.clone()),
                    soft: Some(u.soft),
                    hard: Some(u.hard),
                })
                .collect()
        }),
        dns: list(&c.dns),
        dns_search: list(&c.dns_search),
        dns_options: list(&c.dns_options),
        log_config: c.logging.as_ref().map(|l| HostConfigLogConfig {
            typ: l.driver.clone(),
            config: (!l.options.is_empty()).then(|| l.options.clone().into_iter().collect()),
        }),
        ..Default::default()
    }
}

/// `--security-opt` entries: seccomp and AppArmor profiles other than the default, and
/// `no-new-privileges`. A `Localhost` seccomp profile is a JSON file on this host; the engine
/// API takes its content, so it is read here (as the Docker CLI does).
///
/// # Errors
/// [`EngineError::HostPath`] when the seccomp profile cannot be read.
fn security_opt(c: &ContainerConfig) -> Result<Option<Vec<String>>, EngineError> {
    let mut out = Vec::new();
    match &c.seccomp_profile {
        None => {}
        Some(ProfileConfig::Unconfined) => out.push("seccomp=unconfined".to_string()),
        Some(ProfileConfig::Localhost(path)) => {
            let fail = |message: String| EngineError::HostPath {
                path: path.clone(),
                message,
            };
            let meta = std::fs::metadata(path)
                .map_err(|e| fail(format!("cannot read the seccomp profile: {e}")))?;
            if !meta.is_file() || meta.len() > 1024 * 1024 {
                return Err(fail(
                    "expected a seccomp profile: a regular JSON file of at most 1 MiB".into(),
                ));
            }
            let json = std::fs::read_to_string(path)
                .map_err(|e| fail(format!("cannot read the seccomp profile: {e}")))?;
            out.push(format!("seccomp={json}"));
        }
    }
    match &c.app_armor_profile {
        None => {}
        Some(ProfileConfig::Unconfined) => out.push("apparmor=unconfined".to_string()),
        Some(ProfileConfig::Localhost(name)) => out.push(format!("apparmor={name}")),
    }
    if c.no_new_privileges {
        out.push("no-new-privileges:true".to_string());
    }
    Ok((!out.is_empty()).then_some(out))
}

/// Applies Kubernetes' `hostPath.type` checks and creations on this host.
fn prepare_host_paths(c: &ContainerConfig) -> Result<(), EngineError> {
    use std::os::unix::fs::FileTypeExt;
    for m in &c.mounts {
        let MountSource::Bind {
            path,
            path_type: Some(t),
        } = &m.source
        else {
            continue;
        };
        let meta = std::fs::metadata(path);
        let fail = |message: &str| EngineError::HostPath {
            path: path.clone(),
            message: message.to_string(),
        };
        match t {
            HostPathTypeConfig::Directory => {
                if !meta.as_ref().is_ok_and(|m| m.is_dir()) {
                    return Err(fail("expected an existing directory (type Directory)"));
                }
            }
            HostPathTypeConfig::DirectoryOrCreate => {
                if meta.is_err() {
                    std::fs::create_dir_all(path)
                        .map_err(|e| fail(&format!("cannot create directory: {e}")))?;
                } else if !meta.as_ref().is_ok_and(|m| m.is_dir()) {
                    return Err(fail(
                        "exists but is not a directory (type DirectoryOrCreate)",
                    ));
                }
            }
            HostPathTypeConfig::File => {
                if !meta.as_ref().is_ok_and(|m| m.is_file()) {
                    return Err(fail("expected an existing file (type File)"));
                }
            }
            HostPathTypeConfig::FileOrCreate => {
                if meta.is_err() {
                    if let Some(parent) = std::path::Path::new(path).parent() {
                        std::fs::create_dir_all(parent)
                            .map_err(|e| fail(&format!("cannot create parent: {e}")))?;
                    }
                    std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(path)
                        .map_err(|e| fail(&format!("cannot create file: {e}")))?;
                } else if !meta.as_ref().is_ok_and(|m| m.is_file()) {
                    return Err(fail("exists but is not a file (type FileOrCreate)"));
                }
            }
            HostPathTypeConfig::Socket => {
                if !meta.as_ref().is_ok_and(|m| m.file_type().is_socket()) {
                    return Err(fail("expected an existing UNIX socket (type Socket)"));
                }
            }
        }
    }
    Ok(())
}

/// An uncompressed tar of the container's files, extracted at `/`.
fn files_tar(c: &ContainerConfig) -> std::io::Result<Vec<u8>> {
    let mut b = tar::Builder::new(Vec::new());
    for f in &c.files {
        let mut h = tar::Header::new_gnu();
        h.set_size(f.content.len() as u64);
        h.set_mode(f.mode);
        h.set_uid(u64::from(f.uid));
        h.set_gid(u64::from(f.gid));
        h.set_mtime(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        );
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, f.path.trim_start_matches('/'), f.content.as_bytes())?;
    }
    b.into_inner()
}

#[cfg(test)]
mod tests {
    use super::split_reference;

    #[test]
    fn reconnect_backoff_doubles_to_its_cap_without_end() {
        let d: Vec<u128> = super::reconnect_backoff()
            .take(8)
            .map(|d| d.as_millis())
            .collect();
        assert_eq!(d, vec![250, 500, 1000, 2000, 4000, 5000, 5000, 5000]);
    }

    #[test]
    fn references_split_into_repo_and_tag() {
        assert_eq!(split_reference("busybox"), ("busybox", "latest"));
        assert_eq!(split_reference("busybox:1.36"), ("busybox", "1.36"));
        assert_eq!(
            split_reference("localhost:5000/app"),
            ("localhost:5000/app", "latest")
        );
        assert_eq!(
            split_reference("localhost:5000/app:v2"),
            ("localhost:5000/app", "v2")
        );
        assert_eq!(split_reference("app@sha256:abc"), ("app", "sha256:abc"));
    }
}
