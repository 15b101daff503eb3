//! How the long-running fronts (`msbw serve`, `msbw mcp`) end: on a signal, with one line saying
//! what was stopped.

use microsandbox_wrapper::ShutdownReport;

use crate::exit;

/// Ctrl-C and SIGTERM, watched from the moment this is made: a server that answers before its
/// shutdown future is first polled must not die of a SIGTERM's default action meanwhile.
pub(crate) struct Signals {
    interrupt: Option<tokio::signal::unix::Signal>,
    terminate: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    /// Starts watching both signals (one that cannot be watched is left to its default).
    pub(crate) fn install() -> Signals {
        use tokio::signal::unix::{SignalKind, signal};
        Signals {
            interrupt: signal(SignalKind::interrupt()).ok(),
            terminate: signal(SignalKind::terminate()).ok(),
        }
    }

    /// Completes on the first of the two.
    pub(crate) async fn recv(mut self) {
        tokio::select! {
            Some(()) = async { self.interrupt.as_mut()?.recv().await } => {}
            Some(()) = async { self.terminate.as_mut()?.recv().await } => {}
            else => std::future::pending().await,
        }
    }
}

/// Completes on Ctrl-C or SIGTERM, watched from the call on.
pub(crate) fn signal() -> impl std::future::Future<Output = ()> {
    Signals::install().recv()
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
