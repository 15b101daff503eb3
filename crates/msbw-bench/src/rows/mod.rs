//! The registry of rows: each file holds one group's rows, each row one function, listed in the
//! file's `ROWS`. To add a row, write its function in the group's file (or a new file) and list
//! it there; to add a group, add its file here and to [`all`].

mod files;
mod http;
mod local;
mod manager;
mod serve;
mod stream;

use std::sync::Arc;

use microsandbox_wrapper::{CodeCall, LocalBackend, LocalConfig, MicrosandboxWrapper, SessionManager, WrapperConfig};

use crate::measure::{Ctx, Op, Rep, interleave};
use crate::report::{Goal, Outcome, Row};

/// Why a row that needs the local backend is skipped.
pub(crate) fn unusable() -> Outcome {
    Outcome::Skipped {
        reason: "the local backend cannot run on this host".into(),
    }
}

/// A manager over a fresh local backend with the session `session` already warm, or the reason
/// to skip the row when the local backend cannot run on this host.
pub(crate) fn warm_local_manager(ctx: &Ctx, session: &'static str) -> Result<Result<SessionManager, Outcome>, String> {
    let backend = LocalBackend::new(LocalConfig::default());
    if !backend.host_support().usable() {
        return Ok(Err(unusable()));
    }
    let manager = SessionManager::new(WrapperConfig::default(), Arc::new(backend)).map_err(|e| e.to_string())?;
    let warming = manager.clone();
    ctx.run(async move {
        warming.start().await.map_err(|e| e.to_string())?;
        warming
            .execute_code(CodeCall::new("pass").session(session))
            .await
            .map_err(|e| e.to_string())?;
        Ok(())
    })?;
    Ok(Ok(manager))
}

/// A latency row of a warm local manager's operation against a host program: both sides
/// interleaved, then the manager shut down, compared as ours/theirs time against `goal`.
pub(crate) fn warm_local_vs_host(
    ctx: &Ctx,
    manager: SessionManager,
    (ours_name, ours): (&str, impl FnMut() -> Result<Rep, String>),
    (host_name, host): (&str, impl FnMut() -> Result<Rep, String>),
    goal: Goal,
) -> Result<Outcome, String> {
    let (ours, theirs) = interleave(ctx.reps(), ours, host)?;
    ctx.run(async move {
        manager.shutdown().await;
        Ok(())
    })?;
    Ok(Outcome::Measured(Row::ours_over_theirs(
        ours.latency_side(ours_name),
        theirs.latency_side(host_name),
        "ours/theirs time",
        goal,
    )))
}

/// Code `code` in session `{prefix}{i}`, for each of `sessions` callers.
pub(crate) fn session_calls(code: &str, prefix: &str, sessions: usize) -> Vec<CodeCall> {
    (0..sessions)
        .map(|i| CodeCall::new(code).session(format!("{prefix}{i}")))
        .collect()
}

/// An op in which caller `i` makes the code call `calls[i]` through `wrapper` (its result dropped).
pub(crate) fn code_op(wrapper: &MicrosandboxWrapper, calls: Vec<CodeCall>) -> Op {
    let (wrapper, calls) = (wrapper.clone(), Arc::new(calls));
    Arc::new(move |caller| {
        let (wrapper, call) = (wrapper.clone(), calls[caller].clone());
        Box::pin(async move { wrapper.execute_code(call).await.map(drop).map_err(|e| e.to_string()) })
    })
}

/// A row: what it is called and the function that measures it.
pub(crate) struct Def {
    /// A stable id (`group.name`), for `--only` and the JSON report.
    pub(crate) id: &'static str,
    /// The row's title in the table.
    pub(crate) title: &'static str,
    /// Measures the row.
    pub(crate) run: fn(&Ctx) -> Result<Outcome, String>,
}

impl Def {
    /// The group (the file the row lives in): the id up to its first dot.
    pub(crate) fn group(&self) -> &'static str {
        self.id.split_once('.').map_or(self.id, |(group, _)| group)
    }
}

/// Every row, in table order.
pub(crate) fn all() -> impl Iterator<Item = &'static Def> {
    [
        http::ROWS,
        serve::ROWS,
        manager::ROWS,
        local::ROWS,
        stream::ROWS,
        files::ROWS,
    ]
    .into_iter()
    .flatten()
}
