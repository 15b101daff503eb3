//! The session manager: get-or-create, admission under the limits, serialised executions,
//! timeouts and sandbox replacement.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use msbw_backend::{
    Aftermath, BackendError, CodeRequest, CommandRequest, ErrorKind, ExecOutput, ExecStatus, SandboxBackend,
    SandboxBackendExt, SandboxId, SandboxSpec, Template,
};
use msbw_config::{LimitPolicy, SandboxFlavor, WrapperConfig};
use tokio::sync::{Notify, OwnedMutexGuard, Semaphore};
use tokio::time::Instant;
use tracing::Instrument;

use crate::calls::{MAX_CALL_TIMEOUT, MAX_INPUT_BYTES, SessionOptions};
use crate::session::{Entry, Extras, Registry, SessionStatus};
use crate::tasks::Tasks;
use crate::{
    CodeCall, CommandCall, CommandResult, ExecutionResult, ManagerError, Phase, SessionInfo, SessionSpec, naming,
};

/// How much longer than an execution's own timeout the manager waits for the backend before it
/// gives up on the sandbox (the backend enforces the timeout; this guards against a backend that
/// does not).
pub(crate) const EXEC_GRACE: Duration = Duration::from_secs(30);

/// The manager's life: calls are only accepted while running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lifecycle {
    NotStarted,
    Running,
    ShuttingDown,
    Stopped,
}

/// Everything shared by the manager handle and its background tasks.
#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) config: WrapperConfig,
    pub(crate) backend: Arc<dyn SandboxBackend>,
    pub(crate) registry: Mutex<Registry>,
    /// Woken whenever a reservation is given back (the `wait` policy waits on it).
    pub(crate) slot_freed: Notify,
    /// Woken whenever a call ends (shutdown waits on it).
    pub(crate) call_ended: Notify,
    /// Bounds the sandboxes starting at the same time.
    pub(crate) starts: Semaphore,
    pub(crate) lifecycle: Mutex<(Lifecycle, Option<Instant>)>,
    pub(crate) tasks: Mutex<Tasks>,
}

/// A call's hold on a session: while it exists the session counts as busy (never reaped or
/// evicted). Dropping it (the call ended, or was cancelled) gives the hold back.
pub(crate) struct CallGuard {
    inner: Arc<Inner>,
    session_id: String,
    token: u64,
    /// Set while the backend runs something for this call; if the guard drops with it set, the
    /// call was cancelled mid-execution and the sandbox may still be busy.
    in_backend: bool,
}

impl Drop for CallGuard {
    fn drop(&mut self) {
        {
            let mut reg = self.inner.lock();
            if let Some(entry) = reg.sessions.get_mut(&self.session_id)
                && entry.token == self.token
            {
                entry.active_calls = entry.active_calls.saturating_sub(1);
                entry.touch();
                if self.in_backend {
                    entry.status = SessionStatus::Error;
                } else if entry.status == SessionStatus::Running && entry.active_calls == 0 {
                    entry.status = SessionStatus::Ready;
                }
            }
        }
        self.inner.call_ended.notify_waiters();
    }
}

/// A session acquired for one execution: the session's execution lock is held.
pub(crate) struct Acquired {
    guard: CallGuard,
    _exec: OwnedMutexGuard<()>,
    sandbox: SandboxId,
    template: Template,
    flavor: SandboxFlavor,
    /// Whether this call created the session.
    created: bool,
    /// Whether the sandbox must be started (new session, or replacing a lost sandbox).
    needs_start: bool,
    /// The sandbox to stop before starting a replacement.
    replaces: Option<SandboxId>,
}

/// What one admission decision asks the caller to do next.
enum Step<'a> {
    /// The session was created and is the caller's.
    Ready(Acquired),
    /// The session exists: wait for its lock.
    Existing {
        token: u64,
        lock: Arc<tokio::sync::Mutex<()>>,
    },
    /// At a limit under the `wait` policy: wait for a slot.
    Wait(std::pin::Pin<Box<tokio::sync::futures::Notified<'a>>>),
    /// At a limit under the `evict` policy: a victim was retired, stop it.
    EvictionStarted,
    /// At a limit under the `evict` policy with no idle victim: wait for stops in progress.
    AwaitStops(std::pin::Pin<Box<tokio::sync::futures::Notified<'a>>>),
}

/// What one execution does on the backend.
#[derive(Clone)]
enum Work {
    Code(CodeRequest),
    Command(CommandRequest),
}

impl Inner {
    pub(crate) fn lock(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn lifecycle(&self) -> Lifecycle {
        self.lifecycle.lock().unwrap_or_else(|p| p.into_inner()).0
    }

    pub(crate) fn set_lifecycle(&self, to: Lifecycle) {
        let mut l = self.lifecycle.lock().unwrap_or_else(|p| p.into_inner());
        if to == Lifecycle::Running && l.1.is_none() {
            l.1 = Some(Instant::now());
        }
        l.0 = to;
    }

    pub(crate) fn started_at(&self) -> Option<Instant> {
        self.lifecycle.lock().unwrap_or_else(|p| p.into_inner()).1
    }

    pub(crate) fn ensure_running(&self) -> Result<(), ManagerError> {
        match self.lifecycle() {
            Lifecycle::Running => Ok(()),
            Lifecycle::NotStarted => Err(ManagerError::NotStarted),
            Lifecycle::ShuttingDown | Lifecycle::Stopped => Err(ManagerError::ShuttingDown),
        }
    }

    /// Gives back a reservation and wakes callers waiting for one.
    pub(crate) fn release(&self, reg: &mut Registry, flavor: SandboxFlavor) {
        reg.release(flavor);
        self.slot_freed.notify_waiters();
    }

    fn timeout_of(&self, options: &SessionOptions) -> Result<Duration, ManagerError> {
        match options.timeout {
            None => Ok(self.config.default_execution_timeout),
            Some(t) if t.is_zero() => Err(ManagerError::invalid(
                "timeout",
                "must be more than zero; leave it out for the configured default",
            )),
            Some(t) if t > MAX_CALL_TIMEOUT => Err(ManagerError::invalid(
                "timeout",
                format!(
                    "{:.0} s is more than the maximum of {} s",
                    t.as_secs_f64(),
                    MAX_CALL_TIMEOUT.as_secs()
                ),
            )),
            Some(t) => Ok(t),
        }
    }

    /// A call's timeout, session id and flavor, with the configured defaults filled in.
    fn resolve(&self, options: &SessionOptions) -> Result<(Duration, String, SandboxFlavor), ManagerError> {
        let timeout = self.timeout_of(options)?;
        let session_id = Self::session_id_of(options)?;
        Ok((
            timeout,
            session_id,
            options.flavor.unwrap_or(self.config.default_flavor),
        ))
    }

    fn session_id_of(options: &SessionOptions) -> Result<String, ManagerError> {
        match &options.session_id {
            None => Ok(naming::session_id()),
            Some(id) if id.trim().is_empty() => Err(ManagerError::invalid("session id", "is empty")),
            Some(id) if id.len() > 256 => Err(ManagerError::invalid("session id", "is longer than 256 bytes")),
            Some(id) if id.chars().any(char::is_control) => {
                Err(ManagerError::invalid("session id", "contains control characters"))
            }
            Some(id) => Ok(id.clone()),
        }
    }

    /// Finds or creates the session and takes its execution lock, honouring the limits.
    pub(crate) async fn acquire(
        self: &Arc<Self>,
        session_id: &str,
        template: Template,
        flavor: SandboxFlavor,
        create: Option<&Arc<Extras>>,
    ) -> Result<Acquired, ManagerError> {
        let wait_started = Instant::now();
        let deadline = wait_started + self.config.limit_wait_timeout;
        let mut evictions = 0u32;
        loop {
            self.ensure_running()?;
            // Decide under the lock; do every await after it is released.
            let step = self.admit(
                session_id,
                template,
                flavor,
                create,
                wait_started,
                deadline,
                &mut evictions,
            )?;
            match step {
                Step::Ready(acquired) => return Ok(acquired),
                Step::Existing { token, lock } => {
                    let guard = CallGuard {
                        inner: self.clone(),
                        session_id: session_id.to_owned(),
                        token,
                        in_backend: false,
                    };
                    let exec = lock.lock_owned().await;
                    if let Some(acquired) = self.claim(session_id, token, guard, exec, template, flavor) {
                        return Ok(acquired);
                    }
                    // The session went away while we waited for it (its start failed, or it was
                    // stopped): try again from the top.
                }
                Step::Wait(notified) => {
                    let waited = tokio::time::timeout_at(deadline, notified).await;
                    self.lock().waiting -= 1;
                    if waited.is_err() {
                        // Loop once more: the next admission either succeeds or reports the limit.
                        continue;
                    }
                }
                Step::EvictionStarted => {
                    self.clone().stop_retiring().await;
                }
                Step::AwaitStops(notified) => {
                    let _ = tokio::time::timeout_at(deadline, notified).await;
                }
            }
        }
    }

    /// One admission decision, taken under the registry lock.
    #[allow(clippy::too_many_arguments)]
    fn admit<'a>(
        self: &'a Arc<Self>,
        session_id: &str,
        template: Template,
        flavor: SandboxFlavor,
        create: Option<&Arc<Extras>>,
        wait_started: Instant,
        deadline: Instant,
        evictions: &mut u32,
    ) -> Result<Step<'a>, ManagerError> {
        let mut reg = self.lock();
        if let Some(entry) = reg.sessions.get_mut(session_id) {
            if entry.template != template || entry.flavor != flavor {
                return Err(ManagerError::SessionMismatch {
                    session_id: session_id.to_owned(),
                    existing_template: entry.template,
                    existing_flavor: entry.flavor,
                    requested_template: template,
                    requested_flavor: flavor,
                });
            }
            entry.active_calls += 1;
            entry.touch();
            return Ok(Step::Existing {
                token: entry.token,
                lock: entry.exec_lock.clone(),
            });
        }
        let Some(extras) = create else {
            return Err(ManagerError::SessionNotFound {
                session_id: session_id.to_owned(),
            });
        };

        let (resource, usage, limit, requested) = match reg.try_reserve(
            flavor,
            self.config.max_concurrent_sessions,
            self.config.max_total_memory_mb,
        ) {
            Ok(()) => {
                let token = reg.token();
                let sandbox = self.fresh_sandbox(session_id);
                let exec_lock = Arc::new(tokio::sync::Mutex::new(()));
                let exec = exec_lock
                    .clone()
                    .try_lock_owned()
                    .map_err(|_| ManagerError::Internal("a new session's lock was taken".into()))?;
                let now = SystemTime::now();
                reg.sessions.insert(
                    session_id.to_owned(),
                    Entry {
                        id: session_id.to_owned(),
                        token,
                        template,
                        flavor,
                        sandbox: sandbox.clone(),
                        status: SessionStatus::Creating,
                        created_at: now,
                        last_accessed: Instant::now(),
                        last_accessed_wall: now,
                        active_calls: 1,
                        executions: 0,
                        exec_lock,
                        extras: extras.clone(),
                    },
                );
                let guard = CallGuard {
                    inner: self.clone(),
                    session_id: session_id.to_owned(),
                    token,
                    in_backend: false,
                };
                return Ok(Step::Ready(Acquired {
                    guard,
                    _exec: exec,
                    sandbox,
                    template,
                    flavor,
                    created: true,
                    needs_start: true,
                    replaces: None,
                }));
            }
            Err(limit) => limit,
        };
        let waited = (self.config.limit_policy == LimitPolicy::Wait).then(|| wait_started.elapsed());
        let limit_error = ManagerError::ResourceLimit {
            resource,
            usage,
            limit,
            requested,
            waited,
        };
        let now = Instant::now();
        match self.config.limit_policy {
            LimitPolicy::Reject => Err(limit_error),
            LimitPolicy::Wait if now >= deadline => Err(limit_error),
            LimitPolicy::Wait => {
                let mut notified = Box::pin(self.slot_freed.notified());
                notified.as_mut().enable();
                reg.waiting += 1;
                Ok(Step::Wait(notified))
            }
            LimitPolicy::Evict => {
                let victim = reg
                    .sessions
                    .values()
                    .filter(|e| e.active_calls == 0 && matches!(e.status, SessionStatus::Ready | SessionStatus::Error))
                    .min_by_key(|e| e.last_accessed)
                    .map(|e| e.id.clone());
                *evictions += 1;
                match victim {
                    Some(victim) if *evictions <= self.config.max_concurrent_sessions => {
                        reg.retire(&victim);
                        tracing::info!(session_id = %victim, "evicting the least recently used idle session");
                        Ok(Step::EvictionStarted)
                    }
                    // Sandboxes being stopped will free their slots: wait for them.
                    _ if !reg.retiring.is_empty() && now < deadline => {
                        let mut notified = Box::pin(self.slot_freed.notified());
                        notified.as_mut().enable();
                        Ok(Step::AwaitStops(notified))
                    }
                    _ => Err(limit_error),
                }
            }
        }
    }

    /// After waiting for an existing session's lock: the session as it is now, if it is still
    /// the same incarnation. A session in error gets a fresh sandbox name to start.
    fn claim(
        &self,
        session_id: &str,
        token: u64,
        guard: CallGuard,
        exec: OwnedMutexGuard<()>,
        template: Template,
        flavor: SandboxFlavor,
    ) -> Option<Acquired> {
        let fresh = self.fresh_sandbox(session_id);
        let mut reg = self.lock();
        let entry = reg.sessions.get_mut(session_id).filter(|e| e.token == token)?;
        let mut acquired = Acquired {
            guard,
            _exec: exec,
            sandbox: entry.sandbox.clone(),
            template,
            flavor,
            created: false,
            needs_start: false,
            replaces: None,
        };
        if entry.status == SessionStatus::Error {
            acquired.replaces = Some(std::mem::replace(&mut entry.sandbox, fresh.clone()));
            acquired.sandbox = fresh;
            acquired.needs_start = true;
            entry.status = SessionStatus::Creating;
        }
        Some(acquired)
    }

    fn fresh_sandbox(&self, session_id: &str) -> SandboxId {
        SandboxId {
            namespace: self.config.namespace.clone(),
            name: naming::sandbox_name(&self.config.owner_mark, session_id),
        }
    }

    /// Starts the acquired session's sandbox (stopping the sandbox it replaces first). On failure
    /// the session is removed (a new session) or left in error (a replacement), and every
    /// reservation that no longer has a sandbox behind it is given back.
    async fn start_sandbox(self: &Arc<Self>, acquired: &mut Acquired, session_id: &str) -> Result<(), ManagerError> {
        if let Some(old) = acquired.replaces.take() {
            match self.backend.stop(&old).await {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => {
                    self.set_status(session_id, acquired.guard.token, SessionStatus::Error, Some(old));
                    return Err(ManagerError::backend(Phase::Stopping, session_id, e));
                }
            }
        }
        let mut spec = SandboxSpec::new(acquired.sandbox.clone(), acquired.template);
        spec.memory_mb = acquired.flavor.memory_mb();
        spec.cpus = acquired.flavor.cpus();
        let extras = self
            .lock()
            .sessions
            .get(session_id)
            .map(|e| e.extras.clone())
            .unwrap_or_default();
        spec.volumes = self.config.shared_volume_mappings.clone();
        spec.volumes.extend(extras.volumes.iter().cloned());
        spec.env = extras.env.clone();
        spec.start_timeout = self.config.sandbox_start_timeout;
        if let Err(e) = self.backend.check_supported(&spec).await {
            self.abandon_start(acquired, session_id, false).await;
            return Err(ManagerError::backend(Phase::Starting, session_id, e));
        }
        let permit = self.starts.acquire().await.map_err(|_| ManagerError::ShuttingDown)?;
        let started = tokio::time::timeout(spec.start_timeout, self.backend.start(&spec)).await;
        drop(permit);
        match started {
            Ok(Ok(())) => {
                self.set_status(session_id, acquired.guard.token, SessionStatus::Ready, None);
                tracing::info!(sandbox = %spec.id, "sandbox started");
                Ok(())
            }
            Ok(Err(e)) => {
                // Nothing was created for these kinds; for the others the sandbox may exist.
                let created_nothing = matches!(
                    e.kind(),
                    ErrorKind::InvalidInput
                        | ErrorKind::Unsupported
                        | ErrorKind::AlreadyExists
                        | ErrorKind::Unauthorized
                );
                self.abandon_start(acquired, session_id, !created_nothing).await;
                Err(ManagerError::backend(Phase::Starting, session_id, e))
            }
            Err(_) => {
                self.abandon_start(acquired, session_id, true).await;
                Err(ManagerError::StartTimeout {
                    session_id: session_id.to_owned(),
                    sandbox: spec.id,
                    timeout: spec.start_timeout,
                })
            }
        }
    }

    /// Undoes a failed start. With `may_exist`, the sandbox is stopped first; if that fails it
    /// stays on the retiring list (keeping its reservation) for the next cleanup pass.
    async fn abandon_start(self: &Arc<Self>, acquired: &Acquired, session_id: &str, may_exist: bool) {
        /// What to do once the lock is released.
        enum Then {
            Nothing,
            StopRetiring,
            StopSandbox,
        }
        let token = acquired.guard.token;
        let then = {
            let mut reg = self.lock();
            match reg.sessions.get_mut(session_id).filter(|e| e.token == token) {
                None => Then::Nothing,
                Some(_) if acquired.created && may_exist => {
                    reg.retire(session_id);
                    Then::StopRetiring
                }
                Some(entry) if acquired.created => {
                    let flavor = entry.flavor;
                    reg.sessions.remove(session_id);
                    self.release(&mut reg, flavor);
                    Then::Nothing
                }
                // A replacement that failed: the session stays, in error, and tries again next time.
                Some(entry) => {
                    entry.status = SessionStatus::Error;
                    if may_exist { Then::StopSandbox } else { Then::Nothing }
                }
            }
        };
        match then {
            Then::Nothing => {}
            Then::StopRetiring => {
                self.clone().stop_retiring().await;
            }
            Then::StopSandbox => {
                if let Err(e) = self.backend.stop(&acquired.sandbox).await
                    && e.kind() != ErrorKind::NotFound
                {
                    tracing::warn!(sandbox = %acquired.sandbox, error = %e, "could not stop a sandbox whose start failed");
                }
            }
        }
    }

    fn set_status(&self, session_id: &str, token: u64, status: SessionStatus, sandbox: Option<SandboxId>) {
        let mut reg = self.lock();
        if let Some(entry) = reg.sessions.get_mut(session_id)
            && entry.token == token
        {
            entry.status = status;
            if let Some(sandbox) = sandbox {
                entry.sandbox = sandbox;
            }
        }
    }

    /// Runs `work` in the session: acquire, start if needed, execute, classify the outcome.
    /// A sandbox that turns out to be gone is replaced once, since the work never ran.
    async fn run(
        self: &Arc<Self>,
        session_id: String,
        template: Template,
        flavor: SandboxFlavor,
        must_exist: bool,
        work: Work,
    ) -> Result<Ran, ManagerError> {
        let call_started = Instant::now();
        let mut created = false;
        let mut replaced = false;
        let extras = Arc::new(Extras::default());
        for attempt in 0..2 {
            // The retry after a vanished sandbox must find the same session: it never creates.
            let create = (!must_exist && attempt == 0).then_some(&extras);
            let mut acquired = self.acquire(&session_id, template, flavor, create).await?;
            created |= acquired.created;
            tracing::Span::current().record("sandbox", tracing::field::display(&acquired.sandbox));
            if acquired.needs_start {
                replaced |= !acquired.created;
                self.start_sandbox(&mut acquired, &session_id).await?;
            }
            self.set_status(&session_id, acquired.guard.token, SessionStatus::Running, None);
            acquired.guard.in_backend = true;
            let limit = match &work {
                Work::Code(r) => r.timeout,
                Work::Command(r) => r.timeout,
            };
            let call = async {
                match &work {
                    Work::Code(r) => self.backend.run_code(&acquired.sandbox, r).await,
                    Work::Command(r) => self.backend.run_command(&acquired.sandbox, r).await,
                }
            };
            let outcome = tokio::time::timeout(limit + EXEC_GRACE, call).await;
            acquired.guard.in_backend = false;
            let token = acquired.guard.token;
            let result = match outcome {
                Ok(Ok(out)) => {
                    let status = match out.status {
                        ExecStatus::TimedOut {
                            aftermath: Aftermath::Unusable,
                            ..
                        } => SessionStatus::Error,
                        _ => SessionStatus::Ready,
                    };
                    self.finish_execution(&session_id, token, status);
                    Ok(out)
                }
                Ok(Err(e)) if e.kind() == ErrorKind::NotFound && attempt == 0 => {
                    tracing::warn!(sandbox = %acquired.sandbox, "the session's sandbox is gone; replacing it");
                    self.finish_execution(&session_id, token, SessionStatus::Error);
                    continue;
                }
                Ok(Err(e)) => {
                    let status = if e.kind() == ErrorKind::NotFound {
                        SessionStatus::Error
                    } else {
                        SessionStatus::Ready
                    };
                    self.finish_execution(&session_id, token, status);
                    Err(ManagerError::backend(Phase::Executing, &session_id, e))
                }
                Err(_) => {
                    tracing::warn!(sandbox = %acquired.sandbox, "the backend did not return in time; the sandbox will be replaced");
                    self.finish_execution(&session_id, token, SessionStatus::Error);
                    Ok(ExecOutput {
                        stdout: String::new(),
                        stderr: String::new(),
                        status: ExecStatus::TimedOut {
                            after: limit,
                            aftermath: Aftermath::Unusable,
                        },
                        exit_code: None,
                    })
                }
            };
            return result.map(|out| Ran {
                out,
                session_id: session_id.clone(),
                sandbox: acquired.sandbox.clone(),
                created,
                replaced,
                elapsed: call_started.elapsed(),
            });
        }
        Err(ManagerError::backend(
            Phase::Executing,
            &session_id,
            BackendError::new(
                ErrorKind::NotFound,
                msbw_backend::Operation::RunCode,
                "the sandbox vanished twice in a row",
            )
            .with_backend(self.backend.name()),
        ))
    }

    fn finish_execution(&self, session_id: &str, token: u64, status: SessionStatus) {
        let mut reg = self.lock();
        if let Some(entry) = reg.sessions.get_mut(session_id)
            && entry.token == token
        {
            entry.status = status;
            entry.executions += 1;
            entry.touch();
        }
    }

    /// Runs code in a session.
    pub(crate) async fn execute_code(self: &Arc<Self>, call: CodeCall) -> Result<ExecutionResult, ManagerError> {
        self.ensure_running()?;
        if call.code.len() > MAX_INPUT_BYTES {
            return Err(ManagerError::invalid(
                "code",
                format!("is larger than {MAX_INPUT_BYTES} bytes"),
            ));
        }
        let (timeout, session_id, flavor) = self.resolve(&call.options)?;
        let work = Work::Code(CodeRequest {
            language: call.template,
            code: call.code,
            timeout,
        });
        let span = tracing::info_span!("execute_code", session_id = %session_id, flavor = %flavor, template = %call.template, backend = self.backend.name(), sandbox = tracing::field::Empty);
        let ran = self
            .spawn_run(session_id, call.template, flavor, call.options.must_exist, work)
            .instrument(span)
            .await?;
        Ok(ExecutionResult {
            success: ran.out.status == ExecStatus::Completed,
            stdout: ran.out.stdout.trim_end().to_owned(),
            stderr: ran.out.stderr.trim_end().to_owned(),
            status: ran.out.status,
            execution_time_ms: ms(ran.elapsed),
            session_created: ran.created,
            sandbox_replaced: ran.replaced,
            template: call.template,
            session_id: ran.session_id,
            sandbox: ran.sandbox,
        })
    }

    /// Runs a command in a session.
    pub(crate) async fn execute_command(self: &Arc<Self>, call: CommandCall) -> Result<CommandResult, ManagerError> {
        self.ensure_running()?;
        if call.command.trim().is_empty() {
            return Err(ManagerError::invalid("command", "is empty"));
        }
        let size = call.command.len() + call.args.iter().map(String::len).sum::<usize>();
        if size > MAX_INPUT_BYTES {
            return Err(ManagerError::invalid(
                "command",
                format!("and its arguments are larger than {MAX_INPUT_BYTES} bytes"),
            ));
        }
        if call.command.contains('\0') || call.args.iter().any(|a| a.contains('\0')) {
            return Err(ManagerError::invalid("command", "contains a NUL byte"));
        }
        let (timeout, session_id, flavor) = self.resolve(&call.options)?;
        let work = Work::Command(CommandRequest {
            command: call.command.clone(),
            args: call.args.clone(),
            timeout,
        });
        let span = tracing::info_span!("execute_command", session_id = %session_id, flavor = %flavor, command = %call.command, backend = self.backend.name(), sandbox = tracing::field::Empty);
        let ran = self
            .spawn_run(session_id, call.template, flavor, call.options.must_exist, work)
            .instrument(span)
            .await?;
        Ok(CommandResult {
            success: ran.out.success(),
            stdout: ran.out.stdout.trim_end().to_owned(),
            stderr: ran.out.stderr.trim_end().to_owned(),
            exit_code: ran.out.exit_code,
            status: ran.out.status,
            execution_time_ms: ms(ran.elapsed),
            session_created: ran.created,
            sandbox_replaced: ran.replaced,
            command: call.command,
            args: call.args,
            session_id: ran.session_id,
            sandbox: ran.sandbox,
        })
    }

    /// Runs the call in its own task, so that a caller that gives up (drops the future) cannot
    /// leave a session half-started: the start and the execution finish, and their results are
    /// recorded, whatever the caller does.
    async fn spawn_run(
        self: &Arc<Self>,
        session_id: String,
        template: Template,
        flavor: SandboxFlavor,
        must_exist: bool,
        work: Work,
    ) -> Result<Ran, ManagerError> {
        let inner = self.clone();
        let task = tokio::spawn(
            async move { inner.run(session_id, template, flavor, must_exist, work).await }.in_current_span(),
        );
        task.await
            .map_err(|e| ManagerError::Internal(format!("execution task failed: {e}")))?
    }

    /// Opens a session now (its sandbox starts before this returns). An existing session with
    /// the same template and flavor is returned as it is; `created` says which.
    pub(crate) async fn open_session(self: &Arc<Self>, spec: SessionSpec) -> Result<(SessionInfo, bool), ManagerError> {
        self.ensure_running()?;
        let session_id = Self::session_id_of(&SessionOptions {
            session_id: Some(spec.session_id),
            ..Default::default()
        })?;
        for v in &spec.extra_volumes {
            if v.to_string().parse::<msbw_backend::VolumeMapping>().as_ref() != Ok(v) {
                return Err(ManagerError::invalid(
                    "volume",
                    format!("{v} is not an absolute, normalised mapping"),
                ));
            }
        }
        let extras = Arc::new(Extras {
            volumes: spec.extra_volumes,
            env: spec.env,
        });
        let inner = self.clone();
        let (template, flavor) = (spec.template, spec.flavor);
        let task = tokio::spawn(
            async move {
                let mut acquired = inner.acquire(&session_id, template, flavor, Some(&extras)).await?;
                let created = acquired.created;
                if acquired.needs_start {
                    inner.start_sandbox(&mut acquired, &session_id).await?;
                }
                let info = inner.lock().sessions.get(&session_id).map(Entry::info).ok_or_else(|| {
                    ManagerError::SessionNotFound {
                        session_id: session_id.clone(),
                    }
                })?;
                drop(acquired);
                Ok((info, created))
            }
            .in_current_span(),
        );
        task.await
            .map_err(|e| ManagerError::Internal(format!("open task failed: {e}")))?
    }

    /// Stops every sandbox on the retiring list (a few at a time); those stopped (or already
    /// gone) give their reservation back, the others stay for the next pass. Returns how many
    /// were stopped and how many failed.
    pub(crate) async fn stop_retiring(self: Arc<Self>) -> (usize, usize) {
        let batch: Vec<SandboxId> = {
            let mut reg = self.lock();
            reg.retiring
                .iter_mut()
                .filter(|r| !r.in_progress)
                .map(|r| {
                    r.in_progress = true;
                    r.sandbox.clone()
                })
                .collect()
        };
        let limit = Arc::new(Semaphore::new(STOP_PARALLELISM));
        let mut set = tokio::task::JoinSet::new();
        for sandbox in batch {
            let inner = self.clone();
            let limit = limit.clone();
            set.spawn(async move {
                let _permit = limit.acquire_owned().await;
                let result = inner.backend.stop(&sandbox).await;
                (sandbox, result)
            });
        }
        let (mut stopped, mut failed) = (0, 0);
        while let Some(joined) = set.join_next().await {
            let Ok((sandbox, result)) = joined else {
                failed += 1;
                continue;
            };
            let mut reg = self.lock();
            let Some(pos) = reg.retiring.iter().position(|r| r.sandbox == sandbox) else {
                continue;
            };
            match result {
                Ok(()) => {
                    stopped += 1;
                    let r = reg.retiring.remove(pos);
                    self.release(&mut reg, r.flavor);
                    tracing::info!(sandbox = %sandbox, session_id = %r.session_id, "sandbox stopped");
                }
                Err(e) if e.kind() == ErrorKind::NotFound => {
                    stopped += 1;
                    let r = reg.retiring.remove(pos);
                    self.release(&mut reg, r.flavor);
                }
                Err(e) => {
                    failed += 1;
                    let r = &mut reg.retiring[pos];
                    r.in_progress = false;
                    r.attempts += 1;
                    tracing::warn!(sandbox = %sandbox, attempts = r.attempts, error = %e, "stop failed; will retry");
                    r.last_error = Some(e.to_string());
                }
            }
        }
        (stopped, failed)
    }
}

/// How many sandboxes are stopped at the same time.
pub(crate) const STOP_PARALLELISM: usize = 4;

/// What a successful run produced.
struct Ran {
    out: ExecOutput,
    session_id: String,
    sandbox: SandboxId,
    created: bool,
    replaced: bool,
    elapsed: Duration,
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
