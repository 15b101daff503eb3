//! The fault-injection matrix (issue 12, item 5): every fault of the loopback [`FaultProxy`]
//! against every operation of [`HttpBackend`], and the executions again through the session
//! manager. Each cell asserts the outcome (a typed error of the stated kind and retryability, or
//! a timed-out result), how often the request reached the server (never twice for code, commands
//! and starts), what became of the sandbox, and that the next call works once the fault clears.
//!
//! The tables below are the single source of docs/reliability.md's matrix: the last test renders
//! them and fails if the document says anything else (`MSBW_BLESS_DOCS=1` rewrites it).
//!
//! Real sockets, real time, short timeouts: the whole matrix runs its cells concurrently.

#![allow(clippy::unwrap_used, reason = "test code")]

mod common;
mod faults;

use std::sync::Arc;
use std::time::Duration;

use faults::proxy::{Fault, FaultProxy, Target};
use faults::stub::{Behaviour, Stub};
use msbw_backend::{
    Aftermath, BackendError, CodeRequest, CommandRequest, ErrorKind, ExecOutput, ExecStatus, ListFilter,
    SandboxBackend, SandboxId, SandboxSpec, Template,
};
use msbw_config::WrapperConfig;
use msbw_http::{HttpBackend, HttpBackendConfig, RetryPolicy};
use msbw_manager::{CodeCall, CommandCall, ManagerError, SessionManager, SessionStatus};

/// The operations of the matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Start,
    Code,
    Command,
    List,
    Stop,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Start => "start",
            Op::Code => "run code",
            Op::Command => "run command",
            Op::List => "list",
            Op::Stop => "stop",
        }
    }

    /// The JSON-RPC method the fault is aimed at, as the stub and proxy count it.
    fn method(self) -> &'static str {
        match self {
            Op::Start => "sandbox.start",
            Op::Code => "sandbox.repl.run",
            Op::Command => "sandbox.command.run",
            Op::List => "sandbox.metrics.get",
            Op::Stop => "sandbox.stop",
        }
    }

    fn target(self) -> Target {
        match self {
            Op::Command => Target::UserCommand,
            op => Target::Method(op.method()),
        }
    }

    fn idempotent(self) -> bool {
        matches!(self, Op::List | Op::Stop)
    }
}

/// What a call came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// A normal result.
    Ok,
    /// A result with `ExecStatus::TimedOut` and this aftermath.
    TimedOut(Aftermath),
    /// A `BackendError` of this kind; `retryable` is `is_retryable()`.
    Error { kind: ErrorKind, retryable: bool },
}

impl Outcome {
    fn render(self) -> String {
        match self {
            Outcome::Ok => "ok".into(),
            Outcome::TimedOut(a) => format!("result TimedOut ({a:?})"),
            Outcome::Error { kind, retryable } => {
                format!("{kind:?} ({})", if retryable { "retryable" } else { "not retryable" })
            }
        }
    }
}

const fn err(kind: ErrorKind, retryable: bool) -> Outcome {
    Outcome::Error { kind, retryable }
}

/// The sandbox on the server after the faulty call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum After {
    Running,
    /// Known to the server, not running (stopped, or released after a failed start).
    Stopped,
    /// The server has no such sandbox (a start that never reached it).
    Absent,
}

/// One cell of the backend matrix.
#[derive(Debug, Clone, Copy)]
struct Cell {
    fault: Fault,
    op: Op,
    outcome: Outcome,
    /// How many times the client sent the request (as the proxy saw it; `None`: the proxy was
    /// not listening).
    sent: Option<usize>,
    /// How many times it reached the server.
    reached: usize,
    after: After,
}

use Aftermath::Unusable;
use ErrorKind::{Connect, Internal, NotFound, Protocol, Timeout};
use Op::{Code, Command, List, Start, Stop};

/// The attempts of an idempotent call in the test configuration (`RetryPolicy::max_attempts`).
const TRIES: usize = 3;

/// Every fault of the matrix, in the order of its rows.
const FAULTS: [Fault; 10] = [
    Fault::Refuse,
    Fault::ResetMidResponse,
    Fault::Delay,
    Fault::Status(500),
    Fault::Status(502),
    Fault::Status(503),
    Fault::BadGatewayAfterSend,
    Fault::Garbage,
    Fault::TruncatedJson,
    Fault::DropAfterSend,
];

/// A cell without its fault: `(op, outcome, sent, reached, after)`, as in [`Cell`].
type Expected = (Op, Outcome, Option<usize>, usize, After);

/// The backend matrix: faults that every operation fares alike under, and the cells of the five
/// operations under each of them. `reached` > 1 only for the idempotent calls (list, stop).
#[rustfmt::skip]
const MATRIX: &[(&[Fault], [Expected; 5])] = &[
    // Nothing listens: nothing was sent, so every call is retried and then reported retryable.
    (&[Fault::Refuse], [
        (Start, err(Connect, true), None, 0, After::Absent),
        (Code, err(Connect, true), None, 0, After::Running),
        (Command, err(Connect, true), None, 0, After::Running),
        (List, err(Connect, true), None, 0, After::Running),
        (Stop, err(Connect, true), None, 0, After::Running),
    ]),
    // The server ran the request, and then the answer breaks midway, a gateway that relayed it
    // answers 502 (that is why a 502 of a run is never retryable), or the connection closes
    // before any answer.
    (&[Fault::ResetMidResponse, Fault::BadGatewayAfterSend, Fault::DropAfterSend], [
        (Start, err(Connect, false), Some(1), 1, After::Stopped),
        (Code, err(Connect, false), Some(1), 1, After::Running),
        (Command, err(Connect, false), Some(1), 1, After::Running),
        (List, err(Connect, true), Some(TRIES), TRIES, After::Running),
        (Stop, err(Connect, true), Some(TRIES), TRIES, After::Stopped),
    ]),
    // No answer within the limit.
    (&[Fault::Delay], [
        (Start, err(Timeout, true), Some(1), 1, After::Stopped),
        (Code, Outcome::TimedOut(Unusable), Some(1), 1, After::Running),
        (Command, Outcome::TimedOut(Unusable), Some(1), 1, After::Running),
        (List, err(Timeout, true), Some(TRIES), TRIES, After::Running),
        (Stop, err(Timeout, true), Some(TRIES), TRIES, After::Stopped),
    ]),
    // The server's masked internal error (the proxy answers it; nothing ran). The listing
    // decides: the sandbox is running, so it is Internal. A listing answered 500 is asked five
    // times (the server's transient 500 while a namespace is created).
    (&[Fault::Status(500)], [
        (Start, err(Internal, false), Some(1), 0, After::Absent),
        (Code, err(Internal, false), Some(1), 0, After::Running),
        (Command, err(Internal, false), Some(1), 0, After::Running),
        (List, err(Internal, false), Some(5), 0, After::Running),
        (Stop, err(Internal, false), Some(1), 0, After::Running),
    ]),
    // A gateway that cannot reach the server. It may have relayed the request, so only the
    // idempotent calls are retried, and only they are reported retryable.
    (&[Fault::Status(502), Fault::Status(503)], [
        (Start, err(Connect, false), Some(1), 0, After::Absent),
        (Code, err(Connect, false), Some(1), 0, After::Running),
        (Command, err(Connect, false), Some(1), 0, After::Running),
        (List, err(Connect, true), Some(TRIES), 0, After::Running),
        (Stop, err(Connect, true), Some(TRIES), 0, After::Running),
    ]),
    // Answers that break the protocol are never retried.
    (&[Fault::Garbage, Fault::TruncatedJson], [
        (Start, err(Protocol, false), Some(1), 1, After::Stopped),
        (Code, err(Protocol, false), Some(1), 1, After::Running),
        (Command, err(Protocol, false), Some(1), 1, After::Running),
        (List, err(Protocol, false), Some(1), 1, After::Running),
        (Stop, err(Protocol, false), Some(1), 1, After::Stopped),
    ]),
];

/// The cells of the backend matrix, fault by fault in the order of [`FAULTS`].
fn cells() -> Vec<Cell> {
    FAULTS
        .iter()
        .flat_map(|&fault| {
            MATRIX
                .iter()
                .filter(move |(faults, _)| faults.contains(&fault))
                .flat_map(|(_, cells)| cells)
                .map(move |&(op, outcome, sent, reached, after)| Cell {
                    fault,
                    op,
                    outcome,
                    sent,
                    reached,
                    after,
                })
        })
        .collect()
}

const NAMESPACE: &str = "faults";

/// Cells run at once: enough to overlap the waits of the timeout cells, few enough that a loaded
/// 2-core machine still answers healthy calls well within their 1 s limit.
const CONCURRENT_CELLS: usize = 8;

fn backend(url: &str) -> HttpBackend {
    let mut config = HttpBackendConfig::new(url);
    // Short, but not so short that a loaded 2-core machine misses them on a healthy call.
    config.request_timeout = Duration::from_secs(1);
    config.connect_timeout = Duration::from_secs(1);
    config.retry = RetryPolicy {
        max_attempts: TRIES as u32,
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(20),
    };
    config.exec_grace = Duration::from_secs(1);
    config.start_timeout = Duration::from_secs(4);
    // Masked failures are decided by the listing at once, not retried as "agent not up yet".
    config.readiness_window = Duration::ZERO;
    config.poll_interval = Duration::from_millis(10);
    config.max_poll_interval = Duration::from_millis(50);
    config.stop_wait = Duration::from_secs(2);
    config.python_stderr_settle = Duration::ZERO;
    HttpBackend::new(config).unwrap()
}

fn code() -> CodeRequest {
    common::code_request("print('once')", Duration::from_secs(1))
}

fn command() -> CommandRequest {
    common::command_request("echo", &["once"], Duration::from_secs(1))
}

fn classify(result: Result<Option<ExecOutput>, BackendError>) -> Outcome {
    match result {
        Ok(Some(ExecOutput {
            status: ExecStatus::TimedOut { aftermath, .. },
            ..
        })) => Outcome::TimedOut(aftermath),
        Ok(_) => Outcome::Ok,
        Err(e) => err(e.kind(), e.is_retryable()),
    }
}

async fn perform(backend: &HttpBackend, op: Op, id: &SandboxId) -> Result<Option<ExecOutput>, BackendError> {
    match op {
        Op::Start => backend
            .start(&SandboxSpec::new(id.clone(), Template::Python))
            .await
            .map(|()| None),
        Op::Code => backend.run_code(id, &code()).await.map(Some),
        Op::Command => backend.run_command(id, &command()).await.map(Some),
        Op::List => backend.list(&ListFilter::default()).await.map(|_| None),
        Op::Stop => backend.stop(id).await.map(|()| None),
    }
}

/// Runs one cell; the differences from the table, if any.
async fn run_cell(cell: Cell, index: usize) -> Result<(), String> {
    let stub = Stub::start().await;
    let proxy = FaultProxy::start(stub.addr()).await;
    let setup = backend(&proxy.url());
    let backend = &setup;
    let id = SandboxId::new(NAMESPACE, format!("cell{index}")).unwrap();
    if cell.op != Op::Start {
        backend
            .start(&SandboxSpec::new(id.clone(), Template::Python))
            .await
            .map_err(|e| format!("setup start: {e}"))?;
    }
    stub.reset_counts();
    proxy.reset_counts();

    proxy.inject(cell.op.target(), cell.fault).await;
    // "Refused" is about a client that connects while nothing listens: a fresh client, since a
    // pooled connection that the proxy closed a moment ago may take the request first (the
    // client then cannot know whether it was read, and reports it as possibly sent).
    let fresh;
    let backend = if cell.fault == Fault::Refuse {
        fresh = self::backend(&proxy.url());
        &fresh
    } else {
        backend
    };
    let result = perform(backend, cell.op, &id).await;
    let message = result.as_ref().err().map(ToString::to_string).unwrap_or_default();
    let seen = Cell {
        outcome: classify(result),
        sent: (cell.fault != Fault::Refuse).then(|| proxy.seen(cell.op.method())),
        reached: stub.count(cell.op.method()),
        after: if stub.is_running(NAMESPACE, &id.name) {
            After::Running
        } else if stub.knows(NAMESPACE, &id.name) {
            After::Stopped
        } else {
            After::Absent
        },
        ..cell
    };
    let mut problems = Vec::new();
    if render_row(&seen) != render_row(&cell) {
        problems.push(format!(
            "expected {}\n   found {}  ({message})",
            render_row(&cell),
            render_row(&seen)
        ));
    }
    if message.contains("msb_") {
        problems.push(format!("an error shows a key: {message}"));
    }

    // The fault clears: the same call works, and sends the request exactly once more.
    proxy.clear().await;
    let before = stub.count(cell.op.method());
    match perform(backend, cell.op, &id).await {
        Ok(Some(out)) if out.stdout != "ran\n" => problems.push(format!("after the fault: output {out:?}")),
        Ok(_) => {}
        Err(e) => problems.push(format!("after the fault the next {} failed: {e}", cell.op.name())),
    }
    let once_more = stub.count(cell.op.method()) - before;
    if !cell.op.idempotent() && once_more != 1 {
        problems.push(format!(
            "the next {} reached the server {once_more} times",
            cell.op.name()
        ));
    }
    verdict(problems)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fault_against_every_backend_operation() {
    run_all(
        cells().into_iter().enumerate(),
        |(_, c)| format!("{} × {}", c.fault.name(), c.op.name()),
        |(i, c)| run_cell(c, i),
    )
    .await;
}

/// A cell's run: passed, or the problems found, one a line.
fn verdict(problems: Vec<String>) -> Result<(), String> {
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n   "))
    }
}

/// Runs every cell, [`CONCURRENT_CELLS`] at once, and fails naming each cell whose run differs.
async fn run_all<C, Fut>(cells: impl IntoIterator<Item = C>, name: fn(&C) -> String, run: fn(C) -> Fut)
where
    C: Copy + Send + 'static,
    Fut: std::future::Future<Output = Result<(), String>> + Send + 'static,
{
    let mut running = tokio::task::JoinSet::new();
    let slots = Arc::new(tokio::sync::Semaphore::new(CONCURRENT_CELLS));
    for c in cells {
        let slots = Arc::clone(&slots);
        running.spawn(async move {
            let _slot = slots.acquire().await.unwrap();
            (c, run(c).await)
        });
    }
    let mut failures = Vec::new();
    while let Some(done) = running.join_next().await {
        let (c, result) = done.unwrap();
        if let Err(why) = result {
            failures.push(format!("{}:\n   {why}", name(&c)));
        }
    }
    assert!(
        failures.is_empty(),
        "{} cells differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn the_matrix_covers_every_fault_and_operation_once() {
    for f in FAULTS {
        let rows = MATRIX.iter().filter(|(faults, _)| faults.contains(&f)).count();
        assert_eq!(rows, 1, "{} is in {rows} rows", f.name());
    }
    assert_eq!(
        MATRIX.iter().map(|(faults, _)| faults.len()).sum::<usize>(),
        FAULTS.len()
    );
    for (faults, cells) in MATRIX {
        let ops: Vec<Op> = cells.iter().map(|c| c.0).collect();
        assert_eq!(ops, [Start, Code, Command, List, Stop], "{}", faults[0].name());
    }
    for c in cells().iter().filter(|c| !c.op.idempotent()) {
        assert!(c.reached <= 1, "a {} reached the server twice", c.op.name());
    }
}

// ---------------------------------------------------------------------------------------------
// Through the session manager: the executions, where the session's status and reservations
// matter.

/// What a manager call came to, and the session afterwards.
#[derive(Debug, Clone, Copy)]
struct SessionCell {
    fault: SessionFault,
    op: Op,
    outcome: Outcome,
    /// How many times the operation's request reached the server (for `start`: `sandbox.start`;
    /// the code or command of a failed start never does).
    reached: usize,
    /// The session afterwards; `None`: it is gone (a session whose first start failed).
    status: Option<SessionStatus>,
    /// What holds the session's memory and CPU reservation afterwards.
    reservation: Held,
    /// Set while the behaviour is wrong and being fixed elsewhere: the issue item and branch.
    /// The cell asserts today's behaviour, so the fix makes this test fail until the cell is
    /// updated to the rule (see docs/reliability.md).
    known_wrong: Option<&'static str>,
}

/// What holds a session's reservation after a fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Held {
    /// The live session.
    Session,
    /// A sandbox whose stop failed and is retried: released once the stop succeeds.
    Stopping,
    /// Nothing: released.
    Released,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SessionFault {
    Proxy(Fault),
    /// The sandbox dies while it runs the call (the stub forgets it and answers the masked 500).
    Vanish,
}

impl SessionFault {
    fn name(self) -> String {
        match self {
            SessionFault::Proxy(f) => f.name(),
            SessionFault::Vanish => "sandbox vanishes during the call".into(),
        }
    }
}

/// A session cell's fields in order, as the table writes them.
type SessionRow = (
    SessionFault,
    Op,
    Outcome,
    usize,
    Option<SessionStatus>,
    Held,
    Option<&'static str>,
);

const fn scell((fault, op, outcome, reached, status, reservation, known_wrong): SessionRow) -> SessionCell {
    SessionCell {
        fault,
        op,
        outcome,
        reached,
        status,
        reservation,
        known_wrong,
    }
}

use SessionFault::{Proxy, Vanish};
use SessionStatus::{Error as SError, Ready};

const READY: Option<SessionStatus> = Some(Ready);
const ERROR: Option<SessionStatus> = Some(SError);
const GONE: Option<SessionStatus> = None;

/// `start` here is a session's first call, which starts its sandbox; the other operations run in
/// a session that worked before the fault.
#[rustfmt::skip]
const SESSION_MATRIX: &[SessionCell] = &[
    scell((Proxy(Fault::Refuse), Start, err(Connect, true), 0, GONE, Held::Stopping, None)),
    scell((Proxy(Fault::Delay), Start, err(Timeout, true), 1, GONE, Held::Released, None)),
    scell((Proxy(Fault::Status(500)), Start, err(Internal, false), 0, GONE, Held::Released, None)),
    scell((Proxy(Fault::DropAfterSend), Start, err(Connect, false), 1, GONE, Held::Released, None)),
    scell((Proxy(Fault::ResetMidResponse), Code, err(Connect, false), 1, READY, Held::Session, None)),
    scell((Proxy(Fault::ResetMidResponse), Command, err(Connect, false), 1, READY, Held::Session, None)),
    scell((Proxy(Fault::Delay), Code, Outcome::TimedOut(Unusable), 1, ERROR, Held::Session, None)),
    scell((Proxy(Fault::Delay), Command, Outcome::TimedOut(Unusable), 1, ERROR, Held::Session, None)),
    scell((Proxy(Fault::Status(500)), Code, err(Internal, false), 0, READY, Held::Session, None)),
    scell((Proxy(Fault::Status(503)), Code, err(Connect, false), 0, READY, Held::Session, None)),
    scell((Proxy(Fault::BadGatewayAfterSend), Code, err(Connect, false), 1, READY, Held::Session, None)),
    scell((Proxy(Fault::BadGatewayAfterSend), Command, err(Connect, false), 1, READY, Held::Session, None)),
    scell((Proxy(Fault::Garbage), Code, err(Protocol, false), 1, READY, Held::Session, None)),
    scell((Proxy(Fault::TruncatedJson), Command, err(Protocol, false), 1, READY, Held::Session, None)),
    scell((Proxy(Fault::DropAfterSend), Code, err(Connect, false), 1, READY, Held::Session, None)),
    scell((Proxy(Fault::DropAfterSend), Command, err(Connect, false), 1, READY, Held::Session, None)),
    // Issue 12.1: a call whose code may have reached the vanished sandbox is never sent again;
    // the next call gets a fresh sandbox.
    scell((Vanish, Code, err(NotFound, false), 1, ERROR, Held::Session, None)),
    scell((Vanish, Command, err(NotFound, false), 1, ERROR, Held::Session, None)),
];

fn manager_outcome<T>(result: &Result<T, ManagerError>, timed_out: impl Fn(&T) -> Option<Aftermath>) -> Outcome {
    match result {
        Ok(r) => timed_out(r).map_or(Outcome::Ok, Outcome::TimedOut),
        Err(e) => match e.backend_error() {
            Some(b) => err(b.kind(), e.is_retryable()),
            None => err(Internal, e.is_retryable()),
        },
    }
}

async fn call(manager: &SessionManager, op: Op, session: &str) -> Outcome {
    let aftermath = |status: &ExecStatus| match status {
        ExecStatus::TimedOut { aftermath, .. } => Some(*aftermath),
        _ => None,
    };
    if op == Op::Code {
        let r = manager
            .execute_code(
                CodeCall::new("print('once')")
                    .session(session)
                    .timeout(Duration::from_secs(1)),
            )
            .await;
        manager_outcome(&r, |r| aftermath(&r.status))
    } else {
        let r = manager
            .execute_command(
                CommandCall::new("echo", ["once"])
                    .session(session)
                    .timeout(Duration::from_secs(1)),
            )
            .await;
        manager_outcome(&r, |r| aftermath(&r.status))
    }
}

async fn run_session_cell(cell: SessionCell) -> Result<(), String> {
    let stub = Stub::start().await;
    let proxy = FaultProxy::start(stub.addr()).await;
    let backend: Arc<dyn SandboxBackend> = Arc::new(backend(&proxy.url()));
    let config = WrapperConfig::builder()
        .server_url(&proxy.url())
        .build()
        .map_err(|e| e.to_string())?;
    let first_call = cell.op == Op::Start;
    // A refusing proxy from the very beginning, so that the client has no pooled connection
    // that could take the request first (see the backend matrix).
    if cell.fault == Proxy(Fault::Refuse) {
        proxy.inject(Target::Method(""), Fault::Refuse).await;
    }
    let manager = SessionManager::new(config, backend).map_err(|e| e.to_string())?;
    manager.start().await.map_err(|e| e.to_string())?;
    let session = "s1";
    // The session's work: code for `start` and `run code`, a command for `run command`.
    let work = if cell.op == Op::Command { Op::Command } else { Op::Code };
    if !first_call {
        // The session exists and works before the fault.
        let first = call(&manager, work, session).await;
        if first != Outcome::Ok {
            return Err(format!("setup call: {first:?}"));
        }
    }
    stub.reset_counts();
    match cell.fault {
        SessionFault::Proxy(Fault::Refuse) => {}
        SessionFault::Proxy(f) => proxy.inject(cell.op.target(), f).await,
        SessionFault::Vanish => stub.set_behaviour(Behaviour::VanishDuringExec),
    }
    let outcome = call(&manager, work, session).await;
    let reached = stub.count(cell.op.method());
    let status = manager
        .sessions(Some(session))
        .map_err(|e| e.to_string())?
        .first()
        .map(|s| s.status);
    let mut problems = Vec::new();
    let stats = manager.resource_stats();
    let held = if stats.active_sessions > 0 {
        Held::Session
    } else if stats.stopping_sandboxes > 0 {
        Held::Stopping
    } else {
        Held::Released
    };
    let found = (outcome, reached, status, held);
    let expected = (cell.outcome, cell.reached, cell.status, cell.reservation);
    if found != expected {
        problems.push(format!("expected {expected:?}\n   found {found:?}"));
    }
    if first_call && stub.count(Op::Code.method()) != 0 {
        problems.push("the code of a session whose start failed reached the server".into());
    }
    let live = usize::from(status.is_some());
    let memory_held = matches!(held, Held::Session | Held::Stopping);
    if stats.active_sessions != live
        || stats.waiting_callers != 0
        || (memory_held != (stats.total_memory_mb > 0))
        || (live == 0 && stats.total_cpus != 0)
    {
        problems.push(format!("after the fault, a reservation is wrong: {stats:?}"));
    }
    if held == Held::Released && !stub.running().is_empty() {
        problems.push(format!("a failed start left sandboxes running: {:?}", stub.running()));
    }

    proxy.clear().await;
    stub.set_behaviour(Behaviour::Normal);
    let before_work = stub.count(work.method());
    let next = call(&manager, work, session).await;
    if next != Outcome::Ok {
        problems.push(format!("after the fault the next call: {next:?}"));
    }
    if stub.count(work.method()) - before_work != 1 {
        problems.push("the next call did not reach the server exactly once".into());
    }
    match manager.stop_session(session).await {
        Ok(true) => {}
        other => problems.push(format!("stop_session: {other:?}")),
    }
    let stats = manager.resource_stats();
    if stats.active_sessions != 0
        || stats.total_memory_mb != 0
        || stats.stopping_sandboxes != 0
        || stats.total_cpus != 0
    {
        problems.push(format!("a reservation leaked: {stats:?}"));
    }
    if !stub.running().is_empty() {
        problems.push(format!("sandboxes left running: {:?}", stub.running()));
    }
    manager.shutdown().await;
    verdict(problems)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn executions_through_the_manager_keep_sessions_and_reservations_straight() {
    let name = |c: &SessionCell| format!("{} × {}", c.fault.name(), c.op.name());
    run_all(SESSION_MATRIX.iter().copied(), name, run_session_cell).await;
}

// ---------------------------------------------------------------------------------------------
// docs/reliability.md is generated from the tables above.

fn render_row(c: &Cell) -> String {
    let sent = c.sent.map_or("—".to_owned(), |n| n.to_string());
    format!(
        "| {} | {} | {} | {} | {} | {:?} | {} |",
        c.fault.name(),
        c.op.name(),
        c.outcome.render(),
        sent,
        c.reached,
        c.after,
        guarantee(c)
    )
}

fn guarantee(c: &Cell) -> &'static str {
    match (c.op.idempotent(), c.reached, c.outcome) {
        (true, _, _) => "idempotent: repeated a bounded number of times",
        (false, 0, Outcome::Error { retryable: true, .. }) => "never reached the server; safe to retry",
        (false, 0, _) => "never reached the server",
        (false, _, _) if c.op == Op::Start => "sent once; the half-started sandbox is stopped again",
        (false, _, Outcome::TimedOut(_)) => "sent once; the sandbox may still run it: replace it",
        (false, _, _) => "sent once, never repeated",
    }
}

fn render_session_row(c: &SessionCell) -> String {
    let held = match c.reservation {
        Held::Session => "held by the session",
        Held::Stopping => "held until the retried stop succeeds",
        Held::Released => "released",
    };
    format!(
        "| {} | {} | {} | {} | {} | {held} | {} |",
        c.fault.name(),
        c.op.name(),
        c.outcome.render(),
        c.reached,
        c.status.map_or("none (removed)".to_owned(), |s| s.to_string()),
        c.known_wrong
            .map_or("as the rule says".to_owned(), |w| format!("**wrong today** ({w})"))
    )
}

fn rendered_tables() -> String {
    let mut out = String::new();
    out.push_str("| Fault | Operation | Outcome | Sent | Reached the server | Sandbox after | Guarantee |\n");
    out.push_str("|---|---|---|---|---|---|---|\n");
    for c in &cells() {
        out.push_str(&render_row(c));
        out.push('\n');
    }
    out.push_str("\nThrough the session manager (`start`: a new session's first call; the others: a session that worked before the fault):\n\n");
    out.push_str("| Fault | Operation | Outcome | Reached the server | Session after | Reservation | Note |\n");
    out.push_str("|---|---|---|---|---|---|---|\n");
    for c in SESSION_MATRIX {
        out.push_str(&render_session_row(c));
        out.push('\n');
    }
    out
}

const BEGIN: &str = "<!-- fault-matrix:begin (generated by crates/msbw-http/tests/fault_matrix.rs) -->\n";
const END: &str = "<!-- fault-matrix:end -->";

#[test]
fn docs_reliability_shows_exactly_this_matrix() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/reliability.md");
    let doc = std::fs::read_to_string(&path).unwrap();
    let (Some(start), Some(end)) = (doc.find(BEGIN), doc.find(END)) else {
        panic!("{} has no fault-matrix markers", path.display());
    };
    let current = &doc[start + BEGIN.len()..end];
    let wanted = rendered_tables();
    if current != wanted {
        if std::env::var_os("MSBW_BLESS_DOCS").is_some() {
            let updated = format!("{}{BEGIN}{wanted}{}", &doc[..start], &doc[end..]);
            std::fs::write(&path, updated).unwrap();
        } else {
            panic!(
                "docs/reliability.md's matrix differs from the tests; run with MSBW_BLESS_DOCS=1 to rewrite it.\n\
                 wanted:\n{wanted}"
            );
        }
    }
}
