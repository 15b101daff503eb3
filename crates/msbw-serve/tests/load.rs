//! Serve under load, on loopback over the fake backend: headers, bodies and idle keep-alive
//! connections have time limits, the number of connections is bounded, and shutdown does not
//! wait for clients.

#![allow(clippy::unwrap_used)] // test helpers may unwrap

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use microsandbox_wrapper::backend::fake::FakeBackend;
use microsandbox_wrapper::{MicrosandboxWrapper, WrapperConfig};
use msbw_serve::{Limits, ServeOptions};
use support::Served;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Longer than any wait below is expected to take.
const DEADLINE: Duration = Duration::from_secs(10);

async fn serve(limits: Limits) -> Served {
    let wrapper = MicrosandboxWrapper::with_backend(WrapperConfig::default(), Arc::new(FakeBackend::new())).unwrap();
    let options = ServeOptions {
        limits,
        ..Default::default()
    };
    Served::start(wrapper, options).await
}

const HEALTH: &[u8] = b"GET /api/v1/health HTTP/1.1\r\nHost: test\r\n\r\n";

/// A new connection to `addr` on which `request` (whole or only its start) is sent.
async fn send(addr: SocketAddr, request: &[u8]) -> TcpStream {
    let mut conn = TcpStream::connect(addr).await.unwrap();
    conn.write_all(request).await.unwrap();
    conn
}

/// Reads one answer (headers and a `Content-Length` body) from a keep-alive connection.
async fn read_answer(stream: &mut TcpStream) -> String {
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(DEADLINE, stream.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(
            n > 0,
            "closed before the answer was complete: {}",
            String::from_utf8_lossy(&data)
        );
        data.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&data).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let length: usize = text[..end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap())
                })
                .unwrap_or(0);
            if data.len() >= end + 4 + length {
                return text;
            }
        }
    }
}

/// Waits until the server closes the connection (EOF or reset); fails after [`DEADLINE`].
async fn closed_by_server(stream: &mut TcpStream) {
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(DEADLINE, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return,
            Ok(Ok(_)) => continue,
            Err(_) => panic!("the server kept the connection open for {DEADLINE:?}"),
        }
    }
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_header_timeout() {
    let s = serve(Limits {
        header_read_timeout: Duration::from_secs(1),
        ..Limits::default()
    })
    .await;
    let mut conn = send(s.addr, HEALTH).await;
    let answer = read_answer(&mut conn).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        !answer.to_ascii_lowercase().contains("connection: close"),
        "kept alive: {answer}"
    );
    closed_by_server(&mut conn).await;

    let mut half = send(s.addr, b"GET /api/v1/health HTTP/1.1\r\nHost: te").await;
    closed_by_server(&mut half).await;
    s.stop().await;
}

#[tokio::test]
async fn a_body_that_does_not_arrive_in_time_is_a_408_and_the_connection_closes() {
    let s = serve(Limits {
        body_read_timeout: Duration::from_secs(1),
        ..Limits::default()
    })
    .await;
    let mut conn = send(
        s.addr,
        b"POST /api/v1/rpc HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"jsonrpc\"",
    )
    .await;
    let answer = read_answer(&mut conn).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    closed_by_server(&mut conn).await;
    s.stop().await;
}

#[tokio::test]
async fn at_the_connection_limit_new_connections_wait_until_one_closes() {
    let s = serve(Limits {
        max_connections: 2,
        header_read_timeout: Duration::from_secs(600),
        ..Limits::default()
    })
    .await;
    let first = TcpStream::connect(s.addr).await.unwrap();
    let _second = TcpStream::connect(s.addr).await.unwrap();
    let mut third = send(s.addr, HEALTH).await; // in the backlog
    let mut buf = [0u8; 64];
    assert!(
        tokio::time::timeout(Duration::from_millis(300), third.read(&mut buf))
            .await
            .is_err(),
        "a third connection is not served while two are open"
    );
    drop(first);
    let answer = read_answer(&mut third).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "served once one closed: {answer}");
    s.stop().await;
}

#[tokio::test]
async fn shutdown_closes_idle_connections_at_once_and_does_not_wait_for_half_sent_requests() {
    let s = serve(Limits {
        header_read_timeout: Duration::from_secs(600),
        shutdown_grace: Duration::from_secs(1),
        ..Limits::default()
    })
    .await;
    let mut idle = send(s.addr, HEALTH).await;
    read_answer(&mut idle).await;
    let mut half = send(s.addr, b"POST /api/v1/rpc HTTP/1.1\r\nHost: te").await;
    let stopped = s.stop();
    closed_by_server(&mut idle).await;
    tokio::time::timeout(DEADLINE, stopped)
        .await
        .expect("shutdown is bounded whatever clients do");
    closed_by_server(&mut half).await;
}
