//! What this backend itself started, and when: the knowledge the server does not give.
//!
//! The registry never says whether a sandbox is running (the server's listing does, and a
//! sandbox survives a restart of either side, defence 8); it only tells which sandboxes this
//! backend readied and when, so that a masked failure right after a start can be taken for an
//! agent that is not up yet (defence 1), and messages can say "this backend started it".

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use msbw_backend::SandboxId;
use tokio::time::Instant;

/// The sandboxes this backend started, with the time each became ready.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    ready_at: Mutex<HashMap<SandboxId, Instant>>,
}

impl Registry {
    fn map(&self) -> MutexGuard<'_, HashMap<SandboxId, Instant>> {
        self.ready_at.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Notes that `id` was started by this backend and is ready now.
    pub(crate) fn record_ready(&self, id: &SandboxId) {
        self.map().insert(id.clone(), Instant::now());
    }

    /// Forgets `id` (stopped, or found gone).
    pub(crate) fn forget(&self, id: &SandboxId) {
        self.map().remove(id);
    }

    /// Whether this backend started `id` and has not seen it go.
    pub(crate) fn knows(&self, id: &SandboxId) -> bool {
        self.map().contains_key(id)
    }

    /// When the readiness window of `id` closes, if this backend started it and the window is
    /// still open.
    pub(crate) fn readiness_window_end(&self, id: &SandboxId, window: Duration) -> Option<Instant> {
        let end = *self.map().get(id)? + window;
        (Instant::now() < end).then_some(end)
    }

    /// How many sandboxes it holds.
    pub(crate) fn len(&self) -> usize {
        self.map().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_readiness_window_closes() {
        let registry = Registry::default();
        let id = SandboxId::new("default", "s").unwrap();
        assert_eq!(registry.readiness_window_end(&id, Duration::from_secs(5)), None);
        registry.record_ready(&id);
        assert!(registry.knows(&id));
        assert!(registry.readiness_window_end(&id, Duration::from_secs(5)).is_some());
        tokio::time::advance(Duration::from_secs(6)).await;
        assert_eq!(registry.readiness_window_end(&id, Duration::from_secs(5)), None);
        assert!(registry.knows(&id), "the window closing does not forget the sandbox");
        registry.forget(&id);
        assert!(!registry.knows(&id));
        assert_eq!(registry.len(), 0);
    }
}
