//! Sessions and resources over any [`SandboxBackend`]: which sandbox serves a call, how many may
//! exist, when they die, and what happens at the limits.
//!
//! - **Sessions** ([`session`]): get-or-create by caller id or a generated one, lazy start with the
//!   flavor's resources and the configured volumes, reuse, one execution at a time per session,
//!   a clear error when an existing session is asked for another template or flavor.
//! - **Admission**: `max_concurrent_sessions` and `max_total_memory_mb` hold under any concurrency:
//!   a reservation is taken before a sandbox starts and given back only when it is stopped (or
//!   known gone). Reusing a session never counts. At a limit, `MSB_LIMIT_POLICY` decides: reject,
//!   wait for a slot, or evict the least recently used idle session. At most
//!   `max_concurrent_starts` sandboxes start at once.
//! - **Idle cleanup** ([`cleanup`]) every `cleanup_interval`, **orphan cleanup** ([`orphans`])
//!   every `orphan_cleanup_interval` and once at start-up.
//! - **Timeouts**: the backend stops an execution at its timeout and says what became of the
//!   sandbox; an unusable sandbox is replaced on the session's next use.
//! - **Shutdown** ([`SessionManager::shutdown`]): stop the background tasks, wait for running
//!   executions up to `shutdown_timeout`, stop every sandbox this manager started.

mod admission;
mod calls;
pub mod cleanup;
mod detach;
mod error;
mod execute;
pub mod files;
mod kind;
mod lifecycle;
pub mod naming;
pub mod orphans;
pub mod ownership;
mod pool;
mod retire;
pub mod session;
mod start;
mod stats;
pub mod stream;
mod tasks;

use std::sync::Arc;

use msbw_backend::{SandboxBackend, SandboxId};
use msbw_config::WrapperConfig;
use serde::Serialize;

pub use calls::{
    CodeCall, CommandCall, CommandResult, ExecutionResult, MAX_CALL_TIMEOUT, MAX_INPUT_BYTES, SessionOptions,
    SessionSpec,
};
pub use cleanup::CleanupReport;
pub use error::{LimitExceeded, ManagerError, Phase, Resource, SandboxLost, SessionMismatch, StartTimedOut};
pub use files::{FileCall, FileOutcome, FileResult, FileWork};
pub use kind::{Call, Ran, Work};
pub use orphans::OrphanReport;
pub use ownership::Ownership;
pub use pool::PoolStats;
pub use session::{SessionInfo, SessionStatus};
pub use stats::ResourceStats;
pub use stream::{CallEvent, CallStream};
pub use tasks::{TaskKind, TaskStatus};

use lifecycle::{Inner, Lifecycle};

/// The session manager. Cheap to clone; clones share the same sessions.
#[derive(Debug, Clone)]
pub struct SessionManager {
    inner: Arc<Inner>,
}

/// What [`SessionManager::start`] did.
#[derive(Debug, Serialize)]
pub struct StartReport {
    /// The first orphan-cleanup pass, or why it failed (the manager starts anyway).
    pub orphans: Result<OrphanReport, String>,
}

/// What [`SessionManager::shutdown`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ShutdownReport {
    /// Sandboxes stopped.
    pub stopped: usize,
    /// Executions still running when the shutdown timeout ran out (their sandboxes were stopped).
    pub interrupted_executions: usize,
    /// Sandboxes that could not be stopped, with the last error.
    pub failed: Vec<(SandboxId, String)>,
}

impl SessionManager {
    /// A manager over `backend` with the ownership settings of the environment
    /// ([`Ownership::from_env`]); the configuration is validated first.
    pub fn new(config: WrapperConfig, backend: Arc<dyn SandboxBackend>) -> Result<Self, ManagerError> {
        Self::with_ownership(config, backend, &Ownership::from_env())
    }

    /// A manager over `backend` with these ownership settings (see [`ownership`]).
    pub fn with_ownership(
        config: WrapperConfig,
        backend: Arc<dyn SandboxBackend>,
        ownership: &Ownership,
    ) -> Result<Self, ManagerError> {
        config.validate()?;
        Ok(SessionManager {
            inner: Arc::new(Inner::new(config, backend, ownership)),
        })
    }

    /// This manager's owner id: every sandbox name it makes carries it (see [`naming`]).
    pub fn owner_id(&self) -> &str {
        self.inner.owner()
    }

    /// Whether this manager holds an owner lease its peers can see (see [`ownership`]); without
    /// one, peers leave its sandboxes alone but cannot reclaim them after a crash.
    pub fn has_owner_lease(&self) -> bool {
        self.inner.lease().is_held()
    }

    /// The configuration in use.
    pub fn config(&self) -> &WrapperConfig {
        self.inner.config()
    }

    /// The backend in use.
    pub fn backend(&self) -> &Arc<dyn SandboxBackend> {
        self.inner.backend()
    }

    /// Starts accepting calls: one orphan-cleanup pass, then the background tasks. Starting a
    /// started manager does nothing; a manager that was shut down cannot be started again.
    pub async fn start(&self) -> Result<StartReport, ManagerError> {
        self.inner.start().await
    }

    /// Whether the manager accepts calls.
    pub fn is_running(&self) -> bool {
        self.inner.lifecycle() == Lifecycle::Running
    }

    /// Runs code in a session (see [`CodeCall`]).
    pub async fn execute_code(&self, call: CodeCall) -> Result<ExecutionResult, ManagerError> {
        self.inner.execute_call(call).await
    }

    /// Runs a command in a session (see [`CommandCall`]).
    pub async fn execute_command(&self, call: CommandCall) -> Result<CommandResult, ManagerError> {
        self.inner.execute_call(call).await
    }

    /// Runs code in a session with its output streamed: chunks as the code writes them, then the
    /// result [`execute_code`](Self::execute_code) returns. Invalid calls fail here; everything
    /// later (limits, the start, the execution) comes through the stream. The session is held
    /// for the stream's life; dropping the stream cancels the execution (see [`stream`]).
    pub fn execute_code_stream(&self, call: CodeCall) -> Result<CallStream<ExecutionResult>, ManagerError> {
        self.inner.execute_stream(call)
    }

    /// Runs a command in a session with its output streamed (see
    /// [`execute_code_stream`](Self::execute_code_stream)).
    pub fn execute_command_stream(&self, call: CommandCall) -> Result<CallStream<CommandResult>, ManagerError> {
        self.inner.execute_stream(call)
    }

    /// Runs a code or a command call (see [`Call`]): one path for fronts that take both kinds.
    pub async fn execute<C: Call>(&self, call: C) -> Result<C::Result, ManagerError> {
        self.inner.execute_call(call).await
    }

    /// Runs a code or a command call with its output streamed (see
    /// [`execute_code_stream`](Self::execute_code_stream)).
    pub fn execute_stream<C: Call>(&self, call: C) -> Result<CallStream<C::Result>, ManagerError> {
        self.inner.execute_stream(call)
    }

    /// Writes, reads, lists or removes a file in a session's sandbox (see [`files`]).
    pub async fn file_call(&self, call: FileCall) -> Result<FileResult, ManagerError> {
        self.inner.file_call(call).await
    }

    /// Opens a session now: its sandbox starts before this returns, under the same limits as
    /// lazily created sessions. An existing session with the same template and flavor is
    /// returned as it is (`false`: not created); another template or flavor is an error.
    pub async fn open_session(&self, spec: SessionSpec) -> Result<(SessionInfo, bool), ManagerError> {
        self.inner.open_session(spec).await
    }

    /// The live sessions, or only `session_id`'s (empty when it does not exist).
    pub fn sessions(&self, session_id: Option<&str>) -> Result<Vec<SessionInfo>, ManagerError> {
        self.inner.ensure_running()?;
        let reg = self.inner.lock();
        if let Some(id) = session_id {
            // One lookup, not a scan: fronts (msbw serve) ask for one session on every call.
            return Ok(reg.session(id).map(session::Entry::info).into_iter().collect());
        }
        let mut list: Vec<SessionInfo> = reg.sessions().map(session::Entry::info).collect();
        list.sort_by(|a, b| {
            a.created_at
                .cmp(&b.created_at)
                .then_with(|| a.session_id.cmp(&b.session_id))
        });
        Ok(list)
    }

    /// Stops a session and its sandbox. Returns `false` when no such session exists. A running
    /// execution in it is cut short.
    pub async fn stop_session(&self, session_id: &str) -> Result<bool, ManagerError> {
        self.inner.ensure_running()?;
        let sandbox = self.inner.lock().retire(session_id);
        let Some(sandbox) = sandbox else { return Ok(false) };
        let pass = self.inner.stop_retiring().await;
        match pass.failed.into_iter().find(|(id, _)| *id == sandbox) {
            None => Ok(true),
            Some((_, source)) => Err(ManagerError::backend(Phase::Stopping, session_id, source)),
        }
    }

    /// Resource use against the limits.
    pub fn resource_stats(&self) -> ResourceStats {
        self.inner.stats()
    }

    /// One idle-cleanup pass now.
    pub async fn cleanup_idle_sessions(&self) -> Result<CleanupReport, ManagerError> {
        self.inner.ensure_running()?;
        Ok(self.inner.cleanup_idle().await)
    }

    /// One orphan-cleanup pass now.
    pub async fn cleanup_orphan_sandboxes(&self) -> Result<OrphanReport, ManagerError> {
        self.inner.ensure_running()?;
        self.inner.cleanup_orphans().await
    }

    /// The background tasks' state.
    pub fn background_task_status(&self) -> Vec<TaskStatus> {
        self.inner.task_status()
    }

    /// Pauses the background tasks' passes (the tasks stay alive).
    pub fn pause_background_tasks(&self) -> Result<(), ManagerError> {
        self.inner.ensure_running()?;
        self.inner.pause_tasks(true);
        Ok(())
    }

    /// Resumes the background tasks' passes.
    pub fn resume_background_tasks(&self) -> Result<(), ManagerError> {
        self.inner.ensure_running()?;
        self.inner.pause_tasks(false);
        Ok(())
    }

    /// Stops and starts the background tasks again (counters reset, not paused).
    pub async fn restart_background_tasks(&self) -> Result<(), ManagerError> {
        self.inner.ensure_running()?;
        self.inner.stop_tasks().await;
        self.inner.spawn_tasks();
        Ok(())
    }

    /// Stops the background tasks, waits for running executions up to `shutdown_timeout`, and
    /// stops every sandbox this manager started. New calls fail from the moment it begins.
    /// Calling it again returns an empty report.
    pub async fn shutdown(&self) -> ShutdownReport {
        self.inner.shutdown().await
    }
}
