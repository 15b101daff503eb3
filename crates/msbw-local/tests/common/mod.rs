//! Helpers shared by the integration tests: backends, unique sandbox names, a started
//! [`Sandbox`] with short calls, and polls of the host's process table with a deadline.

#![allow(dead_code, unreachable_pub)]

use std::path::Path;
use std::sync::Arc;
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
pub fn backend() -> Arc<LocalBackend> {
    backend_with(|_| {})
}

/// A backend with the default settings as changed by `configure`.
pub fn backend_with(configure: impl FnOnce(&mut LocalConfig)) -> Arc<LocalBackend> {
    let mut config = LocalConfig::default();
    configure(&mut config);
    Arc::new(LocalBackend::new(config))
}

/// A backend that keeps its sandboxes' directories in `dir`.
pub fn backend_in(dir: &Path) -> Arc<LocalBackend> {
    backend_with(|config| config.temp_dir = Some(dir.to_owned()))
}

/// A spec for `template` with a unique name.
pub fn spec(prefix: &str, template: Template) -> SandboxSpec {
    let mut spec = SandboxSpec::new(unique_id(prefix), template);
    spec.memory_mb = 512;
    spec.start_timeout = Duration::from_secs(60);
    spec
}

/// Runs code with a timeout, panicking if the backend fails (an execution that fails is an
/// output, not an error).
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

/// Runs a command with a timeout, panicking if the backend fails.
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

/// A started sandbox with the backend that runs it, so that each call names only what differs:
/// `sandbox.python("print(1)")`. Calls that should finish quickly have [`QUICK`] as timeout.
pub struct Sandbox {
    /// The backend the sandbox runs on (shared with the test and its other sandboxes).
    pub backend: Arc<LocalBackend>,
    /// The sandbox.
    pub id: SandboxId,
    /// The language of its interpreter.
    pub template: Template,
}

impl Sandbox {
    /// Starts a sandbox of `template` named after `prefix` with the test spec ([`spec`]), on a
    /// backend of its own with the default settings.
    pub async fn new(prefix: &str, template: Template) -> Self {
        Self::start(&backend(), &spec(prefix, template)).await
    }

    /// [`Sandbox::new`], and a [`marker`] named after `prefix` for finding its processes on the
    /// host.
    pub async fn with_marker(prefix: &str, template: Template) -> (Self, String) {
        (Self::new(prefix, template).await, marker(prefix))
    }

    /// Starts a sandbox for `spec` on `backend`, panicking with the error if it cannot.
    pub async fn start(backend: &Arc<LocalBackend>, spec: &SandboxSpec) -> Self {
        backend
            .start(spec)
            .await
            .unwrap_or_else(|e| panic!("start {}: {e}", spec.id));
        Sandbox {
            backend: backend.clone(),
            id: spec.id.clone(),
            template: spec.template,
        }
    }

    /// Starts a sandbox for `spec` on `backend`, runs `sh -c script` in it and stops it.
    pub async fn shell_once(backend: &Arc<LocalBackend>, spec: &SandboxSpec, script: &str) -> ExecOutput {
        let sandbox = Self::start(backend, spec).await;
        let out = sandbox.shell(script).await;
        sandbox.stop().await;
        out
    }

    /// Runs code in `language` with a timeout.
    pub async fn code_with(&self, language: Template, source: &str, timeout: Duration) -> ExecOutput {
        code_with(&self.backend, &self.id, language, source, timeout).await
    }

    /// Runs code in the sandbox's own language that should finish quickly.
    pub async fn code(&self, source: &str) -> ExecOutput {
        self.code_with(self.template, source, QUICK).await
    }

    /// Runs Python code that should finish quickly.
    pub async fn python(&self, source: &str) -> ExecOutput {
        self.code_with(Template::Python, source, QUICK).await
    }

    /// Runs JavaScript that should finish quickly.
    pub async fn node(&self, source: &str) -> ExecOutput {
        self.code_with(Template::Node, source, QUICK).await
    }

    /// Runs a command with a timeout.
    pub async fn command_with(&self, program: &str, args: &[&str], timeout: Duration) -> ExecOutput {
        command_with(&self.backend, &self.id, program, args, timeout).await
    }

    /// Runs a command that should finish quickly.
    pub async fn command(&self, program: &str, args: &[&str]) -> ExecOutput {
        self.command_with(program, args, QUICK).await
    }

    /// Runs `sh -c script`.
    pub async fn shell(&self, script: &str) -> ExecOutput {
        self.command("sh", &["-c", script]).await
    }

    /// Runs `source` in the sandbox's language and asserts that it completed printing exactly
    /// `stdout` (a failure names the source); returns the output for further checks.
    pub async fn assert_prints(&self, source: &str, stdout: &str) -> ExecOutput {
        let out = self.code(source).await;
        assert_eq!(
            (out.status, out.stdout.as_str()),
            (ExecStatus::Completed, stdout),
            "{source}: {out:?}"
        );
        out
    }

    /// Runs `source` in the sandbox's language and asserts that it raised with `needle` in its
    /// stderr (a failure names the source); returns the output for further checks.
    pub async fn assert_raises(&self, source: &str, needle: &str) -> ExecOutput {
        let out = self.code(source).await;
        assert_eq!(out.status, ExecStatus::Raised, "{source}: {out:?}");
        assert!(
            out.stderr.contains(needle),
            "{source}: no {needle:?} in stderr: {out:?}"
        );
        out
    }

    /// Stops the sandbox, panicking with the error if it cannot.
    pub async fn stop(self) {
        self.backend
            .stop(&self.id)
            .await
            .unwrap_or_else(|e| panic!("stop {}: {e}", self.id));
    }
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

/// Polls (up to `limit`) the host processes whose command line contains `needle` until `done`
/// holds for them; returns the last ones seen.
fn poll_processes(needle: &str, limit: Duration, done: impl Fn(&[(u32, String)]) -> bool) -> Vec<(u32, String)> {
    let mut seen = Vec::new();
    eventually(limit, || {
        seen = host_processes_with(needle);
        done(&seen)
    });
    seen
}

/// Waits (up to `limit`) until no host process's command line contains `needle`; returns the
/// ones still there.
pub fn wait_until_gone(needle: &str, limit: Duration) -> Vec<(u32, String)> {
    poll_processes(needle, limit, |found| found.is_empty())
}

/// Waits (up to `limit`) until some host process's command line contains `needle`; returns
/// them (empty if none appeared).
pub fn wait_until_present(needle: &str, limit: Duration) -> Vec<(u32, String)> {
    poll_processes(needle, limit, |found| !found.is_empty())
}

/// Python that starts a background `sleep 300` whose command line carries `tag`, and prints its
/// pid: a process to find in (and then miss from) the host's process table.
pub fn background(tag: &str) -> String {
    format!("import subprocess\nchild = subprocess.Popen(['sh', '-c', 'sleep 300; : {tag}'])\nprint(child.pid)")
}

/// A marker unique to one test run, for finding processes by command line.
pub fn marker(what: &str) -> String {
    format!(
        "msbw-marker-{what}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}
