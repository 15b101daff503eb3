//! Files in and out of a session's sandbox (see `docs/files.md`).

use msbw_backend::FileEntry;
use msbw_manager::{FileCall, FileOutcome, FileResult};

use crate::{MicrosandboxWrapper, WrapperError};

impl MicrosandboxWrapper {
    /// Writes `data` to `path` in the session's sandbox, replacing the file and creating missing
    /// parent folders. A session that does not exist is created (Python, the default flavor),
    /// as a first `execute_code` would; the `bool` says whether this call created it. Paths are
    /// absolute or relative to the sandbox's working folder; `..` is refused. Read-only volumes
    /// refuse writes ([`WrapperError::File`] with `FileErrorKind::PermissionDenied`).
    pub async fn write_file(
        &self,
        session_id: &str,
        path: &str,
        data: impl Into<Vec<u8>>,
    ) -> Result<bool, WrapperError> {
        Ok(self
            .file_call(FileCall::write(session_id, path, data))
            .await?
            .session_created)
    }

    /// Reads the regular file `path` of an existing session, up to
    /// [`manager::files::MAX_FILE_BYTES`](msbw_manager::files::MAX_FILE_BYTES).
    pub async fn read_file(&self, session_id: &str, path: &str) -> Result<Vec<u8>, WrapperError> {
        self.read_file_limited(session_id, path, msbw_manager::files::MAX_FILE_BYTES)
            .await
    }

    /// Reads `path`, refusing a file larger than `max_bytes` before reading it
    /// (`FileErrorKind::TooLarge`).
    pub async fn read_file_limited(
        &self,
        session_id: &str,
        path: &str,
        max_bytes: u64,
    ) -> Result<Vec<u8>, WrapperError> {
        match self
            .file_call(FileCall::read(session_id, path).max_bytes(max_bytes))
            .await?
            .outcome
        {
            FileOutcome::Read(data) => Ok(data),
            other => Err(unexpected(&other)),
        }
    }

    /// Lists the folder `path` of an existing session: entries sorted by name, links not
    /// followed.
    pub async fn list_files(&self, session_id: &str, path: &str) -> Result<Vec<FileEntry>, WrapperError> {
        match self.file_call(FileCall::list(session_id, path)).await?.outcome {
            FileOutcome::Listed(entries) => Ok(entries),
            other => Err(unexpected(&other)),
        }
    }

    /// Removes the file (or symbolic link) `path` of an existing session; folders are refused.
    pub async fn remove_file(&self, session_id: &str, path: &str) -> Result<(), WrapperError> {
        self.file_call(FileCall::remove(session_id, path)).await.map(|_| ())
    }

    /// Any file call, with the session it ran in and whether it created it. The session is
    /// held busy for the call (never reaped, never running code at the same time).
    pub async fn file_call(&self, call: FileCall) -> Result<FileResult, WrapperError> {
        let path = call.path.clone();
        let operation = call.work.operation().to_string();
        self.manager
            .file_call(call)
            .await
            .map_err(|e| WrapperError::from_file_call(e, &path, &operation, self.server_url()))
    }
}

fn unexpected(outcome: &FileOutcome) -> WrapperError {
    WrapperError::Internal {
        message: format!("the file call returned the wrong kind of outcome: {outcome:?}"),
        source: None,
    }
}
