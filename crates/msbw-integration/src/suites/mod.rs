//! The suites, one module each, and what they share.
//!
//! | suite | what | against |
//! |---|---|---|
//! | `conformance` | the backend conformance suite of `msbw-backend`, through `HttpBackend` | any server |
//! | `auth` | no key, wrong key, expired key, key for another namespace: `Unauthorized` | a keyed server |
//! | `defences` | the client's defences against the real server's quirks (readiness, double start, serialised starts, masked errors, restart) | any server; some checks need the stand-in or the harness |
//! | `facade` | the facade `MicrosandboxWrapper` end to end over `HttpBackend`: code with state, commands, sessions, limits, idle and orphan cleanup, shutdown | any server |
//! | `serve` | the `msbw` binary's `serve` (local backend) started by the suite, dev and keyed: `conformance` and `facade` against it, keys, SIGTERM | `msbw serve` |
//! | `python-sdk` | the upstream Python SDK 0.1.8, unmodified, against the `msbw serve` binary, dev and keyed | `msbw serve` |

pub mod auth;
pub mod conformance;
pub mod defences;
pub mod facade;
pub mod python_sdk;
pub mod serve;

use std::time::Duration;

use msbw_backend::{BackendError, ErrorKind, ListFilter, SandboxBackend, SandboxInfo};

use crate::report::SuiteReport;
use crate::target::Target;

/// Every suite, in the order they run.
pub const ALL: [&str; 6] = ["conformance", "auth", "defences", "facade", "serve", "python-sdk"];

/// The suites run when none are named: those against the given server.
pub const DEFAULT: [&str; 4] = ["conformance", "auth", "defences", "facade"];

/// Runs the suite `name` against `target`: one report, or one per target the suite starts
/// itself (`serve`, `python-sdk`); none if there is no such suite.
pub async fn run(name: &str, target: &Target) -> Vec<SuiteReport> {
    match name {
        "conformance" => vec![conformance::run(target).await],
        "auth" => vec![auth::run(target).await],
        "defences" => vec![defences::run(target).await],
        "facade" => vec![facade::run(target).await],
        "serve" => serve::run(target).await,
        "python-sdk" => python_sdk::run(target).await,
        _ => Vec::new(),
    }
}

/// The longest any one check may take before it counts as hanging.
pub(crate) const CHECK_LIMIT: Duration = Duration::from_secs(300);

/// The error of `result` if it is of `kind`; otherwise why not.
pub(crate) fn expect_kind<T: std::fmt::Debug>(
    what: &str,
    kind: ErrorKind,
    result: Result<T, BackendError>,
) -> Result<BackendError, String> {
    match result {
        Err(e) if e.kind() == kind => Ok(e),
        Err(e) => Err(format!("{what}: expected {kind:?}, got {:?}: {e}", e.kind())),
        Ok(value) => Err(format!("{what}: expected {kind:?}, got a success: {value:?}")),
    }
}

/// The sandboxes running in the target's namespace.
pub(crate) async fn listed(backend: &dyn SandboxBackend, target: &Target) -> Result<Vec<SandboxInfo>, String> {
    backend
        .list(&ListFilter::namespace(&target.namespace))
        .await
        .map_err(|e| format!("listing failed: {e}"))
}

/// Records the check that every sandbox the suite started (named with `prefix`) is stopped
/// again: a suite that leaks sandboxes would leak them in production too.
pub(crate) async fn no_sandbox_left(
    report: &mut SuiteReport,
    backend: &dyn SandboxBackend,
    target: &Target,
    prefix: &str,
) {
    report
        .check("no_sandbox_of_the_suite_is_left_running", CHECK_LIMIT, async {
            let running = listed(backend, target).await?;
            let left: Vec<String> = running
                .iter()
                .filter(|s| s.id.name.starts_with(prefix))
                .map(|s| s.id.to_string())
                .collect();
            if left.is_empty() {
                Ok(())
            } else {
                for s in running.iter().filter(|s| s.id.name.starts_with(prefix)) {
                    let _ = backend.stop(&s.id).await;
                }
                Err(format!(
                    "still running after the suite (now stopped): {}",
                    left.join(", ")
                ))
            }
        })
        .await;
}
