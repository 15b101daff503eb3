//! The `msbw.fs.*` extension methods (see `msbw_protocol::files`): files in and out of a
//! client's running sandbox, in chunks.
//!
//! A write's chunks are gathered here until the last one arrives, then written in one
//! `write_file`; a read fetches the whole file once (at offset 0) and answers the following
//! chunks from it. Both tables are bounded ([`MAX_PENDING`] transfers, [`MAX_PENDING_BYTES`]
//! bytes in all); a transfer beyond the bounds is refused, never grown without limit.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use microsandbox_wrapper::manager::files::MAX_FILE_BYTES;
use microsandbox_wrapper::{FileErrorKind, WrapperError};
use msbw_protocol::envelope::Request;
use msbw_protocol::files::{FS_CHUNK_BYTES, FsEntry, FsPathParams, FsReadParams, FsResult, FsWriteParams};

use crate::auth::Caller;
use crate::methods::{check_target, params, session_of};
use crate::reply::{RestError, success};
use crate::server::AppState;

/// The most transfers (writes being gathered, reads being served) held at once.
pub(crate) const MAX_PENDING: usize = 16;
/// The most bytes all held transfers may take together.
pub(crate) const MAX_PENDING_BYTES: usize = 512 * 1024 * 1024;

type Key = (String, String, String);
type Answer = Result<axum::response::Response, RestError>;

/// Writes being gathered and reads being served.
#[derive(Debug, Default)]
pub(crate) struct Transfers {
    inner: Mutex<Tables>,
}

#[derive(Debug, Default)]
struct Tables {
    writes: HashMap<Key, Vec<u8>>,
    reads: HashMap<Key, Vec<u8>>,
}

impl Tables {
    fn bytes(&self) -> usize {
        self.writes.values().chain(self.reads.values()).map(Vec::len).sum()
    }

    fn count(&self) -> usize {
        self.writes.len() + self.reads.len()
    }
}

impl Transfers {
    fn lock(&self) -> MutexGuard<'_, Tables> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn key(namespace: &str, sandbox: &str, path: &str) -> Key {
    (namespace.to_owned(), sandbox.to_owned(), path.to_owned())
}

fn answer(result: &FsResult, request: &Request) -> Answer {
    Ok(success(result, request.id.as_deref()))
}

/// A wrapper error as the extension answers it: a file's failure in `error`, the rest as the
/// other methods answer errors.
fn failed(e: &WrapperError, request: &Request) -> Answer {
    match e {
        WrapperError::File { kind, source, .. } => answer(&FsResult::failed(kind.as_str(), source.message()), request),
        other => Err(RestError::from_wrapper(other)),
    }
}

fn too_large(message: String, request: &Request) -> Answer {
    answer(&FsResult::failed(FileErrorKind::TooLarge.as_str(), message), request)
}

/// `msbw.fs.write`.
pub(crate) async fn write(state: &AppState, caller: &Caller, request: &Request) -> Answer {
    let p: FsWriteParams = params(request)?;
    check_target(caller, &p.namespace, &p.sandbox)?;
    let session = session_of(state, &p.namespace, &p.sandbox)?;
    let chunk = STANDARD
        .decode(p.data.as_bytes())
        .map_err(|e| RestError::validation(format!("data is not base64: {e}")))?;
    if chunk.len() > FS_CHUNK_BYTES {
        return Err(RestError::validation(format!(
            "a chunk may carry at most {FS_CHUNK_BYTES} bytes"
        )));
    }
    let k = key(&p.namespace, &p.sandbox, &p.path);
    let whole = {
        let mut t = state.transfers.lock();
        if p.offset == 0 {
            t.writes.remove(&k);
        }
        let held = t.writes.get(&k).map_or(0, Vec::len) as u64;
        if held != p.offset {
            t.writes.remove(&k);
            return Err(RestError::validation(format!(
                "chunk at offset {} does not follow the {held} bytes received; start again at offset 0",
                p.offset
            )));
        }
        if p.offset + chunk.len() as u64 > MAX_FILE_BYTES {
            t.writes.remove(&k);
            return too_large(format!("files over {MAX_FILE_BYTES} bytes are refused"), request);
        }
        if !t.writes.contains_key(&k) && t.count() >= MAX_PENDING {
            return Err(RestError::internal(format!(
                "{MAX_PENDING} file transfers are in progress; try again when one has finished"
            )));
        }
        if t.bytes() + chunk.len() > MAX_PENDING_BYTES {
            t.writes.remove(&k);
            return Err(RestError::internal(
                "file transfers in progress hold too much memory; try again later",
            ));
        }
        let buffer = t.writes.entry(k.clone()).or_default();
        buffer.extend_from_slice(&chunk);
        if !p.last {
            return answer(&FsResult::default(), request);
        }
        t.writes.remove(&k).unwrap_or_default()
    };
    match state.wrapper.write_file(&session.session_id, &p.path, whole).await {
        Ok(_) => answer(&FsResult::default(), request),
        Err(e) => failed(&e, request),
    }
}

/// `msbw.fs.read`.
pub(crate) async fn read(state: &AppState, caller: &Caller, request: &Request) -> Answer {
    let p: FsReadParams = params(request)?;
    check_target(caller, &p.namespace, &p.sandbox)?;
    let session = session_of(state, &p.namespace, &p.sandbox)?;
    let k = key(&p.namespace, &p.sandbox, &p.path);
    let cached = if p.offset == 0 {
        state.transfers.lock().reads.remove(&k);
        None
    } else {
        let t = state.transfers.lock();
        t.reads.get(&k).map(|data| slice(data, p.offset))
    };
    let (data, size, eof) = match cached {
        Some(found) => found,
        None => {
            let max = p.max_bytes.min(MAX_FILE_BYTES);
            let data = match state.wrapper.read_file_limited(&session.session_id, &p.path, max).await {
                Ok(data) => data,
                Err(e) => return failed(&e, request),
            };
            let found = slice(&data, p.offset);
            if !found.2 {
                let mut t = state.transfers.lock();
                if t.count() >= MAX_PENDING || t.bytes() + data.len() > MAX_PENDING_BYTES {
                    return Err(RestError::internal(
                        "too many file transfers are in progress; try again when one has finished",
                    ));
                }
                t.reads.insert(k.clone(), data);
            }
            found
        }
    };
    if eof {
        state.transfers.lock().reads.remove(&k);
    }
    answer(
        &FsResult {
            data: Some(data),
            size: Some(size),
            eof: Some(eof),
            ..FsResult::default()
        },
        request,
    )
}

/// The chunk at `offset` (base64), the file's size, and whether the chunk ends it.
fn slice(data: &[u8], offset: u64) -> (String, u64, bool) {
    let start = usize::try_from(offset).unwrap_or(usize::MAX).min(data.len());
    let end = start.saturating_add(FS_CHUNK_BYTES).min(data.len());
    (STANDARD.encode(&data[start..end]), data.len() as u64, end == data.len())
}

/// `msbw.fs.list`.
pub(crate) async fn list(state: &AppState, caller: &Caller, request: &Request) -> Answer {
    let p: FsPathParams = params(request)?;
    check_target(caller, &p.namespace, &p.sandbox)?;
    let session = session_of(state, &p.namespace, &p.sandbox)?;
    match state.wrapper.list_files(&session.session_id, &p.path).await {
        Ok(entries) => answer(
            &FsResult {
                entries: Some(
                    entries
                        .into_iter()
                        .map(|e| FsEntry {
                            name: e.name,
                            path: e.path,
                            kind: e.kind.as_str().to_owned(),
                            size: e.size,
                            mode: e.mode,
                        })
                        .collect(),
                ),
                ..FsResult::default()
            },
            request,
        ),
        Err(e) => failed(&e, request),
    }
}

/// `msbw.fs.remove`.
pub(crate) async fn remove(state: &AppState, caller: &Caller, request: &Request) -> Answer {
    let p: FsPathParams = params(request)?;
    check_target(caller, &p.namespace, &p.sandbox)?;
    let session = session_of(state, &p.namespace, &p.sandbox)?;
    match state.wrapper.remove_file(&session.session_id, &p.path).await {
        Ok(()) => answer(&FsResult::default(), request),
        Err(e) => failed(&e, request),
    }
}
