//! The agent loop inside the test process, for tests with the fake Kubernetes API server (no
//! API server can run here; the fake sits behind kube's own client, see
//! `berth_sources::fake_api`), and the fixtures those tests share.

use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use base64::Engine as _;
use berth::cli::{Cli, Command};
use berth::host::HostIdentity;
use clap::Parser;
use serde_json::{Value, json};

/// Custom resources of kind Container.
pub const CONTAINERS: &str = "/apis/berth.dev/v1alpha1/containers";
/// Custom resources of kind Network.
pub const NETWORKS: &str = "/apis/berth.dev/v1alpha1/networks";
/// Secrets.
pub const SECRETS: &str = "/api/v1/secrets";

/// A Secret `app` in `ns` whose key `token` holds `value`.
pub fn secret(ns: &str, value: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "app", "namespace": ns},
           "data": {"token": base64::engine::general_purpose::STANDARD.encode(value)}})
}

/// A log sink shared with the agent thread.
#[derive(Clone, Default)]
pub struct Capture(Arc<Mutex<Vec<u8>>>);

impl Capture {
    /// Everything logged so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
    }
}

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// `berth agent` running in this process, on a thread with a runtime of its own (as `berth
/// agent` does: `block_on`, no `Send` bound on the loop's future); its logs, at debug level, are
/// captured (to check that no Secret value ever reaches them).
pub struct InProcessAgent {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<Result<(), String>>>,
    logs: Capture,
}

impl InProcessAgent {
    /// Runs `berth --instance INSTANCE ARGS…` (`args` begin with `agent`; a global `--socket`
    /// reaches the agent as `berth` passes it) on `host`, with `client` as its cluster.
    ///
    /// # Panics
    /// When `args` are not an `agent` command line.
    pub fn start(
        instance: &str,
        host: HostIdentity,
        args: &[&str],
        client: Option<kube::Client>,
    ) -> InProcessAgent {
        let cli = Cli::parse_from(["berth", "--instance", instance].iter().chain(args));
        let Command::Agent(mut agent_args) = cli.command else {
            panic!("not an agent command line: {args:?}")
        };
        agent_args.socket = cli.socket;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let logs = Capture::default();
        let instance = instance.to_string();
        let thread = std::thread::spawn({
            let logs = logs.clone();
            move || {
                use tracing_subscriber::util::SubscriberInitExt;
                let _guard = tracing_subscriber::fmt()
                    .with_env_filter(berth::log_filter("debug"))
                    .with_ansi(false)
                    .with_writer(move || logs.clone())
                    .finish()
                    .set_default();
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("agent runtime");
                rt.block_on(berth::agent::run_with(
                    &instance,
                    &host,
                    agent_args,
                    client,
                    Box::pin(async move {
                        let _ = stopped.await;
                    }),
                ))
                .map_err(|e| format!("{e:#}"))
            }
        });
        InProcessAgent {
            stop: Some(stop),
            thread: Some(thread),
            logs,
        }
    }

    /// The agent's logs so far.
    pub fn logs(&self) -> String {
        self.logs.text()
    }

    /// Stops the agent and waits for it (its logs stay readable).
    ///
    /// # Errors
    /// The agent's own error, when it did not run cleanly.
    pub fn stop(&mut self) -> Result<(), String> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err("the agent thread panicked".into()),
            None => Ok(()),
        }
    }
}

impl Drop for InProcessAgent {
    /// A test that fails half-way still stops its agent (without waiting for it).
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
