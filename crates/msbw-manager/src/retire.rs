//! Retirement: the one way sandboxes are stopped, for idle cleanup, eviction, orphans, failed
//! starts, `stop_session` and shutdown.
//!
//! [`stop_many`] stops a batch a few at a time and reports every sandbox's outcome, a stop task
//! that panicked included (as a failed stop: the sandbox may still exist). A retiring sandbox
//! keeps its reservation until its stop succeeded (or it is known gone); a failed or panicked
//! stop leaves it on the list, not in progress, for the next pass.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures_util::{FutureExt, StreamExt};

use msbw_backend::{BackendError, ErrorKind, Operation, SandboxBackend, SandboxId};

use crate::lifecycle::Inner;
use crate::session::Retiring;

/// How many sandboxes are stopped at the same time.
pub(crate) const STOP_PARALLELISM: usize = 4;

/// Stops `sandboxes`, [`STOP_PARALLELISM`] at a time. Every sandbox gets its outcome; a sandbox
/// that is already gone counts as stopped (`Ok`), a stop that panicked as failed. The stops run
/// in the caller's task, at most [`STOP_PARALLELISM`] at once, so a batch of any size costs
/// O(1) memory beyond its list and O(N) time (no task, and no task map, per sandbox).
pub(crate) async fn stop_many(
    backend: &Arc<dyn SandboxBackend>,
    sandboxes: Vec<SandboxId>,
) -> Vec<(SandboxId, Result<(), BackendError>)> {
    let stops = futures_util::stream::iter(sandboxes).map(|sandbox| async move {
        let result = match AssertUnwindSafe(backend.stop(&sandbox)).catch_unwind().await {
            Ok(Err(e)) if e.kind() == ErrorKind::NotFound => Ok(()),
            Ok(other) => other,
            Err(_) => Err(
                BackendError::new(ErrorKind::Internal, Operation::Stop, "the stop panicked")
                    .with_backend(backend.name())
                    .with_sandbox(&sandbox),
            ),
        };
        (sandbox, result)
    });
    stops.buffer_unordered(STOP_PARALLELISM).collect().await
}

/// What one pass over the retiring list did.
#[derive(Debug, Default)]
pub(crate) struct StopPass {
    /// Sandboxes stopped (or found gone).
    pub(crate) stopped: usize,
    /// Stops that failed, with the backend's error; they stay for the next pass.
    pub(crate) failed: Vec<(SandboxId, BackendError)>,
}

impl Inner {
    /// Stops every sandbox on the retiring list whose stop is not already in progress; those
    /// stopped give their reservation back, the others stay for the next pass.
    pub(crate) async fn stop_retiring(&self) -> StopPass {
        let batch = self.lock().begin_stops();
        let mut pass = StopPass::default();
        for (sandbox, result) in stop_many(self.backend(), batch).await {
            let mut reg = self.lock();
            match result {
                Ok(()) => {
                    pass.stopped += 1;
                    if let Some(r) = reg.end_stop(&sandbox, None) {
                        tracing::info!(sandbox = %sandbox, session_id = %r.session_id(), "sandbox stopped");
                    }
                    drop(reg);
                    self.freed();
                }
                Err(e) => {
                    reg.end_stop(&sandbox, Some(e.to_string()));
                    let attempts = reg.retiring(&sandbox).map_or(0, Retiring::attempts);
                    drop(reg);
                    tracing::warn!(sandbox = %sandbox, attempts, error = %e, "stop failed; will retry");
                    pass.failed.push((sandbox, e));
                }
            }
        }
        pass
    }
}
