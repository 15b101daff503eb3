//! The microsandbox server protocol (server 0.2.6) once, for both sides: the client in
//! `msbw-http` and the server in `msbw-serve`.
//!
//! What the real server reads and writes is described in
//! `shared/spec/microsandbox-server-protocol.md`; this crate holds its shapes and nothing of our
//! domain: the routes and limits, the JSON-RPC envelope ([`envelope`]), the five methods'
//! params ([`params`]) and results ([`results`]), the output lines ([`Output`]), the error codes
//! and bodies ([`codes`]), and the `msb_` key format ([`key`]).
//!
//! Decoding is bounded: request params, ids and answers' results are kept as raw JSON text
//! until a typed shape reads them, so no input is ever turned into a `serde_json::Value` tree
//! (which costs hundreds of bytes per tiny object), and output lines are gathered straight into
//! two strings. [`decode_request`] (server side) and [`decode_answer`] (client side) are pure
//! functions of the bytes, for fuzzing.

pub mod codes;
pub mod envelope;
pub mod files;
pub mod key;
mod output;
pub mod params;
pub mod results;
pub mod stream;

pub use envelope::{Answer, AnswerError, Call, Request, RequestError, decode_answer, decode_request, encode_success};
pub use output::{Output, OutputChunks, Stream};

/// The JSON-RPC method names.
pub mod method {
    /// `sandbox.start`.
    pub const START: &str = "sandbox.start";
    /// `sandbox.stop`.
    pub const STOP: &str = "sandbox.stop";
    /// `sandbox.metrics.get`.
    pub const METRICS: &str = "sandbox.metrics.get";
    /// `sandbox.repl.run`.
    pub const REPL_RUN: &str = "sandbox.repl.run";
    /// `sandbox.command.run`.
    pub const COMMAND_RUN: &str = "sandbox.command.run";
    /// `msbw.fs.write` (extension, see [`crate::files`]).
    pub const FS_WRITE: &str = "msbw.fs.write";
    /// `msbw.fs.read` (extension).
    pub const FS_READ: &str = "msbw.fs.read";
    /// `msbw.fs.list` (extension).
    pub const FS_LIST: &str = "msbw.fs.list";
    /// `msbw.fs.remove` (extension).
    pub const FS_REMOVE: &str = "msbw.fs.remove";
}

/// The RPC route, relative to the server URL.
pub const RPC_PATH: &str = "/api/v1/rpc";
/// The health route, relative to the server URL.
pub const HEALTH_PATH: &str = "/api/v1/health";
/// The largest request body the server accepts; larger ones get a plain-text 413.
pub const MAX_REQUEST_BYTES: usize = 2 * 1024 * 1024;
/// The longest sandbox or namespace name.
pub const MAX_NAME_LEN: usize = 63;
