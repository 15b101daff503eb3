//! `msbw mcp` driven by a client nobody on this project wrote: the official MCP Python SDK
//! (PyPI `mcp`), installed into a venv under ~/.cache/msbw-mcp-venv (or $MSBW_MCP_VENV) on first
//! use. Over stdio and over streamable HTTP, on the local backend with real sandboxes.

mod support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use support::{msbw, processes_with_argv, wait_within};

const CLIENT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/mcp/client.py");
const ISOLATION: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/mcp/isolation.py");
const FILES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/mcp/files.py");
const PROGRESS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/mcp/progress.py");

/// The venv's python with `mcp` importable; created (once per test process) when missing.
fn python() -> PathBuf {
    static LOCK: Mutex<()> = Mutex::new(());
    let _held = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let venv = std::env::var_os("MSBW_MCP_VENV").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into())).join(".cache/msbw-mcp-venv")
    });
    let py = venv.join("bin/python");
    let ready = |py: &Path| {
        Command::new(py)
            .args(["-c", "import mcp, httpx2"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !ready(&py) {
        let ok = Command::new("python3").arg("-m").arg("venv").arg(&venv).status();
        assert!(
            ok.is_ok_and(|s| s.success()),
            "python3 -m venv {venv:?} (needs python3-venv)"
        );
        let ok = Command::new(venv.join("bin/pip"))
            .args(["install", "--quiet", "mcp>=2,<3"])
            .status();
        assert!(ok.is_ok_and(|s| s.success()), "pip install mcp");
        assert!(ready(&py), "mcp importable after pip install");
    }
    py
}

/// A unique number of seconds for `sleep`, so the host process table shows this test's sleeps.
/// Runs the Python client `cmd` to its end (killed after `limit`), its output captured.
fn run_client(cmd: &mut Command, limit: Duration) -> std::process::Output {
    wait_within(
        cmd.stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("python runs"),
        limit,
    )
}

fn marker() -> String {
    format!("{}.{}", 7000 + std::process::id() % 1000, fastrand_like())
}

fn fastrand_like() -> u32 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    t % 100_000 + 1
}

/// The environment `msbw` gets: like support::msbw (no MSB_* from the caller, the local
/// backend), the session limit 1, and a private temporary directory for the sandboxes' dirs.
fn env_for(cmd: &mut Command, tmp: &Path) {
    for (k, _) in std::env::vars() {
        if k.starts_with("MSB_") || k.starts_with("MSBW_") {
            cmd.env_remove(k);
        }
    }
    // Each server its own owner mark: with a shared one, a server starting would stop the
    // other tests' sandboxes as orphans.
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let mark = format!("mcpt{}", NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
    cmd.env("MSB_BACKEND", "local")
        .env("MSB_OWNER_MARK", mark)
        .env("MSB_MAX_SESSIONS", "1")
        .env("TMPDIR", tmp)
        .current_dir(tmp);
}

/// What is left in `dir`, leaving out the owner lease folder every manager uses (a lease file
/// in it would be a live owner's: it is removed at shutdown and checked separately).
fn entries(dir: &Path) -> Vec<String> {
    let leases = dir.join("msbw-owners");
    let mut left: Vec<String> = std::fs::read_dir(&leases)
        .map(|d| {
            d.flatten()
                .map(|e| format!("msbw-owners/{}", e.file_name().to_string_lossy()))
                .collect()
        })
        .unwrap_or_default();
    left.extend(
        std::fs::read_dir(dir)
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|name| name != "msbw-owners")
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default(),
    );
    left
}

/// Runs a client script (which starts `msbw mcp` over stdio) with `args`; returns its temporary
/// folder (sandboxes' dirs in `sandboxes/`), its JSON line and its stderr.
fn stdio_client(args: &[&str]) -> (tempfile::TempDir, serde_json::Value, String) {
    let py = python();
    let tmp = tempfile::tempdir().expect("tempdir");
    let sandboxes = tmp.path().join("sandboxes");
    std::fs::create_dir(&sandboxes).expect("mkdir");
    let mut cmd = Command::new(&py);
    cmd.args(args);
    env_for(&mut cmd, &sandboxes);
    let out = run_client(&mut cmd, Duration::from_secs(240));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "client failed:\n{stdout}\n{stderr}");
    let seen: serde_json::Value = serde_json::from_str(stdout.trim()).expect("the client's JSON line");
    (tmp, seen, stderr)
}

#[test]
fn stdio_session_lifecycle_with_the_python_sdk() {
    let marker = marker();
    let (tmp, seen, stderr) = stdio_client(&[CLIENT, "stdio", env!("CARGO_BIN_EXE_msbw"), &marker]);
    let sandboxes = tmp.path().join("sandboxes");
    assert_eq!(seen["progress"], 3, "started, the chunk \"p\\n\", finished: {seen}");
    assert_eq!(seen["kept_after_cancel"], true, "{seen}");
    // The server stopped the session left running when stdin closed.
    assert!(stderr.contains("msbw mcp: stopped 1 sandbox"), "{stderr}");
    let left = format!("{marker}1");
    assert!(
        processes_with_argv(&["sleep", &left]).is_empty(),
        "a sandbox process outlived the server"
    );
    assert!(
        processes_with_argv(&["sleep", &marker]).is_empty(),
        "the cancelled run outlived the server"
    );
    assert!(
        entries(&sandboxes).is_empty(),
        "sandbox dirs left: {:?}",
        entries(&sandboxes)
    );
    // Logs never go to stdout: the client would have failed on a non-JSON line.
    assert!(!stderr.contains("FAILED"), "{stderr}");
}

#[test]
fn stdio_output_streams_as_progress_and_cancel_ends_the_run() {
    let marker = marker();
    let (_tmp, seen, stderr) = stdio_client(&[PROGRESS, env!("CARGO_BIN_EXE_msbw"), &marker]);
    assert_eq!(seen["ok"], true, "{seen}\n{stderr}");
    assert_eq!(seen["a_before_result"], true, "{seen}");
    let chunks: String = seen["chunks"]
        .as_array()
        .map(|c| c.iter().filter_map(|m| m.as_str()).collect())
        .unwrap_or_default();
    assert_eq!(chunks, "a\nb\n", "{seen}");
    assert!(
        processes_with_argv(&["sleep", &marker]).is_empty(),
        "the cancelled run outlived the server"
    );
}

#[test]
fn stdio_file_tools_with_the_python_sdk() {
    let (tmp, seen, stderr) = stdio_client(&[FILES, env!("CARGO_BIN_EXE_msbw")]);
    let sandboxes = tmp.path().join("sandboxes");
    assert_eq!(seen["ok"], true, "{seen}");
    assert!(stderr.contains("msbw mcp: stopped 1 sandbox"), "{stderr}");
    assert!(
        entries(&sandboxes).is_empty(),
        "sandbox dirs left: {:?}",
        entries(&sandboxes)
    );
}

/// Starts `msbw mcp --http` on a free loopback port; returns the child and its URL.
fn start_http(tmp: &Path, extra: &[&str], token: Option<&str>) -> (std::process::Child, String) {
    let mut cmd = msbw(tmp);
    cmd.args(["mcp", "--http", "--port", "0"]).args(extra);
    env_for(&mut cmd, tmp);
    if token.is_none() {
        // The isolation test needs a session per client.
        cmd.env("MSB_MAX_SESSIONS", "2");
    }
    if let Some(t) = token {
        cmd.env("MSB_MCP_TOKEN", t);
    }
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("msbw runs");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stderr).lines();
        let mut sent = false;
        let mut rest = String::new();
        while let Some(Ok(line)) = lines.next() {
            if !sent && let Some(url) = line.split("listening on ").nth(1) {
                let _ = tx.send(url.split_whitespace().next().unwrap_or_default().to_owned());
                sent = true;
            }
            rest.push_str(&line);
            rest.push('\n');
        }
        let _ = tx.send(rest);
    });
    let url = rx.recv_timeout(Duration::from_secs(60)).expect("msbw mcp listening");
    STDERR.with(|s| *s.borrow_mut() = Some(rx));
    (child, url)
}

thread_local! {
    static STDERR: std::cell::RefCell<Option<std::sync::mpsc::Receiver<String>>> = const { std::cell::RefCell::new(None) };
}

fn terminate(child: std::process::Child) -> (i32, String) {
    let pid = child.id().to_string();
    let _ = Command::new("kill").args(["-TERM", &pid]).status();
    let out = wait_within(child, Duration::from_secs(60));
    let rest = STDERR.with(|s| {
        s.borrow_mut()
            .take()
            .and_then(|rx| rx.recv_timeout(Duration::from_secs(10)).ok())
    });
    (out.status.code().unwrap_or(-1), rest.unwrap_or_default())
}

#[test]
fn http_session_lifecycle_with_the_python_sdk() {
    let py = python();
    let tmp = tempfile::tempdir().expect("tempdir");
    let marker = marker();
    let (child, url) = start_http(tmp.path(), &[], Some("t0ken"));
    let mut cmd = Command::new(&py);
    cmd.args([CLIENT, "http", &url, &marker, "t0ken"]);
    env_for(&mut cmd, tmp.path());
    let out = run_client(&mut cmd, Duration::from_secs(240));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let client_err = String::from_utf8_lossy(&out.stderr).into_owned();
    let left = format!("{marker}1");
    // The server outlives its clients: the left-running session is still there.
    let still = processes_with_argv(&["sleep", &left]);
    let (code, stderr) = terminate(child);
    assert!(
        out.status.success(),
        "client failed:\n{stdout}\n{client_err}\nserver:\n{stderr}"
    );
    assert!(!still.is_empty(), "the session should live until the server stops");
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("msbw mcp: stopped 1 sandbox"), "{stderr}");
    assert!(
        processes_with_argv(&["sleep", &left]).is_empty(),
        "a sandbox process outlived the server"
    );
    assert!(!stderr.contains("t0ken"), "the token is never logged");
}

#[test]
fn http_mcp_sessions_do_not_see_each_others_sessions() {
    let py = python();
    let tmp = tempfile::tempdir().expect("tempdir");
    let (child, url) = start_http(tmp.path(), &[], None);
    let mut cmd = Command::new(&py);
    cmd.args([ISOLATION, &url]).current_dir(tmp.path());
    let out = run_client(&mut cmd, Duration::from_secs(180));
    let (code, stderr) = terminate(child);
    assert!(
        out.status.success(),
        "{}\n{}\nserver:\n{stderr}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("msbw mcp: stopped 2 sandboxes"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_checks_origin_and_token() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (child, url) = start_http(tmp.path(), &[], Some("t0ken"));
    let init = serde_json::json!({
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}
    });
    let http = reqwest::Client::new();
    let post = |origin: Option<&str>, token: Option<&str>| {
        let mut r = http
            .post(&url)
            .header("accept", "application/json, text/event-stream")
            .json(&init);
        if let Some(o) = origin {
            r = r.header("origin", o);
        }
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send()
    };
    let status = |r: reqwest::Result<reqwest::Response>| r.map(|r| r.status().as_u16()).unwrap_or(0);
    assert_eq!(status(post(Some("http://evil.example"), Some("t0ken")).await), 403);
    assert_eq!(status(post(None, None).await), 401);
    assert_eq!(status(post(None, Some("wrong")).await), 401);
    assert_eq!(status(post(Some("http://localhost:6274"), Some("t0ken")).await), 200);
    let (code, _) = terminate(child);
    assert_eq!(code, 0);
}

#[test]
fn http_off_loopback_needs_a_token() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut cmd = msbw(tmp.path());
    cmd.args(["mcp", "--http", "--host", "0.0.0.0", "--port", "0"]);
    let out = wait_within(
        cmd.stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("msbw runs"),
        Duration::from_secs(60),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("MSB_MCP_TOKEN"));
}
