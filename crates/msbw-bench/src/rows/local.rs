//! The local backend (through the facade) next to spawning the same interpreter on the host:
//! cold first calls, warm calls, and a trivial command.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use microsandbox_wrapper::{
    CodeCall, CommandCall, LocalBackend, LocalConfig, MicrosandboxWrapper, Template, WrapperConfig,
};

use super::{Def, code_op, unusable};
use crate::measure::{Ctx, Op, Rep, Reps, interleave, parallel, sequential};
use crate::report::{Goal, Outcome, Row};

pub(crate) const ROWS: &[Def] = &[
    Def {
        id: "local.cold_python",
        title: "Local backend: cold first call (start + `pass`) vs host `python3 -c pass`",
        run: cold_python,
    },
    Def {
        id: "local.pool_first_call",
        title: "Local backend with a warm pool (`python:small=1`): a new session's first `pass` vs host `python3 -c pass`",
        run: pool_first_call,
    },
    Def {
        id: "local.cold_node",
        title: "Local backend: node cold first call vs host `node -e 0`",
        run: cold_node,
    },
    Def {
        id: "local.warm_python",
        title: "Warm local python call vs host spawn (`python3 -c pass`), times faster",
        run: warm_python,
    },
    Def {
        id: "local.warm_node",
        title: "Warm local node call vs host spawn (`node -e 0`), times faster",
        run: warm_node,
    },
    Def {
        id: "local.command_true",
        title: "Warm local command `true` vs host spawn of `true`",
        run: command_true,
    },
];

const PYTHON: &str = "/usr/bin/python3";
const NODE: &str = "/usr/bin/node";

/// A started facade over a local backend allowing `sessions` sessions, or `None` when the local
/// backend cannot run here.
pub(crate) fn local_wrapper(ctx: &Ctx, sessions: usize) -> Result<Option<MicrosandboxWrapper>, String> {
    let config = WrapperConfig {
        max_concurrent_sessions: (sessions as u32).max(10),
        ..WrapperConfig::default()
    };
    configured_wrapper(ctx, config)
}

/// A started facade with `config` over a local backend, or `None` when the local backend
/// cannot run here.
fn configured_wrapper(ctx: &Ctx, config: WrapperConfig) -> Result<Option<MicrosandboxWrapper>, String> {
    let backend = LocalBackend::new(LocalConfig::default());
    if !backend.host_support().usable() {
        return Ok(None);
    }
    ctx.run(async move {
        let wrapper = MicrosandboxWrapper::with_backend(config, Arc::new(backend)).map_err(|e| e.to_string())?;
        wrapper.start().await.map_err(|e| e.to_string())?;
        Ok(Some(wrapper))
    })
}

/// Spawns a host program and waits for it; fails unless it exits 0.
fn host_spawn(program: &str, args: &[&str]) -> Result<(), String> {
    let status = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if !status.success() {
        return Err(format!("{program} {args:?} failed: {status}"));
    }
    Ok(())
}

/// A started facade over a local backend, or why the row is skipped (no `program` on the host,
/// or no local backend).
fn ready(ctx: &Ctx, program: &str) -> Result<Result<MicrosandboxWrapper, Outcome>, String> {
    if !std::path::Path::new(program).exists() {
        return Ok(Err(Outcome::Skipped {
            reason: format!("{program} is not installed"),
        }));
    }
    Ok(local_wrapper(ctx, 4)?.ok_or_else(unusable))
}

/// What an interpreter row runs: the template, trivial code, and the same on the host.
type Interpreter = (Template, &'static str, &'static str, &'static [&'static str]);

const PYTHON_PASS: Interpreter = (Template::Python, "pass", PYTHON, &["-c", "pass"]);
const NODE_ZERO: Interpreter = (Template::Node, "0", NODE, &["-e", "0"]);

fn cold_python(ctx: &Ctx) -> Result<Outcome, String> {
    cold(ctx, PYTHON_PASS)
}

fn cold_node(ctx: &Ctx) -> Result<Outcome, String> {
    cold(ctx, NODE_ZERO)
}

/// A first call in a new session (admission, start, the call) vs a host spawn; each session is
/// stopped after its call, outside the timing.
fn cold(ctx: &Ctx, interpreter: Interpreter) -> Result<Outcome, String> {
    match ready(ctx, interpreter.2)? {
        Ok(wrapper) => first_calls(ctx, wrapper, interpreter, false),
        Err(skipped) => Ok(skipped),
    }
}

/// The warm pool's entry the pool row uses.
const POOL: &str = "python:small=1";

/// How long the pool row waits for the pool to refill before a repetition.
const REFILL_DEADLINE: Duration = Duration::from_secs(60);

/// A first call in a new session that finds a warm pooled sandbox (a warm call plus the claim)
/// vs a host spawn.
fn pool_first_call(ctx: &Ctx) -> Result<Outcome, String> {
    if !std::path::Path::new(PYTHON).exists() {
        return Ok(Outcome::Skipped {
            reason: format!("{PYTHON} is not installed"),
        });
    }
    let config = WrapperConfig {
        warm_pool: POOL.parse().map_err(|e| format!("{POOL}: {e}"))?,
        ..WrapperConfig::default()
    };
    match configured_wrapper(ctx, config)? {
        Some(wrapper) => first_calls(ctx, wrapper, PYTHON_PASS, true),
        None => Ok(unusable()),
    }
}

/// First calls, each in a new session (admission, a start or a claim, the call), vs host spawns;
/// each session is stopped after its call, outside the timing. With `pooled`, the pool is
/// refilled before each call (its stats polled, with a deadline), outside the timing, and each
/// call must have been served by a pooled sandbox.
fn first_calls(
    ctx: &Ctx,
    wrapper: MicrosandboxWrapper,
    (template, code, program, args): Interpreter,
    pooled: bool,
) -> Result<Outcome, String> {
    let next = AtomicUsize::new(0);
    let per_rep = ctx.size(5, 1);
    let first_call = || -> Result<Rep, String> {
        let mut rep = Rep::default();
        for _ in 0..per_rep {
            let session = format!("first{}", next.fetch_add(1, Ordering::Relaxed));
            let call = CodeCall::new(code).template(template).session(session.clone());
            let w = wrapper.clone();
            let took = ctx.run(async move {
                if pooled {
                    pool_refilled(&w).await?;
                }
                let t = std::time::Instant::now();
                let result = w.execute_code(call).await.map_err(|e| e.to_string())?;
                let took = t.elapsed();
                w.stop_session(&session).await.map_err(|e| e.to_string())?;
                if pooled && !result.sandbox.name.contains("-pool-") {
                    return Err(format!(
                        "the first call did not find a pooled sandbox: {}",
                        result.sandbox
                    ));
                }
                Ok(took)
            })?;
            rep.latencies.push(took);
            rep.wall += took;
        }
        Ok(rep)
    };
    let host = || sequential(per_rep, || host_spawn(program, args));
    let (ours, theirs) = interleave(ctx.reps(), first_call, host)?;
    stop(ctx, wrapper)?;
    Ok(Outcome::Measured(Row::ours_over_theirs(
        ours.latency_side("first call"),
        theirs.latency_side("host spawn"),
        "ours/theirs time",
        Goal::AtMost(1.5),
    )))
}

/// Waits until every entry of the wrapper's pool has a ready sandbox, up to [`REFILL_DEADLINE`].
async fn pool_refilled(wrapper: &MicrosandboxWrapper) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + REFILL_DEADLINE;
    loop {
        let stats = wrapper.get_resource_stats().map_err(|e| e.to_string())?;
        if !stats.warm_pool.is_empty() && stats.warm_pool.iter().all(|p| p.ready >= 1) {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(format!(
                "the warm pool did not refill within {REFILL_DEADLINE:?}: {:?}",
                stats.warm_pool
            ));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn warm_python(ctx: &Ctx) -> Result<Outcome, String> {
    warm(ctx, PYTHON_PASS)
}

fn warm_node(ctx: &Ctx) -> Result<Outcome, String> {
    warm(ctx, NODE_ZERO)
}

/// Warm calls in one session vs host spawns of the same interpreter.
fn warm(ctx: &Ctx, (template, code, program, args): Interpreter) -> Result<Outcome, String> {
    let wrapper = match ready(ctx, program)? {
        Ok(wrapper) => wrapper,
        Err(skipped) => return Ok(skipped),
    };
    let op = code_op(&wrapper, vec![CodeCall::new(code).template(template).session("warm")]);
    let counts = WarmCounts {
        warm_up: 5,
        calls: ctx.size(200, 5),
        spawns: ctx.size(5, 1),
    };
    let (ours, theirs) = warm_vs_spawn(ctx, wrapper, &op, counts, (program, args))?;
    Ok(Outcome::Measured(Row::theirs_over_ours(
        ours.latency_side("warm call"),
        theirs.latency_side("host spawn"),
        "theirs/ours time",
        Goal::AtLeast(20.0),
    )))
}

/// How many calls a warm row makes: unmeasured ones first, then each repetition's calls and
/// host spawns.
struct WarmCounts {
    warm_up: usize,
    calls: usize,
    spawns: usize,
}

/// Warm calls of `op` (one caller) vs host spawns of `program`, both sides interleaved; then
/// `wrapper` is stopped.
fn warm_vs_spawn(
    ctx: &Ctx,
    wrapper: MicrosandboxWrapper,
    op: &Op,
    WarmCounts { warm_up, calls, spawns }: WarmCounts,
    (program, args): (&str, &[&str]),
) -> Result<(Reps, Reps), String> {
    parallel(ctx, 1, warm_up, op)?;
    let sides = interleave(
        ctx.reps(),
        || parallel(ctx, 1, calls, op),
        || sequential(spawns, || host_spawn(program, args)),
    )?;
    stop(ctx, wrapper)?;
    Ok(sides)
}

/// A command `true` in a warm session (a process spawned in the sandbox) vs `true` spawned on
/// the host: the row that shows a slower spawn path in the local backend.
fn command_true(ctx: &Ctx) -> Result<Outcome, String> {
    let Some(wrapper) = local_wrapper(ctx, 4)? else {
        return Ok(unusable());
    };
    let call = CommandCall::new("true", Vec::<String>::new()).session("cmd");
    let op: Op = {
        let wrapper = wrapper.clone();
        Arc::new(move |_| {
            let (wrapper, call) = (wrapper.clone(), call.clone());
            Box::pin(async move { wrapper.execute_command(call).await.map(drop).map_err(|e| e.to_string()) })
        })
    };
    let n = ctx.size(40, 3);
    let counts = WarmCounts {
        warm_up: 3,
        calls: n,
        spawns: n,
    };
    let (ours, theirs) = warm_vs_spawn(ctx, wrapper, &op, counts, ("/bin/true", &[]))?;
    Ok(Outcome::Measured(Row::ours_over_theirs(
        ours.latency_side("command"),
        theirs.latency_side("host spawn"),
        "ours/theirs time",
        Goal::AtMost(COMMAND_TRUE_GOAL),
    )))
}

/// The `true` command may cost this many host spawns (see docs/benchmarks.md).
const COMMAND_TRUE_GOAL: f64 = 10.0;

fn stop(ctx: &Ctx, wrapper: MicrosandboxWrapper) -> Result<(), String> {
    ctx.run(async move {
        wrapper.stop().await;
        Ok(())
    })
}
