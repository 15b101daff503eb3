//! A loopback fault proxy: a real TCP proxy on 127.0.0.1 that relays HTTP/1.1 exchanges (keep-alive
//! included) between a client and an upstream server, and on demand breaks the exchanges of one
//! JSON-RPC method in one of the ways a network, a gateway or a broken server does.
//!
//! It reads each request whole (headers and `Content-Length` body, both bounded), looks at its
//! JSON-RPC `method`, and either relays it or applies the [`Fault`] injected for that method.
//! It counts the requests it received per method; the upstream counts what reached it, so a test
//! can tell "the client sent it twice" from "the server ran it twice".

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::task::{AbortHandle, JoinHandle};

/// The longest header block and body the proxy relays.
const MAX_HEAD: usize = 64 * 1024;
const MAX_BODY: usize = 8 * 1024 * 1024;

/// How the proxy breaks an exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Fault {
    /// Nothing listens: every connection attempt is refused (the whole proxy, every method).
    Refuse,
    /// Relays the request, then sends the answer's headers and half its body and resets the
    /// connection (RST).
    ResetMidResponse,
    /// Relays the request, then holds the answer far longer than any client timeout.
    Delay,
    /// Answers this status itself without relaying: 500 is the server's masked internal error
    /// (`{"error": "Internal server error", "code": 5002}`), 502 and 503 a gateway's page.
    Status(u16),
    /// Relays the request (the server runs it), then answers 502 instead of the server's answer.
    BadGatewayAfterSend,
    /// Relays the request, then answers `200` with a body that is not JSON.
    Garbage,
    /// Relays the request, then answers `200` with the first half of the server's JSON (a
    /// well-framed HTTP answer whose JSON is cut).
    TruncatedJson,
    /// Relays the request, then closes the connection without answering.
    DropAfterSend,
}

impl Fault {
    /// The name used in the matrix.
    pub fn name(self) -> String {
        match self {
            Fault::Refuse => "connection refused".into(),
            Fault::ResetMidResponse => "reset mid-response".into(),
            Fault::Delay => "answer delayed past the timeout".into(),
            Fault::Status(500) => "500 masked error (not relayed)".into(),
            Fault::Status(s) => format!("{s} from a gateway (not relayed)"),
            Fault::BadGatewayAfterSend => "502 after relaying".into(),
            Fault::Garbage => "garbage body (after relaying)".into(),
            Fault::TruncatedJson => "truncated JSON (after relaying)".into(),
            Fault::DropAfterSend => "dropped after the request was sent".into(),
        }
    }

    /// Whether the request reaches the upstream under this fault.
    pub fn relays(self) -> bool {
        !matches!(self, Fault::Refuse | Fault::Status(_))
    }
}

/// Which requests a fault applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Every request of this JSON-RPC method.
    Method(&'static str),
    /// `sandbox.command.run` requests other than the readiness probe (`true`, counted as
    /// `probe`).
    UserCommand,
}

impl Target {
    fn matches(self, method: &str) -> bool {
        match self {
            Target::Method(m) => m == method,
            Target::UserCommand => method == "sandbox.command.run",
        }
    }
}

#[derive(Debug)]
struct Inner {
    upstream: SocketAddr,
    rule: Mutex<Option<(Target, Fault)>>,
    seen: Mutex<BTreeMap<String, usize>>,
    connections: Mutex<Vec<AbortHandle>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A running fault proxy.
#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    inner: Arc<Inner>,
    accept: tokio::sync::Mutex<Option<JoinHandle<()>>>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        if let Ok(mut accept) = self.accept.try_lock()
            && let Some(task) = accept.take()
        {
            task.abort();
        }
        for c in lock(&self.inner.connections).drain(..) {
            c.abort();
        }
    }
}

fn listen(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(256)
}

impl FaultProxy {
    /// A proxy on a free loopback port in front of `upstream`.
    pub async fn start(upstream: SocketAddr) -> FaultProxy {
        let listener = listen("127.0.0.1:0".parse().expect("an address")).expect("bind the proxy");
        let addr = listener.local_addr().expect("the proxy's address");
        let inner = Arc::new(Inner {
            upstream,
            rule: Mutex::new(None),
            seen: Mutex::default(),
            connections: Mutex::default(),
        });
        let task = tokio::spawn(accept_loop(listener, Arc::clone(&inner)));
        FaultProxy {
            addr,
            inner,
            accept: tokio::sync::Mutex::new(Some(task)),
        }
    }

    /// The URL to give the client.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Breaks the requests `target` matches from now on ([`Fault::Refuse`]: every connection).
    pub async fn inject(&self, target: Target, fault: Fault) {
        if fault == Fault::Refuse {
            if let Some(task) = self.accept.lock().await.take() {
                task.abort();
                let _ = task.await; // the listener is closed once the task is gone
            }
            for c in lock(&self.inner.connections).drain(..) {
                c.abort();
            }
        }
        *lock(&self.inner.rule) = Some((target, fault));
    }

    /// Relays everything again (and listens again after [`Fault::Refuse`]).
    pub async fn clear(&self) {
        *lock(&self.inner.rule) = None;
        let mut accept = self.accept.lock().await;
        if accept.is_none() {
            let listener = listen(self.addr).expect("listen again on the proxy's port");
            *accept = Some(tokio::spawn(accept_loop(listener, Arc::clone(&self.inner))));
        }
    }

    /// How many requests of `method` the proxy received (whether or not it relayed them).
    pub fn seen(&self, method: &str) -> usize {
        lock(&self.inner.seen).get(method).copied().unwrap_or(0)
    }

    /// Forgets the counts.
    pub fn reset_counts(&self) {
        lock(&self.inner.seen).clear();
    }
}

async fn accept_loop(listener: tokio::net::TcpListener, inner: Arc<Inner>) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        let task = tokio::spawn(serve_connection(Arc::clone(&inner), client));
        let mut connections = lock(&inner.connections);
        connections.retain(|c| !c.is_finished());
        connections.push(task.abort_handle());
    }
}

/// One HTTP/1.1 message: its header block (with the final blank line) and its body.
struct Message {
    head: Vec<u8>,
    body: Vec<u8>,
}

impl Message {
    fn bytes(&self) -> Vec<u8> {
        [self.head.as_slice(), self.body.as_slice()].concat()
    }
}

/// Reads one message framed by `Content-Length` (the stub and reqwest frame every message so);
/// `None` at a clean end of the stream or on anything else.
async fn read_message(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Message> {
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > MAX_HEAD {
            return None;
        }
        let mut chunk = [0u8; 8192];
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head: Vec<u8> = buf.drain(..head_end).collect();
    let length = String::from_utf8_lossy(&head)
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.trim()
                .eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    if length > MAX_BODY {
        return None;
    }
    while buf.len() < length {
        let mut chunk = [0u8; 65536];
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = buf.drain(..length).collect();
    Some(Message { head, body })
}

fn canned(status: u16, content_type: &str, body: &[u8]) -> Vec<u8> {
    let reason = match status {
        200 => "OK",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Error",
    };
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

fn status_answer(status: u16) -> Vec<u8> {
    match status {
        500 => canned(
            500,
            "application/json",
            br#"{"error":"Internal server error","code":5002}"#,
        ),
        502 => canned(502, "text/html", b"<html><body><h1>502 Bad Gateway</h1></body></html>"),
        s => canned(s, "text/plain", b"Service Unavailable"),
    }
}

fn method_of(body: &[u8]) -> String {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("method").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_else(|| "health".into())
}

fn is_probe(body: &[u8]) -> bool {
    serde_json::from_slice::<Value>(body)
        .ok()
        .is_some_and(|v| v.pointer("/params/command").and_then(Value::as_str) == Some("true"))
}

async fn serve_connection(inner: Arc<Inner>, mut client: TcpStream) {
    let mut client_buf = Vec::new();
    let mut upstream: Option<(TcpStream, Vec<u8>)> = None;
    while let Some(request) = read_message(&mut client, &mut client_buf).await {
        let mut method = method_of(&request.body);
        let probe = method == "sandbox.command.run" && is_probe(&request.body);
        if probe {
            method = "probe".into();
        }
        *lock(&inner.seen).entry(method.clone()).or_insert(0) += 1;
        let rule = *lock(&inner.rule);
        let fault = rule.and_then(|(target, fault)| target.matches(&method).then_some(fault));
        if let Some(Fault::Status(status)) = fault {
            if client.write_all(&status_answer(status)).await.is_err() {
                return;
            }
            continue;
        }
        if upstream.is_none() {
            let Ok(stream) = TcpStream::connect(inner.upstream).await else {
                return;
            };
            upstream = Some((stream, Vec::new()));
        }
        let Some((up, up_buf)) = upstream.as_mut() else { return };
        if up.write_all(&request.bytes()).await.is_err() {
            return;
        }
        let Some(response) = read_message(up, up_buf).await else {
            return;
        };
        let answer = match fault {
            None | Some(Fault::Refuse | Fault::Status(_)) => response.bytes(),
            Some(Fault::ResetMidResponse) => {
                let mut partial = response.head.clone();
                partial.extend_from_slice(&response.body[..response.body.len() / 2]);
                let _ = client.write_all(&partial).await;
                let _ = client.flush().await;
                reset(client);
                return;
            }
            Some(Fault::Delay) => {
                tokio::time::sleep(Duration::from_secs(30)).await;
                response.bytes()
            }
            Some(Fault::BadGatewayAfterSend) => status_answer(502),
            Some(Fault::Garbage) => canned(200, "application/json", b"\x00\xffnot json at all {{{"),
            Some(Fault::TruncatedJson) => canned(200, "application/json", &response.body[..response.body.len() / 2]),
            Some(Fault::DropAfterSend) => return,
        };
        if client.write_all(&answer).await.is_err() {
            return;
        }
    }
}

/// Closes with RST rather than FIN.
#[allow(
    deprecated,
    reason = "set_linger(0) is exactly what a reset needs, and it never blocks"
)]
fn reset(stream: TcpStream) {
    let _ = stream.set_linger(Some(Duration::ZERO));
    drop(stream);
}
