//! Files over the wire: the `msbw.fs.*` extension of `msbw serve` when the server announces it
//! (`"files": true` in its health answer), otherwise the trait's command-based defaults
//! (`msbw_backend::files::commands`), which work against the upstream server too.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use msbw_backend::files::{self, FileErrorKind, MAX_FILE_BYTES, commands, file_error};
use msbw_backend::{BackendError, ErrorKind, FileEntry, FileKind, Operation, SandboxBackendExt, SandboxId};
use msbw_protocol::files::{FS_CHUNK_BYTES, FsPathParams, FsReadParams, FsResult, FsWriteParams};
use msbw_protocol::method;
use serde::Serialize;

use crate::HttpBackend;

/// The longest a call that moves a whole file inside the server may take.
const FILE_CALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(600);
use crate::client::Retry;
use crate::listing::decode;

impl HttpBackend {
    /// Whether the server announced the file extension (asked once, then cached).
    async fn native_files(&self) -> bool {
        self.announced(|h| h.files).await
    }

    /// One `msbw.fs.*` call; a file's own failure comes back as [`ErrorKind::File`].
    #[allow(clippy::too_many_arguments)]
    async fn fs_call<P: Serialize + Sync>(
        &self,
        id: &SandboxId,
        rpc: &str,
        path: &str,
        params: &P,
        retry: Retry,
        whole_file: bool,
    ) -> Result<FsResult, BackendError> {
        let operation = match rpc {
            method::FS_WRITE => Operation::WriteFile,
            method::FS_READ => Operation::ReadFile,
            method::FS_LIST => Operation::ListFiles,
            _ => Operation::RemoveFile,
        };
        let cx = self.cx(operation, Some(id), rpc);
        // A call that moves the whole file inside the server (the last chunk of a write, the
        // first of a read) may take as long as the manager allows a file call.
        let timeout = if whole_file {
            self.config.request_timeout.max(FILE_CALL_TIMEOUT)
        } else {
            self.config.request_timeout
        };
        let raw = match self.client.rpc(rpc, params, timeout, retry).await {
            Ok(raw) => raw,
            Err(e) => {
                let error = e.into_backend(&cx);
                // The server answers an unknown sandbox like any failure: ask whether it runs.
                if error.kind() != ErrorKind::Connect && matches!(self.is_running(id).await, Ok(false)) {
                    return Err(cx.error(ErrorKind::NotFound, format!("sandbox {id} is not running")));
                }
                return Err(error);
            }
        };
        let result: FsResult = decode(&raw, rpc).map_err(|e| e.into_backend(&cx))?;
        if let Some(failure) = &result.error {
            let kind = FileErrorKind::from_name(&failure.kind).unwrap_or(FileErrorKind::NotFound);
            return Err(file_error(kind, operation, path, self.scrub(&failure.message))
                .with_backend(crate::errors::BACKEND)
                .with_sandbox(id));
        }
        Ok(result)
    }

    pub(crate) async fn write_file_in(&self, id: &SandboxId, path: &str, data: &[u8]) -> Result<(), BackendError> {
        if !self.native_files().await {
            return commands::write(self, id, path, data).await;
        }
        files::check_write(path, data.len()).map_err(|e| self.tag(e, Some(id)))?;
        let mut offset = 0usize;
        loop {
            let end = (offset + FS_CHUNK_BYTES).min(data.len());
            let params = FsWriteParams {
                sandbox: id.name.clone(),
                namespace: id.namespace.clone(),
                path: path.to_owned(),
                offset: offset as u64,
                data: STANDARD.encode(&data[offset..end]),
                last: end == data.len(),
            };
            let last = params.last;
            self.fs_call(id, method::FS_WRITE, path, &params, Retry::UnsentOnly, last)
                .await?;
            if end == data.len() {
                return Ok(());
            }
            offset = end;
        }
    }

    pub(crate) async fn read_file_in(
        &self,
        id: &SandboxId,
        path: &str,
        max_bytes: u64,
    ) -> Result<Vec<u8>, BackendError> {
        if !self.native_files().await {
            return commands::read(self, id, path, max_bytes).await;
        }
        let op = Operation::ReadFile;
        files::check_path(path, op, false).map_err(|e| self.tag(e, Some(id)))?;
        let max_bytes = max_bytes.min(MAX_FILE_BYTES);
        let mut data = Vec::new();
        loop {
            let params = FsReadParams {
                sandbox: id.name.clone(),
                namespace: id.namespace.clone(),
                path: path.to_owned(),
                offset: data.len() as u64,
                max_bytes,
            };
            let cx = self.cx(op, Some(id), method::FS_READ);
            let result = self
                .fs_call(id, method::FS_READ, path, &params, Retry::Idempotent, data.is_empty())
                .await?;
            let size = result.size.unwrap_or(0);
            if size > max_bytes {
                return Err(cx.error(
                    ErrorKind::Protocol,
                    format!("the server sent a file of {size} bytes, over the limit"),
                ));
            }
            let chunk = STANDARD
                .decode(result.data.unwrap_or_default().as_bytes())
                .map_err(|e| cx.error(ErrorKind::Protocol, format!("the server sent invalid base64 ({e})")))?;
            if data.len() as u64 + chunk.len() as u64 > size {
                return Err(cx.error(ErrorKind::Protocol, "the server sent more bytes than the file's size"));
            }
            data.extend_from_slice(&chunk);
            if result.eof.unwrap_or(true) || chunk.is_empty() {
                return Ok(data);
            }
        }
    }

    pub(crate) async fn list_files_in(&self, id: &SandboxId, path: &str) -> Result<Vec<FileEntry>, BackendError> {
        if !self.native_files().await {
            return commands::list(self, id, path).await;
        }
        let op = Operation::ListFiles;
        files::check_path(path, op, true).map_err(|e| self.tag(e, Some(id)))?;
        let params = path_params(id, path);
        let result = self
            .fs_call(id, method::FS_LIST, path, &params, Retry::Idempotent, true)
            .await?;
        Ok(result
            .entries
            .unwrap_or_default()
            .into_iter()
            .take(files::MAX_LIST_ENTRIES)
            .map(|e| FileEntry {
                name: e.name,
                path: e.path,
                kind: FileKind::from_name(&e.kind),
                size: e.size,
                mode: e.mode,
            })
            .collect())
    }

    pub(crate) async fn remove_file_in(&self, id: &SandboxId, path: &str) -> Result<(), BackendError> {
        if !self.native_files().await {
            return commands::remove(self, id, path).await;
        }
        let op = Operation::RemoveFile;
        files::check_path(path, op, false).map_err(|e| self.tag(e, Some(id)))?;
        let params = path_params(id, path);
        self.fs_call(id, method::FS_REMOVE, path, &params, Retry::UnsentOnly, true)
            .await?;
        Ok(())
    }
}

fn path_params(id: &SandboxId, path: &str) -> FsPathParams {
    FsPathParams {
        sandbox: id.name.clone(),
        namespace: id.namespace.clone(),
        path: path.to_owned(),
    }
}
