//! The real `msbw serve` binary under load: 2,000 idle half-open connections do not stop it
//! answering, and the server closes them itself; an idle keep-alive connection does not hold
//! SIGTERM shutdown.

#![allow(clippy::unwrap_used)] // test helpers may unwrap

use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

/// Idle half-open connections held against the server.
const HELD: usize = 2_000;

/// Raises this process's open-file limit (the server inherits it) to at least `want`.
#[allow(unsafe_code)]
fn raise_nofile(want: u64) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct they are given.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        if limit.rlim_cur < want {
            limit.rlim_cur = want.min(limit.rlim_max);
            assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
        }
    }
    assert!(
        limit.rlim_cur >= want,
        "this test needs {want} open files; the hard limit is {}",
        limit.rlim_max
    );
}

/// `msbw serve --dev` on a free port with a clean environment; returns it and its address.
async fn serve(dir: &std::path::Path, extra: &[&str]) -> (Child, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_msbw"));
    for (k, _) in std::env::vars() {
        if k.starts_with("MSB_") || k.starts_with("MSBW_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("MSB_BACKEND", "local")
        .current_dir(dir)
        .args(["serve", "--dev", "--port", "0"])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    let addr = loop {
        let mut line = String::new();
        assert!(
            stderr.read_line(&mut line).await.unwrap() > 0,
            "msbw serve printed no address: {seen}"
        );
        seen.push_str(&line);
        if let Some(url) = line.split_whitespace().find(|w| w.starts_with("http://")) {
            break url.trim_start_matches("http://").to_owned();
        }
    };
    // Keep draining its log so it never blocks on a full pipe.
    tokio::spawn(async move {
        let mut rest = String::new();
        let _ = stderr.read_to_string(&mut rest).await;
    });
    (child, addr)
}

/// One health request on a fresh connection; returns the status line.
async fn health(addr: &str) -> String {
    let mut conn = TcpStream::connect(addr).await.unwrap();
    conn.write_all(b"GET /api/v1/health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    conn.read_to_string(&mut answer).await.unwrap();
    answer.lines().next().unwrap_or("").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_half_open_connections_neither_stop_answers_nor_stay_open() {
    raise_nofile(3 * HELD as u64 + 200);
    let dir = tempfile::tempdir().unwrap();
    let (mut child, addr) = serve(dir.path(), &[]).await;
    let opened = Instant::now();
    let mut held = Vec::with_capacity(HELD);
    for _ in 0..HELD {
        let mut conn = TcpStream::connect(&addr).await.unwrap();
        conn.write_all(b"POST /api/v1/rpc HTTP/1.1\r\nHost: t\r\nContent-Ty")
            .await
            .unwrap();
        held.push(conn);
    }

    let asked = Instant::now();
    let status = tokio::time::timeout(Duration::from_secs(1), health(&addr))
        .await
        .expect("health answers within a second with 2,000 half-open connections held");
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    println!("health answered in {:?} with {HELD} connections held", asked.elapsed());

    // Each held connection waits for the server to close it.
    let mut waiting = tokio::task::JoinSet::new();
    for mut conn in held {
        waiting.spawn(async move {
            let mut buf = [0u8; 512];
            while !matches!(conn.read(&mut buf).await, Ok(0) | Err(_)) {}
        });
    }
    let deadline = tokio::time::Instant::from_std(opened + Duration::from_secs(30));
    let mut closed = 0;
    while closed * 10 < HELD * 9 {
        match tokio::time::timeout_at(deadline, waiting.join_next()).await {
            Ok(Some(_)) => closed += 1,
            Ok(None) => break,
            Err(_) => panic!("only {closed} of {HELD} connections closed by the server within 30 s"),
        }
    }
    println!(
        "{closed} of {HELD} connections closed by the server after {:?}",
        opened.elapsed()
    );
    assert_eq!(health(&addr).await.split_whitespace().nth(1), Some("200"), "still up");
    child.kill().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_does_not_hold_sigterm_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    // The idle connection would otherwise stay open for ten minutes.
    let (mut child, addr) = serve(dir.path(), &["--header-timeout", "600"]).await;
    let mut idle = TcpStream::connect(&addr).await.unwrap();
    idle.write_all(b"GET /api/v1/health HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = idle.read(&mut buf).await.unwrap();
    let head = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        !head.to_ascii_lowercase().contains("connection: close"),
        "kept alive: {head}"
    );

    let pid = child.id().unwrap().to_string();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = tokio::time::timeout(Duration::from_secs(5), child.wait())
        .await
        .expect("msbw serve exits within 5 s of SIGTERM with an idle keep-alive connection open")
        .unwrap();
    assert_eq!(exit.code(), Some(0));
    let closed = tokio::time::timeout(Duration::from_secs(1), idle.read(&mut buf)).await;
    assert!(
        matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
        "the idle connection was closed"
    );
}
