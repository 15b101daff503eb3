//! The session table: who owns which sandbox, in what state, and what each holds of the limits.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use msbw_backend::{SandboxId, Template};
use msbw_config::SandboxFlavor;
use serde::Serialize;
use tokio::time::Instant;

use crate::admission::Ledger;
use crate::pool::PoolTable;

/// A session's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SessionStatus {
    /// Its sandbox is starting.
    Creating,
    /// Idle and usable.
    Ready,
    /// Running code or a command.
    Running,
    /// Its sandbox was lost or left unusable (for example by a timeout); the next call replaces it.
    Error,
    /// Stopped (it is being or has been removed).
    Stopped,
}

impl fmt::Display for SessionStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SessionStatus::Creating => "creating",
            SessionStatus::Ready => "ready",
            SessionStatus::Running => "running",
            SessionStatus::Error => "error",
            SessionStatus::Stopped => "stopped",
        })
    }
}

/// What callers see of a session.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SessionInfo {
    /// The session's id.
    pub session_id: String,
    /// Its template.
    pub template: Template,
    /// Its flavor.
    pub flavor: SandboxFlavor,
    /// When it was created.
    pub created_at: SystemTime,
    /// When it was last used.
    pub last_accessed: SystemTime,
    /// Its state.
    pub status: SessionStatus,
    /// The namespace of its sandbox.
    pub namespace: String,
    /// The name of its sandbox.
    pub sandbox_name: String,
    /// How many executions it has run.
    pub executions: u64,
    /// Whether its last execution was cancelled by its caller (a dropped stream) before it
    /// finished, as a timeout would have ended it.
    pub last_execution_cancelled: bool,
}

/// One live session.
#[derive(Debug)]
pub(crate) struct Entry {
    id: String,
    /// Distinguishes this incarnation from a later session with the same id.
    token: u64,
    template: Template,
    flavor: SandboxFlavor,
    pub(crate) sandbox: SandboxId,
    pub(crate) status: SessionStatus,
    created_at: SystemTime,
    pub(crate) last_accessed: Instant,
    last_accessed_wall: SystemTime,
    /// Calls that hold or wait for this session; a session with calls is never reaped or evicted.
    pub(crate) active_calls: usize,
    pub(crate) executions: u64,
    /// Whether the last execution was cancelled by its caller.
    pub(crate) last_cancelled: bool,
    /// Serialises executions (and the start) within the session.
    exec_lock: Arc<tokio::sync::Mutex<()>>,
    /// What this session's sandboxes get besides the configuration.
    extras: Arc<Extras>,
}

/// Volumes and environment variables of one session, on top of the configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Extras {
    pub(crate) volumes: Vec<msbw_backend::VolumeMapping>,
    pub(crate) env: Vec<(String, String)>,
}

impl Entry {
    /// A new session in state `creating`, held by the call that creates it.
    pub(crate) fn new(
        id: &str,
        token: u64,
        template: Template,
        flavor: SandboxFlavor,
        sandbox: SandboxId,
        extras: Arc<Extras>,
    ) -> Self {
        let now = SystemTime::now();
        Entry {
            id: id.to_owned(),
            token,
            template,
            flavor,
            sandbox,
            status: SessionStatus::Creating,
            created_at: now,
            last_accessed: Instant::now(),
            last_accessed_wall: now,
            active_calls: 1,
            executions: 0,
            last_cancelled: false,
            exec_lock: Arc::new(tokio::sync::Mutex::new(())),
            extras,
        }
    }

    /// The session's id.
    pub(crate) fn id(&self) -> &str {
        &self.id
    }

    /// Distinguishes this incarnation from a later session with the same id.
    pub(crate) fn token(&self) -> u64 {
        self.token
    }

    /// The template its sandboxes run.
    pub(crate) fn template(&self) -> Template {
        self.template
    }

    /// The flavor of its sandboxes.
    pub(crate) fn flavor(&self) -> SandboxFlavor {
        self.flavor
    }

    pub(crate) fn info(&self) -> SessionInfo {
        SessionInfo {
            session_id: self.id.clone(),
            template: self.template,
            flavor: self.flavor,
            created_at: self.created_at,
            last_accessed: self.last_accessed_wall,
            status: self.status,
            namespace: self.sandbox.namespace.clone(),
            sandbox_name: self.sandbox.name.clone(),
            executions: self.executions,
            last_execution_cancelled: self.last_cancelled,
        }
    }

    pub(crate) fn touch(&mut self) {
        self.last_accessed = Instant::now();
        self.last_accessed_wall = SystemTime::now();
    }

    /// The lock that serialises this session's executions.
    pub(crate) fn exec_lock(&self) -> Arc<tokio::sync::Mutex<()>> {
        self.exec_lock.clone()
    }

    /// What this session's sandboxes get besides the configuration.
    pub(crate) fn extras(&self) -> Arc<Extras> {
        self.extras.clone()
    }

    /// Whether nothing holds the session and it may be reaped or evicted.
    pub(crate) fn is_idle(&self) -> bool {
        self.active_calls == 0 && matches!(self.status, SessionStatus::Ready | SessionStatus::Error)
    }
}

/// A sandbox being stopped (or whose stop failed and will be retried). It keeps its share of the
/// limits until the stop succeeded, so the limits count every sandbox that may still exist.
#[derive(Debug, Clone)]
pub(crate) struct Retiring {
    session_id: String,
    flavor: SandboxFlavor,
    attempts: u32,
    last_error: Option<String>,
    /// Whether a stop is in progress right now (so two passes do not stop it twice at once).
    in_progress: bool,
    /// Whether a call is still starting it (the session was retired while `creating`): it is
    /// stopped only once that start has ended, or a stop could overtake the start and leave a
    /// sandbox running that nothing owns.
    starting: bool,
}

impl Retiring {
    /// The session whose sandbox it is.
    pub(crate) fn session_id(&self) -> &str {
        &self.session_id
    }

    /// How many stops have failed.
    pub(crate) fn attempts(&self) -> u32 {
        self.attempts
    }
}

/// The table, kept under one mutex that is never held across an `.await`.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    sessions: HashMap<String, Entry>,
    /// Keyed by sandbox: removal is O(1) whatever the number of sandboxes being stopped.
    retiring: HashMap<SandboxId, Retiring>,
    /// Reservations held: one per session and per retiring sandbox.
    ledger: Ledger,
    /// Callers waiting for a slot.
    pub(crate) waiting: usize,
    /// The least and most memory (MB) a caller asked for since the waiting line was last empty
    /// (see [`crate::admission::wakeups`]).
    waiting_need: Option<(u64, u64)>,
    next_token: u64,
    /// The warm pool's sandboxes (each holds a reservation in the ledger).
    pool: PoolTable,
}

impl Registry {
    /// The reservations held.
    pub(crate) fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// The reservations, to take or give back one.
    pub(crate) fn ledger_mut(&mut self) -> &mut Ledger {
        &mut self.ledger
    }

    /// The warm pool's sandboxes.
    pub(crate) fn pool(&self) -> &PoolTable {
        &self.pool
    }

    /// The warm pool's sandboxes, to change them.
    pub(crate) fn pool_mut(&mut self) -> &mut PoolTable {
        &mut self.pool
    }

    /// Notes that a caller asking for `need_mb` is about to wait. The range restarts whenever
    /// the line is empty, so it covers at least every caller waiting now.
    pub(crate) fn note_waiter(&mut self, need_mb: u64) {
        self.waiting_need = match self.waiting_need {
            Some((least, most)) if self.waiting > 0 => Some((least.min(need_mb), most.max(need_mb))),
            _ => Some((need_mb, need_mb)),
        };
    }

    /// The least and most memory the waiting callers may ask for, if any waited.
    pub(crate) fn waiting_need(&self) -> Option<(u64, u64)> {
        self.waiting_need
    }

    /// A token for a new session incarnation.
    pub(crate) fn token(&mut self) -> u64 {
        self.next_token += 1;
        self.next_token
    }

    /// The live sessions.
    pub(crate) fn sessions(&self) -> impl Iterator<Item = &Entry> {
        self.sessions.values()
    }

    /// How many sessions are live.
    pub(crate) fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// The session with this id.
    pub(crate) fn session(&self, session_id: &str) -> Option<&Entry> {
        self.sessions.get(session_id)
    }

    /// The session with this id, to change it.
    pub(crate) fn session_mut(&mut self, session_id: &str) -> Option<&mut Entry> {
        self.sessions.get_mut(session_id)
    }

    /// The session with this id if it is still incarnation `token`.
    pub(crate) fn incarnation(&mut self, session_id: &str, token: u64) -> Option<&mut Entry> {
        self.sessions.get_mut(session_id).filter(|e| e.token == token)
    }

    /// Adds a session (its reservation must have been taken).
    pub(crate) fn insert(&mut self, entry: Entry) {
        self.sessions.insert(entry.id.clone(), entry);
    }

    /// Removes a session whose sandbox is known not to exist, and gives its reservation back.
    pub(crate) fn forget(&mut self, session_id: &str) -> Option<Entry> {
        let entry = self.sessions.remove(session_id)?;
        self.ledger.release(entry.flavor);
        Some(entry)
    }

    /// Moves a session out of the table into the retiring list, keeping its reservation.
    pub(crate) fn retire(&mut self, session_id: &str) -> Option<SandboxId> {
        let entry = self.sessions.remove(session_id)?;
        let starting = entry.status == SessionStatus::Creating;
        self.retire_sandbox(entry.sandbox.clone(), &entry.id, entry.flavor, starting);
        Some(entry.sandbox)
    }

    /// Puts a sandbox that holds a reservation (of `flavor`) on the retiring list, keeping the
    /// reservation; `starting`: a start is still in progress (it is stopped once that ends).
    pub(crate) fn retire_sandbox(
        &mut self,
        sandbox: SandboxId,
        session_id: &str,
        flavor: SandboxFlavor,
        starting: bool,
    ) {
        self.retiring.insert(
            sandbox,
            Retiring {
                session_id: session_id.to_owned(),
                flavor,
                attempts: 0,
                last_error: None,
                in_progress: false,
                starting,
            },
        );
    }

    /// The start of a retired session's sandbox has ended: it may be stopped now. Returns whether
    /// it is on the retiring list.
    pub(crate) fn start_ended(&mut self, sandbox: &SandboxId) -> bool {
        match self.retiring.get_mut(sandbox) {
            Some(r) => {
                r.starting = false;
                true
            }
            None => false,
        }
    }

    /// Retires every session.
    pub(crate) fn retire_all(&mut self) {
        let ids: Vec<String> = self.sessions.keys().cloned().collect();
        for id in ids {
            self.retire(&id);
        }
    }

    /// How many sandboxes are being stopped or wait for a retry.
    pub(crate) fn retiring_count(&self) -> usize {
        self.retiring.len()
    }

    /// Whether `sandbox` is on the retiring list.
    pub(crate) fn retiring(&self, sandbox: &SandboxId) -> Option<&Retiring> {
        self.retiring.get(sandbox)
    }

    /// Marks every retiring sandbox whose stop is not in progress as in progress, and returns them.
    pub(crate) fn begin_stops(&mut self) -> Vec<SandboxId> {
        self.retiring
            .iter_mut()
            .filter(|(_, r)| !r.in_progress && !r.starting)
            .map(|(id, r)| {
                r.in_progress = true;
                id.clone()
            })
            .collect()
    }

    /// A stop ended: stopped (or gone), the sandbox leaves the list and its reservation is given
    /// back; failed, it stays for the next pass. Returns the retired record when it left.
    pub(crate) fn end_stop(&mut self, sandbox: &SandboxId, failure: Option<String>) -> Option<Retiring> {
        match failure {
            None => {
                let r = self.retiring.remove(sandbox)?;
                self.ledger.release(r.flavor);
                Some(r)
            }
            Some(why) => {
                if let Some(r) = self.retiring.get_mut(sandbox) {
                    r.in_progress = false;
                    r.attempts += 1;
                    r.last_error = Some(why);
                }
                None
            }
        }
    }

    /// The sandboxes whose last stop failed, with the reason, sorted.
    pub(crate) fn failed_stops(&self) -> Vec<(SandboxId, String)> {
        let mut failed: Vec<(SandboxId, String)> = self
            .retiring
            .iter()
            .map(|(id, r)| {
                let why = match &r.last_error {
                    Some(e) => e.clone(),
                    None if r.starting => "still starting".to_owned(),
                    None => String::new(),
                };
                (id.clone(), why)
            })
            .collect();
        failed.sort();
        failed
    }

    /// Every sandbox that belongs to a live or retiring session, or to the warm pool.
    pub(crate) fn live_sandboxes(&self) -> HashSet<SandboxId> {
        self.sessions
            .values()
            .map(|e| e.sandbox.clone())
            .chain(self.retiring.keys().cloned())
            .chain(self.pool.sandboxes().cloned())
            .collect()
    }
}
