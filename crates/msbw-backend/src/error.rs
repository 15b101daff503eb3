//! The one error type every backend returns, classified by kind.

use std::fmt;

use crate::SandboxId;
use crate::files::FileErrorKind;

/// What kind of failure an error is. Callers decide with this, never with message text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The backend could not be reached (connection refused, reset, DNS, ...).
    Connect,
    /// The backend refused the credentials, or they do not cover this namespace.
    Unauthorized,
    /// The sandbox does not exist or is not running.
    NotFound,
    /// A sandbox with that name is already running.
    AlreadyExists,
    /// The operation did not finish in time.
    Timeout,
    /// The backend understood the request and refused it (its reason is in the message).
    Rejected,
    /// The request was invalid and was not sent.
    InvalidInput,
    /// The backend cannot do this (a read-only volume on a server that cannot mount one, ...).
    Unsupported,
    /// The backend answered something that does not follow its protocol.
    Protocol,
    /// Anything else that went wrong inside the backend.
    Internal,
    /// A server that owns sessions refused a new one: its session or memory limit is reached
    /// (`msbw serve` says so; the real microsandbox server has no limits). Try again later.
    LimitReached,
    /// A file operation failed for a reason of its own (the sandbox itself is fine).
    File(FileErrorKind),
}

impl ErrorKind {
    /// A short description, as shown in messages.
    pub const fn describe(self) -> &'static str {
        match self {
            ErrorKind::Connect => "cannot connect",
            ErrorKind::Unauthorized => "unauthorised",
            ErrorKind::NotFound => "sandbox not found",
            ErrorKind::AlreadyExists => "sandbox already running",
            ErrorKind::Timeout => "timed out",
            ErrorKind::Rejected => "rejected by the backend",
            ErrorKind::InvalidInput => "invalid input",
            ErrorKind::Unsupported => "not supported by this backend",
            ErrorKind::Protocol => "protocol violation",
            ErrorKind::Internal => "internal error",
            ErrorKind::LimitReached => "a limit of the server was reached",
            ErrorKind::File(kind) => kind.describe(),
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.describe())
    }
}

type Source = Box<dyn std::error::Error + Send + Sync + 'static>;

/// An error from a backend: its kind, the operation, the sandbox, the backend and a message a
/// person can act on. It never contains the API key.
#[derive(Debug)]
pub struct BackendError {
    kind: ErrorKind,
    operation: Operation,
    backend: Option<&'static str>,
    sandbox: Option<SandboxId>,
    message: String,
    retryable: bool,
    unsent: bool,
    source: Option<Source>,
}

impl BackendError {
    /// A new error; whether it is retryable follows from its kind (see [`BackendError::is_retryable`]).
    pub fn new(kind: ErrorKind, operation: Operation, message: impl Into<String>) -> Self {
        BackendError {
            kind,
            operation,
            backend: None,
            sandbox: None,
            message: message.into(),
            retryable: matches!(kind, ErrorKind::Connect | ErrorKind::Timeout),
            unsent: false,
            source: None,
        }
    }

    /// Tags the error with the backend that failed (`microsandbox`, `local`, ...).
    pub fn with_backend(mut self, backend: &'static str) -> Self {
        self.backend = Some(backend);
        self
    }

    /// Tags the error with the sandbox concerned.
    pub fn with_sandbox(mut self, id: &SandboxId) -> Self {
        self.sandbox = Some(id.clone());
        self
    }

    /// Keeps the underlying error (it must not contain secrets either).
    pub fn with_source(mut self, source: impl Into<Source>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// Overrides whether the error is worth retrying.
    pub fn with_retryable(mut self, retryable: bool) -> Self {
        self.retryable = retryable;
        self
    }

    /// Marks the error as certain not to have reached a sandbox: the request was refused before
    /// anything ran (for example the sandbox was known to be gone before the code was sent).
    /// Only then may the manager send the same code or command again, to a replacement
    /// sandbox; without the mark, a failed execution is never repeated.
    pub fn unsent(mut self) -> Self {
        self.unsent = true;
        self
    }

    /// Whether the request certainly reached no sandbox (see [`BackendError::unsent`]).
    pub fn is_unsent(&self) -> bool {
        self.unsent
    }

    /// What kind of failure it is.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The operation that failed.
    pub fn operation(&self) -> Operation {
        self.operation
    }

    /// The backend that failed, if tagged.
    pub fn backend(&self) -> Option<&'static str> {
        self.backend
    }

    /// The sandbox concerned, if any.
    pub fn sandbox(&self) -> Option<&SandboxId> {
        self.sandbox.as_ref()
    }

    /// The file error's kind, if this is one ([`ErrorKind::File`]).
    pub fn file_kind(&self) -> Option<FileErrorKind> {
        match self.kind {
            ErrorKind::File(kind) => Some(kind),
            _ => None,
        }
    }

    /// The message, without the kind and context.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Whether the failure is transient, so that trying again later may succeed: connection
    /// failures and timeouts by default. Only retry operations that are idempotent
    /// ([`Operation::is_idempotent`]) or that certainly were not sent.
    pub fn is_retryable(&self) -> bool {
        self.retryable
    }
}

impl fmt::Display for BackendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(backend) = self.backend {
            write!(f, "{backend} backend: ")?;
        }
        write!(f, "{}", self.operation)?;
        if let Some(id) = &self.sandbox {
            write!(f, " of sandbox {id}")?;
        }
        write!(f, " failed ({}): {}", self.kind, self.message)
    }
}

impl std::error::Error for BackendError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().map(|s| s as &(dyn std::error::Error + 'static))
    }
}

/// The backend operation that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Operation {
    /// A health check.
    Health,
    /// Starting a sandbox.
    Start,
    /// Stopping a sandbox.
    Stop,
    /// Running code in a sandbox's REPL.
    RunCode,
    /// Running a command in a sandbox.
    RunCommand,
    /// Listing sandboxes.
    List,
    /// Writing a file into a sandbox.
    WriteFile,
    /// Reading a file from a sandbox.
    ReadFile,
    /// Listing a folder of a sandbox.
    ListFiles,
    /// Removing a file from a sandbox.
    RemoveFile,
}

impl Operation {
    /// Whether repeating the operation is harmless (so it may be retried after any failure).
    pub const fn is_idempotent(self) -> bool {
        matches!(
            self,
            Operation::Health | Operation::Stop | Operation::List | Operation::ReadFile | Operation::ListFiles
        )
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Operation::Health => "health check",
            Operation::Start => "start",
            Operation::Stop => "stop",
            Operation::RunCode => "run code",
            Operation::RunCommand => "run command",
            Operation::List => "list",
            Operation::WriteFile => "write file",
            Operation::ReadFile => "read file",
            Operation::ListFiles => "list files",
            Operation::RemoveFile => "remove file",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_backend_operation_sandbox_kind_and_message() {
        let id = SandboxId {
            namespace: "default".into(),
            name: "s1".into(),
        };
        let err = BackendError::new(ErrorKind::NotFound, Operation::RunCode, "no such sandbox")
            .with_backend("microsandbox")
            .with_sandbox(&id);
        assert_eq!(
            err.to_string(),
            "microsandbox backend: run code of sandbox default/s1 failed (sandbox not found): no such sandbox"
        );
        assert!(!err.is_retryable());
    }

    #[test]
    fn connection_failures_and_timeouts_are_retryable() {
        assert!(BackendError::new(ErrorKind::Connect, Operation::List, "refused").is_retryable());
        assert!(BackendError::new(ErrorKind::Timeout, Operation::List, "slow").is_retryable());
        assert!(!BackendError::new(ErrorKind::Rejected, Operation::List, "no").is_retryable());
        assert!(
            BackendError::new(ErrorKind::Internal, Operation::List, "503")
                .with_retryable(true)
                .is_retryable()
        );
        assert!(Operation::Stop.is_idempotent());
        assert!(!Operation::RunCode.is_idempotent());
    }

    #[test]
    fn only_marked_errors_are_unsent() {
        let err = BackendError::new(ErrorKind::NotFound, Operation::RunCode, "gone");
        assert!(!err.is_unsent());
        assert!(err.unsent().is_unsent());
    }

    #[test]
    fn the_source_is_kept() {
        let io = std::io::Error::other("boom");
        let err = BackendError::new(ErrorKind::Internal, Operation::Start, "spawn failed").with_source(io);
        assert_eq!(
            std::error::Error::source(&err).map(ToString::to_string),
            Some("boom".to_owned())
        );
    }
}
