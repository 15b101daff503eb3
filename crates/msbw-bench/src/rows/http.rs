//! The wrapper (facade + HttpBackend) next to one bare reqwest client, both against the same
//! loopback stub that answers the microsandbox protocol at once (crate::stub).

use std::sync::Arc;

use microsandbox_wrapper::{HttpBackend, HttpBackendConfig, MicrosandboxWrapper, WrapperConfig};
use msbw_protocol::results::ReplResult;
use msbw_protocol::{RPC_PATH, envelope::decode_result};

use super::{Def, code_op, session_calls};
use crate::bare;
use crate::measure::{Ctx, Op, Reps, interleave, parallel};
use crate::report::{Goal, Outcome, Row};
use crate::stub::Stub;

pub(crate) const ROWS: &[Def] = &[
    Def {
        id: "http.c1",
        title: "Wrapper (facade + HttpBackend) vs bare reqwest client, warm session, c=1",
        run: wrapper_vs_bare_c1,
    },
    Def {
        id: "http.c64",
        title: "Wrapper vs bare reqwest client, c=64 over 64 sessions",
        run: wrapper_vs_bare_c64,
    },
    Def {
        id: "http.cpu",
        title: "Client CPU per warm call, wrapper vs bare client, c=64",
        run: client_cpu_c64,
    },
    Def {
        id: "http.python",
        title: "vs the earlier Python implementation on the same stub, c=64 (>= 20x)",
        run: python_implementation,
    },
];

fn wrapper_vs_bare_c1(ctx: &Ctx) -> Result<Outcome, String> {
    sides(ctx, 1, ctx.size(3000, 50)).map(throughput)
}

fn wrapper_vs_bare_c64(ctx: &Ctx) -> Result<Outcome, String> {
    sides(ctx, 64, ctx.size(100, 4)).map(throughput)
}

fn client_cpu_c64(ctx: &Ctx) -> Result<Outcome, String> {
    sides(ctx, 64, ctx.size(100, 4)).map(client_cpu)
}

/// The throughput of both sides, ours over theirs.
fn throughput((wrapper, bare): (Reps, Reps)) -> Outcome {
    Outcome::Measured(Row::ours_over_theirs(
        wrapper.rate_side("wrapper"),
        bare.rate_side("bare"),
        "ours/theirs ops/s",
        Goal::AtLeast(0.90),
    ))
}

/// The client CPU per call of both sides, ours over theirs.
fn client_cpu((wrapper, bare): (Reps, Reps)) -> Outcome {
    Outcome::Measured(
        Row::ours_over_theirs(
            wrapper.cpu_side("wrapper", "µs CPU"),
            bare.cpu_side("bare", "µs CPU"),
            "ours/theirs CPU",
            Goal::AtMost(1.15),
        )
        .note("CPU of the client runtime's two worker threads (/proc schedstat), the stub's thread excluded"),
    )
}

fn python_implementation(_: &Ctx) -> Result<Outcome, String> {
    Ok(Outcome::Skipped {
        reason: "measured by the issue's authors against their Python implementation, not here".into(),
    })
}

/// Both sides at `callers` callers (each its own session), `per_caller` calls each, interleaved.
fn sides(ctx: &Ctx, callers: usize, per_caller: usize) -> Result<(Reps, Reps), String> {
    let stub = Stub::start()?;
    let wrapper = wrapper_op(ctx, &stub.url, callers)?;
    let bare = bare_op(&stub.url)?;
    // Warm both (connections, sessions) before measuring.
    parallel(ctx, callers, 2, &wrapper)?;
    parallel(ctx, callers, 2, &bare)?;
    interleave(
        ctx.reps(),
        || parallel(ctx, callers, per_caller, &wrapper),
        || parallel(ctx, callers, per_caller, &bare),
    )
}

/// A warm call through the facade in session `s{caller}`.
fn wrapper_op(ctx: &Ctx, url: &str, sessions: usize) -> Result<Op, String> {
    let config = WrapperConfig {
        max_concurrent_sessions: (sessions as u32).max(10),
        ..WrapperConfig::default()
    };
    let backend = HttpBackend::new(HttpBackendConfig::new(url)).map_err(|e| e.to_string())?;
    let wrapper = ctx.run(async move {
        let wrapper = MicrosandboxWrapper::with_backend(config, Arc::new(backend)).map_err(|e| e.to_string())?;
        wrapper.start().await.map_err(|e| e.to_string())?;
        Ok(wrapper)
    })?;
    Ok(code_op(&wrapper, session_calls("pass", "s", sessions)))
}

/// The same call by hand: serialize, POST, read the answer and its result.
fn bare_op(url: &str) -> Result<Op, String> {
    let client = reqwest::Client::new();
    let rpc_url: Arc<str> = format!("{url}{RPC_PATH}").into();
    Ok(Arc::new(move |caller| {
        let client = client.clone();
        let rpc_url = rpc_url.clone();
        Box::pin(async move {
            let raw = bare::repl_pass(&client, &rpc_url, &format!("s{caller}"), caller as u64).await?;
            decode_result::<ReplResult>(&raw).map(drop).map_err(|e| e.to_string())
        })
    }))
}
