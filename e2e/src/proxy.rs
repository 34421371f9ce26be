//! A proxy for the Docker Engine API on a UNIX socket that counts requests and injects faults.
//!
//! Clients are pointed at it with `DOCKER_HOST=unix://<socket>`. Bytes are forwarded unchanged
//! in both directions; on the client → engine side the proxy follows HTTP/1.1 message boundaries
//! (request head, then a `Content-Length` or chunked body) so that every request on a keep-alive
//! connection is counted once, by method and path template (`/v1.41/containers/abc/start` counts
//! as `POST /containers/{id}/start`). A connection that upgrades (attach, exec) is passed through
//! without further parsing.
//!
//! [`Fault`]s stand in for an engine outage without touching the machine's dockerd: the socket
//! missing (dockerd not started yet), connections closed unanswered, every request answered with
//! a 500, or every connection delayed. Switching to a fault that breaks connections cuts the
//! open ones, mid-response if need be (a streaming `GET /events` included). The benchmark
//! (`berth-bench`) uses it only to count; the end-to-end tests also to break the engine.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;

/// Request counts keyed by `"METHOD /path/template"`.
pub type Counts = BTreeMap<String, u64>;

/// What the proxy does to the engine API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Nothing: every connection is forwarded.
    None,
    /// The socket file does not exist, so connecting fails as it does before dockerd started.
    Down,
    /// Connections are accepted and closed at once, unanswered.
    Reset,
    /// Every request is answered `500 Internal Server Error` with a JSON message, as the engine
    /// answers when it fails, and the connection closed.
    Error500,
    /// Every new connection waits this long before it is forwarded.
    Slow(Duration),
}

impl Fault {
    /// True when switching to this fault cuts the open connections.
    fn cuts(self) -> bool {
        matches!(self, Fault::Down | Fault::Reset | Fault::Error500)
    }
}

/// A running proxy. Dropping it stops it and removes its socket.
pub struct EngineProxy {
    socket: PathBuf,
    counts: Arc<Mutex<Counts>>,
    fault: watch::Sender<Fault>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for EngineProxy {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.socket);
    }
}

impl EngineProxy {
    /// Listens on `socket` and forwards every connection to the engine socket `upstream`.
    /// Needs a tokio runtime.
    ///
    /// # Errors
    /// When `socket` cannot be bound.
    pub fn start(socket: &Path, upstream: &Path) -> anyhow::Result<Self> {
        Self::start_with(socket, upstream, Fault::None)
    }

    /// [`EngineProxy::start`] with a fault from the first connection on.
    ///
    /// # Errors
    /// When `socket` cannot be bound.
    pub fn start_with(socket: &Path, upstream: &Path, fault: Fault) -> anyhow::Result<Self> {
        let _ = std::fs::remove_file(socket);
        let listener = if fault == Fault::Down {
            None
        } else {
            Some(
                UnixListener::bind(socket)
                    .with_context(|| format!("bind proxy socket {}", socket.display()))?,
            )
        };
        let counts = Arc::new(Mutex::new(Counts::new()));
        let (tx, rx) = watch::channel(fault);
        let task = tokio::spawn(accept(
            listener,
            socket.to_path_buf(),
            upstream.to_path_buf(),
            counts.clone(),
            rx,
        ));
        Ok(EngineProxy {
            socket: socket.to_path_buf(),
            counts,
            fault: tx,
            task,
        })
    }

    /// Switches to `fault` (for new connections; a fault that breaks connections also cuts the
    /// open ones). [`Fault::Down`] removes the socket; leaving it binds the socket again.
    pub fn set(&self, fault: Fault) {
        self.fault.send_replace(fault);
    }

    /// The fault in force.
    pub fn fault(&self) -> Fault {
        *self.fault.borrow()
    }

    /// `DOCKER_HOST` value that points a client at this proxy.
    pub fn docker_host(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    /// The proxy's socket.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The counts so far: requests forwarded to the engine, plus `"FAULT <fault> METHOD
    /// /template"` for requests answered by an injected 500.
    pub fn snapshot(&self) -> Counts {
        self.counts.lock().map(|c| c.clone()).unwrap_or_default()
    }
}

/// The accept loop: binds and unbinds the socket as the fault asks.
async fn accept(
    mut listener: Option<UnixListener>,
    socket: PathBuf,
    upstream: PathBuf,
    counts: Arc<Mutex<Counts>>,
    mut fault: watch::Receiver<Fault>,
) {
    loop {
        let Some(l) = &listener else {
            if fault.changed().await.is_err() {
                return;
            }
            let up = *fault.borrow_and_update() != Fault::Down;
            if up {
                let _ = std::fs::remove_file(&socket);
                match UnixListener::bind(&socket) {
                    Ok(l) => listener = Some(l),
                    Err(e) => {
                        eprintln!("[proxy] bind {}: {e}", socket.display());
                        return;
                    }
                }
            }
            continue;
        };
        tokio::select! {
            accepted = l.accept() => {
                if let Ok((client, _)) = accepted {
                    let (upstream, counts, fault) = (upstream.clone(), counts.clone(), fault.clone());
                    tokio::spawn(async move {
                        if let Err(e) = serve(client, &upstream, counts, fault).await {
                            eprintln!("[proxy] connection: {e:#}");
                        }
                    });
                }
            }
            changed = fault.changed() => {
                if changed.is_err() {
                    return;
                }
                let down = *fault.borrow_and_update() == Fault::Down;
                if down {
                    listener = None;
                    let _ = std::fs::remove_file(&socket);
                }
            }
        }
    }
}

/// `after - before`, dropping zero entries.
pub fn diff(before: &Counts, after: &Counts) -> Counts {
    after
        .iter()
        .filter_map(|(k, v)| {
            let d = v - before.get(k).copied().unwrap_or(0);
            (d > 0).then(|| (k.clone(), d))
        })
        .collect()
}

/// True for requests that only read (GET and HEAD).
pub fn is_read(key: &str) -> bool {
    key.starts_with("GET ") || key.starts_with("HEAD ")
}

/// (reads, writes) in `c`.
pub fn reads_writes(c: &Counts) -> (u64, u64) {
    c.iter().fold(
        (0, 0),
        |(r, w), (k, v)| if is_read(k) { (r + v, w) } else { (r, w + v) },
    )
}

/// `GET /containers/json ×3, …` in a stable order.
pub fn describe(c: &Counts, divide_by: f64) -> String {
    if c.is_empty() {
        return "none".into();
    }
    c.iter()
        .map(|(k, v)| {
            let per = *v as f64 / divide_by;
            if (per - per.round()).abs() < 1e-9 {
                format!("`{k}` ×{per:.0}")
            } else {
                format!("`{k}` ×{per:.2}")
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The engine socket named by `DOCKER_HOST` (default `/var/run/docker.sock`).
pub fn engine_socket() -> anyhow::Result<PathBuf> {
    match std::env::var("DOCKER_HOST") {
        Ok(h) if !h.is_empty() => match h.strip_prefix("unix://") {
            Some(p) => Ok(PathBuf::from(p)),
            None => {
                anyhow::bail!("DOCKER_HOST={h}: the engine proxy needs a unix:// engine socket")
            }
        },
        _ => Ok(PathBuf::from("/var/run/docker.sock")),
    }
}

/// One client connection, under the fault in force when it was accepted.
async fn serve(
    client: UnixStream,
    upstream: &Path,
    counts: Arc<Mutex<Counts>>,
    mut fault: watch::Receiver<Fault>,
) -> anyhow::Result<()> {
    let now = *fault.borrow_and_update();
    match now {
        Fault::Down | Fault::Reset => return Ok(()),
        Fault::Error500 => return answer_500(client, &counts).await,
        Fault::Slow(d) => tokio::time::sleep(d).await,
        Fault::None => {}
    }
    let engine = UnixStream::connect(upstream)
        .await
        .with_context(|| format!("connect to {}", upstream.display()))?;
    let (cr, mut cw) = client.into_split();
    let (mut er, ew) = engine.into_split();
    let up = forward_requests(cr, ew, counts);
    let down = async {
        let r = tokio::io::copy(&mut er, &mut cw).await;
        let _ = cw.shutdown().await;
        r
    };
    let cut = async {
        loop {
            if fault.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
            let cuts = fault.borrow_and_update().cuts();
            if cuts {
                return;
            }
        }
    };
    tokio::select! {
        // A peer closing mid-stream (a cancelled events request) is normal.
        _ = async { tokio::join!(up, down) } => {}
        // Dropping both halves closes both sockets.
        () = cut => {}
    }
    Ok(())
}

/// Reads one request head and answers it with a 500, as a failing engine does.
async fn answer_500(mut client: UnixStream, counts: &Mutex<Counts>) -> anyhow::Result<()> {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    let read = async {
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 64 * 1024 {
            match client.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
    };
    if tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .is_err()
    {
        return Ok(());
    }
    let line = String::from_utf8_lossy(&head);
    let mut words = line.split_whitespace();
    let (method, target) = (words.next().unwrap_or("?"), words.next().unwrap_or("?"));
    if let Ok(mut c) = counts.lock() {
        *c.entry(format!("FAULT 500 {method} {}", template(target)))
            .or_default() += 1;
    }
    let body = r#"{"message":"injected fault: the engine proxy answers 500"}"#;
    let answer = format!(
        "HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    client.write_all(answer.as_bytes()).await?;
    let _ = client.shutdown().await;
    Ok(())
}

/// Where the client → engine byte stream is, message-wise.
#[derive(Debug)]
enum State {
    /// Reading a request head (bytes accumulate in `head`).
    Head,
    /// Inside a body with this many bytes left.
    Body(u64),
    /// Inside a chunked body.
    Chunked(Chunk),
    /// After an upgrade: no more HTTP.
    Raw,
}

#[derive(Debug)]
enum Chunk {
    /// Reading a chunk-size line.
    Size(Vec<u8>),
    /// Inside chunk data with this many bytes left (then CRLF).
    Data(u64),
    /// The CRLF after chunk data: this many bytes left.
    DataEnd(u8),
    /// Trailer lines after the last chunk, ending with an empty line.
    Trailer(Vec<u8>),
}

/// Follows request boundaries in the client → engine byte stream and counts request heads.
struct Parser {
    state: State,
    head: Vec<u8>,
    counts: Arc<Mutex<Counts>>,
}

impl Parser {
    /// Feeds the next bytes of the stream.
    fn feed(&mut self, mut input: &[u8]) {
        while !input.is_empty() {
            match std::mem::replace(&mut self.state, State::Raw) {
                State::Raw => return,
                State::Head => {
                    self.head.extend_from_slice(input);
                    input = &[];
                    self.parse_heads();
                }
                other => {
                    let (st, used) = advance(other, input);
                    input = &input[used..];
                    self.state = st;
                }
            }
        }
    }

    /// Parses complete request heads out of `self.head` (several when requests are pipelined).
    fn parse_heads(&mut self) {
        loop {
            let mut hdrs = [httparse::EMPTY_HEADER; 64];
            let mut req = httparse::Request::new(&mut hdrs);
            match req.parse(&self.head) {
                Ok(httparse::Status::Partial) => {
                    self.state = State::Head;
                    return;
                }
                Err(e) => {
                    eprintln!(
                        "[proxy] unparsable request head ({e}); passing the connection through"
                    );
                    self.state = State::Raw;
                    return;
                }
                Ok(httparse::Status::Complete(len)) => {
                    let key = format!(
                        "{} {}",
                        req.method.unwrap_or("?"),
                        template(req.path.unwrap_or("?"))
                    );
                    let mut next = State::Body(0);
                    for h in req.headers.iter() {
                        let value = String::from_utf8_lossy(h.value).to_ascii_lowercase();
                        if h.name.eq_ignore_ascii_case("content-length") {
                            next = State::Body(value.trim().parse().unwrap_or(0));
                        } else if h.name.eq_ignore_ascii_case("transfer-encoding")
                            && value.contains("chunked")
                        {
                            next = State::Chunked(Chunk::Size(Vec::new()));
                        } else if h.name.eq_ignore_ascii_case("upgrade") {
                            next = State::Raw;
                        }
                    }
                    if let Ok(mut c) = self.counts.lock() {
                        *c.entry(key).or_default() += 1;
                    }
                    let rest = self.head.split_off(len);
                    self.head.clear();
                    let (st, used) = advance(next, &rest);
                    match st {
                        State::Head => self.head.extend_from_slice(&rest[used..]),
                        st => {
                            // The body outlasts what was read so far.
                            self.state = st;
                            return;
                        }
                    }
                }
            }
        }
    }
}

async fn forward_requests(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    counts: Arc<Mutex<Counts>>,
) -> anyhow::Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut parser = Parser {
        state: State::Head,
        head: Vec::new(),
        counts,
    };
    loop {
        let n = from.read(&mut buf).await?;
        if n == 0 {
            let _ = to.shutdown().await;
            return Ok(());
        }
        to.write_all(&buf[..n]).await?;
        parser.feed(&buf[..n]);
    }
}

/// Consumes body bytes of `input` in state `st`; returns the next state and how many bytes were
/// used (fewer than `input.len()` only when the state went back to `Head` or `Raw`).
fn advance(st: State, input: &[u8]) -> (State, usize) {
    let mut st = st;
    let mut i = 0;
    loop {
        match st {
            State::Head => return (State::Head, i),
            State::Raw => return (State::Raw, input.len()),
            State::Body(0) => st = State::Head,
            State::Body(left) => {
                let take = (input.len() - i).min(usize::try_from(left).unwrap_or(usize::MAX));
                i += take;
                let left = left - take as u64;
                if left == 0 {
                    st = State::Head;
                } else {
                    return (State::Body(left), i);
                }
            }
            State::Chunked(c) => {
                if i >= input.len() {
                    return (State::Chunked(c), i);
                }
                st = match c {
                    Chunk::Size(mut line) => {
                        let b = input[i];
                        i += 1;
                        if b == b'\n' {
                            let s = String::from_utf8_lossy(&line);
                            let hex = s.trim().split(';').next().unwrap_or("0").trim().to_string();
                            match u64::from_str_radix(&hex, 16).unwrap_or(0) {
                                0 => State::Chunked(Chunk::Trailer(Vec::new())),
                                size => State::Chunked(Chunk::Data(size)),
                            }
                        } else {
                            line.push(b);
                            State::Chunked(Chunk::Size(line))
                        }
                    }
                    Chunk::Data(left) => {
                        let take =
                            (input.len() - i).min(usize::try_from(left).unwrap_or(usize::MAX));
                        i += take;
                        match left - take as u64 {
                            0 => State::Chunked(Chunk::DataEnd(2)),
                            left => State::Chunked(Chunk::Data(left)),
                        }
                    }
                    Chunk::DataEnd(left) => {
                        i += 1;
                        if left <= 1 {
                            State::Chunked(Chunk::Size(Vec::new()))
                        } else {
                            State::Chunked(Chunk::DataEnd(left - 1))
                        }
                    }
                    Chunk::Trailer(mut line) => {
                        let b = input[i];
                        i += 1;
                        if b == b'\n' {
                            if line.iter().all(|c| *c == b'\r') {
                                State::Head
                            } else {
                                line.clear();
                                State::Chunked(Chunk::Trailer(line))
                            }
                        } else {
                            line.push(b);
                            State::Chunked(Chunk::Trailer(line))
                        }
                    }
                };
            }
        }
    }
}

/// Path template of a request target: API version prefix and query dropped, object names and
/// IDs replaced by `{id}` (image names, which may contain '/', by `{name}`).
pub fn template(target: &str) -> String {
    let path = target.split('?').next().unwrap_or(target);
    let path = match path.strip_prefix("/v") {
        Some(rest) if rest.starts_with(|c: char| c.is_ascii_digit()) => match rest.find('/') {
            Some(i) => &rest[i..],
            None => "/",
        },
        _ => path,
    };
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let fixed = |s: &str| ["json", "create", "prune", "load", "search", "get"].contains(&s);
    match segs.as_slice() {
        [
            kind @ ("containers" | "networks" | "volumes" | "exec"),
            rest @ ..,
        ] if !rest.is_empty() => {
            if rest.len() == 1 && fixed(rest[0]) {
                format!("/{kind}/{}", rest[0])
            } else if rest.len() == 1 {
                format!("/{kind}/{{id}}")
            } else {
                format!("/{kind}/{{id}}/{}", rest[1..].join("/"))
            }
        }
        ["images", rest @ ..] if !rest.is_empty() => {
            if rest.len() == 1 && fixed(rest[0]) {
                format!("/images/{}", rest[0])
            } else {
                let last = rest[rest.len() - 1];
                if rest.len() > 1 && ["json", "history", "push", "tag", "get"].contains(&last) {
                    format!("/images/{{name}}/{last}")
                } else {
                    "/images/{name}".to_string()
                }
            }
        }
        _ => path.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_hide_names_and_versions() {
        assert_eq!(
            template("/v1.41/containers/json?all=true"),
            "/containers/json"
        );
        assert_eq!(
            template("/v1.41/containers/bench_c0_0/start"),
            "/containers/{id}/start"
        );
        assert_eq!(template("/containers/abc"), "/containers/{id}");
        assert_eq!(
            template("/v1.41/containers/create?name=x"),
            "/containers/create"
        );
        assert_eq!(
            template("/v1.41/images/berth-test/busybox:latest/json"),
            "/images/{name}/json"
        );
        assert_eq!(template("/v1.41/networks"), "/networks");
        assert_eq!(
            template("/v1.41/networks/abc/connect"),
            "/networks/{id}/connect"
        );
        assert_eq!(template("/_ping"), "/_ping");
        assert_eq!(template("/version"), "/version");
    }

    #[test]
    fn bodies_and_chunks_are_skipped() {
        let (st, used) = advance(State::Body(3), b"abcGET /x");
        assert!(matches!(st, State::Head));
        assert_eq!(used, 3);
        let input = b"3\r\nabc\r\n0\r\n\r\nPOST /y";
        let (st, used) = advance(State::Chunked(Chunk::Size(Vec::new())), input);
        assert!(matches!(st, State::Head));
        assert_eq!(&input[used..], b"POST /y");
    }

    #[tokio::test]
    async fn counts_pipelined_requests() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let up = dir.path().join("up.sock");
        let listener = UnixListener::bind(&up)?;
        // A fake engine that reads everything and answers nothing.
        tokio::spawn(async move {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            let mut b = vec![0u8; 1024];
            while s.read(&mut b).await.unwrap_or(0) > 0 {}
        });
        let proxy = EngineProxy::start(&dir.path().join("p.sock"), &up)?;
        let mut c = UnixStream::connect(dir.path().join("p.sock")).await?;
        let msg = b"GET /v1.41/containers/json HTTP/1.1\r\nHost: d\r\n\r\nPOST /v1.41/containers/create?name=a HTTP/1.1\r\nHost: d\r\nContent-Length: 5\r\n\r\n{\"a\"}POST /v1.41/containers/a/start HTTP/1.1\r\nHost: d\r\nContent-Length: 0\r\n\r\n";
        // Split the bytes awkwardly to exercise partial heads and bodies.
        for part in msg.chunks(7) {
            c.write_all(part).await?;
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        c.shutdown().await?;
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let counts = proxy.snapshot();
        assert_eq!(counts.get("GET /containers/json"), Some(&1));
        assert_eq!(counts.get("POST /containers/create"), Some(&1));
        assert_eq!(counts.get("POST /containers/{id}/start"), Some(&1));
        assert_eq!(reads_writes(&counts), (1, 2));
        Ok(())
    }

    /// A fake engine answering every request with `200 {}` on keep-alive connections, and
    /// holding a `GET /events` open.
    fn fake_engine(path: &Path) -> anyhow::Result<()> {
        let listener = UnixListener::bind(path)?;
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut b = vec![0u8; 4096];
                    while let Ok(n) = s.read(&mut b).await {
                        if n == 0 {
                            return;
                        }
                        if b[..n].starts_with(b"GET /events") {
                            let _ = s
                                .write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
                                .await;
                            continue;
                        }
                        let _ = s
                            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
                            .await;
                    }
                });
            }
        });
        Ok(())
    }

    /// Sends one request on a new connection; the answer's first line, or why there is none.
    async fn request(socket: &Path, path: &str) -> Result<String, String> {
        let mut c = UnixStream::connect(socket)
            .await
            .map_err(|e| format!("connect: {:?}", e.kind()))?;
        c.write_all(format!("GET {path} HTTP/1.1\r\nHost: d\r\n\r\n").as_bytes())
            .await
            .map_err(|e| format!("write: {}", e.kind()))?;
        let mut b = vec![0u8; 4096];
        let n = c
            .read(&mut b)
            .await
            .map_err(|e| format!("read: {}", e.kind()))?;
        if n == 0 {
            return Err("closed".into());
        }
        let text = String::from_utf8_lossy(&b[..n]).to_string();
        Ok(text.lines().next().unwrap_or_default().to_string())
    }

    #[tokio::test]
    async fn faults_break_the_engine_and_cut_open_connections() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let up = dir.path().join("up.sock");
        fake_engine(&up)?;
        let sock = dir.path().join("p.sock");
        let proxy = EngineProxy::start_with(&sock, &up, Fault::Down)?;
        assert!(!sock.exists(), "down: no socket");
        assert_eq!(
            request(&sock, "/_ping").await,
            Err("connect: NotFound".into())
        );

        proxy.set(Fault::None);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(request(&sock, "/_ping").await, Ok("HTTP/1.1 200 OK".into()));
        // An open events stream is cut when the engine fails.
        let mut events = UnixStream::connect(&sock).await?;
        events
            .write_all(b"GET /events HTTP/1.1\r\nHost: d\r\n\r\n")
            .await?;
        let mut b = vec![0u8; 4096];
        assert!(events.read(&mut b).await? > 0, "events stream open");

        proxy.set(Fault::Error500);
        let cut = tokio::time::timeout(Duration::from_secs(2), events.read(&mut b)).await?;
        assert!(matches!(cut, Ok(0) | Err(_)), "events stream cut: {cut:?}");
        assert_eq!(
            request(&sock, "/v1.41/containers/json").await,
            Ok("HTTP/1.1 500 Internal Server Error".into())
        );
        assert_eq!(
            proxy.snapshot().get("FAULT 500 GET /containers/json"),
            Some(&1)
        );

        proxy.set(Fault::Reset);
        let reset = request(&sock, "/_ping").await;
        assert!(
            reset.as_ref().is_err_and(|e| !e.starts_with("connect")),
            "accepted, then closed unanswered: {reset:?}"
        );

        proxy.set(Fault::Down);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!sock.exists(), "down again: socket removed");
        proxy.set(Fault::Slow(Duration::from_millis(300)));
        tokio::time::sleep(Duration::from_millis(50)).await;
        let t = std::time::Instant::now();
        assert_eq!(request(&sock, "/_ping").await, Ok("HTTP/1.1 200 OK".into()));
        assert!(t.elapsed() >= Duration::from_millis(300));
        assert_eq!(proxy.snapshot().get("GET /_ping"), Some(&2));
        Ok(())
    }
}
