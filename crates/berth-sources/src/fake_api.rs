//! A fake Kubernetes API server for tests, behind kube's own mocking seam
//! (`tower_test::mock::pair` + `kube::Client::new`), as kube-rs and controller-rs test.
//!
//! No API server can run where berth's tests run, so this serves just enough of the API for
//! berth's source and status writer: LIST and WATCH of any collection (with a replay log so a
//! re-watch from a resourceVersion sees what it missed, and `410 Gone` for expired versions),
//! GET, PATCH (server-side apply approximated: `status.hosts[]` entries are owned by the field
//! manager `berth-<name>`), POST. Every request is recorded. Faults: [`FakeApi::set_down`]
//! answers 503 to everything and drops open watches; [`FakeApi::expire_watches`] ends open
//! watches with `410 Gone`, forcing a relist. A watch with `timeoutSeconds` ends after that
//! time, as the API server ends it (the client watches again from its last resourceVersion).
//!
//! [`FakeApi::serve`] takes any HTTP request, so the fake can also sit behind a real HTTP
//! listener (the fleet benchmark serves it on loopback to agent processes).
//!
//! Enabled by the `fake-api` feature (and in this crate's own tests).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use serde_json::{Value, json};
use tokio::sync::mpsc;

/// Response body type of the fake.
pub type FakeBody = UnsyncBoxBody<Bytes, Infallible>;

/// One request as the fake received it.
#[derive(Clone, Debug)]
pub struct Recorded {
    /// HTTP method.
    pub method: String,
    /// Path, e.g. `/apis/berth.dev/v1alpha1/namespaces/shop/containers/web/status`.
    pub path: String,
    /// Query string (may be empty).
    pub query: String,
    /// `Content-Type` header.
    pub content_type: String,
    /// JSON body, if any.
    pub body: Option<Value>,
}

impl Recorded {
    /// The `fieldManager` query parameter.
    pub fn field_manager(&self) -> Option<String> {
        query_param(&self.query, "fieldManager")
    }
}

struct WatchSub {
    coll: String,
    ns: Option<String>,
    tx: mpsc::UnboundedSender<Bytes>,
}

#[derive(Default)]
struct State {
    rv: u64,
    uid: u64,
    objects: BTreeMap<String, BTreeMap<(String, String), Value>>,
    log: Vec<(u64, String, String, Value)>,
    watchers: Vec<WatchSub>,
    down: bool,
    min_rv: u64,
    requests: Vec<Recorded>,
}

/// The fake API server; cheap to clone (shared state).
#[derive(Clone, Default)]
pub struct FakeApi {
    state: Arc<Mutex<State>>,
}

/// A parsed API path.
#[derive(Debug)]
struct Target {
    coll: String,
    ns: Option<String>,
    name: Option<String>,
    sub: Option<String>,
}

fn parse_path(path: &str) -> Option<Target> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (prefix, rest) = match segs.first() {
        Some(&"api") if segs.len() >= 3 => (segs[..2].join("/"), &segs[2..]),
        Some(&"apis") if segs.len() >= 4 => (segs[..3].join("/"), &segs[3..]),
        _ => return None,
    };
    let (ns, rest) = if rest.first() == Some(&"namespaces") && rest.len() >= 3 {
        (Some(rest[1].to_string()), &rest[2..])
    } else {
        (None, rest)
    };
    Some(Target {
        coll: format!("/{prefix}/{}", rest.first()?),
        ns,
        name: rest.get(1).map(|s| s.to_string()),
        sub: rest.get(2).map(|s| s.to_string()),
    })
}

fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == name).then(|| v.to_string())
    })
}

fn full(status: StatusCode, v: &Value) -> Response<FakeBody> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(v.to_string())).boxed_unsync())
        .unwrap_or_default()
}

fn status_error(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": message, "reason": reason, "code": code})
}

fn event_line(kind: &str, obj: &Value) -> Bytes {
    Bytes::from(format!("{}\n", json!({"type": kind, "object": obj})))
}

impl FakeApi {
    /// A fake and a client talking to it (spawns the serving task on the current runtime).
    pub fn new() -> (FakeApi, kube::Client) {
        let (service, handle) =
            tower_test::mock::pair::<Request<kube::client::Body>, Response<FakeBody>>();
        let fake = FakeApi::default();
        let server = fake.clone();
        tokio::spawn(async move {
            let mut handle = std::pin::pin!(handle);
            while let Some((req, send)) = handle.next_request().await {
                let resp = server.serve(req).await;
                send.send_response(resp);
            }
        });
        (fake, kube::Client::new(service, "default"))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Creates or replaces an object (JSON with apiVersion, kind, metadata, spec…) in the
    /// collection at `coll` (e.g. `/apis/berth.dev/v1alpha1/containers`, `/api/v1/secrets`).
    /// `generation` is bumped when `spec` changes; the status is kept. Watches see the event.
    pub fn put(&self, coll: &str, mut obj: Value) -> Value {
        let mut st = self.lock();
        let ns = obj["metadata"]["namespace"]
            .as_str()
            .unwrap_or("")
            .to_string();
        let name = obj["metadata"]["name"].as_str().unwrap_or("").to_string();
        st.rv += 1;
        let rv = st.rv;
        let old = st
            .objects
            .get(coll)
            .and_then(|c| c.get(&(ns.clone(), name.clone())))
            .cloned();
        let kind = match &old {
            Some(old) => {
                let generation = old["metadata"]["generation"].as_i64().unwrap_or(1);
                let changed =
                    old.get("spec") != obj.get("spec") || old.get("data") != obj.get("data");
                obj["metadata"]["generation"] =
                    json!(if changed { generation + 1 } else { generation });
                obj["metadata"]["uid"] = old["metadata"]["uid"].clone();
                obj["metadata"]["creationTimestamp"] = old["metadata"]["creationTimestamp"].clone();
                if obj.get("status").is_none()
                    && let Some(s) = old.get("status")
                {
                    obj["status"] = s.clone();
                }
                "MODIFIED"
            }
            None => {
                st.uid += 1;
                obj["metadata"]["generation"] = json!(1);
                obj["metadata"]["uid"] = json!(format!("uid-{}", st.uid));
                obj["metadata"]["creationTimestamp"] = json!("2026-01-01T00:00:00Z");
                "ADDED"
            }
        };
        obj["metadata"]["resourceVersion"] = json!(rv.to_string());
        st.objects
            .entry(coll.to_string())
            .or_default()
            .insert((ns.clone(), name), obj.clone());
        Self::notify(&mut st, rv, coll, &ns, kind, &obj);
        obj
    }

    /// Deletes an object; watches see the event.
    pub fn delete(&self, coll: &str, ns: &str, name: &str) {
        let mut st = self.lock();
        let Some(mut obj) = st
            .objects
            .get_mut(coll)
            .and_then(|c| c.remove(&(ns.to_string(), name.to_string())))
        else {
            return;
        };
        st.rv += 1;
        let rv = st.rv;
        obj["metadata"]["resourceVersion"] = json!(rv.to_string());
        Self::notify(&mut st, rv, coll, ns, "DELETED", &obj);
    }

    /// The object as stored now.
    pub fn get(&self, coll: &str, ns: &str, name: &str) -> Option<Value> {
        self.lock()
            .objects
            .get(coll)
            .and_then(|c| c.get(&(ns.to_string(), name.to_string())))
            .cloned()
    }

    fn notify(st: &mut State, rv: u64, coll: &str, ns: &str, kind: &str, obj: &Value) {
        st.log.push((
            rv,
            coll.to_string(),
            ns.to_string(),
            json!({"type": kind, "object": obj}),
        ));
        let line = event_line(kind, obj);
        st.watchers.retain(|w| {
            if w.coll != coll || w.ns.as_deref().is_some_and(|n| n != ns) {
                return !w.tx.is_closed();
            }
            w.tx.send(line.clone()).is_ok()
        });
    }

    /// While down, every request gets `503 Service Unavailable` and open watches are dropped.
    pub fn set_down(&self, down: bool) {
        let mut st = self.lock();
        st.down = down;
        if down {
            st.watchers.clear();
        }
    }

    /// Ends every open watch with `410 Gone` and makes older resource versions unusable, so that
    /// watchers must relist.
    pub fn expire_watches(&self) {
        let mut st = self.lock();
        st.rv += 1;
        st.min_rv = st.rv;
        let gone = status_error(410, "Expired", "too old resource version");
        for w in st.watchers.drain(..) {
            let _ = w.tx.send(event_line("ERROR", &gone));
        }
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.lock().requests.clone()
    }

    /// Requests with `method` whose path ends with `suffix`.
    pub fn requests_to(&self, method: &str, suffix: &str) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.method == method && r.path.ends_with(suffix))
            .collect()
    }

    /// Number of open watches.
    pub fn open_watches(&self) -> usize {
        let mut st = self.lock();
        st.watchers.retain(|w| !w.tx.is_closed());
        st.watchers.len()
    }

    /// Answers one request (any body type: kube's client body, or hyper's for a real listener).
    pub async fn serve<B: http_body::Body>(&self, req: Request<B>) -> Response<FakeBody> {
        let (parts, body) = req.into_parts();
        let bytes = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let body: Option<Value> = if bytes.is_empty() {
            None
        } else {
            serde_json::from_slice(&bytes).ok()
        };
        let path = parts.uri.path().to_string();
        let query = parts.uri.query().unwrap_or("").to_string();
        let rec = Recorded {
            method: parts.method.to_string(),
            path: path.clone(),
            query: query.clone(),
            content_type: parts
                .headers
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string(),
            body: body.clone(),
        };
        let mut st = self.lock();
        st.requests.push(rec);
        if st.down {
            return full(
                StatusCode::SERVICE_UNAVAILABLE,
                &status_error(503, "ServiceUnavailable", "the fake API server is down"),
            );
        }
        let Some(t) = parse_path(&path) else {
            return full(
                StatusCode::NOT_FOUND,
                &status_error(404, "NotFound", "no such path"),
            );
        };
        let watch = query_param(&query, "watch").is_some_and(|v| v == "true" || v == "1");
        match (parts.method.as_str(), &t.name) {
            ("GET", None) if watch => {
                let from: u64 = query_param(&query, "resourceVersion")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                let (tx, rx) = mpsc::unbounded_channel::<Bytes>();
                if from != 0 && from < st.min_rv {
                    let _ = tx.send(event_line(
                        "ERROR",
                        &status_error(410, "Expired", "too old resource version"),
                    ));
                } else {
                    for (rv, coll, ns, ev) in &st.log {
                        if *rv > from && *coll == t.coll && t.ns.as_ref().is_none_or(|n| n == ns) {
                            let _ = tx.send(Bytes::from(format!("{ev}\n")));
                        }
                    }
                    st.watchers.push(WatchSub {
                        coll: t.coll.clone(),
                        ns: t.ns.clone(),
                        tx,
                    });
                }
                // The API server ends a watch after `timeoutSeconds` (kube's watcher asks 290 s).
                let deadline = query_param(&query, "timeoutSeconds")
                    .and_then(|v| v.parse::<u64>().ok())
                    .map(|s| tokio::time::Instant::now() + std::time::Duration::from_secs(s));
                let stream = futures_util::stream::unfold(rx, move |mut rx| async move {
                    let next = match deadline {
                        Some(d) => tokio::time::timeout_at(d, rx.recv()).await.ok().flatten(),
                        None => rx.recv().await,
                    };
                    next.map(|b| (Ok::<_, Infallible>(http_body::Frame::data(b)), rx))
                });
                Response::builder()
                    .status(StatusCode::OK)
                    .header("content-type", "application/json")
                    .body(StreamBody::new(stream).boxed_unsync())
                    .unwrap_or_default()
            }
            ("GET", None) => {
                let items: Vec<Value> = st
                    .objects
                    .get(&t.coll)
                    .map(|c| {
                        c.iter()
                            .filter(|((ns, _), _)| t.ns.as_ref().is_none_or(|n| n == ns))
                            .map(|(_, v)| v.clone())
                            .collect()
                    })
                    .unwrap_or_default();
                full(
                    StatusCode::OK,
                    &json!({"apiVersion": "v1", "kind": "List",
                            "metadata": {"resourceVersion": st.rv.to_string()}, "items": items}),
                )
            }
            ("GET", Some(name)) => {
                match st
                    .objects
                    .get(&t.coll)
                    .and_then(|c| c.get(&(t.ns.clone().unwrap_or_default(), name.clone())))
                {
                    Some(o) => full(StatusCode::OK, o),
                    None => full(
                        StatusCode::NOT_FOUND,
                        &status_error(404, "NotFound", "not found"),
                    ),
                }
            }
            ("PATCH", Some(name)) => {
                let manager = query_param(&query, "fieldManager").unwrap_or_default();
                let ns = t.ns.clone().unwrap_or_default();
                let existing = st
                    .objects
                    .get(&t.coll)
                    .and_then(|c| c.get(&(ns.clone(), name.clone())))
                    .cloned();
                let patch = body.unwrap_or_default();
                let obj = match (existing, t.sub.as_deref()) {
                    (Some(mut o), Some("status")) => {
                        apply_status(&mut o, &patch, &manager);
                        o
                    }
                    (None, Some("status")) => {
                        return full(
                            StatusCode::NOT_FOUND,
                            &status_error(404, "NotFound", "not found"),
                        );
                    }
                    (Some(mut o), _) => {
                        merge_json(&mut o, &patch);
                        o
                    }
                    (None, _) => patch,
                };
                drop(st);
                let stored = self.put(&t.coll, obj);
                full(StatusCode::OK, &stored)
            }
            ("POST", None) => {
                let mut obj = body.unwrap_or_default();
                if obj["metadata"]["namespace"].is_null()
                    && let Some(ns) = &t.ns
                {
                    obj["metadata"]["namespace"] = json!(ns);
                }
                if obj["metadata"]["name"].is_null() {
                    let prefix = obj["metadata"]["generateName"]
                        .as_str()
                        .unwrap_or("obj-")
                        .to_string();
                    obj["metadata"]["name"] = json!(format!("{prefix}{}", st.rv + 1));
                }
                drop(st);
                let stored = self.put(&t.coll, obj);
                full(StatusCode::CREATED, &stored)
            }
            _ => full(
                StatusCode::METHOD_NOT_ALLOWED,
                &status_error(405, "MethodNotAllowed", "not served by the fake"),
            ),
        }
    }
}

/// Recursive JSON merge (objects merged, everything else replaced).
fn merge_json(into: &mut Value, patch: &Value) {
    match (into, patch) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                merge_json(a.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (a, b) => *a = b.clone(),
    }
}

/// Server-side apply of a status, approximated for berth's field managers: the manager
/// `berth-<host>` owns exactly the `status.hosts[]` entry named `<host>` (replaced, or removed
/// when absent from the patch); other status fields in the patch replace the stored ones.
fn apply_status(obj: &mut Value, patch: &Value, manager: &str) {
    let host = manager.strip_prefix("berth-").unwrap_or(manager);
    let new_status = patch.get("status").cloned().unwrap_or_default();
    let mut status = obj.get("status").cloned().unwrap_or(json!({}));
    let mut hosts: Vec<Value> = status["hosts"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|h| h["name"] != json!(host))
        .collect();
    if let Some(entries) = new_status["hosts"].as_array() {
        hosts.extend(entries.iter().cloned());
    }
    hosts.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    if let Value::Object(m) = &new_status {
        for (k, v) in m {
            if k != "hosts" {
                status[k] = v.clone();
            }
        }
    }
    status["hosts"] = json!(hosts);
    obj["status"] = status;
}
