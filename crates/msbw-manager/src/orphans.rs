//! Orphan cleanup: stop running sandboxes that carry this manager's mark but belong to no live
//! session: this manager's own leftovers, and those of owners that are provably gone (see
//! [`crate::ownership`] for the rule). Sandboxes without the mark, of live peers, or of unknown
//! owners are never touched.

use std::collections::HashMap;

use msbw_backend::{ListFilter, SandboxId};
use serde::Serialize;

use crate::lifecycle::Inner;
use crate::ownership::Verdict;
use crate::retire::stop_many;
use crate::{ManagerError, Phase, naming};

/// What one orphan-cleanup pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct OrphanReport {
    /// Running sandboxes listed in this manager's namespace.
    pub examined: usize,
    /// Sandboxes without this manager's mark, left alone.
    pub foreign: usize,
    /// Marked sandboxes of live peers (their owner's lease is held), left alone.
    pub peers: usize,
    /// Marked sandboxes whose owner nothing here vouches for, alive or dead, left alone.
    pub unknown_owners: usize,
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
        let mut verdicts: HashMap<String, Verdict> = HashMap::new();
        for info in listed {
            let owner_id = naming::owner_of(owner, &info.id.name).filter(|_| info.id.namespace == *namespace);
            let Some(owner_id) = owner_id else {
                report.foreign += 1;
                continue;
            };
            let verdict = *verdicts
                .entry(owner_id.to_owned())
                .or_insert_with(|| self.lease().judge(owner_id));
            match verdict {
                Verdict::Mine if live.contains(&info.id) => {}
                Verdict::Mine => orphans.push(info.id),
                Verdict::Dead => {
                    tracing::info!(sandbox = %info.id, owner = owner_id, "the sandbox's owner is gone");
                    orphans.push(info.id);
                }
                Verdict::Alive => report.peers += 1,
                Verdict::Unknown => report.unknown_owners += 1,
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
