//! The file extension of `msbw serve`: `msbw.fs.write`, `msbw.fs.read`, `msbw.fs.list` and
//! `msbw.fs.remove`, announced as `"files": true` in the health answer's `capabilities`.
//! Upstream servers have none of this; clients use it only when it is announced.
//!
//! Data travels base64-encoded in chunks of at most [`FS_CHUNK_BYTES`] raw bytes, so every
//! request and answer stays under [`crate::MAX_REQUEST_BYTES`]. A write sends chunks at
//! increasing `offset`s (the first at 0 starts the file over) and `last: true` on the final
//! one, which is when the file is written. A read asks for `offset` and gets at most
//! [`FS_CHUNK_BYTES`] with the file's `size` and `eof`. A failure of the file itself (not found,
//! permission denied, ...) is a successful JSON-RPC answer with `error` set, so that its
//! [`FsError::kind`] survives; protocol failures stay JSON-RPC errors.

use serde::{Deserialize, Serialize};

/// Raw bytes per chunk (base64 makes 1.4 MB of it, under the 2 MiB body limit).
pub const FS_CHUNK_BYTES: usize = 1024 * 1024;

/// `msbw.fs.write` params: one chunk of a file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FsWriteParams {
    /// The sandbox.
    pub sandbox: String,
    /// Its namespace.
    pub namespace: String,
    /// The path inside the sandbox.
    pub path: String,
    /// Where this chunk starts; 0 starts the file over.
    pub offset: u64,
    /// The chunk, base64 (standard alphabet, padded).
    pub data: String,
    /// Whether this is the last chunk (the file is written when it arrives).
    pub last: bool,
}

/// `msbw.fs.read` params: one chunk of a file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FsReadParams {
    /// The sandbox.
    pub sandbox: String,
    /// Its namespace.
    pub namespace: String,
    /// The path inside the sandbox.
    pub path: String,
    /// Where the chunk starts; 0 reads the file afresh.
    pub offset: u64,
    /// The largest file accepted (a larger one is `too_large`).
    pub max_bytes: u64,
}

/// `msbw.fs.list` and `msbw.fs.remove` params.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FsPathParams {
    /// The sandbox.
    pub sandbox: String,
    /// Its namespace.
    pub namespace: String,
    /// The path inside the sandbox.
    pub path: String,
}

/// A file's own failure: `kind` is `not_found`, `permission_denied`, `too_large`,
/// `not_a_file`, `not_a_directory` or `invalid_path` (unknown kinds: treat as `not_found`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FsError {
    /// What went wrong.
    pub kind: String,
    /// For people.
    pub message: String,
}

/// One listed entry; `kind` is `file`, `dir`, `symlink` or `other`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FsEntry {
    /// The name in the folder.
    pub name: String,
    /// The folder's path joined with the name.
    pub path: String,
    /// What it is.
    pub kind: String,
    /// Bytes (regular files).
    pub size: u64,
    /// Permission bits, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<u32>,
}

/// The answer of every `msbw.fs.*` method; which fields are set depends on the method.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FsResult {
    /// The file's failure, if it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<FsError>,
    /// `read`: the chunk, base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    /// `read`: the file's size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// `read`: whether the chunk ends the file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eof: Option<bool>,
    /// `list`: the entries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entries: Option<Vec<FsEntry>>,
}

impl FsResult {
    /// A failure of the file.
    pub fn failed(kind: impl Into<String>, message: impl Into<String>) -> Self {
        FsResult {
            error: Some(FsError {
                kind: kind.into(),
                message: message.into(),
            }),
            ..FsResult::default()
        }
    }
}
