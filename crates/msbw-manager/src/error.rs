//! The manager's error: which phase failed, for which session, and why.
//!
//! Each payload ([`LimitExceeded`], [`SessionMismatch`], [`StartTimedOut`], [`SandboxLost`]) is
//! defined once, here, and shared by the facade's error, which wraps the same structs; backend
//! errors are kept whole as sources, never turned into text and back.

use std::fmt;
use std::future::Future;
use std::time::Duration;

use msbw_backend::{BackendError, SandboxId, Template};
use msbw_config::{ConfigError, SandboxFlavor};
use tokio::time::Instant;

/// The phase of a call that failed, as errors name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Phase {
    /// Checking the call's arguments.
    Validating,
    /// Waiting for admission under the session and memory limits.
    Admission,
    /// Starting the session's sandbox.
    Starting,
    /// Running code or a command.
    Executing,
    /// Stopping a sandbox.
    Stopping,
    /// Listing the backend's sandboxes.
    Listing,
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Phase::Validating => "validating",
            Phase::Admission => "waiting for admission",
            Phase::Starting => "starting",
            Phase::Executing => "executing",
            Phase::Stopping => "stopping",
            Phase::Listing => "listing",
        })
    }
}

/// A limited resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Resource {
    /// `max_concurrent_sessions`.
    Sessions,
    /// `max_total_memory_mb`.
    MemoryMb,
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Resource::Sessions => "concurrent sessions",
            Resource::MemoryMb => "total memory (MB)",
        })
    }
}

/// A new session would exceed a limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{resource} limit reached: {usage} in use, limit {limit}, this session needs {requested}{}",
    waited.map(|w| format!(" (waited {:.1} s for a slot)", w.as_secs_f64())).unwrap_or_default()
)]
#[non_exhaustive]
pub struct LimitExceeded {
    /// The resource at its limit.
    pub resource: Resource,
    /// How much is in use.
    pub usage: u64,
    /// The configured limit.
    pub limit: u64,
    /// How much the new session needs.
    pub requested: u64,
    /// How long the call waited for a slot (the `wait` policy), if it waited.
    pub waited: Option<Duration>,
}

/// The session exists with another template or flavor than the call asked for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "session {session_id:?} is a {existing_template}/{existing_flavor} session; this call asked for {requested_template}/{requested_flavor}"
)]
#[non_exhaustive]
pub struct SessionMismatch {
    /// The session.
    pub session_id: String,
    /// Its template.
    pub existing_template: Template,
    /// Its flavor.
    pub existing_flavor: SandboxFlavor,
    /// The template the call asked for.
    pub requested_template: Template,
    /// The flavor the call asked for.
    pub requested_flavor: SandboxFlavor,
}

/// The session's sandbox did not start within the start timeout (plus the manager's grace).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("starting sandbox {sandbox} for session {session_id:?} timed out after {:.1} s", timeout.as_secs_f64())]
#[non_exhaustive]
pub struct StartTimedOut {
    /// The session.
    pub session_id: String,
    /// The sandbox.
    pub sandbox: SandboxId,
    /// The start timeout the backend was given.
    pub timeout: Duration,
}

/// The session's sandbox vanished while a call's code or command may already have reached it.
/// The call is not sent again (it might run twice); the session's next call gets a fresh
/// sandbox (its earlier state is gone).
#[derive(Debug, thiserror::Error)]
#[error(
    "the sandbox {sandbox} of session {session_id:?} vanished during the call; the call may have run in part and was not repeated"
)]
#[non_exhaustive]
pub struct SandboxLost {
    /// The session.
    pub session_id: String,
    /// The sandbox that vanished.
    pub sandbox: SandboxId,
    /// What the backend said.
    #[source]
    pub source: Box<BackendError>,
}

/// Why a manager call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ManagerError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),

    /// The manager has not been started.
    #[error("the wrapper has not been started; call start() first")]
    NotStarted,

    /// The manager is shutting down or has shut down.
    #[error("the wrapper is shutting down and accepts no new work")]
    ShuttingDown,

    /// The call's arguments are invalid; nothing was done.
    #[error("invalid {what}: {message}")]
    InvalidInput {
        /// Which argument.
        what: &'static str,
        /// What is wrong with it.
        message: String,
    },

    /// A new session would exceed a limit.
    #[error(transparent)]
    ResourceLimit(LimitExceeded),

    /// The session exists with another template or flavor than the call asked for.
    #[error(transparent)]
    SessionMismatch(SessionMismatch),

    /// No session has that id.
    #[error("no session {session_id:?}")]
    SessionNotFound {
        /// The id asked for.
        session_id: String,
    },

    /// The session's sandbox could not be started in time.
    #[error(transparent)]
    StartTimeout(StartTimedOut),

    /// The session's sandbox vanished during the call, which was not repeated.
    #[error(transparent)]
    SandboxLost(SandboxLost),

    /// The backend failed in some phase of a session's work.
    #[error("{phase} failed for session {session_id:?}: {source}")]
    Backend {
        /// The phase that failed.
        phase: Phase,
        /// The session concerned (empty for work on no session, such as orphan cleanup).
        session_id: String,
        /// The backend's error.
        #[source]
        source: Box<BackendError>,
    },

    /// A background task or internal invariant failed.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ManagerError {
    /// The phase that failed.
    pub fn phase(&self) -> Phase {
        match self {
            ManagerError::Config(_) | ManagerError::InvalidInput { .. } | ManagerError::SessionMismatch(_) => {
                Phase::Validating
            }
            ManagerError::NotStarted | ManagerError::ShuttingDown | ManagerError::ResourceLimit(_) => Phase::Admission,
            ManagerError::SessionNotFound { .. } => Phase::Validating,
            ManagerError::StartTimeout(_) => Phase::Starting,
            ManagerError::Backend { phase, .. } => *phase,
            ManagerError::SandboxLost(_) | ManagerError::Internal(_) => Phase::Executing,
        }
    }

    /// The backend error behind this one, if any.
    pub fn backend_error(&self) -> Option<&BackendError> {
        match self {
            ManagerError::Backend { source, .. } => Some(source.as_ref()),
            ManagerError::SandboxLost(lost) => Some(lost.source.as_ref()),
            _ => None,
        }
    }

    /// The session concerned, if any.
    pub fn session_id(&self) -> Option<&str> {
        match self {
            ManagerError::SessionMismatch(SessionMismatch { session_id, .. })
            | ManagerError::SessionNotFound { session_id }
            | ManagerError::StartTimeout(StartTimedOut { session_id, .. })
            | ManagerError::SandboxLost(SandboxLost { session_id, .. }) => Some(session_id),
            ManagerError::Backend { session_id, .. } if !session_id.is_empty() => Some(session_id),
            _ => None,
        }
    }

    /// Whether trying again later may succeed: limits (a slot may free up), timeouts and
    /// transient backend failures. A lost sandbox is not: the call may have run in part, and only
    /// the caller can tell whether running it again is safe.
    pub fn is_retryable(&self) -> bool {
        match self {
            ManagerError::ResourceLimit(_) | ManagerError::StartTimeout(_) => true,
            ManagerError::Backend { source, .. } => source.is_retryable(),
            _ => false,
        }
    }

    pub(crate) fn backend(phase: Phase, session_id: &str, source: BackendError) -> Self {
        ManagerError::Backend {
            phase,
            session_id: session_id.to_owned(),
            source: Box::new(source),
        }
    }

    pub(crate) fn invalid(what: &'static str, message: impl Into<String>) -> Self {
        ManagerError::InvalidInput {
            what,
            message: message.into(),
        }
    }
}

/// A phase that ran out of its time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Overran {
    /// The phase.
    pub(crate) phase: Phase,
    /// The time it had.
    pub(crate) limit: Duration,
}

/// Runs `work` for at most `limit`: the one place a phase's time limit is applied, so that every
/// timeout names its phase (and is logged as such).
pub(crate) async fn within<F: Future>(phase: Phase, limit: Duration, work: F) -> Result<F::Output, Overran> {
    until(phase, Instant::now() + limit, work)
        .await
        .map_err(|o| Overran { limit, ..o })
}

/// Runs `work` until `deadline` at the latest (see [`within`]).
pub(crate) async fn until<F: Future>(phase: Phase, deadline: Instant, work: F) -> Result<F::Output, Overran> {
    let limit = deadline.saturating_duration_since(Instant::now());
    tokio::time::timeout_at(deadline, work).await.map_err(|_| {
        tracing::debug!(%phase, ?limit, "phase ran out of time");
        Overran { phase, limit }
    })
}
