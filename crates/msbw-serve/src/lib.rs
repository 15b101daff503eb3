//! `msbw serve`: a microsandbox-compatible server over any backend.
//!
//! It answers `GET /api/v1/health` and `POST /api/v1/rpc` with the five methods of the
//! microsandbox server 0.2.6, their parameter and result shapes, HTTP statuses, error codes and
//! key format (all from [`msbw_protocol`]), so that clients written for the real server work
//! unchanged. Every sandbox started through it is a session of a [`MicrosandboxWrapper`], under
//! the wrapper's limits.
//!
//! Where compatibility allows it does better than the real server: 500 answers carry the real
//! reason; concurrent starts are safe; starting a running sandbox is harmless; invalid configs
//! are refused before anything is stored; read-only volumes work (announced in the health
//! answer as `capabilities.read_only_volumes`); `sandbox.stop` returns once the sandbox is gone.
//!
//! Under load ([`Limits`]): request headers and bodies must arrive within a time limit, an idle
//! keep-alive connection is closed, the number of open connections is bounded, and shutdown
//! stops accepting, closes idle connections at once and stops every sandbox within a bounded
//! time whatever clients do. Memory per answer is about the size of the output: lines are
//! written to the socket in chunks as they are serialized.
//!
//! [`MicrosandboxWrapper`]: microsandbox_wrapper::MicrosandboxWrapper

mod auth;
mod files;
mod listen;
mod methods;
mod options;
mod registry;
mod reply;
mod rpc;
mod server;

pub use listen::Activity;
pub use msbw_protocol::key;
pub use options::{Limits, ServeOptions};
pub use server::Server;

/// The largest request body accepted, as on the real server.
pub const MAX_BODY_BYTES: usize = msbw_protocol::MAX_REQUEST_BYTES;
