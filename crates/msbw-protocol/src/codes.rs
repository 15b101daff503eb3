//! Error codes and the REST-style error body `{"error": message, "code": n}` of the real server.

use serde::{Deserialize, Serialize};

/// No key, or no `msb_` prefix (HTTP 401).
pub const INVALID_CREDENTIALS: u16 = 1001;
/// A bad signature, garbage or an expired key (HTTP 401).
pub const INVALID_OR_EXPIRED: u16 = 1004;
/// Invalid params (HTTP 400).
pub const VALIDATION: u16 = 2001;
/// A namespace-scoped key used on another namespace (HTTP 403).
pub const ACCESS_DENIED: u16 = 3001;
/// Everything else (HTTP 500); the real server hides the reason, `msbw serve` gives it.
pub const INTERNAL: u16 = 5002;

/// An `msbw serve` extension (HTTP 500, like every failure on the real server, which never sends
/// it): a new sandbox would exceed the server's session or memory limit; try again later.
pub const LIMIT_REACHED: u16 = 5029;

/// JSON-RPC: a wrong `jsonrpc` version (HTTP 400).
pub const INVALID_REQUEST: i64 = -32600;
/// JSON-RPC: an unknown method (HTTP 404).
pub const METHOD_NOT_FOUND: i64 = -32601;

/// The message of [`INVALID_CREDENTIALS`].
pub const INVALID_CREDENTIALS_MESSAGE: &str = "Invalid credentials";
/// The message of [`INVALID_OR_EXPIRED`].
pub const INVALID_OR_EXPIRED_MESSAGE: &str = "Invalid or expired token";
/// The message of [`ACCESS_DENIED`].
pub const ACCESS_DENIED_MESSAGE: &str = "Access denied";

/// A REST-style error body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestErrorBody {
    /// The message.
    pub error: String,
    /// The code (see the constants of this module).
    pub code: u16,
}

/// The error object of a JSON-RPC error envelope (never with `data` on 0.2.6).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RpcErrorObject {
    /// [`INVALID_REQUEST`] or [`METHOD_NOT_FOUND`].
    pub code: i64,
    /// The message, e.g. `Method not found: NAME`.
    pub message: String,
}
