//! Orphan cleanup: stop running sandboxes that carry this manager's mark but belong to no live
//! session (left behind by a crash). Sandboxes without the mark are never touched.

use msbw_backend::{ListFilter, SandboxId};
use serde::Serialize;

use crate::lifecycle::Inner;
use crate::retire::stop_many;
use crate::{ManagerError, Phase, naming};

/// What one orphan-cleanup pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct OrphanReport {
    /// Running sandboxes listed in this manager's namespace.
    pub examined: usize,
    /// Sandboxes without this manager's mark, left alone.
    pub foreign: usize,
    /// Orphans stopped.
    pub stopped: Vec<SandboxId>,
    /// Orphans whose stop failed, with the reason.
    pub failed: Vec<(SandboxId, String)>,
}

impl Inner {
    /// One pass over the backend's running sandboxes.
    pub(crate) async fn cleanup_orphans(&self) -> Result<OrphanReport, ManagerError> {
        let namespace = &self.config().namespace;
        let listed = self
            .backend()
            .list(&ListFilter::namespace(namespace))
            .await
            .map_err(|e| ManagerError::backend(Phase::Listing, "", e))?;
        let owner = &self.config().owner_mark;
        let mut report = OrphanReport {
            examined: listed.len(),
            ..OrphanReport::default()
        };
        // Read the live set after listing: a session created meanwhile has a fresh name that the
        // listing may show, and must be in the live set when we compare.
        let live = self.lock().live_sandboxes();
        let mut orphans = Vec::new();
        for info in listed {
            if info.id.namespace != *namespace || !naming::is_owned(owner, &info.id.name) {
                report.foreign += 1;
            } else if !live.contains(&info.id) {
                orphans.push(info.id);
            }
        }
        for (id, result) in stop_many(self.backend(), orphans).await {
            match result {
                Ok(()) => {
                    tracing::info!(sandbox = %id, "stopped orphan sandbox");
                    report.stopped.push(id);
                }
                Err(e) => {
                    tracing::warn!(sandbox = %id, error = %e, "could not stop orphan sandbox");
                    report.failed.push((id, e.to_string()));
                }
            }
        }
        report.stopped.sort();
        report.failed.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(report)
    }
}
