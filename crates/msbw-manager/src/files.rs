//! Files in and out of a session's sandbox: write, read, list, remove.
//!
//! A file call takes the session like an execution does (admission, the session's execution
//! lock, a start if its sandbox was lost), so it is busy for the call's length and never runs
//! beside code in the same sandbox. A session that does not exist is created by
//! [`FileCall::write`] (with the default template and flavor), never by a read, a listing or a
//! removal (those fail with `SessionNotFound`). A sandbox found gone during a file call puts the
//! session in error (its next call gets a fresh sandbox); the call is not repeated.

use std::sync::Arc;
use std::time::Duration;

use msbw_backend::{BackendError, ErrorKind, FileEntry, SandboxId, Template};
use tracing::Instrument;

use crate::detach::FinishOnDrop;
use crate::error::within;
use crate::execute::Plan;
use crate::lifecycle::Inner;
use crate::session::SessionStatus;
use crate::{ManagerError, Phase};

pub use msbw_backend::files::{MAX_FILE_BYTES, MAX_LIST_ENTRIES};

/// The longest a file call may take on the backend (a large transfer over the command fallback
/// is many commands).
pub const FILE_CALL_TIMEOUT: Duration = Duration::from_secs(600);

/// What a file call does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileWork {
    /// Writes the bytes to the path (replacing the file).
    Write(Vec<u8>),
    /// Reads the file, refusing one over this many bytes.
    Read {
        /// The largest file accepted.
        max_bytes: u64,
    },
    /// Lists the folder.
    List,
    /// Removes the file.
    Remove,
}

impl FileWork {
    /// The backend operation it is.
    pub fn operation(&self) -> msbw_backend::Operation {
        match self {
            FileWork::Write(_) => msbw_backend::Operation::WriteFile,
            FileWork::Read { .. } => msbw_backend::Operation::ReadFile,
            FileWork::List => msbw_backend::Operation::ListFiles,
            FileWork::Remove => msbw_backend::Operation::RemoveFile,
        }
    }
}

/// A file operation in a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileCall {
    /// The session.
    pub session_id: String,
    /// The path inside the sandbox (absolute, or relative to its working folder; no `..`).
    pub path: String,
    /// What to do.
    pub work: FileWork,
}

impl FileCall {
    /// Writes `data` to `path` in `session_id` (the session is created if it does not exist).
    pub fn write(session_id: impl Into<String>, path: impl Into<String>, data: impl Into<Vec<u8>>) -> Self {
        Self::new(session_id, path, FileWork::Write(data.into()))
    }

    /// Reads `path` in `session_id`, up to [`MAX_FILE_BYTES`].
    pub fn read(session_id: impl Into<String>, path: impl Into<String>) -> Self {
        Self::new(
            session_id,
            path,
            FileWork::Read {
                max_bytes: MAX_FILE_BYTES,
            },
        )
    }

    /// Lists the folder `path` in `session_id`.
    pub fn list(session_id: impl Into<String>, path: impl Into<String>) -> Self {
        Self::new(session_id, path, FileWork::List)
    }

    /// Removes the file `path` in `session_id`.
    pub fn remove(session_id: impl Into<String>, path: impl Into<String>) -> Self {
        Self::new(session_id, path, FileWork::Remove)
    }

    /// Sets the largest file a read accepts (at most [`MAX_FILE_BYTES`]).
    pub fn max_bytes(mut self, max: u64) -> Self {
        if let FileWork::Read { max_bytes } = &mut self.work {
            *max_bytes = max.min(MAX_FILE_BYTES);
        }
        self
    }

    fn new(session_id: impl Into<String>, path: impl Into<String>, work: FileWork) -> Self {
        FileCall {
            session_id: session_id.into(),
            path: path.into(),
            work,
        }
    }
}

/// What a file call returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileOutcome {
    /// Written or removed.
    Done,
    /// The file's bytes.
    Read(Vec<u8>),
    /// The folder's entries.
    Listed(Vec<FileEntry>),
}

/// A finished file call with its session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileResult {
    /// What it returned.
    pub outcome: FileOutcome,
    /// The session.
    pub session_id: String,
    /// The sandbox that served it.
    pub sandbox: SandboxId,
    /// Whether this call created the session.
    pub session_created: bool,
}

impl Inner {
    /// Runs a file call in its session (in a task of its own, like an execution).
    pub(crate) async fn file_call(self: &Arc<Self>, call: FileCall) -> Result<FileResult, ManagerError> {
        self.ensure_running()?;
        let session_id = crate::execute::session_id_of(Some(&call.session_id))?;
        let operation = call.work.operation();
        if let FileWork::Write(data) = &call.work
            && data.len() as u64 > MAX_FILE_BYTES
        {
            let e = msbw_backend::files::file_error(
                msbw_backend::FileErrorKind::TooLarge,
                operation,
                &call.path,
                format!("{} bytes is more than the limit of {MAX_FILE_BYTES}", data.len()),
            );
            return Err(ManagerError::backend(Phase::Validating, &session_id, e));
        }
        let folder = call.work == FileWork::List;
        msbw_backend::files::check_path(&call.path, operation, folder)
            .map_err(|e| ManagerError::backend(Phase::Validating, &session_id, e))?;
        // The session's own template and flavor, so that admission reuses it whatever it is.
        let existing = self.lock().session(&session_id).map(|e| (e.template(), e.flavor()));
        let may_create = matches!(call.work, FileWork::Write(_));
        let (template, flavor) = match existing {
            Some(found) => found,
            None if may_create => (Template::Python, self.config().default_flavor),
            None => return Err(ManagerError::SessionNotFound { session_id }),
        };
        let plan = Plan {
            session_id: session_id.clone(),
            template,
            flavor,
            create: may_create.then(Arc::default),
        };
        let span = tracing::info_span!("file_call", session_id = %session_id, operation = %operation, backend = self.backend().name());
        let inner = self.clone();
        FinishOnDrop::new(async move { inner.run_file(plan, call).await }.instrument(span)).await
    }

    async fn run_file(self: &Arc<Self>, plan: Plan, call: FileCall) -> Result<FileResult, ManagerError> {
        let mut acquired = self.acquire(&plan).await?;
        self.ensure_started(&mut acquired).await?;
        let session_id = acquired.session_id().to_owned();
        let token = acquired.token();
        let sandbox = acquired.sandbox().clone();
        self.begin(&mut acquired);
        let backend = self.backend();
        let path = call.path.as_str();
        let work = async {
            match &call.work {
                FileWork::Write(data) => backend
                    .write_file(&sandbox, path, data)
                    .await
                    .map(|()| FileOutcome::Done),
                FileWork::Read { max_bytes } => backend
                    .read_file(&sandbox, path, *max_bytes)
                    .await
                    .map(FileOutcome::Read),
                FileWork::List => backend.list_files(&sandbox, path).await.map(FileOutcome::Listed),
                FileWork::Remove => backend.remove_file(&sandbox, path).await.map(|()| FileOutcome::Done),
            }
        };
        let outcome = within(Phase::Executing, FILE_CALL_TIMEOUT, work).await;
        acquired.set_in_backend(false);
        let (status, result) = match outcome {
            Ok(Ok(outcome)) => (SessionStatus::Ready, Ok(outcome)),
            Ok(Err(e)) if e.kind() == ErrorKind::NotFound => {
                tracing::warn!(%sandbox, "the session's sandbox vanished during a file call");
                (SessionStatus::Error, Err(e))
            }
            Ok(Err(e)) => (SessionStatus::Ready, Err(e)),
            Err(overran) => (
                SessionStatus::Error,
                Err(BackendError::new(
                    ErrorKind::Timeout,
                    call.work.operation(),
                    format!(
                        "the file call did not finish within {} s; the sandbox will be replaced",
                        overran.limit.as_secs()
                    ),
                )
                .with_sandbox(&sandbox)),
            ),
        };
        self.set_status(&session_id, token, status, None);
        let outcome = result.map_err(|e| ManagerError::backend(Phase::Executing, &session_id, e))?;
        Ok(FileResult {
            outcome,
            session_id,
            sandbox,
            session_created: acquired.created(),
        })
    }
}
