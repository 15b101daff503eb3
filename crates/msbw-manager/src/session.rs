//! The session table: who owns which sandbox, in what state, and what each holds of the limits.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use msbw_backend::{SandboxId, Template};
use msbw_config::SandboxFlavor;
use serde::Serialize;
use tokio::time::Instant;

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
}

/// One live session.
#[derive(Debug)]
pub(crate) struct Entry {
    pub(crate) id: String,
    /// Distinguishes this incarnation from a later session with the same id.
    pub(crate) token: u64,
    pub(crate) template: Template,
    pub(crate) flavor: SandboxFlavor,
    pub(crate) sandbox: SandboxId,
    pub(crate) status: SessionStatus,
    pub(crate) created_at: SystemTime,
    pub(crate) last_accessed: Instant,
    pub(crate) last_accessed_wall: SystemTime,
    /// Calls that hold or wait for this session; a session with calls is never reaped or evicted.
    pub(crate) active_calls: usize,
    pub(crate) executions: u64,
    /// Serialises executions (and the start) within the session.
    pub(crate) exec_lock: Arc<tokio::sync::Mutex<()>>,
    /// What this session's sandboxes get besides the configuration.
    pub(crate) extras: Arc<Extras>,
}

/// Volumes and environment variables of one session, on top of the configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Extras {
    pub(crate) volumes: Vec<msbw_backend::VolumeMapping>,
    pub(crate) env: Vec<(String, String)>,
}

impl Entry {
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
        }
    }

    pub(crate) fn touch(&mut self) {
        self.last_accessed = Instant::now();
        self.last_accessed_wall = SystemTime::now();
    }
}

/// A sandbox being stopped (or whose stop failed and will be retried). It keeps its share of the
/// limits until the stop succeeded, so the limits count every sandbox that may still exist.
#[derive(Debug, Clone)]
pub(crate) struct Retiring {
    pub(crate) sandbox: SandboxId,
    pub(crate) session_id: String,
    pub(crate) flavor: SandboxFlavor,
    pub(crate) attempts: u32,
    pub(crate) last_error: Option<String>,
    /// Whether a stop is in progress right now (so two passes do not stop it twice at once).
    pub(crate) in_progress: bool,
}

/// The table, kept under one mutex that is never held across an `.await`.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    pub(crate) sessions: HashMap<String, Entry>,
    pub(crate) retiring: Vec<Retiring>,
    /// Reservations held: one per session and per retiring sandbox.
    pub(crate) used_sessions: u64,
    /// Memory reserved by the same.
    pub(crate) used_memory_mb: u64,
    /// Callers waiting for a slot.
    pub(crate) waiting: usize,
    pub(crate) next_token: u64,
}

impl Registry {
    /// Takes a reservation for a sandbox of `flavor`, or says which limit is in the way.
    pub(crate) fn try_reserve(
        &mut self,
        flavor: SandboxFlavor,
        max_sessions: u32,
        max_memory_mb: Option<u64>,
    ) -> Result<(), (crate::Resource, u64, u64, u64)> {
        if self.used_sessions >= u64::from(max_sessions) {
            return Err((
                crate::Resource::Sessions,
                self.used_sessions,
                u64::from(max_sessions),
                1,
            ));
        }
        let need = u64::from(flavor.memory_mb());
        if let Some(limit) = max_memory_mb
            && self.used_memory_mb + need > limit
        {
            return Err((crate::Resource::MemoryMb, self.used_memory_mb, limit, need));
        }
        self.used_sessions += 1;
        self.used_memory_mb += need;
        Ok(())
    }

    /// Gives back the reservation of a sandbox of `flavor`.
    pub(crate) fn release(&mut self, flavor: SandboxFlavor) {
        self.used_sessions = self.used_sessions.saturating_sub(1);
        self.used_memory_mb = self.used_memory_mb.saturating_sub(u64::from(flavor.memory_mb()));
    }

    pub(crate) fn token(&mut self) -> u64 {
        self.next_token += 1;
        self.next_token
    }

    /// Moves a session out of the table into the retiring list, keeping its reservation.
    pub(crate) fn retire(&mut self, session_id: &str) -> Option<SandboxId> {
        let entry = self.sessions.remove(session_id)?;
        self.retiring.push(Retiring {
            sandbox: entry.sandbox.clone(),
            session_id: entry.id,
            flavor: entry.flavor,
            attempts: 0,
            last_error: None,
            in_progress: false,
        });
        Some(entry.sandbox)
    }

    /// Every sandbox that belongs to a live or retiring session.
    pub(crate) fn live_sandboxes(&self) -> Vec<SandboxId> {
        self.sessions
            .values()
            .map(|e| e.sandbox.clone())
            .chain(self.retiring.iter().map(|r| r.sandbox.clone()))
            .collect()
    }
}
