//! Helpers shared by the integration tests: a backend, unique sandbox names, short calls.

#![allow(dead_code, unreachable_pub)]

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use msbw_backend::{
    Aftermath, CodeRequest, CommandRequest, ExecOutput, ExecStatus, SandboxBackend, SandboxId, SandboxSpec, Template,
};
use msbw_local::{LocalBackend, LocalConfig};

/// Asserts that `out` is a timeout that left the sandbox `aftermath`, showing all of `out`
/// otherwise.
#[track_caller]
pub fn assert_timed_out(out: &ExecOutput, aftermath: Aftermath) {
    assert!(
        matches!(out.status, ExecStatus::TimedOut { aftermath: a, .. } if a == aftermath),
        "not a timeout with {aftermath:?}: {out:?}"
    );
}

/// A generous timeout for calls that should finish quickly (the machine may be busy).
pub const QUICK: Duration = Duration::from_secs(30);

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A sandbox id no other test uses.
pub fn unique_id(prefix: &str) -> SandboxId {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    SandboxId::new("test", format!("{prefix}-{}-{n}", std::process::id())).expect("valid id")
}

/// A backend with the default settings.
pub fn backend() -> LocalBackend {
    LocalBackend::new(LocalConfig::default())
}

/// A spec for `template` with a unique name.
pub fn spec(prefix: &str, template: Template) -> SandboxSpec {
    let mut spec = SandboxSpec::new(unique_id(prefix), template);
    spec.memory_mb = 512;
    spec.start_timeout = Duration::from_secs(60);
    spec
}

/// Starts a sandbox for `spec`, panicking with the error if it cannot.
pub async fn start(backend: &LocalBackend, spec: &SandboxSpec) -> SandboxId {
    backend
        .start(spec)
        .await
        .unwrap_or_else(|e| panic!("start {}: {e}", spec.id));
    spec.id.clone()
}

/// Runs code with a timeout.
pub async fn code_with(
    backend: &LocalBackend,
    id: &SandboxId,
    language: Template,
    source: &str,
    timeout: Duration,
) -> ExecOutput {
    let request = CodeRequest {
        language,
        code: source.to_owned(),
        timeout,
    };
    backend
        .run_code(id, &request)
        .await
        .unwrap_or_else(|e| panic!("run_code {source:?}: {e}"))
}

/// Runs Python code that should finish quickly.
pub async fn python(backend: &LocalBackend, id: &SandboxId, source: &str) -> ExecOutput {
    code_with(backend, id, Template::Python, source, QUICK).await
}

/// Runs JavaScript that should finish quickly.
pub async fn node(backend: &LocalBackend, id: &SandboxId, source: &str) -> ExecOutput {
    code_with(backend, id, Template::Node, source, QUICK).await
}

/// Runs a command with a timeout.
pub async fn command_with(
    backend: &LocalBackend,
    id: &SandboxId,
    program: &str,
    args: &[&str],
    timeout: Duration,
) -> ExecOutput {
    let request = CommandRequest {
        command: program.to_owned(),
        args: args.iter().map(|a| (*a).to_owned()).collect(),
        timeout,
    };
    backend
        .run_command(id, &request)
        .await
        .unwrap_or_else(|e| panic!("run_command {program} {args:?}: {e}"))
}

/// Runs a command that should finish quickly.
pub async fn command(backend: &LocalBackend, id: &SandboxId, program: &str, args: &[&str]) -> ExecOutput {
    command_with(backend, id, program, args, QUICK).await
}

/// Runs `sh -c script`.
pub async fn shell(backend: &LocalBackend, id: &SandboxId, script: &str) -> ExecOutput {
    command(backend, id, "sh", &["-c", script]).await
}

/// The command lines of every process on the host that contain `needle`.
pub fn host_processes_with(needle: &str) -> Vec<(u32, String)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        if let Ok(bytes) = std::fs::read(entry.path().join("cmdline")) {
            let line = String::from_utf8_lossy(&bytes).replace('\0', " ");
            if line.contains(needle) {
                found.push((pid, line));
            }
        }
    }
    found
}

/// Polls `done` every 20 ms until it holds or `limit` passes; returns whether it held.
#[allow(dead_code)]
pub fn eventually(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if done() {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits (up to `limit`) until no host process's command line contains `needle`; returns the
/// ones still there.
pub fn wait_until_gone(needle: &str, limit: Duration) -> Vec<(u32, String)> {
    let deadline = std::time::Instant::now() + limit;
    loop {
        let left = host_processes_with(needle);
        if left.is_empty() || std::time::Instant::now() >= deadline {
            return left;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits (up to `limit`) until some host process's command line contains `needle`; returns
/// them (empty if none appeared).
pub fn wait_until_present(needle: &str, limit: Duration) -> Vec<(u32, String)> {
    let deadline = std::time::Instant::now() + limit;
    loop {
        let found = host_processes_with(needle);
        if !found.is_empty() || std::time::Instant::now() >= deadline {
            return found;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A marker unique to one test run, for finding processes by command line.
pub fn marker(what: &str) -> String {
    format!(
        "msbw-marker-{what}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}
