//! The manager's policies over an instant in-process backend (so the figures are the manager's):
//! stopping many sessions, the wait policy with many waiters, idle sessions, a slow backend, and
//! a burst against a limit.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use microsandbox_wrapper::async_trait;
use microsandbox_wrapper::backend::{CodeRequest, CommandRequest, Health, SandboxSpec};
use microsandbox_wrapper::manager::naming;
use microsandbox_wrapper::{
    BackendError, ErrorKind, ExecOutput, LimitPolicy, ListFilter, MicrosandboxWrapper, SandboxBackend, SandboxId,
    SandboxInfo, SessionManager, Template, WrapperConfig,
};

use super::{Def, code_op, session_calls};
use crate::measure::{Ctx, Op, Rep, Reps, interleave, parallel, us};
use crate::report::{Goal, Outcome, Row, Side};

pub(crate) const ROWS: &[Def] = &[
    Def {
        id: "manager.stop_many",
        title: "Stopping N sandboxes at once (an orphan-cleanup pass): time per sandbox, N vs N/8 (O(N))",
        run: stop_many,
    },
    Def {
        id: "manager.wait",
        title: "Wait policy, 4 slots: CPU per caller, 10,000 waiters vs 1,250 (flat)",
        run: wait_policy,
    },
    Def {
        id: "manager.wait_memory",
        title: "Wait policy with a memory limit of 4 sessions: CPU per caller, 10,000 vs 1,250 (flat)",
        run: wait_policy_memory,
    },
    Def {
        id: "manager.idle",
        title: "Per-call cost with 99 idle sessions (the session limit is 100) vs none",
        run: idle_sessions,
    },
    Def {
        id: "manager.slow_c1",
        title: "Manager over a slow (100 µs sleep) backend vs direct backend calls, c=1",
        run: slow_c1,
    },
    Def {
        id: "manager.slow_c64",
        title: "Manager over a slow backend vs direct backend calls, c=64",
        run: slow_c64,
    },
    Def {
        id: "manager.slow_c100",
        title: "Manager over a slow backend vs direct backend calls, c=100 (the session limit)",
        run: slow_c100,
    },
    Def {
        id: "manager.burst",
        title: "10,000-caller burst, limit 100 (wait): most sandboxes running at once",
        run: burst,
    },
];

/// A backend that does nothing, at once (or after `delay` per execution), counting how many
/// sandboxes run at the same time.
#[derive(Debug, Default)]
struct Instant0 {
    /// A hash set: the O(log N) of a tree of 80,000 names with a long shared prefix would be
    /// the bench backend's cost, not the manager's, in the stop row.
    running: Mutex<HashSet<SandboxId>>,
    /// What `list` shows (sandboxes planted as orphans).
    listed: Mutex<Vec<SandboxId>>,
    max_running: AtomicUsize,
    delay: Option<Duration>,
}

impl Instant0 {
    fn slow(delay: Duration) -> Instant0 {
        Instant0 {
            delay: Some(delay),
            ..Instant0::default()
        }
    }

    async fn exec(
        &self,
        id: &SandboxId,
        operation: microsandbox_wrapper::backend::Operation,
    ) -> Result<ExecOutput, BackendError> {
        if let Some(delay) = self.delay {
            tokio::time::sleep(delay).await;
        }
        if !self.running.lock().unwrap_or_else(PoisonError::into_inner).contains(id) {
            return Err(BackendError::new(ErrorKind::NotFound, operation, "no such sandbox"));
        }
        Ok(ExecOutput::completed("", "", Some(0)))
    }
}

#[async_trait]
impl SandboxBackend for Instant0 {
    fn name(&self) -> &'static str {
        "instant"
    }

    async fn health(&self) -> Result<Health, BackendError> {
        Ok(Health {
            message: "instant".into(),
        })
    }

    async fn start(&self, spec: &SandboxSpec) -> Result<(), BackendError> {
        let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        running.insert(spec.id.clone());
        self.max_running.fetch_max(running.len(), Ordering::Relaxed);
        Ok(())
    }

    async fn stop(&self, id: &SandboxId) -> Result<(), BackendError> {
        self.running.lock().unwrap_or_else(PoisonError::into_inner).remove(id);
        Ok(())
    }

    async fn run_code(&self, id: &SandboxId, _: &CodeRequest) -> Result<ExecOutput, BackendError> {
        self.exec(id, microsandbox_wrapper::backend::Operation::RunCode).await
    }

    async fn run_command(&self, id: &SandboxId, _: &CommandRequest) -> Result<ExecOutput, BackendError> {
        self.exec(id, microsandbox_wrapper::backend::Operation::RunCommand)
            .await
    }

    async fn list(&self, _: &ListFilter) -> Result<Vec<SandboxInfo>, BackendError> {
        let listed = std::mem::take(&mut *self.listed.lock().unwrap_or_else(PoisonError::into_inner));
        Ok(listed
            .into_iter()
            .map(|id| SandboxInfo {
                id,
                cpu_percent: None,
                memory_mb: None,
                disk_bytes: None,
            })
            .collect())
    }
}

/// A started facade over `backend`.
fn wrapper(ctx: &Ctx, config: WrapperConfig, backend: Arc<Instant0>) -> Result<MicrosandboxWrapper, String> {
    ctx.run(async move {
        let wrapper = MicrosandboxWrapper::with_backend(config, backend).map_err(|e| e.to_string())?;
        wrapper.start().await.map_err(|e| e.to_string())?;
        Ok(wrapper)
    })
}

/// The most sessions a configuration may allow (MSB_MAX_SESSIONS).
const MAX_SESSIONS: u32 = 100;

fn many(sessions: usize) -> WrapperConfig {
    WrapperConfig {
        max_concurrent_sessions: (sessions as u32).min(MAX_SESSIONS),
        ..WrapperConfig::default()
    }
}

/// A call of `x` in session `{prefix}{caller}`.
fn call_op(wrapper: &MicrosandboxWrapper, prefix: &str, sessions: usize) -> Op {
    code_op(wrapper, session_calls("x", prefix, sessions))
}

/// A session's whole life: a call in new session `{prefix}{caller}`, then its stop.
fn session_life_op(wrapper: &MicrosandboxWrapper, prefix: &'static str, sessions: usize) -> Op {
    let calls = call_op(wrapper, prefix, sessions);
    let wrapper = wrapper.clone();
    Arc::new(move |caller| {
        let (calls, w) = (calls.clone(), wrapper.clone());
        Box::pin(async move {
            calls(caller).await?;
            w.stop_session(&format!("{prefix}{caller}"))
                .await
                .map(drop)
                .map_err(|e| e.to_string())
        })
    })
}

/// Plants `n` sandboxes of this manager that belong to no session, then times one
/// orphan-cleanup pass (which lists and stops them all).
fn stop_n(ctx: &Ctx, n: usize) -> Result<Rep, String> {
    let backend = Arc::new(Instant0::default());
    let manager = SessionManager::new(WrapperConfig::default(), backend.clone()).map_err(|e| e.to_string())?;
    let took = ctx.run(async move {
        manager.start().await.map_err(|e| e.to_string())?;
        let namespace = manager.config().namespace.clone();
        let mark = manager.config().owner_mark.clone();
        let ids = (0..n)
            .map(|i| {
                SandboxId::new(
                    &namespace,
                    naming::owned_sandbox_name(&mark, manager.owner_id(), &format!("o{i}")),
                )
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())?;
        backend
            .running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(ids.iter().cloned());
        *backend.listed.lock().unwrap_or_else(PoisonError::into_inner) = ids;
        let t = Instant::now();
        let report = manager.cleanup_orphan_sandboxes().await.map_err(|e| e.to_string())?;
        let took = t.elapsed();
        if report.stopped.len() != n {
            return Err(format!("stopped {} of {n} orphans", report.stopped.len()));
        }
        manager.shutdown().await;
        Ok(took)
    })?;
    Ok(Rep {
        latencies: vec![took / n as u32],
        wall: took,
        cpu: Duration::ZERO,
    })
}

fn stop_many(ctx: &Ctx) -> Result<Outcome, String> {
    let n = ctx.size(80_000, 800);
    let (big, small) = interleave(ctx.size(3, 1), || stop_n(ctx, n), || stop_n(ctx, n / 8))?;
    let side = |reps: &Reps, label: String| Side::new(label, us(reps.median()), us(reps.p99()), "µs/sandbox");
    Ok(Outcome::Measured(Row::ours_over_theirs(
        side(&big, format!("N={n}")),
        side(&small, format!("N={}", n / 8)),
        "per-sandbox time, N vs N/8",
        Goal::AtMost(1.5),
    )))
}

/// `callers` callers, each opening its own session and stopping it, with 4 slots: CPU of the
/// client runtime per caller.
fn waiters(ctx: &Ctx, callers: usize, memory_limited: bool) -> Result<Rep, String> {
    let mut config = WrapperConfig {
        max_concurrent_sessions: 4,
        limit_policy: LimitPolicy::Wait,
        limit_wait_timeout: Duration::from_secs(600),
        ..WrapperConfig::default()
    };
    if memory_limited {
        config.max_concurrent_sessions = MAX_SESSIONS;
        config.max_total_memory_mb = Some(4 * u64::from(config.default_flavor.memory_mb()));
    }
    let w = wrapper(ctx, config, Arc::new(Instant0::default()))?;
    let rep = parallel(ctx, callers, 1, &session_life_op(&w, "w", callers))?;
    ctx.run(async move {
        w.stop().await;
        Ok(())
    })?;
    Ok(rep)
}

fn wait_row(ctx: &Ctx, memory_limited: bool) -> Result<Outcome, String> {
    let many = ctx.size(10_000, 400);
    let (big, small) = interleave(
        ctx.reps(),
        || waiters(ctx, many, memory_limited),
        || waiters(ctx, many / 8, memory_limited),
    )?;
    Ok(Outcome::Measured(Row::ours_over_theirs(
        big.cpu_side(format!("{many} waiters"), "µs CPU/caller"),
        small.cpu_side(format!("{} waiters", many / 8), "µs CPU/caller"),
        "CPU per caller, N vs N/8",
        Goal::AtMost(1.5),
    )))
}

fn wait_policy(ctx: &Ctx) -> Result<Outcome, String> {
    wait_row(ctx, false)
}

fn wait_policy_memory(ctx: &Ctx) -> Result<Outcome, String> {
    wait_row(ctx, true)
}

fn idle_sessions(ctx: &Ctx) -> Result<Outcome, String> {
    let idle = ctx.size(MAX_SESSIONS as usize - 1, 20);
    let crowded = wrapper(ctx, many(idle + 1), Arc::new(Instant0::default()))?;
    parallel(ctx, idle, 1, &call_op(&crowded, "idle", idle))?;
    let empty = wrapper(ctx, many(1), Arc::new(Instant0::default()))?;
    let (a, b) = (call_op(&crowded, "busy", 1), call_op(&empty, "busy", 1));
    parallel(ctx, 1, 10, &a)?;
    parallel(ctx, 1, 10, &b)?;
    let n = ctx.size(20_000, 200);
    let (ours, theirs) = interleave(ctx.reps(), || parallel(ctx, 1, n, &a), || parallel(ctx, 1, n, &b))?;
    let side = |reps: &Reps, label: &str| Side::new(label, us(reps.median()), us(reps.p99()), "µs/call");
    Ok(Outcome::Measured(
        Row::ours_over_theirs(
            side(&ours, &format!("{idle} idle")),
            side(&theirs, "none"),
            "ours/theirs time",
            Goal::AtMost(1.10),
        )
        .note("MSB_MAX_SESSIONS allows 100 sessions at most, so 10,000 idle sessions cannot be held"),
    ))
}

/// Warm calls through the facade over a backend that sleeps 100 µs per call, vs the same
/// backend's `run_code` called directly, `callers` at once.
fn slow(ctx: &Ctx, callers: usize, per_caller: usize) -> Result<Outcome, String> {
    let backend = Arc::new(Instant0::slow(Duration::from_micros(100)));
    let w = wrapper(ctx, many(callers), backend.clone())?;
    let through = call_op(&w, "s", callers);
    parallel(ctx, callers, 1, &through)?;
    let ids: Arc<Vec<SandboxId>> = Arc::new(
        (0..callers)
            .map(|i| SandboxId::new("bench-direct", format!("d{i}")).map_err(|e| e.to_string()))
            .collect::<Result<_, _>>()?,
    );
    for id in ids.iter() {
        backend
            .running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id.clone());
    }
    let request = Arc::new(CodeRequest {
        language: Template::Python,
        code: "x".into(),
        timeout: Duration::from_secs(30),
    });
    let direct: Op = {
        let backend = backend.clone();
        Arc::new(move |caller| {
            let (backend, ids, request) = (backend.clone(), ids.clone(), request.clone());
            Box::pin(async move {
                backend
                    .run_code(&ids[caller], &request)
                    .await
                    .map(drop)
                    .map_err(|e| e.to_string())
            })
        })
    };
    let (ours, theirs) = interleave(
        ctx.reps(),
        || parallel(ctx, callers, per_caller, &through),
        || parallel(ctx, callers, per_caller, &direct),
    )?;
    Ok(Outcome::Measured(
        Row::theirs_over_ours(
            ours.rate_side("manager"),
            theirs.rate_side("direct"),
            "theirs/ours ops/s (cost)",
            Goal::AtMost(1.10),
        )
        .note("tokio's timer rounds the 100 µs sleep up to its 1 ms tick, as in the original measurement"),
    ))
}

fn slow_c1(ctx: &Ctx) -> Result<Outcome, String> {
    slow(ctx, 1, ctx.size(300, 10))
}

fn slow_c64(ctx: &Ctx) -> Result<Outcome, String> {
    slow(ctx, 64, ctx.size(100, 5))
}

fn slow_c100(ctx: &Ctx) -> Result<Outcome, String> {
    slow(ctx, MAX_SESSIONS as usize, ctx.size(60, 3))
}

fn burst(ctx: &Ctx) -> Result<Outcome, String> {
    let callers = ctx.size(10_000, 500);
    let limit = 100;
    let backend = Arc::new(Instant0::default());
    let w = wrapper(
        ctx,
        WrapperConfig {
            max_concurrent_sessions: limit,
            limit_policy: LimitPolicy::Wait,
            limit_wait_timeout: Duration::from_secs(600),
            ..WrapperConfig::default()
        },
        backend.clone(),
    )?;
    let rep = parallel(ctx, callers, 1, &session_life_op(&w, "b", callers))?;
    let most = backend.max_running.load(Ordering::Relaxed) as f64;
    let per_caller = Reps(vec![rep]);
    Ok(Outcome::Measured(
        Row::ours_over_theirs(
            Side::new("most running", most, most, "sandboxes"),
            Side::new("limit", f64::from(limit), f64::from(limit), "sandboxes"),
            "most running / limit",
            Goal::AtMost(1.0),
        )
        .note(format!(
            "{callers} callers took {:.0} ms in all, p99 per caller {:.1} ms",
            per_caller.0[0].wall.as_secs_f64() * 1e3,
            per_caller.p99().as_secs_f64() * 1e3
        )),
    ))
}
