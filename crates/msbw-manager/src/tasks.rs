//! The background tasks (idle cleanup and orphan cleanup): start, pause, resume, restart, status.
//!
//! Each task holds only a `Weak` reference to the manager, so it ends when the manager is dropped;
//! shutdown stops them and waits for them.

use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime};

use serde::Serialize;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

use crate::lifecycle::Inner;

/// The two background tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskKind {
    /// Stops idle sessions every `cleanup_interval`.
    IdleCleanup,
    /// Stops orphan sandboxes every `orphan_cleanup_interval`.
    OrphanCleanup,
}

impl TaskKind {
    /// Both tasks.
    pub const ALL: [TaskKind; 2] = [TaskKind::IdleCleanup, TaskKind::OrphanCleanup];
}

/// A background task's state, as `get_background_task_status` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TaskStatus {
    /// Which task.
    pub kind: TaskKind,
    /// Whether its loop is alive.
    pub running: bool,
    /// Whether its passes are paused.
    pub paused: bool,
    /// Time between passes.
    pub interval_seconds: u64,
    /// Passes completed.
    pub runs: u64,
    /// Passes that reported a failure.
    pub failures: u64,
    /// When the last pass ended.
    pub last_run_at: Option<SystemTime>,
    /// What the last pass did, in words.
    pub last_outcome: Option<String>,
}

#[derive(Debug)]
struct Task {
    handle: Option<JoinHandle<()>>,
    stop: watch::Sender<bool>,
    paused: watch::Sender<bool>,
    status: TaskStatus,
}

/// The manager's background tasks.
#[derive(Debug, Default)]
pub(crate) struct Tasks {
    tasks: Vec<Task>,
}

impl Inner {
    fn interval_of(&self, kind: TaskKind) -> Duration {
        match kind {
            TaskKind::IdleCleanup => self.config().cleanup_interval,
            TaskKind::OrphanCleanup => self.config().orphan_cleanup_interval,
        }
    }

    /// Starts both tasks (replacing any that run).
    pub(crate) fn spawn_tasks(self: &Arc<Self>) {
        let mut old = std::mem::take(&mut self.task_table().tasks);
        for task in &mut old {
            let _ = task.stop.send(true);
        }
        let mut tasks = Vec::new();
        for kind in TaskKind::ALL {
            let (stop, stop_rx) = watch::channel(false);
            let (paused, paused_rx) = watch::channel(false);
            let interval = self.interval_of(kind);
            let handle = tokio::spawn(task_loop(Arc::downgrade(self), kind, interval, stop_rx, paused_rx));
            tasks.push(Task {
                handle: Some(handle),
                stop,
                paused,
                status: TaskStatus {
                    kind,
                    running: true,
                    paused: false,
                    interval_seconds: interval.as_secs(),
                    runs: 0,
                    failures: 0,
                    last_run_at: None,
                    last_outcome: None,
                },
            });
        }
        self.task_table().tasks = tasks;
    }

    /// Stops both tasks and waits for them to end.
    pub(crate) async fn stop_tasks(&self) {
        let handles: Vec<JoinHandle<()>> = {
            let mut tasks = self.task_table();
            tasks
                .tasks
                .iter_mut()
                .filter_map(|t| {
                    let _ = t.stop.send(true);
                    t.status.running = false;
                    t.handle.take()
                })
                .collect()
        };
        for handle in handles {
            let _ = handle.await;
        }
    }

    /// Pauses (`true`) or resumes (`false`) both tasks' passes.
    pub(crate) fn pause_tasks(&self, paused: bool) {
        for task in &mut self.task_table().tasks {
            let _ = task.paused.send(paused);
            task.status.paused = paused;
        }
    }

    pub(crate) fn task_status(&self) -> Vec<TaskStatus> {
        let mut tasks = self.task_table();
        for task in &mut tasks.tasks {
            task.status.running = task.handle.as_ref().is_some_and(|h| !h.is_finished());
        }
        tasks.tasks.iter().map(|t| t.status.clone()).collect()
    }

    fn record(&self, kind: TaskKind, failed: bool, outcome: String) {
        let mut tasks = self.task_table();
        if let Some(task) = tasks.tasks.iter_mut().find(|t| t.status.kind == kind) {
            task.status.runs += 1;
            task.status.failures += u64::from(failed);
            task.status.last_run_at = Some(SystemTime::now());
            task.status.last_outcome = Some(outcome);
        }
    }
}

async fn task_loop(
    inner: Weak<Inner>,
    kind: TaskKind,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
    paused: watch::Receiver<bool>,
) {
    let mut ticker = tokio::time::interval_at(Instant::now() + interval, interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.changed() => return,
        }
        if *stop.borrow() {
            return;
        }
        if *paused.borrow() {
            continue;
        }
        let Some(inner) = inner.upgrade() else { return };
        let (failed, outcome) = match kind {
            TaskKind::IdleCleanup => {
                let r = inner.cleanup_idle().await;
                (
                    r.failed > 0,
                    format!(
                        "reaped {} idle sessions, stopped {}, {} stops failed",
                        r.reaped.len(),
                        r.stopped,
                        r.failed
                    ),
                )
            }
            TaskKind::OrphanCleanup => match inner.cleanup_orphans().await {
                Ok(r) => (
                    !r.failed.is_empty(),
                    format!(
                        "examined {}, stopped {} orphans, {} failed",
                        r.examined,
                        r.stopped.len(),
                        r.failed.len()
                    ),
                ),
                Err(e) => (true, format!("failed: {e}")),
            },
        };
        if failed {
            tracing::warn!(task = ?kind, outcome = %outcome, "background pass");
        } else {
            tracing::debug!(task = ?kind, outcome = %outcome, "background pass");
        }
        inner.record(kind, failed, outcome);
    }
}
