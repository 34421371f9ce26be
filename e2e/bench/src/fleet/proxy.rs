//! One Docker Engine, many simulated hosts: a per-agent proxy on a UNIX socket that gives the
//! agent's containers engine names of their own.
//!
//! berth names a container `<namespace>_<name>_<replica>` on every host, so two agents that run
//! the same custom resource on one shared engine would clash on that name (a real fleet has one
//! engine per host). The proxy prefixes the names the agent sends (`POST /containers/create` and
//! `…/rename` `name=`, a name in `/containers/{name}/…`) with `<instance>.` and strips the prefix
//! from the names the engine returns (`GET /containers/json`, `GET /containers/{id}/json`), so
//! the agent sees exactly the names it would see on a host of its own. Everything else (the
//! event stream included) is passed through unchanged, streaming.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;

type ProxyBody = BoxBody<Bytes, hyper::Error>;

/// A running proxy; dropping it stops accepting connections.
pub struct NameProxy {
    socket: PathBuf,
    accept: JoinHandle<()>,
}

impl Drop for NameProxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// What to do with the engine's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Answer {
    Pass,
    /// `GET /containers/json`: strip the prefix from every `Names` entry.
    List,
    /// `GET /containers/{id}/json`: strip the prefix from `Name`.
    Inspect,
}

/// True for a container ID (or an ID prefix): hexadecimal, at least 12 digits.
fn is_id(s: &str) -> bool {
    s.len() >= 12 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The request target as the engine must see it, and how to treat the answer.
fn rewrite_target(path: &str, query: Option<&str>, prefix: &str) -> (String, Answer) {
    let segs: Vec<&str> = path.split('/').collect();
    // "", ["v1.47",] "containers", X, …
    let base = if segs.get(1).is_some_and(|s| s.starts_with('v')) {
        2
    } else {
        1
    };
    let mut out: Vec<String> = segs.iter().map(|s| s.to_string()).collect();
    let mut answer = Answer::Pass;
    let mut rename_query = false;
    if segs.get(base) == Some(&"containers") {
        match segs.get(base + 1).copied() {
            Some("create") => rename_query = true,
            Some("json") => answer = Answer::List,
            Some(x) if !x.is_empty() && x != "prune" => {
                if !is_id(x) && !x.starts_with(prefix) {
                    out[base + 1] = format!("{prefix}{x}");
                }
                match segs.get(base + 2).copied() {
                    Some("json") => answer = Answer::Inspect,
                    Some("rename") => rename_query = true,
                    _ => {}
                }
            }
            _ => {}
        }
    }
    let mut target = out.join("/");
    if let Some(q) = query {
        let q: Vec<String> = q
            .split('&')
            .map(|kv| match kv.split_once('=') {
                Some(("name", v)) if rename_query && !v.is_empty() => format!("name={prefix}{v}"),
                _ => kv.to_string(),
            })
            .collect();
        target.push('?');
        target.push_str(&q.join("&"));
    }
    (target, answer)
}

fn strip(v: &mut Value, prefix: &str) {
    if let Some(s) = v.as_str()
        && let Some(rest) = s.strip_prefix('/').and_then(|r| r.strip_prefix(prefix))
    {
        *v = Value::String(format!("/{rest}"));
    }
}

/// The engine's JSON answer with this agent's prefix taken off the container names.
fn rewrite_answer(body: &[u8], answer: Answer, prefix: &str) -> Option<Vec<u8>> {
    let mut v: Value = serde_json::from_slice(body).ok()?;
    match answer {
        Answer::List => {
            for c in v.as_array_mut()? {
                if let Some(names) = c.get_mut("Names").and_then(Value::as_array_mut) {
                    names.iter_mut().for_each(|n| strip(n, prefix));
                }
            }
        }
        Answer::Inspect => strip(v.get_mut("Name")?, prefix),
        Answer::Pass => return None,
    }
    serde_json::to_vec(&v).ok()
}

impl NameProxy {
    /// Listens on `socket`, forwarding to the engine socket `upstream`, prefixing names with
    /// `prefix`.
    pub fn start(socket: &Path, upstream: &Path, prefix: &str) -> anyhow::Result<NameProxy> {
        let _ = std::fs::remove_file(socket);
        let listener = UnixListener::bind(socket)
            .with_context(|| format!("bind proxy socket {}", socket.display()))?;
        let upstream = upstream.to_path_buf();
        let prefix: Arc<str> = prefix.into();
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (upstream, prefix) = (upstream.clone(), prefix.clone());
                tokio::spawn(async move {
                    if let Err(e) = serve(client, &upstream, prefix).await {
                        eprintln!("[fleet] engine proxy connection: {e:#}");
                    }
                });
            }
        });
        Ok(NameProxy {
            socket: socket.to_path_buf(),
            accept,
        })
    }

    /// `DOCKER_HOST` value that points a client at this proxy.
    pub fn docker_host(&self) -> String {
        format!("unix://{}", self.socket.display())
    }
}

async fn serve(client: UnixStream, upstream: &Path, prefix: Arc<str>) -> anyhow::Result<()> {
    let engine = UnixStream::connect(upstream)
        .await
        .with_context(|| format!("connect to {}", upstream.display()))?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(engine)).await?;
    tokio::spawn(conn);
    let sender = Arc::new(Mutex::new(sender));
    let service = service_fn(move |req: http::Request<Incoming>| {
        let (sender, prefix) = (sender.clone(), prefix.clone());
        async move {
            let (mut parts, body) = req.into_parts();
            let (target, answer) =
                rewrite_target(parts.uri.path(), parts.uri.query(), prefix.as_ref());
            parts.uri = target.parse().unwrap_or(parts.uri);
            let resp = {
                let mut s = sender.lock().await;
                s.ready().await?;
                s.send_request(http::Request::from_parts(parts, body))
                    .await?
            };
            let (mut parts, body) = resp.into_parts();
            if answer == Answer::Pass || !parts.status.is_success() {
                return Ok::<_, hyper::Error>(http::Response::from_parts(parts, body.boxed()));
            }
            let bytes = body.collect().await?.to_bytes();
            let bytes = match rewrite_answer(&bytes, answer, prefix.as_ref()) {
                Some(b) => Bytes::from(b),
                None => bytes,
            };
            parts.headers.remove(http::header::TRANSFER_ENCODING);
            parts.headers.insert(
                http::header::CONTENT_LENGTH,
                http::HeaderValue::from(bytes.len()),
            );
            let body: ProxyBody = Full::new(bytes).map_err(|never| match never {}).boxed();
            Ok(http::Response::from_parts(parts, body))
        }
    });
    match http1::Builder::new()
        .serve_connection(TokioIo::new(client), service)
        .await
    {
        // An agent stopped mid-request (the end of a run).
        Err(e) if e.is_incomplete_message() => Ok(()),
        r => Ok(r?),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_prefixed_going_in_and_stripped_coming_out() {
        let p = "fleet-007.";
        assert_eq!(
            rewrite_target("/v1.47/containers/create", Some("name=shop_web_0"), p),
            (
                "/v1.47/containers/create?name=fleet-007.shop_web_0".into(),
                Answer::Pass
            )
        );
        assert_eq!(
            rewrite_target("/v1.47/containers/shop_web_0/start", None, p).0,
            "/v1.47/containers/fleet-007.shop_web_0/start"
        );
        let id = "0123456789abcdef0123";
        assert_eq!(
            rewrite_target(
                &format!("/v1.47/containers/{id}/rename"),
                Some("name=shop_web_0"),
                p
            ),
            (
                format!("/v1.47/containers/{id}/rename?name=fleet-007.shop_web_0"),
                Answer::Pass
            )
        );
        assert_eq!(
            rewrite_target(&format!("/containers/{id}/json"), None, p),
            (format!("/containers/{id}/json"), Answer::Inspect)
        );
        assert_eq!(
            rewrite_target("/v1.47/containers/json", Some("all=true"), p),
            ("/v1.47/containers/json?all=true".into(), Answer::List)
        );
        assert_eq!(
            rewrite_target("/v1.47/networks", None, p),
            ("/v1.47/networks".into(), Answer::Pass)
        );
        let list = br#"[{"Names":["/fleet-007.shop_web_0"]},{"Names":["/fleet-008.shop_web_0"]}]"#;
        let out: Value =
            serde_json::from_slice(&rewrite_answer(list, Answer::List, p).unwrap_or_default())
                .unwrap_or_default();
        assert_eq!(out[0]["Names"][0], "/shop_web_0");
        assert_eq!(out[1]["Names"][0], "/fleet-008.shop_web_0");
        let inspect = br#"{"Name":"/fleet-007.shop_web_0","Id":"x"}"#;
        let out: Value = serde_json::from_slice(
            &rewrite_answer(inspect, Answer::Inspect, p).unwrap_or_default(),
        )
        .unwrap_or_default();
        assert_eq!(out["Name"], "/shop_web_0");
    }
}
