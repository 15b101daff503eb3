//! Streaming: the time to the first output of a call that prints, then works for a second,
//! through the manager's stream over the local backend, next to a host interpreter's first line.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use microsandbox_wrapper::CodeCall;
use microsandbox_wrapper::manager::CallEvent;

use super::{Def, warm_local_vs_host};
use crate::measure::{Ctx, Rep};
use crate::report::{Goal, Outcome};

pub(crate) const ROWS: &[Def] = &[Def {
    id: "stream.first_output",
    title: "Time to first output of `print('a', flush=True); time.sleep(1)`: warm local stream vs host python3",
    run: first_output,
}];

const CODE: &str = "import time\nprint('a', flush=True)\ntime.sleep(1)";
const QUICK_CODE: &str = "import time\nprint('a', flush=True)\ntime.sleep(0.05)";

fn first_output(ctx: &Ctx) -> Result<Outcome, String> {
    let manager = match super::warm_local_manager(ctx, "stream")? {
        Ok(manager) => manager,
        Err(skipped) => return Ok(skipped),
    };
    let code = if ctx.quick { QUICK_CODE } else { CODE };
    let per_rep = ctx.size(2, 1);
    let ours = || -> Result<Rep, String> {
        let mut rep = Rep::default();
        for _ in 0..per_rep {
            let manager = manager.clone();
            let first = ctx.run(async move {
                let t = Instant::now();
                let mut stream = manager
                    .execute_code_stream(CodeCall::new(code).session("stream"))
                    .map_err(|e| e.to_string())?;
                let mut first = None;
                while let Some(event) = stream.next().await {
                    match event.map_err(|e| e.to_string())? {
                        CallEvent::Stdout(_) if first.is_none() => first = Some(t.elapsed()),
                        CallEvent::Finished(_) => break,
                        _ => {}
                    }
                }
                first.ok_or_else(|| "the stream printed nothing".to_owned())
            })?;
            rep.latencies.push(first);
            rep.wall += first;
        }
        Ok(rep)
    };
    let host = || -> Result<Rep, String> {
        let mut rep = Rep::default();
        for _ in 0..per_rep {
            let first = host_first_output(code)?;
            rep.latencies.push(first);
            rep.wall += first;
        }
        Ok(rep)
    };
    warm_local_vs_host(
        ctx,
        manager.clone(),
        ("stream", ours),
        ("host python3", host),
        Goal::AtMost(1.0),
    )
}

/// Spawns `python3 -c code` and times its first byte of stdout; waits for it to end.
fn host_first_output(code: &str) -> Result<Duration, String> {
    let t = Instant::now();
    let mut child = Command::new("/usr/bin/python3")
        .args(["-c", code])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot run python3: {e}"))?;
    let mut stdout = child.stdout.take().ok_or("no stdout")?;
    let mut byte = [0u8; 1];
    let n = stdout.read(&mut byte).map_err(|e| e.to_string())?;
    let first = t.elapsed();
    let _ = child.wait();
    if n == 0 {
        return Err("python3 printed nothing".into());
    }
    Ok(first)
}
