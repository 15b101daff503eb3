//! The suites that come later, as named hooks. Each says "not yet available" only while the
//! crate or binary it needs is missing, and never passes without running a check: once what it
//! needs exists, it fails until its checks are written.
//!
//! What each must cover (issue 8):
//! - [`facade_end_to_end`], against the real server: `execute_code` with state across calls,
//!   python and node; `execute_command`; sessions; limits; idle cleanup with short timeouts;
//!   orphan cleanup after a simulated crash; shutdown leaving no running sandbox, checked with
//!   `sandbox.metrics.get`.
//! - [`serve_end_to_end`]: the same end-to-end suite against `msbw serve` (local backend).
//! - [`python_sdk_against_serve`]: the upstream Python SDK 0.1.8 (`PythonSandbox.create()`,
//!   `run`, `command.run`, `metrics`, `stop`) against `msbw serve`.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use crate::report::{Outcome, SuiteReport};
use crate::target::Target;

/// Whether this program was built against the facade crate (`microsandbox-wrapper`). It is
/// not a dependency yet: when `MicrosandboxWrapper::with_backend` and `execute_code` land, add
/// the dependency, set this to `true` and write [`facade_end_to_end`]'s checks.
const FACADE_IS_A_DEPENDENCY: bool = false;

/// The facade end to end against the target's server.
pub async fn facade_end_to_end(target: &Target) -> SuiteReport {
    if !FACADE_IS_A_DEPENDENCY {
        return SuiteReport::not_yet_available(
            "facade",
            target.describe(),
            "msbw-integration does not depend on the facade crate microsandbox-wrapper yet (MicrosandboxWrapper \
             is still being built); then write hooks::facade_end_to_end",
        );
    }
    unwritten("facade", target.describe(), "the facade exists")
}

/// `msbw serve` end to end, with the local backend.
pub async fn serve_end_to_end(target: &Target) -> SuiteReport {
    match serve_available(target).await {
        Err(why) => SuiteReport::not_yet_available("serve", "msbw serve (local backend)", why),
        Ok(msbw) => unwritten(
            "serve",
            "msbw serve (local backend)",
            &format!("{} serve exists", msbw.display()),
        ),
    }
}

/// The upstream Python SDK 0.1.8 against `msbw serve`.
pub async fn python_sdk_against_serve(target: &Target) -> SuiteReport {
    match serve_available(target).await {
        Err(why) => SuiteReport::not_yet_available(
            "python-sdk",
            "msbw serve, with the Python SDK microsandbox 0.1.8",
            format!("needs msbw serve: {why}"),
        ),
        Ok(msbw) => unwritten(
            "python-sdk",
            "msbw serve, with the Python SDK microsandbox 0.1.8",
            &format!("{} serve exists", msbw.display()),
        ),
    }
}

/// A suite whose prerequisite exists but whose checks are not written: a failure, so that
/// it cannot go unnoticed.
fn unwritten(suite: &'static str, against: impl Into<String>, because: &str) -> SuiteReport {
    let mut report = SuiteReport::new(suite, against);
    report.record(
        "the_suite_is_written",
        None,
        Outcome::Failed(format!(
            "{because}, but this suite has no checks yet: write them in msbw-integration's suites::hooks"
        )),
    );
    report
}

/// The `msbw` binary, if it has a `serve` subcommand; otherwise what is missing.
async fn serve_available(target: &Target) -> Result<PathBuf, String> {
    let Some(msbw) = target.msbw_bin.as_deref() else {
        return Err(match &target.msbw_unavailable {
            Some(why) => format!("msbw is not available: {why}"),
            None => "no msbw binary (pass --msbw-bin or set MSBW_BIN)".into(),
        });
    };
    match serve_help_succeeds(msbw).await {
        Ok(true) => Ok(msbw.to_owned()),
        Ok(false) => Err(format!(
            "{} has no `serve` subcommand yet (`msbw serve --help` fails)",
            msbw.display()
        )),
        Err(e) => Err(format!("cannot run {}: {e}", msbw.display())),
    }
}

/// Whether `msbw serve --help` succeeds (run off the async threads).
async fn serve_help_succeeds(msbw: &Path) -> Result<bool, String> {
    let msbw = msbw.to_owned();
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(&msbw)
            .args(["serve", "--help"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| e.to_string())?
}
