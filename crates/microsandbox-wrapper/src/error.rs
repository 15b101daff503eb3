//! The wrapper's error: typed variants with context, a stable code, a category and recovery
//! suggestions, as the reference implementation had.
//!
//! Payloads that the manager reports ([`LimitExceeded`], [`SessionMismatch`], [`SandboxLost`])
//! are the manager's own structs, wrapped, not copied; backend errors stay whole as sources.

use std::fmt;

use msbw_backend::{BackendError, ErrorKind, FileErrorKind, SandboxId};
use msbw_config::{ConfigError, ConfigKey};
use msbw_manager::{LimitExceeded, ManagerError, Phase, Resource, SandboxLost, SessionMismatch};

/// Why an execution failed (when the failure is an error, not a result).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ExecutionFailure {
    /// The backend failed while running it.
    Backend,
    /// The sandbox went away and could not be replaced.
    SandboxLost,
}

/// The broad class of an error, for routing and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCategory {
    /// The configuration is wrong.
    Configuration,
    /// A limit was reached.
    Resource,
    /// The backend could not be reached or refused the credentials.
    Network,
    /// Running code or a command failed.
    Execution,
    /// A session problem (unknown, mismatched).
    Session,
    /// The caller's input was invalid.
    Input,
    /// Anything else: lifecycle, internal failures.
    System,
}

impl ErrorCategory {
    /// The category's lower-case name.
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorCategory::Configuration => "configuration",
            ErrorCategory::Resource => "resource",
            ErrorCategory::Network => "network",
            ErrorCategory::Execution => "execution",
            ErrorCategory::Session => "session",
            ErrorCategory::Input => "input",
            ErrorCategory::System => "system",
        }
    }
}

impl fmt::Display for ErrorCategory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Everything that can go wrong in the wrapper.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WrapperError {
    /// The configuration is invalid.
    #[error("{source}")]
    Configuration {
        /// The first setting at fault, if one is.
        key: Option<ConfigKey>,
        /// Every problem.
        #[source]
        source: ConfigError,
    },

    /// A new session would exceed a limit.
    #[error(transparent)]
    ResourceLimit(LimitExceeded),

    /// A server that owns the sessions (`msbw serve`, the CLI's session server) refused a new
    /// one: its own session or memory limit is reached.
    #[error("{source}")]
    LimitReached {
        /// The backend's error, with the server's message.
        #[source]
        source: Box<BackendError>,
    },

    /// No session has that id.
    #[error("no session {session_id:?}")]
    SessionNotFound {
        /// The id asked for.
        session_id: String,
    },

    /// The session exists with another template or flavor.
    #[error(transparent)]
    SessionMismatch(SessionMismatch),

    /// The session's sandbox vanished while the call's code or command may already have reached
    /// it; the call was not repeated (it might have run twice). The session's next call gets a
    /// fresh sandbox.
    #[error(transparent)]
    SandboxLost(SandboxLost),

    /// The session's sandbox could not be started.
    #[error("could not start a sandbox for session {session_id:?}: {message}")]
    SandboxCreation {
        /// The session.
        session_id: String,
        /// The sandbox, when known.
        sandbox: Option<SandboxId>,
        /// What went wrong.
        message: String,
        /// The backend's error, if it came from the backend.
        #[source]
        source: Option<Box<BackendError>>,
    },

    /// Running code failed (an exception or a timeout is a result, not this error).
    #[error("running code in session {session_id:?} failed: {source}")]
    CodeExecution {
        /// The session.
        session_id: String,
        /// How it failed.
        failure: ExecutionFailure,
        /// The backend's error.
        #[source]
        source: Box<BackendError>,
    },

    /// Running a command failed (a non-zero exit or a timeout is a result, not this error).
    #[error("running command {command:?} in session {session_id:?} failed: {source}")]
    CommandExecution {
        /// The session.
        session_id: String,
        /// The program.
        command: String,
        /// The backend's error.
        #[source]
        source: Box<BackendError>,
    },

    /// The backend could not be reached.
    #[error("cannot reach the {backend} backend{}: {source}", server_url.as_ref().map(|u| format!(" at {u}")).unwrap_or_default())]
    Connection {
        /// The backend.
        backend: String,
        /// The server's URL (credentials redacted), for the microsandbox backend.
        server_url: Option<String>,
        /// The backend's error.
        #[source]
        source: Box<BackendError>,
    },

    /// The backend refused the credentials.
    #[error("the {backend} backend refused the credentials: {source}")]
    Unauthorized {
        /// The backend.
        backend: String,
        /// The backend's error.
        #[source]
        source: Box<BackendError>,
    },

    /// The backend cannot do what was asked.
    #[error("{source}")]
    Unsupported {
        /// The backend's error.
        #[source]
        source: Box<BackendError>,
    },

    /// An argument is invalid; nothing was done.
    #[error("invalid {what}: {message}")]
    InvalidInput {
        /// Which argument.
        what: String,
        /// What is wrong.
        message: String,
    },

    /// A file operation failed for a reason of the file: not found, permission denied (a
    /// read-only volume, ...), too large, not a regular file or folder, or an invalid path.
    #[error("{kind}: {path:?} in session {session_id:?}: {source}")]
    File {
        /// The session.
        session_id: String,
        /// The path inside the sandbox.
        path: String,
        /// What is wrong.
        kind: FileErrorKind,
        /// The backend's error.
        #[source]
        source: Box<BackendError>,
    },

    /// Called before `start`.
    #[error("the wrapper has not been started; call start() first")]
    NotStarted,

    /// Called during or after `stop`.
    #[error("the wrapper is shutting down and accepts no new work")]
    ShuttingDown,

    /// Something failed inside the wrapper or the backend that fits no other class.
    #[error("{message}")]
    Internal {
        /// What failed.
        message: String,
        /// The backend's error, if any.
        #[source]
        source: Option<Box<BackendError>>,
    },
}

impl WrapperError {
    /// A stable code for programs, e.g. `RESOURCE_LIMIT_ERROR`.
    pub fn code(&self) -> &'static str {
        match self {
            WrapperError::Configuration { .. } => "CONFIGURATION_ERROR",
            WrapperError::ResourceLimit { .. } => "RESOURCE_LIMIT_ERROR",
            WrapperError::SessionNotFound { .. } => "SESSION_NOT_FOUND_ERROR",
            WrapperError::SessionMismatch { .. } => "SESSION_MISMATCH_ERROR",
            WrapperError::SandboxLost(_) => "SANDBOX_LOST_ERROR",
            WrapperError::SandboxCreation { .. } => "SANDBOX_CREATION_ERROR",
            WrapperError::CodeExecution { .. } => "CODE_EXECUTION_ERROR",
            WrapperError::CommandExecution { .. } => "COMMAND_EXECUTION_ERROR",
            WrapperError::Connection { .. } => "CONNECTION_ERROR",
            WrapperError::LimitReached { .. } => "RESOURCE_LIMIT_ERROR",
            WrapperError::Unauthorized { .. } => "AUTHENTICATION_ERROR",
            WrapperError::Unsupported { .. } => "UNSUPPORTED_ERROR",
            WrapperError::InvalidInput { .. } => "INVALID_INPUT_ERROR",
            WrapperError::File { kind, .. } => match kind {
                FileErrorKind::NotFound => "FILE_NOT_FOUND_ERROR",
                FileErrorKind::PermissionDenied => "FILE_PERMISSION_ERROR",
                FileErrorKind::TooLarge => "FILE_TOO_LARGE_ERROR",
                FileErrorKind::InvalidPath => "INVALID_PATH_ERROR",
                _ => "FILE_TYPE_ERROR",
            },
            WrapperError::NotStarted => "WRAPPER_NOT_STARTED_ERROR",
            WrapperError::ShuttingDown => "WRAPPER_SHUTTING_DOWN_ERROR",
            WrapperError::Internal { .. } => "INTERNAL_ERROR",
        }
    }

    /// The error's category.
    pub fn category(&self) -> ErrorCategory {
        match self {
            WrapperError::Configuration { .. } | WrapperError::Unsupported { .. } => ErrorCategory::Configuration,
            WrapperError::ResourceLimit { .. } | WrapperError::LimitReached { .. } => ErrorCategory::Resource,
            WrapperError::SessionNotFound { .. } | WrapperError::SessionMismatch { .. } => ErrorCategory::Session,
            WrapperError::SandboxCreation { .. }
            | WrapperError::SandboxLost(_)
            | WrapperError::CodeExecution { .. }
            | WrapperError::CommandExecution { .. } => ErrorCategory::Execution,
            WrapperError::Connection { .. } | WrapperError::Unauthorized { .. } => ErrorCategory::Network,
            WrapperError::InvalidInput { .. } | WrapperError::File { .. } => ErrorCategory::Input,
            WrapperError::NotStarted | WrapperError::ShuttingDown | WrapperError::Internal { .. } => {
                ErrorCategory::System
            }
        }
    }

    /// What a person could do about it.
    pub fn suggestions(&self) -> Vec<String> {
        let s = |items: &[&str]| items.iter().map(|i| (*i).to_owned()).collect();
        match self {
            WrapperError::Configuration { .. } => s(&[
                "Fix the settings named in the message",
                "Run `msbw config check` to see every problem at once",
            ]),
            WrapperError::ResourceLimit(LimitExceeded {
                resource: Resource::Sessions,
                ..
            }) => s(&[
                "Increase MSB_MAX_SESSIONS",
                "Reuse an existing session (pass its session id) or stop idle ones with stop_session",
                "Decrease MSB_SESSION_TIMEOUT for faster turnover, or set MSB_LIMIT_POLICY=wait or evict",
            ]),
            WrapperError::ResourceLimit(_) => s(&[
                "Increase MSB_MAX_TOTAL_MEMORY_MB",
                "Use a smaller flavor",
                "Stop idle sessions, or set MSB_LIMIT_POLICY=wait or evict",
            ]),
            WrapperError::LimitReached { .. } => s(&[
                "Stop sessions you no longer need (`msbw session list`, `msbw session stop ID`)",
                "Raise the server's MSB_MAX_SESSIONS or MSB_MAX_TOTAL_MEMORY_MB",
                "Try again later",
            ]),
            WrapperError::SessionNotFound { .. } => s(&[
                "List the live sessions with get_sessions",
                "Omit the session id to start a new session",
            ]),
            WrapperError::SessionMismatch { .. } => s(&[
                "Use the session's own template and flavor",
                "Use another session id for a different template or flavor",
            ]),
            WrapperError::SandboxLost(_) => s(&[
                "Check whether the call's effects happened before running it again: it may have run in part",
                "The session's next call gets a fresh sandbox; its variables and files are gone",
                "Another client or a cleanup may have stopped the sandbox: check MSB_OWNER_MARK and `msbw doctor`",
            ]),
            WrapperError::SandboxCreation { .. } => s(&[
                "Check that the backend is healthy (`msbw doctor`)",
                "Increase MSB_SANDBOX_START_TIMEOUT if starts are slow",
                "Check the backend's log for the reason",
            ]),
            WrapperError::CodeExecution { .. } | WrapperError::CommandExecution { .. } => s(&[
                "Retry the call; the session's sandbox is replaced if it was lost",
                "Check the backend's health with `msbw doctor`",
            ]),
            WrapperError::Connection { .. } => s(&[
                "Verify MSB_SERVER_URL",
                "Check that the microsandbox server is running: curl -s $MSB_SERVER_URL/api/v1/health",
                "Set MSB_BACKEND=local to run sandboxes without a server",
            ]),
            WrapperError::Unauthorized { .. } => s(&[
                "Check MSB_API_KEY (keys start with msb_)",
                "Mint a new key with `msb server keygen`",
                "Check the key's namespace matches MSB_NAMESPACE",
            ]),
            WrapperError::Unsupported { .. } => s(&["Use a backend that supports it (see `msbw doctor`)"]),
            WrapperError::InvalidInput { .. } => s(&["Correct the argument named in the message"]),
            WrapperError::File { kind, .. } => match kind {
                FileErrorKind::NotFound => s(&["List the folder with list_files to see what is there"]),
                FileErrorKind::PermissionDenied => {
                    s(&["Write under /tmp or a writable volume; volumes mapped with :ro cannot be written"])
                }
                FileErrorKind::TooLarge => s(&["Split the file, or move it through a volume mapping"]),
                FileErrorKind::InvalidPath => s(&["Give a path without `..` components, NUL bytes or a trailing /"]),
                _ => s(&["Check what the path names with list_files on its folder"]),
            },
            WrapperError::NotStarted => s(&["Call start() first, or use the scoped form that starts and stops"]),
            WrapperError::ShuttingDown => s(&["Create a new wrapper"]),
            WrapperError::Internal { .. } => {
                s(&["Retry; if it persists, report it with the log at MSB_LOG_LEVEL=DEBUG"])
            }
        }
    }

    /// Context fields, as `(name, value)` pairs (never secrets).
    pub fn context(&self) -> Vec<(&'static str, String)> {
        let mut c = Vec::new();
        match self {
            WrapperError::Configuration { key, source } => {
                if let Some(key) = key {
                    c.push(("key", key.var_name().to_owned()));
                }
                if let Some(p) = source.problems().first() {
                    c.push(("value", p.value.clone()));
                }
            }
            WrapperError::ResourceLimit(l) => {
                c.push(("resource_type", l.resource.to_string()));
                c.push(("current_usage", l.usage.to_string()));
                c.push(("limit", l.limit.to_string()));
                c.push(("requested", l.requested.to_string()));
            }
            WrapperError::SessionNotFound { session_id }
            | WrapperError::SessionMismatch(SessionMismatch { session_id, .. }) => {
                c.push(("session_id", session_id.clone()));
            }
            WrapperError::SandboxLost(lost) => {
                c.push(("session_id", lost.session_id.clone()));
                c.push(("sandbox", lost.sandbox.to_string()));
            }
            WrapperError::SandboxCreation {
                session_id, sandbox, ..
            } => {
                c.push(("session_id", session_id.clone()));
                if let Some(s) = sandbox {
                    c.push(("sandbox", s.to_string()));
                }
            }
            WrapperError::CodeExecution { session_id, .. } => c.push(("session_id", session_id.clone())),
            WrapperError::CommandExecution {
                session_id, command, ..
            } => {
                c.push(("session_id", session_id.clone()));
                c.push(("command", command.clone()));
            }
            WrapperError::Connection {
                backend, server_url, ..
            } => {
                c.push(("backend", backend.clone()));
                if let Some(url) = server_url {
                    c.push(("server_url", url.clone()));
                }
            }
            WrapperError::Unauthorized { backend, .. } => c.push(("backend", backend.clone())),
            WrapperError::InvalidInput { what, .. } => c.push(("argument", what.clone())),
            WrapperError::File { session_id, path, .. } => {
                c.push(("session_id", session_id.clone()));
                c.push(("path", path.clone()));
            }
            _ => {}
        }
        c
    }

    /// Whether trying again later may succeed. A lost sandbox is not: the call may have run in
    /// part, and only the caller can tell whether running it again is safe.
    pub fn is_retryable(&self) -> bool {
        match self {
            WrapperError::ResourceLimit { .. }
            | WrapperError::LimitReached { .. }
            | WrapperError::Connection { .. } => true,
            WrapperError::SandboxCreation { source, .. } => source.as_ref().is_some_and(|s| s.is_retryable()),
            WrapperError::CodeExecution { source, .. } | WrapperError::CommandExecution { source, .. } => {
                source.is_retryable()
            }
            _ => false,
        }
    }

    /// Converts a manager error; `command` names the command when the call ran one.
    pub(crate) fn from_manager(e: ManagerError, command: Option<&str>, server_url: Option<&str>) -> Self {
        match e {
            ManagerError::Config(source) => WrapperError::Configuration {
                key: source.problems().first().map(|p| p.key),
                source,
            },
            ManagerError::NotStarted => WrapperError::NotStarted,
            ManagerError::ShuttingDown => WrapperError::ShuttingDown,
            ManagerError::InvalidInput { what, message } => WrapperError::InvalidInput {
                what: what.to_owned(),
                message,
            },
            ManagerError::ResourceLimit(limit) => WrapperError::ResourceLimit(limit),
            ManagerError::SessionMismatch(mismatch) => WrapperError::SessionMismatch(mismatch),
            ManagerError::SandboxLost(lost) => WrapperError::SandboxLost(lost),
            ManagerError::SessionNotFound { session_id } => WrapperError::SessionNotFound { session_id },
            ManagerError::StartTimeout(timed_out) => WrapperError::SandboxCreation {
                message: timed_out.to_string(),
                session_id: timed_out.session_id,
                sandbox: Some(timed_out.sandbox),
                source: None,
            },
            ManagerError::Backend {
                phase,
                session_id,
                source,
            } => Self::from_backend(*source, phase, session_id, command, server_url),
            ManagerError::Internal(message) => WrapperError::Internal { message, source: None },
            other => WrapperError::Internal {
                message: other.to_string(),
                source: None,
            },
        }
    }

    /// Classifies an error of a backend call a front made itself, outside the manager (the CLI's
    /// persistent sessions call a session server's backend directly): as a start when
    /// `starting`, else as running code (or `command`) in `session_id`.
    pub fn from_backend_call(
        source: BackendError,
        starting: bool,
        session_id: &str,
        command: Option<&str>,
        server_url: Option<&str>,
    ) -> Self {
        let phase = if starting { Phase::Starting } else { Phase::Executing };
        Self::from_backend(source, phase, session_id.to_owned(), command, server_url)
    }

    /// Converts the error of a file call on `path`: the file's own failures become
    /// [`WrapperError::File`], the rest as for a command named after the operation.
    pub(crate) fn from_file_call(e: ManagerError, path: &str, operation: &str, server_url: Option<&str>) -> Self {
        match e {
            ManagerError::Backend { session_id, source, .. } if source.file_kind().is_some() => WrapperError::File {
                kind: source.file_kind().unwrap_or(FileErrorKind::NotFound),
                session_id,
                path: path.to_owned(),
                source,
            },
            other => Self::from_manager(other, Some(operation), server_url),
        }
    }

    fn from_backend(
        source: BackendError,
        phase: Phase,
        session_id: String,
        command: Option<&str>,
        server_url: Option<&str>,
    ) -> Self {
        let backend = source.backend().unwrap_or("sandbox").to_owned();
        match source.kind() {
            ErrorKind::Connect => WrapperError::Connection {
                backend,
                server_url: server_url.map(msbw_config::redact_url),
                source: Box::new(source),
            },
            ErrorKind::Unauthorized => WrapperError::Unauthorized {
                backend,
                source: Box::new(source),
            },
            ErrorKind::Unsupported => WrapperError::Unsupported {
                source: Box::new(source),
            },
            ErrorKind::LimitReached => WrapperError::LimitReached {
                source: Box::new(source),
            },
            ErrorKind::InvalidInput => WrapperError::InvalidInput {
                what: "request".into(),
                message: source.message().to_owned(),
            },
            _ => match phase {
                Phase::Starting => WrapperError::SandboxCreation {
                    session_id,
                    sandbox: source.sandbox().cloned(),
                    message: source.to_string(),
                    source: Some(Box::new(source)),
                },
                Phase::Executing => match command {
                    Some(command) => WrapperError::CommandExecution {
                        session_id,
                        command: command.to_owned(),
                        source: Box::new(source),
                    },
                    None => WrapperError::CodeExecution {
                        session_id,
                        failure: if source.kind() == ErrorKind::NotFound {
                            ExecutionFailure::SandboxLost
                        } else {
                            ExecutionFailure::Backend
                        },
                        source: Box::new(source),
                    },
                },
                _ => WrapperError::Internal {
                    message: format!("{phase} failed: {source}"),
                    source: Some(Box::new(source)),
                },
            },
        }
    }
}

impl From<ManagerError> for WrapperError {
    /// Classifies a manager error (without the server URL or command context the wrapper adds).
    fn from(e: ManagerError) -> Self {
        WrapperError::from_manager(e, None, None)
    }
}

impl From<ConfigError> for WrapperError {
    fn from(source: ConfigError) -> Self {
        WrapperError::Configuration {
            key: source.problems().first().map(|p| p.key),
            source,
        }
    }
}
