//! Orphan cleanup: stop running sandboxes that carry this manager's mark but belong to no live
//! session (left behind by a crash). Sandboxes without the mark are never touched.

use std::collections::HashSet;
use std::sync::Arc;

use msbw_backend::{ErrorKind, ListFilter, SandboxId};
use serde::Serialize;
use tokio::sync::Semaphore;

use crate::manager::{Inner, STOP_PARALLELISM};
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
    pub(crate) async fn cleanup_orphans(self: &Arc<Self>) -> Result<OrphanReport, ManagerError> {
        let listed = self
            .backend
            .list(&ListFilter::namespace(&self.config.namespace))
            .await
            .map_err(|e| ManagerError::backend(Phase::Listing, "", e))?;
        let owner = &self.config.owner_mark;
        let mut report = OrphanReport {
            examined: listed.len(),
            ..OrphanReport::default()
        };
        // Read the live set after listing: a session created meanwhile has a fresh name that the
        // listing may show, and must be in the live set when we compare.
        let live: HashSet<SandboxId> = self.lock().live_sandboxes().into_iter().collect();
        let mut orphans = Vec::new();
        for info in listed {
            if info.id.namespace != self.config.namespace || !naming::is_owned(owner, &info.id.name) {
                report.foreign += 1;
            } else if !live.contains(&info.id) {
                orphans.push(info.id);
            }
        }
        let limit = Arc::new(Semaphore::new(STOP_PARALLELISM));
        let mut set = tokio::task::JoinSet::new();
        for id in orphans {
            let inner = self.clone();
            let limit = limit.clone();
            set.spawn(async move {
                let _permit = limit.acquire_owned().await;
                // Look again: a session may have claimed the name since (it cannot, names are
                // fresh, but the check is cheap and makes the rule local).
                if inner.lock().live_sandboxes().contains(&id) {
                    return (id, Ok(false));
                }
                let result = match inner.backend.stop(&id).await {
                    Ok(()) => Ok(true),
                    Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
                    Err(e) => Err(e.to_string()),
                };
                (id, result)
            });
        }
        while let Some(joined) = set.join_next().await {
            match joined {
                Ok((id, Ok(true))) => {
                    tracing::info!(sandbox = %id, "stopped orphan sandbox");
                    report.stopped.push(id);
                }
                Ok((_, Ok(false))) => {}
                Ok((id, Err(why))) => {
                    tracing::warn!(sandbox = %id, error = %why, "could not stop orphan sandbox");
                    report.failed.push((id, why));
                }
                Err(e) => return Err(ManagerError::Internal(format!("orphan stop task failed: {e}"))),
            }
        }
        report.stopped.sort();
        Ok(report)
    }
}
