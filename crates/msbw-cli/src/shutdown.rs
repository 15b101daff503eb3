//! How the long-running fronts (`msbw serve`, `msbw mcp`) end: on a signal, with one line saying
//! what was stopped.

use microsandbox_wrapper::ShutdownReport;

use crate::exit;

/// Completes on Ctrl-C or SIGTERM (on Ctrl-C alone if SIGTERM cannot be watched).
pub(crate) async fn signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        Some(()) = async { term.as_mut()?.recv().await } => {}
    }
}

/// Logs what could not be stopped, prints `msbw FRONT: stopped N sandboxes`, and returns the
/// exit status (internal error when something could not be stopped).
pub(crate) fn finish(front: &str, report: &ShutdownReport) -> u8 {
    for (sandbox, why) in &report.failed {
        tracing::error!(%sandbox, error = %why, "could not stop sandbox");
    }
    eprintln!(
        "msbw {front}: stopped {} {}{}",
        report.stopped,
        if report.stopped == 1 { "sandbox" } else { "sandboxes" },
        if report.failed.is_empty() {
            String::new()
        } else {
            format!(", {} could not be stopped", report.failed.len())
        }
    );
    if report.failed.is_empty() {
        exit::OK
    } else {
        exit::INTERNAL
    }
}
