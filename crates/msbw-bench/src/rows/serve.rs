//! `msbw serve` (in-process, on loopback, over the local backend) next to the local backend in
//! this process through the facade: warm calls of trivial Python.

use std::sync::Arc;

use microsandbox_wrapper::MicrosandboxWrapper;
use msbw_protocol::{RPC_PATH, method};
use msbw_serve::{ServeOptions, Server};
use serde_json::json;

use super::local::local_wrapper;
use super::{Def, code_op, session_calls, unusable};
use crate::bare;
use crate::measure::{Ctx, Op, interleave, parallel};
use crate::report::{Goal, Outcome, Row};

pub(crate) const ROWS: &[Def] = &[
    Def {
        id: "serve.c1",
        title: "msbw serve vs the local backend in-process, warm, c=1",
        run: serve_c1,
    },
    Def {
        id: "serve.c16",
        title: "msbw serve vs the local backend in-process, warm, c=16",
        run: serve_c16,
    },
];

fn serve_c1(ctx: &Ctx) -> Result<Outcome, String> {
    serve_vs_local(ctx, 1, ctx.size(1000, 20))
}

fn serve_c16(ctx: &Ctx) -> Result<Outcome, String> {
    serve_vs_local(ctx, ctx.size(16, 2), ctx.size(100, 10))
}

fn serve_vs_local(ctx: &Ctx, callers: usize, per_caller: usize) -> Result<Outcome, String> {
    let Some(local) = local_wrapper(ctx, callers)? else {
        return Ok(unusable());
    };
    let Some(served) = local_wrapper(ctx, callers)? else {
        return Ok(unusable());
    };
    let (url, running) = ctx.run(serve(served))?;
    let through_serve = serve_op(ctx, &url, callers)?;
    // A warm call of `pass` through the facade in session `l{caller}`.
    let in_process = code_op(&local, session_calls("pass", "l", callers));
    parallel(ctx, callers, 3, &through_serve)?;
    parallel(ctx, callers, 3, &in_process)?;
    let (ours, theirs) = interleave(
        ctx.reps(),
        || parallel(ctx, callers, per_caller, &through_serve),
        || parallel(ctx, callers, per_caller, &in_process),
    )?;
    ctx.run(async move {
        local.stop().await;
        let _ = running.stop.send(());
        running.task.await.map_err(|e| format!("the server failed: {e}"))?;
        Ok(())
    })?;
    Ok(Outcome::Measured(
        Row::ours_over_theirs(
            ours.rate_side("serve"),
            theirs.rate_side("in-process"),
            "ours/theirs ops/s",
            Goal::AtLeast(0.8),
        )
        .note("serve: a bare reqwest client calling sandbox.repl.run `pass` on loopback"),
    ))
}

/// A server running on the client runtime.
struct Running {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<microsandbox_wrapper::ShutdownReport>,
}

/// Binds `msbw serve` over `wrapper` on a free loopback port (dev mode) and runs it.
async fn serve(wrapper: MicrosandboxWrapper) -> Result<(String, Running), String> {
    let addr = "127.0.0.1:0".parse().map_err(|e| format!("{e}"))?;
    let server = Server::bind(addr, wrapper, ServeOptions::default())
        .await
        .map_err(|e| e.to_string())?;
    let addr = server.local_addr().map_err(|e| e.to_string())?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.run(async move {
        let _ = stopped.await;
    }));
    Ok((format!("http://{addr}"), Running { stop, task }))
}

/// Starts sandboxes `b{i}` through the server, then returns a warm call in each.
fn serve_op(ctx: &Ctx, url: &str, sandboxes: usize) -> Result<Op, String> {
    let client = reqwest::Client::new();
    let rpc_url: Arc<str> = format!("{url}{RPC_PATH}").into();
    {
        let (client, rpc_url) = (client.clone(), rpc_url.clone());
        ctx.run(async move {
            for i in 0..sandboxes {
                let params = json!({"sandbox": format!("b{i}"), "namespace": "default",
                    "config": {"image": "microsandbox/python"}});
                bare::rpc(&client, &rpc_url, method::START, &params, i as u64).await?;
            }
            Ok(())
        })?;
    }
    Ok(Arc::new(move |caller| {
        let client = client.clone();
        let rpc_url = rpc_url.clone();
        Box::pin(async move {
            bare::repl_pass(&client, &rpc_url, &format!("b{caller}"), caller as u64)
                .await
                .map(drop)
        })
    }))
}
