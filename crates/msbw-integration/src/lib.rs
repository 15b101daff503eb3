//! The integration suites of microsandbox-wrapper: the wrapper against a real microsandbox
//! server, run as a separate program (`msbw-integration`) because they need one.
//!
//! `cargo xtask test-integration` builds the real server 0.2.6 (on a TEST-ONLY libkrun stand-in
//! where no microVM can boot), starts it in dev and in keyed mode, and runs this program against
//! each; with `MSB_SERVER_URL` set, this program runs against that server instead. It is not a
//! `cargo test` target, so `cargo test --workspace` needs no server. See docs/testing.md.
//!
//! - [`target`]: what the suites run against (URL, key, mode, images, what the harness offers).
//! - [`control`]: asks the harness that owns the server to restart it or mint keys.
//! - [`msbw_serve`]: the `msbw serve` binary as a child process, for the suites that start it.
//! - [`report`]: each check's outcome, printed as it happens, and the suites' summary.
//! - [`suites`]: the suites, one module each.

pub mod control;
pub mod msbw_serve;
pub mod report;
pub mod suites;
pub mod target;
