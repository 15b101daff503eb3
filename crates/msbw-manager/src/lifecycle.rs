//! The manager's life: what it shares with its background tasks, start (an orphan pass, then the
//! tasks), and shutdown (stop the tasks, wait for executions, stop every sandbox).

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use msbw_backend::SandboxBackend;
use msbw_config::WrapperConfig;
use tokio::sync::{Notify, Semaphore};
use tokio::time::Instant;

use crate::admission;
use crate::error::until;
use crate::ownership::{Lease, Ownership};
use crate::pool::PoolRunner;
use crate::session::Registry;
use crate::tasks::Tasks;
use crate::{ManagerError, OrphanReport, Phase, ShutdownReport, StartReport};

/// The manager's life: calls are only accepted while running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lifecycle {
    NotStarted,
    Running,
    ShuttingDown,
    Stopped,
}

/// Everything shared by the manager handle, its calls and its background tasks.
#[derive(Debug)]
pub(crate) struct Inner {
    config: WrapperConfig,
    backend: Arc<dyn SandboxBackend>,
    registry: Mutex<Registry>,
    /// Woken whenever a reservation is given back (the `wait` and `evict` policies wait on it).
    slot_freed: Notify,
    /// Woken whenever a call ends (shutdown waits on it).
    call_ended: Notify,
    /// Bounds the sandboxes starting at the same time.
    starts: Semaphore,
    state: Mutex<(Lifecycle, Option<Instant>)>,
    tasks: Mutex<Tasks>,
    /// This manager's owner id (in every sandbox name it makes).
    owner: String,
    /// The lease that shows peers this manager is alive.
    lease: Mutex<Lease>,
    /// The warm pool's refill task and starts.
    pool: PoolRunner,
}

impl Inner {
    pub(crate) fn new(config: WrapperConfig, backend: Arc<dyn SandboxBackend>, ownership: &Ownership) -> Self {
        let lease = Lease::take(&config.owner_mark, ownership);
        let starts = Semaphore::new(config.max_concurrent_starts as usize);
        Inner {
            config,
            backend,
            registry: Mutex::new(Registry::default()),
            slot_freed: Notify::new(),
            call_ended: Notify::new(),
            starts,
            state: Mutex::new((Lifecycle::NotStarted, None)),
            tasks: Mutex::new(Tasks::default()),
            owner: lease.owner().to_owned(),
            lease: Mutex::new(lease),
            pool: PoolRunner::default(),
        }
    }

    /// This manager's owner id.
    pub(crate) fn owner(&self) -> &str {
        &self.owner
    }

    /// The lease, to judge other owners by.
    pub(crate) fn lease(&self) -> MutexGuard<'_, Lease> {
        self.lease.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The configuration.
    pub(crate) fn config(&self) -> &WrapperConfig {
        &self.config
    }

    /// The backend.
    pub(crate) fn backend(&self) -> &Arc<dyn SandboxBackend> {
        &self.backend
    }

    /// The registry, locked (never hold it across an `.await`).
    pub(crate) fn lock(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The warm pool's refill task and starts.
    pub(crate) fn pool(&self) -> &PoolRunner {
        &self.pool
    }

    /// The background tasks' table.
    pub(crate) fn task_table(&self) -> MutexGuard<'_, Tasks> {
        self.tasks.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The semaphore bounding concurrent starts.
    pub(crate) fn starts(&self) -> &Semaphore {
        &self.starts
    }

    /// What callers waiting for a slot wait on.
    pub(crate) fn slot_freed(&self) -> &Notify {
        &self.slot_freed
    }

    /// Wakes callers waiting for a slot: call after giving one reservation back. Whom to wake
    /// is [`admission::wakeups`]: one waiter per freed slot (as many as fit when a memory limit
    /// and alike waiters allow), so the cost of a release stays flat in the number of waiters.
    /// A woken waiter that gives up before it runs passes the wake-up on (tokio's `Notified`
    /// does).
    pub(crate) fn freed(&self) {
        let wake = admission::wakeups(&self.lock(), &admission::Limits::of(&self.config));
        match wake {
            admission::Wake::Some(n) => {
                for _ in 0..n {
                    self.slot_freed.notify_one();
                }
            }
            admission::Wake::All => self.slot_freed.notify_waiters(),
        }
        // The pool may refill into the slot (it holds back while callers wait or yield).
        self.pool.wake();
    }

    /// Says that a call ended (shutdown waits for running calls).
    pub(crate) fn call_ended(&self) {
        self.call_ended.notify_waiters();
    }

    pub(crate) fn lifecycle(&self) -> Lifecycle {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).0
    }

    fn set_lifecycle(&self, to: Lifecycle) {
        let mut l = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if to == Lifecycle::Running && l.1.is_none() {
            l.1 = Some(Instant::now());
        }
        l.0 = to;
    }

    pub(crate) fn started_at(&self) -> Option<Instant> {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).1
    }

    pub(crate) fn ensure_running(&self) -> Result<(), ManagerError> {
        match self.lifecycle() {
            Lifecycle::Running => Ok(()),
            Lifecycle::NotStarted => Err(ManagerError::NotStarted),
            Lifecycle::ShuttingDown | Lifecycle::Stopped => Err(ManagerError::ShuttingDown),
        }
    }

    /// Starts accepting calls: one orphan-cleanup pass, then the background tasks.
    pub(crate) async fn start(self: &Arc<Self>) -> Result<StartReport, ManagerError> {
        match self.lifecycle() {
            Lifecycle::Running => {
                return Ok(StartReport {
                    orphans: Ok(OrphanReport::default()),
                });
            }
            Lifecycle::ShuttingDown | Lifecycle::Stopped => return Err(ManagerError::ShuttingDown),
            Lifecycle::NotStarted => {}
        }
        self.set_lifecycle(Lifecycle::Running);
        let orphans = self.cleanup_orphans().await.map_err(|e| e.to_string());
        if let Err(why) = &orphans {
            tracing::warn!(error = %why, "orphan cleanup at start-up failed");
        }
        self.spawn_tasks();
        self.spawn_pool();
        Ok(StartReport { orphans })
    }

    /// Stops the background tasks, waits for running executions up to `shutdown_timeout`, and
    /// stops every sandbox.
    pub(crate) async fn shutdown(self: &Arc<Self>) -> ShutdownReport {
        if matches!(self.lifecycle(), Lifecycle::ShuttingDown | Lifecycle::Stopped) {
            return ShutdownReport::default();
        }
        self.set_lifecycle(Lifecycle::ShuttingDown);
        self.slot_freed.notify_waiters();
        self.stop_tasks().await;

        let deadline = Instant::now() + self.config.shutdown_timeout;
        let interrupted = loop {
            let notified = self.call_ended.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let busy = self.lock().sessions().filter(|e| e.active_calls > 0).count();
            if busy == 0 || Instant::now() >= deadline {
                break busy;
            }
            let _ = until(Phase::Executing, deadline, notified).await;
        };
        if interrupted > 0 {
            tracing::warn!(
                interrupted,
                "shutdown timeout reached with executions still running; stopping their sandboxes"
            );
        }
        self.stop_pool(deadline).await;
        self.lock().retire_all();
        let mut stopped = self.stop_retiring().await.stopped;
        // One more try for those that failed (a transient failure should not leak a sandbox).
        if self.lock().retiring_count() > 0 {
            tokio::time::sleep(Duration::from_millis(500)).await;
            stopped += self.stop_retiring().await.stopped;
        }
        let failed = self.lock().failed_stops();
        if failed.is_empty() {
            // Nothing of ours is left: no peer needs to look for our sandboxes again.
            self.lease().release();
        }
        self.set_lifecycle(Lifecycle::Stopped);
        ShutdownReport {
            stopped,
            interrupted_executions: interrupted,
            failed,
        }
    }
}
