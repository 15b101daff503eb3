//! The manager's error: which phase failed, for which session, and why.

use std::fmt;
use std::time::Duration;

use msbw_backend::{BackendError, SandboxId, Template};
use msbw_config::{ConfigError, SandboxFlavor};

/// The phase of a call that failed, as errors name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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
    #[error(
        "{resource} limit reached: {usage} in use, limit {limit}, this session needs {requested}{}",
        waited.map(|w| format!(" (waited {:.1} s for a slot)", w.as_secs_f64())).unwrap_or_default()
    )]
    ResourceLimit {
        /// The resource at its limit.
        resource: Resource,
        /// How much is in use.
        usage: u64,
        /// The configured limit.
        limit: u64,
        /// How much the new session needs.
        requested: u64,
        /// How long the call waited for a slot (the `wait` policy), if it waited.
        waited: Option<Duration>,
    },

    /// The session exists with another template or flavor than the call asked for.
    #[error(
        "session {session_id:?} is a {existing_template}/{existing_flavor} session; this call asked for {requested_template}/{requested_flavor}"
    )]
    SessionMismatch {
        /// The session.
        session_id: String,
        /// Its template.
        existing_template: Template,
        /// Its flavor.
        existing_flavor: SandboxFlavor,
        /// The template the call asked for.
        requested_template: Template,
        /// The flavor the call asked for.
        requested_flavor: SandboxFlavor,
    },

    /// No session has that id.
    #[error("no session {session_id:?}")]
    SessionNotFound {
        /// The id asked for.
        session_id: String,
    },

    /// The session's sandbox could not be started in time.
    #[error("starting sandbox {sandbox} for session {session_id:?} timed out after {:.1} s", timeout.as_secs_f64())]
    StartTimeout {
        /// The session.
        session_id: String,
        /// The sandbox.
        sandbox: SandboxId,
        /// The start timeout.
        timeout: Duration,
    },

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
            ManagerError::Config(_) | ManagerError::InvalidInput { .. } | ManagerError::SessionMismatch { .. } => {
                Phase::Validating
            }
            ManagerError::NotStarted | ManagerError::ShuttingDown | ManagerError::ResourceLimit { .. } => {
                Phase::Admission
            }
            ManagerError::SessionNotFound { .. } => Phase::Validating,
            ManagerError::StartTimeout { .. } => Phase::Starting,
            ManagerError::Backend { phase, .. } => *phase,
            ManagerError::Internal(_) => Phase::Executing,
        }
    }

    /// The backend error behind this one, if any.
    pub fn backend_error(&self) -> Option<&BackendError> {
        match self {
            ManagerError::Backend { source, .. } => Some(source.as_ref()),
            _ => None,
        }
    }

    /// The session concerned, if any.
    pub fn session_id(&self) -> Option<&str> {
        match self {
            ManagerError::SessionMismatch { session_id, .. }
            | ManagerError::SessionNotFound { session_id }
            | ManagerError::StartTimeout { session_id, .. } => Some(session_id),
            ManagerError::Backend { session_id, .. } if !session_id.is_empty() => Some(session_id),
            _ => None,
        }
    }

    /// Whether trying again later may succeed: limits (a slot may free up), timeouts and
    /// transient backend failures.
    pub fn is_retryable(&self) -> bool {
        match self {
            ManagerError::ResourceLimit { .. } | ManagerError::StartTimeout { .. } => true,
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
