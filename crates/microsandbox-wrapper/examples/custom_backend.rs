//! A complete custom backend: `PolicyBackend` wraps any other backend and enforces a policy of
//! its own before anything reaches it:
//!
//! - only commands on an allow-list may run (code is unaffected);
//! - every call is counted and timed, and the figures can be read at any time.
//!
//! It implements every method of `SandboxBackend`, passes the conformance suite (see
//! `tests/custom_backend.rs`), and plugs into the wrapper with `MicrosandboxWrapper::with_backend`.
//!
//! It needs only this crate (and an async runtime): the trait, its types and `#[async_trait]` are
//! re-exported by `microsandbox-wrapper`, and the conformance suite is its `conformance` feature:
//!
//! ```toml
//! [dependencies]
//! microsandbox-wrapper = { path = "...", features = ["conformance"] }
//! tokio = { version = "1", features = ["macros", "rt-multi-thread"] }
//! ```
//!
//! Run it with `cargo run -p microsandbox-wrapper --example custom_backend --features conformance`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use microsandbox_wrapper::async_trait;
use microsandbox_wrapper::backend::{
    BackendError, Capabilities, CodeRequest, CommandRequest, ErrorKind, ExecOutput, Health, ListFilter, Operation,
    SandboxBackend, SandboxId, SandboxInfo, SandboxSpec,
};

/// Per-operation call counts and total time.
#[derive(Debug, Default, Clone)]
pub struct CallStats {
    /// Calls per operation name.
    pub calls: BTreeMap<&'static str, u64>,
    /// Total time per operation name.
    pub time: BTreeMap<&'static str, Duration>,
    /// Commands refused by the policy.
    pub refused: u64,
}

/// A backend that enforces a command allow-list and records every call, over any inner backend.
#[derive(Debug)]
pub struct PolicyBackend<B> {
    inner: B,
    allowed_commands: Vec<String>,
    stats: Arc<Mutex<CallStats>>,
}

impl<B: SandboxBackend> PolicyBackend<B> {
    /// Wraps `inner`; only `allowed_commands` may run as commands.
    pub fn new(inner: B, allowed_commands: &[&str]) -> Self {
        PolicyBackend {
            inner,
            allowed_commands: allowed_commands.iter().map(|c| (*c).to_owned()).collect(),
            stats: Arc::default(),
        }
    }

    /// The figures so far.
    pub fn stats(&self) -> CallStats {
        self.stats.lock().map(|s| s.clone()).unwrap_or_default()
    }

    async fn timed<T>(&self, op: &'static str, call: impl std::future::Future<Output = T>) -> T {
        let started = Instant::now();
        let out = call.await;
        if let Ok(mut s) = self.stats.lock() {
            *s.calls.entry(op).or_default() += 1;
            *s.time.entry(op).or_default() += started.elapsed();
        }
        out
    }
}

#[async_trait]
impl<B: SandboxBackend> SandboxBackend for PolicyBackend<B> {
    fn name(&self) -> &'static str {
        "policy"
    }

    async fn capabilities(&self) -> Capabilities {
        self.inner.capabilities().await
    }

    async fn health(&self) -> Result<Health, BackendError> {
        self.timed("health", self.inner.health()).await
    }

    async fn start(&self, spec: &SandboxSpec) -> Result<(), BackendError> {
        self.timed("start", self.inner.start(spec)).await
    }

    async fn stop(&self, id: &SandboxId) -> Result<(), BackendError> {
        self.timed("stop", self.inner.stop(id)).await
    }

    async fn run_code(&self, id: &SandboxId, request: &CodeRequest) -> Result<ExecOutput, BackendError> {
        self.timed("run_code", self.inner.run_code(id, request)).await
    }

    async fn run_command(&self, id: &SandboxId, request: &CommandRequest) -> Result<ExecOutput, BackendError> {
        if !self.allowed_commands.contains(&request.command) {
            if let Ok(mut s) = self.stats.lock() {
                s.refused += 1;
            }
            return Err(BackendError::new(
                ErrorKind::Rejected,
                Operation::RunCommand,
                format!(
                    "command {:?} is not on the allow-list {:?}",
                    request.command, self.allowed_commands
                ),
            )
            .with_backend(self.name())
            .with_sandbox(id));
        }
        self.timed("run_command", self.inner.run_command(id, request)).await
    }

    async fn list(&self, filter: &ListFilter) -> Result<Vec<SandboxInfo>, BackendError> {
        self.timed("list", self.inner.list(filter)).await
    }
}

#[allow(dead_code)]
fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        use microsandbox_wrapper::{CodeCall, CommandCall, LocalBackend, MicrosandboxWrapper, WrapperConfig};
        let config = WrapperConfig::from_env().expect("a valid MSB_* configuration");
        let local = LocalBackend::from_config(&config).expect("valid local-backend settings");
        let backend = Arc::new(PolicyBackend::new(local, &["echo", "ls"]));
        let wrapper = MicrosandboxWrapper::with_backend(config, backend.clone()).expect("a wrapper");
        let result = wrapper
            .clone()
            .scoped(|w| async move {
                let code = w.execute_code(CodeCall::new("print(6 * 7)").session("demo")).await?;
                println!("code printed: {}", code.stdout);
                let echo = w
                    .execute_command(CommandCall::new("echo", ["allowed"]).session("demo"))
                    .await?;
                println!("echo printed: {}", echo.stdout);
                let refused = w
                    .execute_command(CommandCall::new("rm", ["-rf", "/tmp/x"]).session("demo"))
                    .await;
                println!("rm: {}", refused.err().map(|e| e.to_string()).unwrap_or_default());
                Ok(())
            })
            .await;
        if let Err(e) = result {
            eprintln!("error: {e}");
        }
        println!("calls: {:?}", backend.stats().calls);
    });
}
