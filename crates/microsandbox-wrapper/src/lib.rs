//! microsandbox-wrapper: run untrusted code for AI agents and tools in sandbox sessions.
//!
//! A caller says "run this Python in session X"; the wrapper finds or starts a sandbox for X,
//! enforces limits (sessions, memory, time), maps host folders in, returns stdout, stderr and the
//! exit status, and cleans up idle sessions and sandboxes nobody owns. Sandboxes come from a
//! backend: the microsandbox server (microVMs), the local isolated-process backend (no server
//! needed), or your own [`SandboxBackend`].
//!
//! ```no_run
//! use microsandbox_wrapper::{CodeCall, MicrosandboxWrapper};
//!
//! # async fn demo() -> Result<(), microsandbox_wrapper::WrapperError> {
//! let wrapper = MicrosandboxWrapper::from_env().await?;
//! let out = wrapper
//!     .scoped(|w| async move {
//!         w.execute_code(CodeCall::new("x = 41").session("demo")).await?;
//!         w.execute_code(CodeCall::new("print(x + 1)").session("demo")).await
//!     })
//!     .await?;
//! assert_eq!(out.stdout, "42");
//! # Ok(())
//! # }
//! ```
//!
//! # Features
//!
//! - `http` (default): the microsandbox server backend (`HttpBackend`, crate `msbw-http`).
//! - `local` (default): the local isolated-process backend (`LocalBackend`, crate `msbw-local`).
//! - `conformance`: the backend conformance suite, as `microsandbox_wrapper::conformance`, for
//!   custom backends.
//!
//! `MSB_BACKEND` selects among the backends built in ([`available_backends`]); a custom backend
//! needs only this crate: [`backend`] holds the trait and its types, and [`async_trait`] the
//! attribute its implementation takes.

mod error;
mod files;
mod selection;
mod stream;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

pub use error::{ErrorCategory, ExecutionFailure, WrapperError};
#[cfg(feature = "http")]
pub use selection::AUTO_PROBE_TIMEOUT;
pub use selection::{
    BackendSelection, available_backends, backend_problems, build_backend, choose_backend, validate_config,
};
pub use stream::{Bytes, EventStream};

/// The attribute a [`SandboxBackend`] implementation needs (`#[async_trait]`), so a custom
/// backend depends on this crate alone.
pub use async_trait::async_trait;
/// The conformance suite a custom backend should pass (cargo feature `conformance`): see
/// `examples/custom_backend.rs`.
#[cfg(feature = "conformance")]
pub use msbw_backend::conformance;

pub use msbw_backend::{
    self as backend, Aftermath, BackendError, Capabilities, ErrorKind, ExecOutput, ExecStatus, FileEntry,
    FileErrorKind, FileKind, ListFilter, SandboxBackend, SandboxBackendExt, SandboxId, SandboxInfo, Template,
};
pub use msbw_config::{
    self as config, ApiKey, BackendConfig, BackendKind, BackendSettings, ConfigError, ConfigKey, ConfigProblem,
    LimitPolicy, LogLevel, PoolEntry, SandboxFlavor, VolumeMapping, WarmPool, WrapperConfig,
};
#[cfg(feature = "http")]
pub use msbw_http::{HttpBackend, HttpBackendConfig};
#[cfg(feature = "local")]
pub use msbw_local::{HostSupport, LocalBackend, LocalConfig, ProcessLimit};
pub use msbw_manager::{
    self as manager, Call, CallEvent, CleanupReport, CodeCall, CommandCall, CommandResult, ExecutionResult, FileCall,
    FileOutcome, FileResult, FileWork, LimitExceeded, OrphanReport, PoolStats, Resource, ResourceStats, SandboxLost,
    SessionInfo, SessionManager, SessionMismatch, SessionOptions, SessionSpec, SessionStatus, ShutdownReport, TaskKind,
    TaskStatus,
};

/// The answer of [`MicrosandboxWrapper::health_check`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HealthReport {
    /// Whether the backend answered its health check.
    pub healthy: bool,
    /// The backend's name.
    pub backend: String,
    /// What the backend said, or why it failed.
    pub message: String,
    /// Whether the wrapper is started.
    pub started: bool,
    /// Live sessions.
    pub active_sessions: usize,
}

/// The wrapper: sessions over a backend, with the reference implementation's operations.
///
/// Build it from the environment, from a [`WrapperConfig`], or over any backend; then
/// [`start`](Self::start) it, use it, and [`stop`](Self::stop) it (or use
/// [`scoped`](Self::scoped), which always stops). Clones share the same sessions.
#[derive(Debug, Clone)]
pub struct MicrosandboxWrapper {
    manager: SessionManager,
    selection: BackendSelection,
}

impl MicrosandboxWrapper {
    /// A wrapper configured from the process environment (`MSB_*`), with the backend
    /// `MSB_BACKEND` selects.
    pub async fn from_env() -> Result<Self, WrapperError> {
        Self::new(WrapperConfig::from_env()?).await
    }

    /// A wrapper for `config`, with the backend its `backend` setting selects (`auto` probes for a
    /// server at the default URL and otherwise takes the local backend). The configuration is
    /// validated first, every backend's own settings included ([`validate_config`]).
    pub async fn new(config: WrapperConfig) -> Result<Self, WrapperError> {
        validate_config(&config)?;
        let selection = choose_backend(&config).await;
        let backend = build_backend(&config, &selection)?;
        tracing::info!(backend = %selection.backend, reason = %selection.reason, "backend selected");
        Self::assemble(config, backend, selection)
    }

    /// A wrapper over your own backend.
    pub fn with_backend(config: WrapperConfig, backend: Arc<dyn SandboxBackend>) -> Result<Self, WrapperError> {
        let selection = BackendSelection {
            backend: backend.name().to_owned(),
            requested: "custom".to_owned(),
            reason: "a backend given in code (with_backend)".to_owned(),
            kind: None,
        };
        Self::assemble(config, backend, selection)
    }

    fn assemble(
        config: WrapperConfig,
        backend: Arc<dyn SandboxBackend>,
        selection: BackendSelection,
    ) -> Result<Self, WrapperError> {
        let manager = SessionManager::new(config, backend).map_err(|e| WrapperError::from_manager(e, None, None))?;
        Ok(MicrosandboxWrapper { manager, selection })
    }

    fn err(&self, e: msbw_manager::ManagerError, command: Option<&str>) -> WrapperError {
        WrapperError::from_manager(e, command, self.error_url())
    }

    /// The server's address, for errors of the microsandbox backend.
    fn error_url(&self) -> Option<&str> {
        (self.selection.kind == Some(BackendKind::Microsandbox)).then_some(self.manager.config().server_url.as_str())
    }

    /// Which backend is in use, and why.
    pub fn backend_selection(&self) -> &BackendSelection {
        &self.selection
    }

    /// The configuration in use.
    pub fn config(&self) -> &WrapperConfig {
        self.manager.config()
    }

    /// Starts the wrapper: stops orphans this wrapper's mark left behind, and starts the
    /// background cleanup tasks.
    pub async fn start(&self) -> Result<(), WrapperError> {
        let report = self.manager.start().await.map_err(|e| self.err(e, None))?;
        if let Ok(orphans) = &report.orphans
            && !orphans.stopped.is_empty()
        {
            tracing::info!(count = orphans.stopped.len(), "stopped orphan sandboxes at start-up");
        }
        Ok(())
    }

    /// Stops the wrapper: background tasks end, running executions get up to
    /// `MSB_SHUTDOWN_TIMEOUT`, and every sandbox it started is stopped.
    pub async fn stop(&self) -> ShutdownReport {
        self.manager.shutdown().await
    }

    /// Stops the wrapper at once, for a front that was interrupted (a signal): shutdown begins (so
    /// nothing new starts and no sandbox is replaced), the sessions' sandboxes are stopped at the
    /// backend (which cuts a running execution short instead of waiting `MSB_SHUTDOWN_TIMEOUT`
    /// for it), and shutdown stops the rest.
    pub async fn stop_now(&self) -> ShutdownReport {
        let sandboxes: Vec<msbw_backend::SandboxId> = self
            .get_sessions(None)
            .unwrap_or_default()
            .into_iter()
            .map(|s| msbw_backend::SandboxId {
                namespace: s.namespace,
                name: s.sandbox_name,
            })
            .collect();
        let shutdown = tokio::spawn({
            let manager = self.manager.clone();
            async move { manager.shutdown().await }
        });
        while self.manager.is_running() && !shutdown.is_finished() {
            tokio::task::yield_now().await;
        }
        let backend = self.manager.backend();
        for sandbox in &sandboxes {
            if let Err(e) = backend.stop(sandbox).await {
                tracing::debug!(%sandbox, error = %e, "stopping at once");
            }
        }
        shutdown.await.unwrap_or_default()
    }

    /// Fails with a connection error, fast, when the backend cannot be reached at all (the
    /// microsandbox server is down or the URL is wrong); any other answer counts as reachable,
    /// and is reported by the calls themselves. Works before `start`.
    pub async fn ensure_reachable(&self) -> Result<(), WrapperError> {
        let backend = self.manager.backend();
        match backend.health().await {
            Err(e) if e.kind() == msbw_backend::ErrorKind::Connect => Err(WrapperError::Connection {
                backend: backend.name().to_owned(),
                server_url: (backend.name() == "microsandbox")
                    .then(|| msbw_config::redact_url(&self.config().server_url)),
                source: Box::new(e),
            }),
            _ => Ok(()),
        }
    }

    /// Starts the wrapper, runs `f`, and stops the wrapper whatever `f` returned.
    pub async fn scoped<F, Fut, T>(self, f: F) -> Result<T, WrapperError>
    where
        F: FnOnce(MicrosandboxWrapper) -> Fut,
        Fut: Future<Output = Result<T, WrapperError>>,
    {
        self.start().await?;
        let result = f(self.clone()).await;
        let report = self.stop().await;
        if !report.failed.is_empty() {
            tracing::warn!(failed = report.failed.len(), "some sandboxes could not be stopped");
        }
        result
    }

    /// Runs code in a session: `wrapper.execute_code("print(1)")` or
    /// `wrapper.execute_code(CodeCall::new(code).session("s").template(Template::Node))`.
    pub async fn execute_code(&self, call: impl Into<CodeCallArg>) -> Result<ExecutionResult, WrapperError> {
        self.execute(call.into().0).await
    }

    /// Runs code in a session with its output streamed: stdout and stderr chunks as the code
    /// writes them, then the result [`execute_code`](Self::execute_code) returns. Bad arguments
    /// fail here; limits, the start and the execution report through the stream. Dropping the
    /// stream cancels the execution (see [`EventStream`]).
    pub fn execute_code_stream(
        &self,
        call: impl Into<CodeCallArg>,
    ) -> Result<EventStream<ExecutionResult>, WrapperError> {
        self.execute_stream(call.into().0)
    }

    /// Runs a command in a session with its output streamed (see
    /// [`execute_code_stream`](Self::execute_code_stream)).
    pub fn execute_command_stream(&self, call: CommandCall) -> Result<EventStream<CommandResult>, WrapperError> {
        self.execute_stream(call)
    }

    /// Runs a command in a session. A non-zero exit code is a result, not an error.
    pub async fn execute_command(&self, call: CommandCall) -> Result<CommandResult, WrapperError> {
        self.execute(call).await
    }

    /// Runs a code or a command call (see [`Call`]): what [`execute_code`](Self::execute_code)
    /// or [`execute_command`](Self::execute_command) does, for a front that handles both kinds
    /// through one path.
    pub async fn execute<C: Call>(&self, call: C) -> Result<C::Result, WrapperError> {
        let command = call.program().map(str::to_owned);
        self.manager
            .execute(call)
            .await
            .map_err(|e| self.err(e, command.as_deref()))
    }

    /// Runs a code or a command call with its output streamed (see
    /// [`execute_code_stream`](Self::execute_code_stream)).
    pub fn execute_stream<C: Call>(&self, call: C) -> Result<EventStream<C::Result>, WrapperError> {
        let command = call.program().map(str::to_owned);
        let stream = self
            .manager
            .execute_stream(call)
            .map_err(|e| self.err(e, command.as_deref()))?;
        Ok(EventStream::new(stream, command, self.error_url().map(str::to_owned)))
    }

    /// The live sessions, or the one named.
    pub fn get_sessions(&self, session_id: Option<&str>) -> Result<Vec<SessionInfo>, WrapperError> {
        self.manager.sessions(session_id).map_err(|e| self.err(e, None))
    }

    /// The live session `session_id`, if there is one.
    pub fn session(&self, session_id: &str) -> Result<Option<SessionInfo>, WrapperError> {
        Ok(self.get_sessions(Some(session_id))?.into_iter().next())
    }

    /// Opens a session now: its sandbox starts before this returns (under the same limits as
    /// sessions created by a first call), with the spec's extra volumes and environment on top of
    /// the configured ones. An existing session with the same template and flavor is returned as
    /// it is; another template or flavor is [`WrapperError::SessionMismatch`]. The `bool` is
    /// `true` when this call created the session.
    pub async fn open_session(&self, spec: SessionSpec) -> Result<(SessionInfo, bool), WrapperError> {
        self.manager.open_session(spec).await.map_err(|e| self.err(e, None))
    }

    /// What the backend can do (templates, read-only volumes, metrics, ...); works before
    /// `start`.
    pub async fn capabilities(&self) -> Capabilities {
        self.manager.backend().capabilities().await
    }

    /// The backend's running sandboxes in this wrapper's namespace (`MSB_NAMESPACE`), with memory
    /// and CPU use where the backend reports them; this includes sandboxes of other wrappers
    /// sharing the namespace. Works before `start`.
    pub async fn list_sandboxes(&self) -> Result<Vec<SandboxInfo>, WrapperError> {
        let filter = ListFilter::namespace(&self.manager.config().namespace);
        self.manager.backend().list(&filter).await.map_err(|source| {
            self.err(
                msbw_manager::ManagerError::Backend {
                    phase: msbw_manager::Phase::Listing,
                    session_id: String::new(),
                    source: Box::new(source),
                },
                None,
            )
        })
    }

    /// Stops a session; `false` when it does not exist.
    pub async fn stop_session(&self, session_id: &str) -> Result<bool, WrapperError> {
        self.manager
            .stop_session(session_id)
            .await
            .map_err(|e| self.err(e, None))
    }

    /// The configured volume mappings.
    pub fn get_volume_mappings(&self) -> &[VolumeMapping] {
        &self.manager.config().shared_volume_mappings
    }

    /// Resource use against the limits.
    pub fn get_resource_stats(&self) -> Result<ResourceStats, WrapperError> {
        if !self.manager.is_running() {
            return Err(WrapperError::NotStarted);
        }
        Ok(self.manager.resource_stats())
    }

    /// Stops orphan sandboxes now; returns how many were stopped.
    pub async fn cleanup_orphan_sandboxes(&self) -> Result<usize, WrapperError> {
        let report = self
            .manager
            .cleanup_orphan_sandboxes()
            .await
            .map_err(|e| self.err(e, None))?;
        Ok(report.stopped.len())
    }

    /// Asks the backend whether it is up; works before `start`.
    pub async fn health_check(&self) -> HealthReport {
        let backend = self.manager.backend();
        let (healthy, message) = match backend.health().await {
            Ok(h) => (true, h.message),
            Err(e) => (false, e.to_string()),
        };
        HealthReport {
            healthy,
            backend: backend.name().to_owned(),
            message,
            started: self.manager.is_running(),
            active_sessions: if self.manager.is_running() {
                self.manager.resource_stats().active_sessions
            } else {
                0
            },
        }
    }

    /// Pauses the background cleanup tasks.
    pub fn pause_background_tasks(&self) -> Result<(), WrapperError> {
        self.manager.pause_background_tasks().map_err(|e| self.err(e, None))
    }

    /// Resumes the background cleanup tasks.
    pub fn resume_background_tasks(&self) -> Result<(), WrapperError> {
        self.manager.resume_background_tasks().map_err(|e| self.err(e, None))
    }

    /// Restarts the background cleanup tasks.
    pub async fn restart_background_tasks(&self) -> Result<(), WrapperError> {
        self.manager
            .restart_background_tasks()
            .await
            .map_err(|e| self.err(e, None))
    }

    /// The background cleanup tasks' state.
    pub fn get_background_task_status(&self) -> Vec<TaskStatus> {
        self.manager.background_task_status()
    }

    /// The longest a call may ask to run.
    pub const MAX_TIMEOUT: Duration = msbw_manager::MAX_CALL_TIMEOUT;
}

/// What [`MicrosandboxWrapper::execute_code`] takes: a [`CodeCall`], or just the code (Python, a
/// new session, defaults).
#[derive(Debug, Clone)]
pub struct CodeCallArg(CodeCall);

impl From<CodeCall> for CodeCallArg {
    fn from(call: CodeCall) -> Self {
        CodeCallArg(call)
    }
}

impl From<&str> for CodeCallArg {
    fn from(code: &str) -> Self {
        CodeCallArg(CodeCall::new(code))
    }
}

impl From<String> for CodeCallArg {
    fn from(code: String) -> Self {
        CodeCallArg(CodeCall::new(code))
    }
}
