//! Resource statistics: what is in use against the limits.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::lifecycle::Inner;
use crate::pool::PoolStats;

/// Resource use, as `get_resource_stats` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResourceStats {
    /// Live sessions (creating, ready, running or in error).
    pub active_sessions: usize,
    /// `max_concurrent_sessions`.
    pub max_sessions: u32,
    /// Live sessions by flavor (`small`, `medium`, `large`).
    pub sessions_by_flavor: BTreeMap<String, usize>,
    /// Live sessions by status.
    pub sessions_by_status: BTreeMap<String, usize>,
    /// Memory reserved by live sessions and sandboxes still being stopped, in MB.
    pub total_memory_mb: u64,
    /// `max_total_memory_mb`, if set.
    pub max_memory_mb: Option<u64>,
    /// CPUs of live sessions.
    pub total_cpus: u32,
    /// Sandboxes being stopped (or whose stop failed and will be retried); they still count
    /// against the limits.
    pub stopping_sandboxes: usize,
    /// Warm-pool sandboxes (starting or ready, not yet claimed); they count against the limits
    /// (`total_memory_mb` includes them) but are not sessions.
    pub pooled_sandboxes: usize,
    /// The warm pool (`MSB_WARM_POOL`), one row per template and flavor; empty without a pool.
    pub warm_pool: Vec<PoolStats>,
    /// Callers waiting for a slot (the `wait` policy).
    pub waiting_callers: usize,
    /// Seconds since the manager started.
    pub uptime_seconds: u64,
    /// The backend's name.
    pub backend: String,
}

impl Inner {
    pub(crate) fn stats(&self) -> ResourceStats {
        let uptime = self.started_at().map(|t| t.elapsed().as_secs()).unwrap_or(0);
        let reg = self.lock();
        let mut by_flavor = BTreeMap::new();
        let mut by_status = BTreeMap::new();
        let mut cpus = 0u32;
        for e in reg.sessions() {
            *by_flavor.entry(e.flavor().to_string()).or_insert(0) += 1;
            *by_status.entry(e.status.to_string()).or_insert(0) += 1;
            cpus += u32::from(e.flavor().cpus());
        }
        ResourceStats {
            active_sessions: reg.session_count(),
            max_sessions: self.config().max_concurrent_sessions,
            sessions_by_flavor: by_flavor,
            sessions_by_status: by_status,
            total_memory_mb: reg.ledger().memory_mb(),
            max_memory_mb: self.config().max_total_memory_mb,
            total_cpus: cpus,
            stopping_sandboxes: reg.retiring_count(),
            pooled_sandboxes: reg.pool().len(),
            warm_pool: self.pool_stats(&reg),
            waiting_callers: reg.waiting,
            uptime_seconds: uptime,
            backend: self.backend().name().to_owned(),
        }
    }
}
