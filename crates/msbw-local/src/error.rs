//! What went wrong inside the local backend ([`LocalError`], private), and how it becomes the
//! shared [`BackendError`] with its kind, the operation and the sandbox.

use std::io;

use msbw_backend::{BackendError, ErrorKind, Operation, SandboxId};

/// The backend name errors carry.
pub(crate) const BACKEND: &str = "local";

/// A failure of the local backend, before it is put in context.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LocalError {
    /// The sandbox does not exist, is not running, or was stopped meanwhile.
    #[error("{0}")]
    NotFound(String),
    /// A sandbox with that name is already running (or starting).
    #[error("a sandbox with this name is already running")]
    AlreadyExists,
    /// The request cannot be carried out as given.
    #[error("{0}")]
    InvalidInput(String),
    /// This host cannot do it (no user namespaces, no interpreter, ...).
    #[error("{0}")]
    Unsupported(String),
    /// Something did not finish in time.
    #[error("{0}")]
    Timeout(String),
    /// The interpreter's driver broke the protocol.
    #[error("{0}")]
    Protocol(String),
    /// A system call or file operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

impl LocalError {
    /// An [`LocalError::Io`] with its context.
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        LocalError::Io {
            context: context.into(),
            source,
        }
    }

    /// The shared kind of this failure.
    pub(crate) fn kind(&self) -> ErrorKind {
        match self {
            LocalError::NotFound(_) => ErrorKind::NotFound,
            LocalError::AlreadyExists => ErrorKind::AlreadyExists,
            LocalError::InvalidInput(_) => ErrorKind::InvalidInput,
            LocalError::Unsupported(_) => ErrorKind::Unsupported,
            LocalError::Timeout(_) => ErrorKind::Timeout,
            LocalError::Protocol(_) => ErrorKind::Protocol,
            LocalError::Io { .. } => ErrorKind::Internal,
        }
    }

    /// The shared error for `operation` on sandbox `id`.
    pub(crate) fn into_backend(self, operation: Operation, id: Option<&SandboxId>) -> BackendError {
        let kind = self.kind();
        let (message, source) = match self {
            LocalError::Io { context, source } => (format!("{context}: {source}"), Some(source)),
            other => (other.to_string(), None),
        };
        let mut err = BackendError::new(kind, operation, message).with_backend(BACKEND);
        if let Some(id) = id {
            err = err.with_sandbox(id);
        }
        if let Some(source) = source {
            err = err.with_source(source);
        }
        err
    }
}

/// Puts `?`-able results in context: `.context("creating the sandbox directory")?`.
pub(crate) trait Context<T> {
    /// Wraps an I/O error with what was being done.
    fn context(self, what: impl FnOnce() -> String) -> Result<T, LocalError>;
}

impl<T> Context<T> for io::Result<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T, LocalError> {
        self.map_err(|e| LocalError::io(what(), e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_keep_kind_operation_sandbox_and_source() {
        let id = SandboxId::new("default", "s1").unwrap();
        let err = LocalError::io("creating /tmp/x", io::Error::from_raw_os_error(libc::ENOSPC))
            .into_backend(Operation::Start, Some(&id));
        assert_eq!(err.kind(), ErrorKind::Internal);
        assert_eq!(err.backend(), Some("local"));
        assert_eq!(err.sandbox(), Some(&id));
        assert!(err.to_string().contains("creating /tmp/x"), "{err}");
        assert!(std::error::Error::source(&err).is_some());

        let err = LocalError::AlreadyExists.into_backend(Operation::Start, Some(&id));
        assert_eq!(err.kind(), ErrorKind::AlreadyExists);
        assert_eq!(
            LocalError::NotFound("gone".into())
                .into_backend(Operation::RunCode, None)
                .kind(),
            ErrorKind::NotFound
        );
    }
}
