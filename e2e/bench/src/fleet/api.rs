//! The fake Kubernetes API server (`berth_sources::fake_api`) on real HTTP: one loopback
//! listener per agent, all serving the same [`FakeApi`], so that every request is attributed to
//! the agent that made it, and the agents' open connections can be counted per agent.

use std::convert::Infallible;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::Context;
use berth_sources::fake_api::FakeApi;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// What a request was, from the API server's point of view.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Class {
    /// LIST of a collection.
    List,
    /// WATCH of a collection (a long-running request).
    Watch,
    /// GET of one object.
    Get,
    /// Status write of a Container, Network or Volume (`…/status` of a namespaced object).
    ObjectStatus,
    /// Apply of the agent's `Host` object.
    Host,
    /// Status write of the agent's `Host` object.
    HostStatus,
    /// Heartbeat Lease renewal.
    Lease,
    /// A Kubernetes Event.
    Event,
    /// Anything else.
    Other,
}

impl Class {
    /// Every class, in table order.
    pub const ALL: [Class; 9] = [
        Class::List,
        Class::Watch,
        Class::Get,
        Class::ObjectStatus,
        Class::Host,
        Class::HostStatus,
        Class::Lease,
        Class::Event,
        Class::Other,
    ];

    /// Short name for tables and CSV.
    pub fn name(self) -> &'static str {
        match self {
            Class::List => "list",
            Class::Watch => "watch",
            Class::Get => "get",
            Class::ObjectStatus => "object_status",
            Class::Host => "host",
            Class::HostStatus => "host_status",
            Class::Lease => "lease",
            Class::Event => "event",
            Class::Other => "other",
        }
    }

    fn of(method: &str, path: &str, query: &str) -> Class {
        let watch = query
            .split('&')
            .any(|kv| kv == "watch=true" || kv == "watch=1");
        let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
        let hosts = path.starts_with("/apis/berth.dev/") && segs.get(3) == Some(&"hosts");
        // /api/VERSION/… or /apis/GROUP/VERSION/…, then [namespaces/NS/]PLURAL[/NAME[/SUB]].
        match method {
            _ if path.contains("/events") => Class::Event,
            _ if path.contains("/leases/") => Class::Lease,
            "GET" if watch => Class::Watch,
            "GET" => {
                let prefix = if segs.first() == Some(&"api") { 2 } else { 3 };
                let skip = if segs.get(prefix) == Some(&"namespaces") {
                    2
                } else {
                    0
                };
                if segs.len() <= prefix + skip + 1 {
                    Class::List
                } else {
                    Class::Get
                }
            }
            "PATCH" | "PUT" if hosts && path.ends_with("/status") => Class::HostStatus,
            "PATCH" | "PUT" if hosts => Class::Host,
            "PATCH" | "PUT" if path.ends_with("/status") => Class::ObjectStatus,
            _ => Class::Other,
        }
    }
}

/// One request as received.
#[derive(Clone, Debug)]
pub struct Hit {
    /// When it arrived.
    pub at: Instant,
    /// Index of the agent (listener) that sent it.
    pub agent: usize,
    /// What it was.
    pub class: Class,
    /// Its path.
    pub path: String,
}

/// The running server.
pub struct ApiServer {
    /// The shared fake (objects, watches).
    pub fake: FakeApi,
    /// Port of each agent's listener.
    pub ports: Vec<u16>,
    hits: Arc<Mutex<Vec<Hit>>>,
    open: Arc<Vec<AtomicI64>>,
    accept: Vec<JoinHandle<()>>,
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        for a in &self.accept {
            a.abort();
        }
    }
}

impl ApiServer {
    /// Serves `fake` on `agents` loopback listeners.
    pub async fn start(fake: FakeApi, agents: usize) -> anyhow::Result<ApiServer> {
        let hits = Arc::new(Mutex::new(Vec::new()));
        let open: Arc<Vec<AtomicI64>> = Arc::new((0..agents).map(|_| AtomicI64::new(0)).collect());
        let mut ports = Vec::with_capacity(agents);
        let mut accept = Vec::with_capacity(agents);
        for agent in 0..agents {
            let listener = TcpListener::bind("127.0.0.1:0")
                .await
                .context("bind a loopback port for the fake API server")?;
            ports.push(listener.local_addr()?.port());
            let (fake, hits, open) = (fake.clone(), hits.clone(), open.clone());
            accept.push(tokio::spawn(async move {
                while let Ok((stream, _)) = listener.accept().await {
                    let (fake, hits, open) = (fake.clone(), hits.clone(), open.clone());
                    tokio::spawn(async move {
                        open[agent].fetch_add(1, Ordering::Relaxed);
                        let service =
                            service_fn(move |req: http::Request<hyper::body::Incoming>| {
                                let hit = Hit {
                                    at: Instant::now(),
                                    agent,
                                    class: Class::of(
                                        req.method().as_str(),
                                        req.uri().path(),
                                        req.uri().query().unwrap_or(""),
                                    ),
                                    path: req.uri().path().to_string(),
                                };
                                if let Ok(mut h) = hits.lock() {
                                    h.push(hit);
                                }
                                let fake = fake.clone();
                                async move { Ok::<_, Infallible>(fake.serve(req).await) }
                            });
                        let _ = http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                        open[agent].fetch_sub(1, Ordering::Relaxed);
                    });
                }
            }));
        }
        Ok(ApiServer {
            fake,
            ports,
            hits,
            open,
            accept,
        })
    }

    /// Number of requests received so far (a mark for [`ApiServer::hits_since`]).
    pub fn mark(&self) -> usize {
        self.hits.lock().map(|h| h.len()).unwrap_or(0)
    }

    /// Requests received since `mark`.
    pub fn hits_since(&self, mark: usize) -> Vec<Hit> {
        self.hits
            .lock()
            .map(|h| h.get(mark..).map(<[Hit]>::to_vec).unwrap_or_default())
            .unwrap_or_default()
    }

    /// Open HTTP connections of each agent now.
    pub fn open_connections(&self) -> Vec<i64> {
        self.open
            .iter()
            .map(|o| o.load(Ordering::Relaxed))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_classified_by_method_and_path() {
        let c = "/apis/berth.dev/v1alpha1/containers";
        assert_eq!(Class::of("GET", c, "limit=500"), Class::List);
        assert_eq!(
            Class::of("GET", c, "watch=true&timeoutSeconds=290"),
            Class::Watch
        );
        assert_eq!(Class::of("GET", "/api/v1/secrets", ""), Class::List);
        assert_eq!(
            Class::of("GET", "/api/v1/namespaces/a/secrets/s", ""),
            Class::Get
        );
        let ns = "/apis/berth.dev/v1alpha1/namespaces/a/containers";
        assert_eq!(Class::of("GET", ns, ""), Class::List);
        assert_eq!(Class::of("GET", &format!("{ns}/web"), ""), Class::Get);
        assert_eq!(
            Class::of("PATCH", &format!("{ns}/web/status"), ""),
            Class::ObjectStatus
        );
        let h = "/apis/berth.dev/v1alpha1/hosts/h1";
        assert_eq!(Class::of("PATCH", h, ""), Class::Host);
        assert_eq!(
            Class::of("PATCH", &format!("{h}/status"), ""),
            Class::HostStatus
        );
        let l = "/apis/coordination.k8s.io/v1/namespaces/berth-system/leases/h1";
        assert_eq!(Class::of("PATCH", l, ""), Class::Lease);
        let e = "/apis/events.k8s.io/v1/namespaces/a/events";
        assert_eq!(Class::of("POST", e, ""), Class::Event);
    }
}
