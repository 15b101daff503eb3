//! The warm pool (`MSB_WARM_POOL`): sandboxes started ahead per template and flavor, claimed by
//! new sessions through the start seam.
//!
//! - **Accounting**: a pooled sandbox, starting or ready, holds a reservation (one session, its
//!   flavor's memory) like any other sandbox, so the limits count it. A claim hands that
//!   reservation to the new session; nothing is reserved twice.
//! - **Yielding**: a real session at a limit retires a pooled sandbox (a ready one first) and takes
//!   the freed slot once it is stopped, instead of being refused or waiting. While such a session
//!   has not been admitted yet (or for `limit_wait_timeout` at most), and while callers wait for a
//!   slot, the pool does not refill, so it cannot take back the slot it gave up.
//! - **Refill**: a background task tops every entry up to its count, at most half of
//!   `max_concurrent_starts` pooled starts at once (at least one), through the same semaphore as
//!   session starts. A failed pooled start backs off per entry (1 s, doubling to 60 s).
//! - **No reuse**: a claimed sandbox belongs to its session from then on and is stopped with it;
//!   nothing goes back into the pool.
//! - **Ownership**: pooled sandboxes carry the manager's owner id ([`crate::naming::pooled_sandbox_name`]);
//!   orphan cleanup counts them as live, and reclaims them after a crash like any other.
//! - **Shutdown**: the task stops, pooled starts in flight are awaited (up to `shutdown_timeout`),
//!   and every pooled sandbox is stopped with the sessions' sandboxes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use msbw_backend::{SandboxId, SandboxSpec, Template};
use msbw_config::SandboxFlavor;
use serde::Serialize;
use tokio::sync::{Notify, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

use crate::admission::Limits;
use crate::lifecycle::{Inner, Lifecycle};
use crate::naming;
use crate::session::Registry;

/// The first wait after a failed pooled start; it doubles with every failure in a row.
pub(crate) const BACKOFF_FIRST: Duration = Duration::from_secs(1);
/// The longest wait between pooled starts of an entry that keeps failing.
pub(crate) const BACKOFF_MAX: Duration = Duration::from_secs(60);
/// How often the refill task looks again without being woken (a freed slot, a claim and an
/// ended start wake it at once).
const RECHECK: Duration = Duration::from_secs(5);

/// A pool entry: template and flavor.
pub(crate) type PoolKey = (Template, SandboxFlavor);

/// What the pool holds of one template and flavor, as resource stats report it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PoolStats {
    /// The template.
    pub template: Template,
    /// The flavor.
    pub flavor: SandboxFlavor,
    /// How many the pool keeps (`MSB_WARM_POOL`).
    pub target: u32,
    /// Pooled sandboxes starting now.
    pub starting: usize,
    /// Pooled sandboxes ready to be claimed.
    pub ready: usize,
    /// Sandboxes claimed by new sessions since the manager started.
    pub claimed: u64,
    /// Pooled starts that failed since the manager started.
    pub failed_starts: u64,
}

/// One pooled sandbox.
#[derive(Debug, Clone, Copy)]
struct Member {
    key: PoolKey,
    ready: bool,
}

/// Failures in a row of one entry's starts, and when the next may be tried.
#[derive(Debug, Clone, Copy, Default)]
struct Backoff {
    failures: u32,
    retry_at: Option<Instant>,
}

/// The pool's part of the registry (kept under the registry's lock, so that admission, the
/// limits and orphan cleanup see pooled sandboxes in the same critical section as sessions).
#[derive(Debug, Default)]
pub(crate) struct PoolTable {
    members: HashMap<SandboxId, Member>,
    backoff: HashMap<PoolKey, Backoff>,
    claimed: HashMap<PoolKey, u64>,
    failed: HashMap<PoolKey, u64>,
    /// Real sessions that yielded a pooled sandbox and were not admitted yet.
    yielding: usize,
    /// Until when a yield holds the refill back at most (a yielder that gave up).
    yield_until: Option<Instant>,
}

impl PoolTable {
    /// A ready pooled sandbox of `key` to claim, if there is one.
    pub(crate) fn claimable(&self, template: Template, flavor: SandboxFlavor) -> Option<SandboxId> {
        self.members
            .iter()
            .find(|(_, m)| m.ready && m.key == (template, flavor))
            .map(|(id, _)| id.clone())
    }

    /// Takes a pooled sandbox out of the pool for a session: its reservation goes with it.
    pub(crate) fn claim(&mut self, sandbox: &SandboxId) -> bool {
        match self.members.remove(sandbox) {
            Some(m) => {
                *self.claimed.entry(m.key).or_default() += 1;
                true
            }
            None => false,
        }
    }

    /// The pooled sandbox a real session at a limit takes the place of: a ready one first, and
    /// whether it is still starting.
    pub(crate) fn victim(&self) -> Option<(SandboxId, SandboxFlavor, bool)> {
        let pick = |ready: bool| {
            self.members
                .iter()
                .find(|(_, m)| m.ready == ready)
                .map(|(id, m)| (id.clone(), m.key.1, !m.ready))
        };
        pick(true).or_else(|| pick(false))
    }

    /// A real session yielded a pooled sandbox: hold the refill back until it is admitted.
    pub(crate) fn yielded(&mut self, now: Instant, hold: Duration) {
        self.yielding += 1;
        self.yield_until = Some(now + hold);
    }

    /// A real session was admitted: one yield fewer holds the refill back.
    pub(crate) fn admitted(&mut self) {
        self.yielding = self.yielding.saturating_sub(1);
    }

    fn held_back(&mut self, now: Instant) -> bool {
        if self.yield_until.is_some_and(|t| now >= t) {
            self.yielding = 0;
            self.yield_until = None;
        }
        self.yielding > 0
    }

    /// Every pooled sandbox, ready or starting.
    pub(crate) fn sandboxes(&self) -> impl Iterator<Item = &SandboxId> {
        self.members.keys()
    }

    /// How many pooled sandboxes exist (ready or starting).
    pub(crate) fn len(&self) -> usize {
        self.members.len()
    }

    fn count(&self, key: PoolKey) -> (usize, usize) {
        self.members
            .values()
            .filter(|m| m.key == key)
            .fold((0, 0), |(s, r), m| if m.ready { (s, r + 1) } else { (s + 1, r) })
    }

    fn starting(&self) -> usize {
        self.members.values().filter(|m| !m.ready).count()
    }

    /// Takes every pooled sandbox out (shutdown), with its flavor and whether it is starting.
    fn drain(&mut self) -> Vec<(SandboxId, SandboxFlavor, bool)> {
        self.members.drain().map(|(id, m)| (id, m.key.1, !m.ready)).collect()
    }

    fn failed_start(&mut self, key: PoolKey, now: Instant) {
        *self.failed.entry(key).or_default() += 1;
        let b = self.backoff.entry(key).or_default();
        b.failures = b.failures.saturating_add(1);
        let wait = BACKOFF_FIRST
            .saturating_mul(1u32 << b.failures.saturating_sub(1).min(6))
            .min(BACKOFF_MAX);
        b.retry_at = Some(now + wait);
    }
}

/// The refill task and the pooled starts in flight.
#[derive(Debug, Default)]
pub(crate) struct PoolRunner {
    wake: Arc<Notify>,
    task: Mutex<Option<(JoinHandle<()>, watch::Sender<bool>)>>,
    starts: Mutex<JoinSet<()>>,
}

impl PoolRunner {
    /// Asks the refill task to look now (a slot was freed, a sandbox claimed).
    pub(crate) fn wake(&self) {
        self.wake.notify_one();
    }
}

/// What to do once the registry lock is released, after a pooled start ended.
enum Then {
    Nothing,
    Freed,
    StopRetiring,
}

impl Inner {
    /// Starts the refill task (when a pool is configured).
    pub(crate) fn spawn_pool(self: &Arc<Self>) {
        if self.config().warm_pool.is_empty() {
            return;
        }
        // The first sandboxes start now, not when the task first runs.
        self.refill();
        let (stop, stop_rx) = watch::channel(false);
        let handle = tokio::spawn(pool_loop(Arc::downgrade(self), stop_rx));
        let old = self
            .pool()
            .task
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .replace((handle, stop));
        if let Some((_, stop)) = old {
            let _ = stop.send(true);
        }
    }

    /// Shutdown's part: stops the refill task, waits for pooled starts in flight until
    /// `deadline`, and moves every pooled sandbox to the retiring list (shutdown then stops them).
    pub(crate) async fn stop_pool(&self, deadline: Instant) {
        let task = self.pool().task.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some((handle, stop)) = task {
            let _ = stop.send(true);
            let _ = handle.await;
        }
        let mut starts = std::mem::take(&mut *self.pool().starts.lock().unwrap_or_else(|p| p.into_inner()));
        let joined = tokio::time::timeout_at(deadline, async { while starts.join_next().await.is_some() {} }).await;
        if joined.is_err() {
            tracing::warn!("pooled sandboxes still starting at shutdown; they are stopped once started");
            // Dropping the set would abort the starts: let them finish on their own.
            starts.detach_all();
        }
        let mut reg = self.lock();
        for (sandbox, flavor, starting) in reg.pool_mut().drain() {
            reg.retire_sandbox(sandbox, "warm pool", flavor, starting);
        }
    }

    /// The resource stats of the pool, one row per configured entry.
    pub(crate) fn pool_stats(&self, reg: &Registry) -> Vec<PoolStats> {
        let pool = reg.pool();
        self.config()
            .warm_pool
            .entries
            .iter()
            .map(|e| {
                let key = (e.template, e.flavor);
                let (starting, ready) = pool.count(key);
                PoolStats {
                    template: e.template,
                    flavor: e.flavor,
                    target: e.count,
                    starting,
                    ready,
                    claimed: pool.claimed.get(&key).copied().unwrap_or(0),
                    failed_starts: pool.failed.get(&key).copied().unwrap_or(0),
                }
            })
            .collect()
    }

    /// One refill pass: reserves and starts what the pool lacks, within the limits. Returns when
    /// the pass should run again at the latest (the earliest end of a backoff).
    fn refill(self: &Arc<Self>) -> Option<Instant> {
        if self.lifecycle() != Lifecycle::Running {
            return None;
        }
        let now = Instant::now();
        let limits = Limits::of(self.config());
        let parallel = (self.config().max_concurrent_starts as usize / 2).max(1);
        let mut next: Option<Instant> = None;
        let mut start = Vec::new();
        {
            let mut reg = self.lock();
            if reg.waiting > 0 || reg.pool_mut().held_back(now) {
                return None;
            }
            let mut in_flight = reg.pool().starting();
            for entry in &self.config().warm_pool.entries {
                let key = (entry.template, entry.flavor);
                if let Some(at) = reg.pool().backoff.get(&key).and_then(|b| b.retry_at)
                    && at > now
                {
                    next = Some(next.map_or(at, |n| n.min(at)));
                    continue;
                }
                let (starting, ready) = reg.pool().count(key);
                let mut missing = (entry.count as usize).saturating_sub(starting + ready);
                while missing > 0 && in_flight < parallel {
                    if reg.ledger_mut().try_reserve(entry.flavor, &limits).is_err() {
                        break;
                    }
                    let sandbox = SandboxId {
                        namespace: self.config().namespace.clone(),
                        name: naming::pooled_sandbox_name(&self.config().owner_mark, self.owner(), key.0, key.1),
                    };
                    reg.pool_mut()
                        .members
                        .insert(sandbox.clone(), Member { key, ready: false });
                    start.push((key, sandbox));
                    missing -= 1;
                    in_flight += 1;
                }
            }
        }
        let mut set = self.pool().starts.lock().unwrap_or_else(|p| p.into_inner());
        // Reap the starts that ended, so the set stays as small as the starts in flight.
        while set.try_join_next().is_some() {}
        for (key, sandbox) in start {
            set.spawn(self.clone().start_pooled(key, sandbox));
        }
        next
    }

    /// The spec of a pooled sandbox: the flavor, the configured volumes, no session's extras.
    fn pooled_spec(&self, key: PoolKey, sandbox: SandboxId) -> SandboxSpec {
        let mut spec = SandboxSpec::new(sandbox, key.0);
        spec.memory_mb = key.1.memory_mb();
        spec.cpus = key.1.cpus();
        spec.volumes = self.config().shared_volume_mappings.clone();
        spec.start_timeout = self.config().sandbox_start_timeout;
        spec
    }

    /// Starts one pooled sandbox and records the outcome: ready for a claim; or, if it left the
    /// pool while it started (yielded, shutdown), stopped; or failed, backed off.
    async fn start_pooled(self: Arc<Self>, key: PoolKey, sandbox: SandboxId) {
        let spec = self.pooled_spec(key, sandbox.clone());
        let result = self.acquire_sandbox(&spec, "warm pool").await;
        let then = {
            let mut reg = self.lock();
            let pooled = reg.pool().members.contains_key(&sandbox);
            match (result, pooled) {
                (Ok(_), true) => {
                    if let Some(m) = reg.pool_mut().members.get_mut(&sandbox) {
                        m.ready = true;
                    }
                    reg.pool_mut().backoff.remove(&key);
                    tracing::debug!(sandbox = %sandbox, "pooled sandbox ready");
                    Then::Nothing
                }
                (Ok(_), false) => {
                    reg.start_ended(&sandbox);
                    Then::StopRetiring
                }
                (Err(failure), pooled) => {
                    tracing::warn!(sandbox = %sandbox, error = %failure.error, "a pooled sandbox did not start; backing off");
                    reg.pool_mut().failed_start(key, Instant::now());
                    if !pooled {
                        reg.start_ended(&sandbox);
                        Then::StopRetiring
                    } else {
                        reg.pool_mut().members.remove(&sandbox);
                        if failure.may_exist {
                            reg.retire_sandbox(sandbox.clone(), "warm pool", key.1, false);
                            Then::StopRetiring
                        } else {
                            reg.ledger_mut().release(key.1);
                            Then::Freed
                        }
                    }
                }
            }
        };
        match then {
            Then::Nothing => {}
            Then::Freed => self.freed(),
            Then::StopRetiring => {
                self.stop_retiring().await;
            }
        }
        self.pool().wake();
    }
}

/// The refill task: a pass whenever it is woken, a backoff ends, or every few seconds. It holds
/// the manager only during a pass, so it ends when the manager is dropped.
async fn pool_loop(inner: Weak<Inner>, mut stop: watch::Receiver<bool>) {
    let Some(wake) = inner.upgrade().map(|i| i.pool().wake.clone()) else {
        return;
    };
    loop {
        let next = {
            let Some(inner) = inner.upgrade() else { return };
            let now = Instant::now();
            inner.refill().map_or(now + RECHECK, |at| at.min(now + RECHECK))
        };
        tokio::select! {
            () = wake.notified() => {}
            () = tokio::time::sleep_until(next) => {}
            _ = stop.changed() => return,
        }
        if *stop.borrow() {
            return;
        }
    }
}

impl Registry {
    /// A real session at a limit takes the place of a pooled sandbox: it leaves the pool for the
    /// retiring list (keeping its reservation until it is stopped), and the refill holds back
    /// until the session is admitted (or `hold` passed).
    pub(crate) fn yield_pooled(&mut self, sandbox: SandboxId, flavor: SandboxFlavor, starting: bool, hold: Duration) {
        if self.pool_mut().members.remove(&sandbox).is_some() {
            tracing::info!(sandbox = %sandbox, "a pooled sandbox yields to a new session at a limit");
            self.retire_sandbox(sandbox, "warm pool", flavor, starting);
            self.pool_mut().yielded(Instant::now(), hold);
        }
    }
}
