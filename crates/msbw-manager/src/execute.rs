//! A call's path, in separate steps so that a caller (a stream, later) can hold an acquired
//! session for as long as it needs:
//!
//! 1. [`Inner::acquire`]: admission (see [`crate::admission`]) and the session's execution lock;
//! 2. [`Inner::ensure_started`]: the sandbox started, or replaced when it was lost;
//! 3. [`Inner::execute`]: the work on the backend, under the timeout plus a grace, its outcome
//!    recorded in the session.
//!
//! The rule that keeps code from running twice lives in `execute`: work is sent again (to a
//! replacement sandbox) only when the backend certifies that it reached no sandbox
//! ([`BackendError::is_unsent`]); a sandbox that vanished while the work may have reached it
//! fails the call with [`SandboxLost`], and the session's next call gets a fresh sandbox.
//!
//! [`Inner::run`] composes them for one call, in a task of its own (a caller that gives up cannot
//! leave a session half-started). Every call runs the backend's event stream; a streamed call
//! passes a sink for the chunks (see [`crate::stream`]), a buffered one does not, so both take
//! the same path.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use msbw_backend::{
    Aftermath, BackendError, ErrorKind, ExecEvent, ExecOutput, ExecStatus, ExecStream, Operation, SandboxId, Template,
};
use msbw_config::SandboxFlavor;
use tokio::sync::OwnedMutexGuard;
use tokio::time::Instant;
use tracing::Instrument;

use crate::admission::{self, Ask, Decision, Limits, Progress};
use crate::calls::{MAX_CALL_TIMEOUT, SessionOptions};
use crate::detach::FinishOnDrop;
use crate::error::{SandboxLost, until, within};
use crate::kind::{Call, Ran, Work};
use crate::lifecycle::Inner;
use crate::session::{Entry, Extras, SessionStatus};
use crate::stream::{CallStream, Chunk, Sink};
use crate::{ManagerError, Phase, SessionInfo, SessionSpec, naming};

/// How much longer than an execution's own timeout the manager waits for the backend before it
/// gives up on the sandbox (the backend enforces the timeout; this guards against a backend that
/// does not).
pub(crate) const EXEC_GRACE: Duration = Duration::from_secs(30);

/// What a call wants: which session, of what kind, and whether it may create it.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub(crate) session_id: String,
    pub(crate) template: Template,
    pub(crate) flavor: SandboxFlavor,
    /// What a new session's sandboxes get; `None`: the session must exist.
    pub(crate) create: Option<Arc<Extras>>,
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
    /// Set when the execution's end gave the hold back already (in the same registry-lock
    /// acquisition that recorded the outcome).
    released: bool,
}

impl Drop for CallGuard {
    fn drop(&mut self) {
        if self.released {
            return;
        }
        if let Some(entry) = self.inner.lock().incarnation(&self.session_id, self.token) {
            entry.active_calls = entry.active_calls.saturating_sub(1);
            entry.touch();
            if self.in_backend {
                entry.status = SessionStatus::Error;
            } else if entry.status == SessionStatus::Running && entry.active_calls == 0 {
                entry.status = SessionStatus::Ready;
            }
        }
        self.inner.call_ended();
    }
}

/// A session acquired by one call: its execution lock is held until this is dropped.
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
    /// Whether the session's status says `Running` already (set by the claim of a warm
    /// session, in the same lock acquisition).
    running: bool,
}

impl Acquired {
    pub(crate) fn session_id(&self) -> &str {
        &self.guard.session_id
    }

    pub(crate) fn token(&self) -> u64 {
        self.guard.token
    }

    pub(crate) fn sandbox(&self) -> &SandboxId {
        &self.sandbox
    }

    pub(crate) fn set_sandbox(&mut self, sandbox: SandboxId) {
        self.sandbox = sandbox;
    }

    pub(crate) fn template(&self) -> Template {
        self.template
    }

    pub(crate) fn flavor(&self) -> SandboxFlavor {
        self.flavor
    }

    pub(crate) fn created(&self) -> bool {
        self.created
    }

    /// Marks whether the backend is working for this call (a cancelled call then leaves the
    /// session in error: the sandbox may still be busy).
    pub(crate) fn set_in_backend(&mut self, yes: bool) {
        self.guard.in_backend = yes;
    }

    pub(crate) fn take_replaced(&mut self) -> Option<SandboxId> {
        self.replaces.take()
    }
}

impl Inner {
    /// Marks the acquired session as running work on the backend (its status `Running`, unless
    /// its claim did that already; a cancelled call then leaves it in error).
    pub(crate) fn begin(&self, acquired: &mut Acquired) {
        if !acquired.running {
            self.set_status(acquired.session_id(), acquired.token(), SessionStatus::Running, None);
            acquired.running = true;
        }
        acquired.set_in_backend(true);
    }
}

/// What an execution came to, short of an error.
pub(crate) enum Executed {
    /// The backend answered (a timeout is an answer too).
    Done(ExecOutput),
    /// The sandbox was gone.
    Vanished(BackendError),
}

/// What the backend's event stream came to.
enum Consumed {
    /// Its result.
    Done(ExecOutput),
    /// The caller dropped its stream first; the backend's stream was dropped, which cancels
    /// the execution.
    Cancelled,
}

/// Runs the backend's stream to its end, passing chunks to `sink` (if any).
async fn consume(mut stream: ExecStream, sink: Option<&Sink>, operation: Operation) -> Result<Consumed, BackendError> {
    loop {
        let chunk = match stream.next().await {
            Some(Ok(ExecEvent::Finished(out))) => return Ok(Consumed::Done(out)),
            Some(Ok(ExecEvent::Stdout(b))) => Chunk::Out(b),
            Some(Ok(ExecEvent::Stderr(b))) => Chunk::Err(b),
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(e),
            None => {
                return Err(BackendError::new(
                    ErrorKind::Protocol,
                    operation,
                    "the backend's event stream ended without a result",
                ));
            }
        };
        if let Some(sink) = sink
            && sink.send(chunk).await.is_err()
        {
            return Ok(Consumed::Cancelled);
        }
    }
}

/// Resolves once the sink's reader is gone (never without a sink).
async fn reader_gone(sink: Option<&Sink>) {
    match sink {
        Some(sink) => sink.closed().await,
        None => std::future::pending().await,
    }
}

/// What the admission loop does once the registry lock is released.
enum Next<'a> {
    Ready(Acquired),
    Existing {
        token: u64,
        lock: Arc<tokio::sync::Mutex<()>>,
    },
    Wait(std::pin::Pin<Box<tokio::sync::futures::Notified<'a>>>),
    StopEvicted,
    AwaitStops(std::pin::Pin<Box<tokio::sync::futures::Notified<'a>>>),
}

impl Inner {
    fn guard(self: &Arc<Self>, session_id: &str, token: u64) -> CallGuard {
        CallGuard {
            inner: self.clone(),
            session_id: session_id.to_owned(),
            token,
            in_backend: false,
            released: false,
        }
    }

    /// Finds or creates the session and takes its execution lock, honouring the limits.
    pub(crate) async fn acquire(self: &Arc<Self>, plan: &Plan) -> Result<Acquired, ManagerError> {
        self.acquire_with(plan, false).await
    }

    /// [`acquire`](Self::acquire); with `to_run`, a warm session's claim also marks it
    /// `Running` (so the execution's [`begin`](Self::begin) needs no lock of its own).
    async fn acquire_with(self: &Arc<Self>, plan: &Plan, to_run: bool) -> Result<Acquired, ManagerError> {
        let wait_started = Instant::now();
        let deadline = wait_started + self.config().limit_wait_timeout;
        let limits = Limits::of(self.config());
        let ask = Ask {
            session_id: &plan.session_id,
            template: plan.template,
            flavor: plan.flavor,
            may_create: plan.create.is_some(),
            poolable: plan
                .create
                .as_ref()
                .is_some_and(|x| x.volumes.is_empty() && x.env.is_empty()),
        };
        let mut evictions = 0u32;
        loop {
            self.ensure_running()?;
            let progress = Progress {
                evictions,
                out_of_time: Instant::now() >= deadline,
                waited: Some(wait_started.elapsed()),
            };
            // Decide under the lock; do every await after it is released.
            let next = self.admit(plan, &ask, &progress, &limits)?;
            match next {
                Next::Ready(acquired) => return Ok(acquired),
                Next::Existing { token, lock } => {
                    let guard = self.guard(&plan.session_id, token);
                    let exec = lock.lock_owned().await;
                    if let Some(acquired) = self.claim(plan, guard, exec, to_run) {
                        return Ok(acquired);
                    }
                    // The session went away while we waited for it (its start failed, or it was
                    // stopped): try again from the top.
                }
                Next::Wait(notified) => {
                    let waited = until(Phase::Admission, deadline, notified).await;
                    self.lock().waiting -= 1;
                    if waited.is_err() {
                        // Loop once more: the next admission either succeeds or reports the limit.
                        continue;
                    }
                }
                Next::StopEvicted => {
                    evictions += 1;
                    self.stop_retiring().await;
                }
                Next::AwaitStops(notified) => {
                    let _ = until(Phase::Admission, deadline, notified).await;
                }
            }
        }
    }

    /// Takes one admission decision under the registry lock and applies it.
    fn admit<'a>(
        self: &'a Arc<Self>,
        plan: &Plan,
        ask: &Ask<'_>,
        progress: &Progress,
        limits: &Limits,
    ) -> Result<Next<'a>, ManagerError> {
        let mut reg = self.lock();
        match admission::decide(&mut reg, ask, progress, limits) {
            Decision::Reuse => {
                let entry = reg
                    .session_mut(&plan.session_id)
                    .ok_or_else(|| ManagerError::Internal("admission reused a missing session".into()))?;
                entry.active_calls += 1;
                entry.touch();
                Ok(Next::Existing {
                    token: entry.token(),
                    lock: entry.exec_lock(),
                })
            }
            decision @ (Decision::Create | Decision::Claim(_)) => {
                let token = reg.token();
                // A claimed warm-pool sandbox is already running; its reservation is the session's.
                let pooled = match decision {
                    Decision::Claim(sandbox) if reg.pool_mut().claim(&sandbox) => Some(sandbox),
                    _ => None,
                };
                let sandbox = pooled.clone().unwrap_or_else(|| self.fresh_sandbox(&plan.session_id));
                let extras = plan.create.clone().unwrap_or_default();
                let mut entry = Entry::new(
                    &plan.session_id,
                    token,
                    plan.template,
                    plan.flavor,
                    sandbox.clone(),
                    extras,
                );
                if pooled.is_some() {
                    entry.status = SessionStatus::Ready;
                    self.pool().wake();
                }
                let Ok(exec) = entry.exec_lock().try_lock_owned() else {
                    reg.ledger_mut().release(plan.flavor);
                    return Err(ManagerError::Internal("a new session's lock was taken".into()));
                };
                reg.insert(entry);
                Ok(Next::Ready(Acquired {
                    guard: self.guard(&plan.session_id, token),
                    _exec: exec,
                    sandbox,
                    template: plan.template,
                    flavor: plan.flavor,
                    created: true,
                    needs_start: pooled.is_none(),
                    replaces: None,
                    running: false,
                }))
            }
            Decision::YieldPooled {
                sandbox,
                flavor,
                starting,
            } => {
                reg.yield_pooled(sandbox, flavor, starting, self.config().limit_wait_timeout);
                if starting {
                    let mut notified = Box::pin(self.slot_freed().notified());
                    notified.as_mut().enable();
                    Ok(Next::AwaitStops(notified))
                } else {
                    Ok(Next::StopEvicted)
                }
            }
            Decision::Wait => {
                let mut notified = Box::pin(self.slot_freed().notified());
                notified.as_mut().enable();
                reg.waiting += 1;
                Ok(Next::Wait(notified))
            }
            Decision::Evict(victim) => {
                reg.retire(&victim);
                tracing::info!(session_id = %victim, "evicting the least recently used idle session");
                Ok(Next::StopEvicted)
            }
            Decision::AwaitStops => {
                let mut notified = Box::pin(self.slot_freed().notified());
                notified.as_mut().enable();
                Ok(Next::AwaitStops(notified))
            }
            Decision::Reject(e) => Err(e),
        }
    }

    /// After waiting for an existing session's lock: the session as it is now, if it is still
    /// the same incarnation. A session in error gets a fresh sandbox name to start.
    fn claim(&self, plan: &Plan, guard: CallGuard, exec: OwnedMutexGuard<()>, to_run: bool) -> Option<Acquired> {
        let mut reg = self.lock();
        let entry = reg.incarnation(&plan.session_id, guard.token)?;
        let mut acquired = Acquired {
            guard,
            _exec: exec,
            sandbox: entry.sandbox.clone(),
            template: plan.template,
            flavor: plan.flavor,
            created: false,
            needs_start: false,
            replaces: None,
            running: false,
        };
        if to_run && entry.status == SessionStatus::Ready {
            entry.status = SessionStatus::Running;
            acquired.running = true;
        } else if entry.status == SessionStatus::Error {
            // Rare (the sandbox was lost): the new name is made under the lock.
            let fresh = self.fresh_sandbox(&plan.session_id);
            acquired.replaces = Some(std::mem::replace(&mut entry.sandbox, fresh.clone()));
            acquired.sandbox = fresh;
            acquired.needs_start = true;
            entry.status = SessionStatus::Creating;
        }
        Some(acquired)
    }

    fn fresh_sandbox(&self, session_id: &str) -> SandboxId {
        SandboxId {
            namespace: self.config().namespace.clone(),
            name: naming::owned_sandbox_name(&self.config().owner_mark, self.owner(), session_id),
        }
    }

    /// Starts the acquired session's sandbox if it has none running (a new session, or one whose
    /// sandbox was lost). Returns whether it started one.
    pub(crate) async fn ensure_started(&self, acquired: &mut Acquired) -> Result<bool, ManagerError> {
        if !acquired.needs_start {
            return Ok(false);
        }
        self.start_sandbox(acquired).await?;
        acquired.needs_start = false;
        Ok(true)
    }

    /// Runs `work` in the acquired (and started) session and records the outcome: a timeout
    /// that left the sandbox unusable, or a sandbox that is gone, puts the session in error so
    /// that its next use starts a replacement. Chunks of output go to `sink` as they arrive.
    ///
    /// A sink whose reader is gone cancels the execution (the backend's stream is dropped) as a
    /// timeout would: the session says `last_execution_cancelled`, and is ready again if the
    /// backend streams natively (it stops what a dropped stream ran), or in error otherwise (the
    /// sandbox may still be busy, so its next use starts a replacement).
    pub(crate) async fn execute(
        &self,
        acquired: &mut Acquired,
        work: &Work,
        sink: Option<&Sink>,
    ) -> Result<Executed, ManagerError> {
        if sink.is_some_and(Sink::is_closed) {
            // Nobody waits for it any more, and nothing was sent: not run at all.
            return Err(cancelled(acquired.session_id()));
        }
        let limit = work.timeout();
        self.begin(acquired);
        let run = async {
            let backend = self.backend();
            let sandbox = &acquired.sandbox;
            // A buffered call asks for a buffered result: a stream would only add its cost.
            let (stream, operation) = match (work, sink) {
                (Work::Code(r), None) => return backend.run_code(sandbox, r).await.map(Consumed::Done),
                (Work::Command(r), None) => return backend.run_command(sandbox, r).await.map(Consumed::Done),
                (Work::Code(r), Some(_)) => (backend.run_code_stream(sandbox, r).await, Operation::RunCode),
                (Work::Command(r), Some(_)) => (backend.run_command_stream(sandbox, r).await, Operation::RunCommand),
            };
            consume(stream?, sink, operation).await
        };
        // The caller may go away while the backend opens the stream (a buffered backend runs
        // the whole execution then) or while it runs: both cancel.
        let call = async {
            tokio::select! {
                consumed = run => consumed,
                () = reader_gone(sink) => Ok(Consumed::Cancelled),
            }
        };
        let outcome = within(Phase::Executing, limit + EXEC_GRACE, call).await;
        acquired.guard.in_backend = false;
        match outcome {
            Ok(Ok(Consumed::Cancelled)) => {
                let status = if self.backend().capabilities().await.streaming {
                    SessionStatus::Ready
                } else {
                    SessionStatus::Error
                };
                tracing::info!(sandbox = %acquired.sandbox, "the caller dropped the stream; the execution was cancelled");
                self.finish_execution(acquired, status, true);
                Err(cancelled(acquired.session_id()))
            }
            Ok(Ok(Consumed::Done(out))) => {
                let status = match out.status {
                    ExecStatus::TimedOut {
                        aftermath: Aftermath::Unusable,
                        ..
                    } => SessionStatus::Error,
                    _ => SessionStatus::Ready,
                };
                self.finish_execution(acquired, status, false);
                Ok(Executed::Done(out))
            }
            // Gone before anything was sent: the caller may send the work to a replacement.
            Ok(Err(e)) if e.kind() == ErrorKind::NotFound && e.is_unsent() => {
                self.finish_execution(acquired, SessionStatus::Error, false);
                Ok(Executed::Vanished(e))
            }
            // Gone while the work may have reached it: never sent again (it could run twice).
            // The session is in error, so its next call starts a fresh sandbox.
            Ok(Err(e)) if e.kind() == ErrorKind::NotFound => {
                tracing::warn!(sandbox = %acquired.sandbox, "the session's sandbox vanished during the call; not repeating it");
                self.finish_execution(acquired, SessionStatus::Error, false);
                Err(ManagerError::SandboxLost(SandboxLost {
                    session_id: acquired.session_id().to_owned(),
                    sandbox: acquired.sandbox.clone(),
                    source: Box::new(e),
                }))
            }
            Ok(Err(e)) => {
                self.finish_execution(acquired, SessionStatus::Ready, false);
                Err(ManagerError::backend(Phase::Executing, acquired.session_id(), e))
            }
            Err(_) => {
                tracing::warn!(sandbox = %acquired.sandbox, "the backend did not return in time; the sandbox will be replaced");
                self.finish_execution(acquired, SessionStatus::Error, false);
                Ok(Executed::Done(ExecOutput {
                    stdout: String::new(),
                    stderr: String::new(),
                    status: ExecStatus::TimedOut {
                        after: limit,
                        aftermath: Aftermath::Unusable,
                    },
                    exit_code: None,
                }))
            }
        }
    }

    /// Records an execution's outcome and gives the call's hold on the session back, in one
    /// registry-lock acquisition (the call ends with its execution; the execution lock is
    /// released when `acquired` drops).
    fn finish_execution(&self, acquired: &mut Acquired, status: SessionStatus, cancelled: bool) {
        let guard = &mut acquired.guard;
        if let Some(entry) = self.lock().incarnation(&guard.session_id, guard.token) {
            entry.status = status;
            entry.executions += 1;
            entry.last_cancelled = cancelled;
            entry.active_calls = entry.active_calls.saturating_sub(1);
            entry.touch();
        }
        guard.released = true;
        self.call_ended();
    }

    /// One call: acquire, start if needed, execute. A sandbox found gone before the work was
    /// sent (the backend says so: [`BackendError::is_unsent`]) is replaced once, transparently;
    /// work that may have reached a sandbox is never sent twice.
    async fn run(self: &Arc<Self>, plan: Plan, work: Work, sink: Option<Sink>) -> Result<Ran, ManagerError> {
        let call_started = Instant::now();
        let (mut created, mut replaced) = (false, false);
        let mut plan = plan;
        let mut attempt = 0;
        loop {
            let mut acquired = self.acquire_with(&plan, true).await?;
            created |= acquired.created;
            tracing::Span::current().record("sandbox", tracing::field::display(&acquired.sandbox));
            if self.ensure_started(&mut acquired).await? {
                replaced |= !acquired.created;
            }
            match self.execute(&mut acquired, &work, sink.as_ref()).await? {
                Executed::Done(out) => {
                    return Ok(Ran {
                        out,
                        session_id: plan.session_id,
                        sandbox: acquired.sandbox.clone(),
                        created,
                        replaced,
                        elapsed: call_started.elapsed(),
                    });
                }
                Executed::Vanished(_) if attempt == 0 => {
                    tracing::warn!(sandbox = %acquired.sandbox, "the session's sandbox is gone; replacing it");
                    // The retry must find the same session: it never creates.
                    plan.create = None;
                    attempt += 1;
                }
                Executed::Vanished(e) => return Err(ManagerError::backend(Phase::Executing, &plan.session_id, e)),
            }
        }
    }

    /// Runs the call so that a caller that gives up (drops the future) cannot leave a session
    /// half-started: the start and the execution finish, and their results are recorded,
    /// whatever the caller does. It runs in the caller's task ([`FinishOnDrop`]: no hand-off to
    /// another worker per call); only a dropped call's rest is spawned.
    async fn spawn_run(self: &Arc<Self>, plan: Plan, work: Work) -> Result<Ran, ManagerError> {
        let inner = self.clone();
        FinishOnDrop::new(async move { inner.run(plan, work, None).await }.in_current_span()).await
    }

    /// Like [`spawn_run`](Self::spawn_run), with the output streamed: the task's chunks go to
    /// the returned stream, and `finish` turns the run into its result.
    fn spawn_stream<T: Send + 'static>(
        self: &Arc<Self>,
        plan: Plan,
        work: Work,
        finish: impl FnOnce(Ran) -> T + Send + 'static,
    ) -> CallStream<T> {
        let inner = self.clone();
        CallStream::spawn(move |sink| {
            async move { inner.run(plan, work, Some(sink)).await.map(finish) }.in_current_span()
        })
    }

    fn timeout_of(&self, options: &SessionOptions) -> Result<Duration, ManagerError> {
        match options.timeout {
            None => Ok(self.config().default_execution_timeout),
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

    /// A call's timeout and plan, with the configured defaults filled in.
    fn resolve(&self, options: &SessionOptions, template: Template) -> Result<(Duration, Plan), ManagerError> {
        let timeout = self.timeout_of(options)?;
        let plan = Plan {
            session_id: session_id_of(options.session_id.as_deref())?,
            template,
            flavor: options.flavor.unwrap_or(self.config().default_flavor),
            create: (!options.must_exist).then(Arc::default),
        };
        Ok((timeout, plan))
    }

    /// Checks a call and turns it into its plan and work.
    fn work_of<C: Call>(&self, call: &C) -> Result<(Plan, Work), ManagerError> {
        self.ensure_running()?;
        let (timeout, plan) = self.resolve(call.options(), call.template())?;
        Ok((plan, call.work(timeout)?))
    }

    fn span_of<C: Call>(&self, plan: &Plan, call: &C) -> tracing::Span {
        let backend = self.backend().name();
        match call.program() {
            None => {
                tracing::info_span!("execute_code", session_id = %plan.session_id, flavor = %plan.flavor, template = %call.template(), backend, sandbox = tracing::field::Empty)
            }
            Some(command) => {
                tracing::info_span!("execute_command", session_id = %plan.session_id, flavor = %plan.flavor, command = %command, backend, sandbox = tracing::field::Empty)
            }
        }
    }

    /// Runs a call in a session.
    pub(crate) async fn execute_call<C: Call>(self: &Arc<Self>, call: C) -> Result<C::Result, ManagerError> {
        let (plan, work) = self.work_of(&call)?;
        let span = self.span_of(&plan, &call);
        let ran = self.spawn_run(plan, work).instrument(span).await?;
        Ok(call.result(ran))
    }

    /// Runs a call in a session, its output streamed.
    pub(crate) fn execute_stream<C: Call>(self: &Arc<Self>, call: C) -> Result<CallStream<C::Result>, ManagerError> {
        let (plan, work) = self.work_of(&call)?;
        let _span = self.span_of(&plan, &call).entered();
        Ok(self.spawn_stream(plan, work, move |ran| call.result(ran)))
    }

    /// Opens a session now (its sandbox starts before this returns). An existing session with
    /// the same template and flavor is returned as it is; `created` says which.
    pub(crate) async fn open_session(self: &Arc<Self>, spec: SessionSpec) -> Result<(SessionInfo, bool), ManagerError> {
        self.ensure_running()?;
        let session_id = session_id_of(Some(&spec.session_id))?;
        for v in &spec.extra_volumes {
            if v.to_string().parse::<msbw_backend::VolumeMapping>().as_ref() != Ok(v) {
                return Err(ManagerError::invalid(
                    "volume",
                    format!("{v} is not an absolute, normalised mapping"),
                ));
            }
        }
        let plan = Plan {
            session_id,
            template: spec.template,
            flavor: spec.flavor,
            create: Some(Arc::new(Extras {
                volumes: spec.extra_volumes,
                env: spec.env,
            })),
        };
        let inner = self.clone();
        FinishOnDrop::new(
            async move {
                let mut acquired = inner.acquire(&plan).await?;
                let created = acquired.created;
                inner.ensure_started(&mut acquired).await?;
                let info = inner.lock().session(&plan.session_id).map(Entry::info).ok_or_else(|| {
                    ManagerError::SessionNotFound {
                        session_id: plan.session_id.clone(),
                    }
                })?;
                drop(acquired);
                Ok((info, created))
            }
            .in_current_span(),
        )
        .await
    }
}

/// The error of an execution whose caller dropped its stream (nobody receives it).
fn cancelled(session_id: &str) -> ManagerError {
    ManagerError::Internal(format!("the caller cancelled the execution in session {session_id}"))
}

/// A call's session id: the one given (checked), or a generated one.
pub(crate) fn session_id_of(id: Option<&str>) -> Result<String, ManagerError> {
    match id {
        None => Ok(naming::session_id()),
        Some(id) if id.trim().is_empty() => Err(ManagerError::invalid("session id", "is empty")),
        Some(id) if id.len() > 256 => Err(ManagerError::invalid("session id", "is longer than 256 bytes")),
        Some(id) if id.chars().any(char::is_control) => {
            Err(ManagerError::invalid("session id", "contains control characters"))
        }
        Some(id) => Ok(id.to_owned()),
    }
}
