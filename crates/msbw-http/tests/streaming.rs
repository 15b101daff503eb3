//! Streams against a hand-written loopback server that sends what each test scripts: a
//! well-formed stream, then hostile ones (a malformed line, an oversized line, a body without
//! its final line, a stall). Each is a typed result, never a panic or a hang.

#![allow(clippy::unwrap_used)] // test helpers may unwrap

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use msbw_backend::{BackendError, CodeRequest, ErrorKind, ExecEvent, ExecStatus, SandboxBackend, SandboxId};
use msbw_http::{HttpBackend, HttpBackendConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the stub sends as the body of an RPC answer: parts written one after another, then
/// either the connection is closed or (with `stall`) kept open without more bytes.
#[derive(Clone)]
struct Script {
    streaming: bool,
    parts: Vec<Vec<u8>>,
    stall: bool,
}

impl Script {
    /// A stream of `parts`, then the connection closed.
    fn stream(parts: Vec<Vec<u8>>) -> Self {
        Script {
            streaming: true,
            parts,
            stall: false,
        }
    }

    /// A stream of `parts`, then the connection kept open without more bytes.
    fn stalling(parts: Vec<Vec<u8>>) -> Self {
        Script {
            streaming: true,
            parts,
            stall: true,
        }
    }
}

/// A loopback server answering health with `streaming` announced (or not) and every RPC with
/// the script; records whether an RPC carried the stream header.
async fn stub(script: Script) -> (String, Arc<AtomicBool>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let saw_header = Arc::new(AtomicBool::new(false));
    let seen = Arc::clone(&saw_header);
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            tokio::spawn(serve(socket, script.clone(), Arc::clone(&seen)));
        }
    });
    (url, saw_header)
}

async fn serve(mut socket: TcpStream, script: Script, seen: Arc<AtomicBool>) {
    let mut request = Vec::new();
    let mut buf = [0u8; 4096];
    let head_end = loop {
        let Ok(n) = socket.read(&mut buf).await else { return };
        if n == 0 {
            return;
        }
        request.extend_from_slice(&buf[..n]);
        if let Some(at) = request.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
    };
    let head = String::from_utf8_lossy(&request[..head_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while request.len() < head_end + length {
        let Ok(n) = socket.read(&mut buf).await else { return };
        if n == 0 {
            return;
        }
        request.extend_from_slice(&buf[..n]);
    }
    if head.starts_with("get ") {
        let body = format!(
            r#"{{"message":"stub","capabilities":{{"streaming":{}}}}}"#,
            script.streaming
        );
        let answer = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = socket.write_all(answer.as_bytes()).await;
        return;
    }
    let streamed = head.contains("x-msbw-stream: ndjson");
    seen.store(streamed, Ordering::SeqCst);
    let content_type = if streamed {
        "application/x-ndjson"
    } else {
        "application/json"
    };
    let head = format!("HTTP/1.1 200 OK\r\ncontent-type: {content_type}\r\nconnection: close\r\n\r\n");
    if socket.write_all(head.as_bytes()).await.is_err() {
        return;
    }
    for part in &script.parts {
        if socket.write_all(part).await.is_err() || socket.flush().await.is_err() {
            return;
        }
    }
    if script.stall {
        // Keep the connection open, sending nothing, until the client gives up.
        let _ = socket.read(&mut buf).await;
    }
}

fn backend(url: &str, max_response_bytes: usize) -> HttpBackend {
    let mut config = HttpBackendConfig::new(url);
    config.exec_grace = Duration::from_millis(200);
    config.request_timeout = Duration::from_secs(3);
    config.max_response_bytes = max_response_bytes;
    HttpBackend::new(config).unwrap()
}

fn id() -> SandboxId {
    SandboxId::new("default", "s").unwrap()
}

fn code(seconds: u64) -> CodeRequest {
    common::code_request("print('x')", Duration::from_secs(seconds))
}

const FINAL_REPL: &[u8] = br#"{"jsonrpc":"2.0","id":1,"result":{"status":"success","language":"python","output":[{"stream":"stdout","text":"x"}]}}"#;

/// Every event of a stream, the error (if any) last.
async fn drain(backend: &HttpBackend, request: &CodeRequest) -> (Vec<ExecEvent>, Option<BackendError>) {
    let mut stream = backend.run_code_stream(&id(), request).await.unwrap();
    let mut events = Vec::new();
    while let Some(event) = stream.next().await {
        match event {
            Ok(event) => events.push(event),
            Err(e) => return (events, Some(e)),
        }
    }
    (events, None)
}

fn lines(parts: &[&[u8]]) -> Vec<Vec<u8>> {
    parts.iter().map(|p| [*p, b"\n"].concat()).collect()
}

#[tokio::test]
async fn a_well_formed_stream_yields_its_chunks_then_the_result_read_as_a_buffered_answer() {
    let (url, saw_header) = stub(Script::stream(lines(&[
        br#"{"event":"stdout","data":"x"}"#,
        br#"{"event":"stderr","data_base64":"/w=="}"#,
        FINAL_REPL,
    ])))
    .await;
    let backend = backend(&url, 1 << 20);
    assert!(backend.capabilities().await.streaming);
    let (events, error) = drain(&backend, &code(5)).await;
    assert!(error.is_none(), "{error:?}");
    assert!(saw_header.load(Ordering::SeqCst));
    assert_eq!(events[0], ExecEvent::Stdout("x".into()));
    assert_eq!(events[1], ExecEvent::Stderr(vec![0xff].into()));
    let ExecEvent::Finished(out) = &events[2] else {
        panic!("{events:?}")
    };
    assert_eq!(out.stdout, "x\n");
    assert_eq!(out.status, ExecStatus::Completed);
    assert_eq!(events.len(), 3);
}

#[tokio::test]
async fn without_the_announcement_the_buffered_call_is_sent() {
    let (url, saw_header) = stub(Script {
        streaming: false,
        parts: vec![FINAL_REPL.to_vec()],
        stall: false,
    })
    .await;
    let backend = backend(&url, 1 << 20);
    assert!(!backend.capabilities().await.streaming);
    let mut b = backend.config().clone();
    b.python_stderr_settle = Duration::ZERO; // the stub's answer has no end marker
    let backend = HttpBackend::new(b).unwrap();
    let (events, error) = drain(&backend, &code(5)).await;
    assert!(error.is_none(), "{error:?}");
    assert!(
        !saw_header.load(Ordering::SeqCst),
        "no stream header without the announcement"
    );
    assert_eq!(events[0], ExecEvent::Stdout("x\n".into()));
    assert!(matches!(events.last(), Some(ExecEvent::Finished(_))));
}

#[tokio::test]
async fn a_malformed_line_is_a_protocol_error_after_the_chunks_before_it() {
    let (url, _) = stub(Script::stream(lines(&[
        br#"{"event":"stdout","data":"x"}"#,
        b"not json at all",
        FINAL_REPL,
    ])))
    .await;
    let (events, error) = drain(&backend(&url, 1 << 20), &code(5)).await;
    assert_eq!(events, vec![ExecEvent::Stdout("x".into())]);
    let error = error.expect("a malformed line is an error");
    assert_eq!(error.kind(), ErrorKind::Protocol, "{error}");
}

#[tokio::test]
async fn an_oversized_line_is_a_protocol_error() {
    // A line without end, longer than the answer bound: refused once it passes the bound.
    let (url, _) = stub(Script::stalling(vec![
        [&br#"{"event":"stdout","data":""#[..], &vec![b'x'; 256 * 1024]].concat(),
    ]))
    .await;
    let (events, error) = drain(&backend(&url, 64 * 1024), &code(30)).await;
    assert!(events.is_empty(), "{events:?}");
    assert_eq!(error.expect("too long").kind(), ErrorKind::Protocol);

    // A complete chunk line over the chunk-line limit (1 MiB), within the answer bound.
    let mut long = br#"{"event":"stdout","data":""#.to_vec();
    long.resize((1 << 20) + 16, b'x');
    long.extend_from_slice(b"\"}\n");
    let (url, _) = stub(Script::stream(vec![long, [FINAL_REPL, b"\n"].concat()])).await;
    let (events, error) = drain(&backend(&url, 4 << 20), &code(30)).await;
    assert!(events.is_empty(), "{events:?}");
    assert_eq!(error.expect("too long").kind(), ErrorKind::Protocol);
}

#[tokio::test]
async fn a_body_without_its_final_line_or_with_lines_after_it_is_a_protocol_error() {
    for parts in [
        lines(&[br#"{"event":"stdout","data":"x"}"#]),
        lines(&[FINAL_REPL, br#"{"event":"stdout","data":"late"}"#]),
        vec![b"{\"jsonrpc\":\"2.0\",\"id\":1,\"res".to_vec()],
    ] {
        let (url, _) = stub(Script {
            streaming: true,
            parts,
            stall: false,
        })
        .await;
        let (events, error) = drain(&backend(&url, 1 << 20), &code(5)).await;
        assert!(
            !events.iter().any(|e| matches!(e, ExecEvent::Finished(_))),
            "{events:?}"
        );
        assert_eq!(error.expect("no result").kind(), ErrorKind::Protocol);
    }
}

#[tokio::test]
async fn a_stall_past_the_timeout_and_grace_is_a_timeout_that_leaves_the_sandbox_unusable() {
    let (url, _) = stub(Script::stalling(lines(&[br#"{"event":"stdout","data":"x"}"#]))).await;
    let (events, error) = drain(&backend(&url, 1 << 20), &code(1)).await;
    assert!(error.is_none(), "{error:?}");
    assert_eq!(events[0], ExecEvent::Stdout("x".into()));
    let Some(ExecEvent::Finished(out)) = events.last() else {
        panic!("{events:?}")
    };
    common::assert_timed_out_unusable(out);
}

#[tokio::test]
async fn a_streamed_command_carries_its_exit_code() {
    let (url, _) = stub(Script::stream(lines(&[
            br#"{"event":"stderr","data":"e"}"#,
            br#"{"jsonrpc":"2.0","id":1,"result":{"command":"sh","args":[],"exit_code":3,"success":false,"output":[{"stream":"stderr","text":"e"}]}}"#,
        ])))
    .await;
    let backend = backend(&url, 1 << 20);
    let request = common::command_request("sh", &[], Duration::from_secs(5));
    let events: Vec<_> = backend
        .run_command_stream(&id(), &request)
        .await
        .unwrap()
        .collect::<Vec<_>>()
        .await;
    assert_eq!(events[0].as_ref().unwrap(), &ExecEvent::Stderr("e".into()));
    let Ok(ExecEvent::Finished(out)) = &events[1] else {
        panic!("{events:?}")
    };
    assert_eq!(out.exit_code, Some(3));
}
