//! The agent's endpoints (axum): the local API on a unix socket and, on TCP, Prometheus
//! `/metrics`, `/healthz` and `/readyz`. Handlers read only the latest published
//! [`AgentView`] and the metrics registry; they never touch the engine or the loop.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::sync::watch;

use crate::metrics::Metrics;
use crate::observe::AgentView;

/// Path of the local API socket: `--socket`, else `/run/berth/<instance>.sock`.
pub fn socket_path(flag: Option<&Path>, instance: &str) -> PathBuf {
    flag.map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(format!("/run/berth/{instance}.sock")))
}

/// The loop's liveness, as `/healthz` judges it.
#[derive(Clone)]
pub struct Liveness {
    /// The instant of the loop's latest iteration (a pass or a watchdog tick).
    pub last_beat: Arc<std::sync::Mutex<Instant>>,
    /// `/healthz` fails when the latest iteration is older than this.
    pub bound: Duration,
}

impl Liveness {
    /// A new liveness record, beating now.
    pub fn new(bound: Duration) -> Self {
        Liveness {
            last_beat: Arc::new(std::sync::Mutex::new(Instant::now())),
            bound,
        }
    }

    /// The loop is alive now.
    pub fn beat(&self) {
        if let Ok(mut t) = self.last_beat.lock() {
            *t = Instant::now();
        }
    }

    fn age(&self) -> Duration {
        self.last_beat
            .lock()
            .map(|t| t.elapsed())
            .unwrap_or(Duration::MAX)
    }
}

#[derive(Clone)]
struct Shared {
    view: watch::Receiver<Arc<AgentView>>,
    metrics: Arc<Metrics>,
    liveness: Liveness,
}

async fn view(State(s): State<Shared>) -> Response {
    let v = s.view.borrow().clone();
    axum::Json(v.as_ref().clone()).into_response()
}

async fn metrics(State(s): State<Shared>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.encode(),
    )
        .into_response()
}

async fn healthz(State(s): State<Shared>) -> Response {
    let age = s.liveness.age();
    if age <= s.liveness.bound {
        (StatusCode::OK, "ok\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "the reconcile loop has not run for {} s (bound {} s)\n",
                age.as_secs(),
                s.liveness.bound.as_secs()
            ),
        )
            .into_response()
    }
}

async fn readyz(State(s): State<Shared>) -> Response {
    let v = s.view.borrow().clone();
    if let Some(o) = &v.engine_unreachable {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("Docker Engine unreachable since {}: {}\n", o.since, o.error),
        )
            .into_response();
    }
    if v.sources_ready && v.last_pass.is_some() {
        (StatusCode::OK, "ok\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "waiting for every source's first complete set\n",
        )
            .into_response()
    }
}

fn router(shared: Shared) -> Router {
    Router::new()
        .route("/v1/view", get(view))
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(shared)
}

/// Serves the local API on the unix socket `path` (mode 0660, parent directory created; a
/// stale socket file is replaced) until the task is dropped.
///
/// # Errors
/// When the socket cannot be bound.
pub fn serve_socket(
    path: &Path,
    view: watch::Receiver<Arc<AgentView>>,
    metrics: Arc<Metrics>,
    liveness: Liveness,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    }
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        anyhow::bail!(
            "{} is in use by another agent (another --instance, or --socket)",
            path.display()
        );
    }
    let _ = std::fs::remove_file(path);
    let listener = tokio::net::UnixListener::bind(path)
        .with_context(|| format!("bind the local API socket {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
        .with_context(|| format!("chmod 0660 {}", path.display()))?;
    let app = router(Shared {
        view,
        metrics,
        liveness,
    });
    Ok(tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "local API stopped");
        }
    }))
}

/// Serves `/metrics`, `/healthz` and `/readyz` on TCP `addr`.
///
/// # Errors
/// When the address cannot be bound.
pub async fn serve_metrics(
    addr: &str,
    view: watch::Receiver<Arc<AgentView>>,
    metrics: Arc<Metrics>,
    liveness: Liveness,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("bind --metrics-address {addr}"))?;
    let app = router(Shared {
        view,
        metrics,
        liveness,
    });
    Ok(tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "metrics endpoint stopped");
        }
    }))
}

/// Fetches `GET path` from the local API socket; the body as bytes.
///
/// # Errors
/// When nothing listens on the socket, or the answer is not 200.
pub async fn fetch(socket: &Path, path: &str) -> anyhow::Result<bytes::Bytes> {
    use http_body_util::BodyExt;
    let stream = tokio::net::UnixStream::connect(socket)
        .await
        .with_context(|| format!("connect to {}", socket.display()))?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let req = hyper::Request::get(path)
        .header(header::HOST, "berth")
        .body(http_body_util::Empty::<bytes::Bytes>::new())?;
    let resp = sender.send_request(req).await?;
    let status = resp.status();
    let body = resp.into_body().collect().await?.to_bytes();
    if !status.is_success() {
        anyhow::bail!("{path}: {status}: {}", String::from_utf8_lossy(&body));
    }
    Ok(body)
}

/// The agent's current view from the local API socket.
///
/// # Errors
/// When no agent answers on the socket.
pub async fn fetch_view(socket: &Path) -> anyhow::Result<AgentView> {
    let body = fetch(socket, "/v1/view").await?;
    serde_json::from_slice(&body).context("decode the agent's view")
}
