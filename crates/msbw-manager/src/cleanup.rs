//! Idle cleanup: stop sessions unused for longer than the session timeout.
//!
//! A session with a call in progress (running, or waiting for its turn) is never reaped. A reaped
//! session leaves the table at once (a new call with its id starts a new session), but its
//! sandbox keeps its share of the limits until its stop succeeded; failed stops are retried on
//! every pass.

use serde::Serialize;
use tokio::time::Instant;

use crate::lifecycle::Inner;

/// What one idle-cleanup pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CleanupReport {
    /// Sessions reaped for being idle.
    pub reaped: Vec<String>,
    /// Sandboxes stopped (reaped ones and earlier failures retried).
    pub stopped: usize,
    /// Stops that failed and will be retried.
    pub failed: usize,
}

impl Inner {
    /// One pass: reap idle sessions, then stop every sandbox waiting to be stopped.
    pub(crate) async fn cleanup_idle(&self) -> CleanupReport {
        let now = Instant::now();
        let timeout = self.config().session_timeout;
        let reaped: Vec<String> = {
            let mut reg = self.lock();
            let idle: Vec<String> = reg
                .sessions()
                .filter(|e| e.is_idle() && now.saturating_duration_since(e.last_accessed) >= timeout)
                .map(|e| e.id().to_owned())
                .collect();
            for id in &idle {
                reg.retire(id);
            }
            idle
        };
        for id in &reaped {
            tracing::info!(session_id = %id, "reaping idle session");
        }
        let pass = self.stop_retiring().await;
        CleanupReport {
            reaped,
            stopped: pass.stopped,
            failed: pass.failed.len(),
        }
    }
}
