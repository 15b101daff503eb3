//! Files: a file written into a warm local sandbox and read back through the manager's file
//! calls, next to a host `cp` of the same file.

use std::process::Command;
use std::time::Instant;

use microsandbox_wrapper::manager::{FileCall, FileOutcome};

use super::{Def, warm_local_vs_host};
use crate::measure::{Ctx, Rep};
use crate::report::{Goal, Outcome};

pub(crate) const ROWS: &[Def] = &[Def {
    id: "files.round_trip_64mib",
    title: "A 64 MiB file written into a warm local sandbox and read back vs host cp of it (quick: 1 MiB)",
    run: round_trip,
}];

fn round_trip(ctx: &Ctx) -> Result<Outcome, String> {
    let size = ctx.size(64, 1) << 20;
    // Not all one byte: a pattern that compresses and encodes like real data would not matter
    // here, but a constant could hide a transfer that repeats one chunk.
    let data: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
    let host_dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let src = host_dir.path().join("src.bin");
    std::fs::write(&src, &data).map_err(|e| e.to_string())?;
    let manager = match super::warm_local_manager(ctx, "files")? {
        Ok(manager) => manager,
        Err(skipped) => return Ok(skipped),
    };
    let ours = || -> Result<Rep, String> {
        let manager = manager.clone();
        let data = data.clone();
        let took = ctx.run(async move {
            let write = FileCall::write("files", "/tmp/bench.bin", data.clone());
            let t = Instant::now();
            manager.file_call(write).await.map_err(|e| e.to_string())?;
            let read = manager
                .file_call(FileCall::read("files", "/tmp/bench.bin"))
                .await
                .map_err(|e| e.to_string())?;
            let took = t.elapsed();
            match read.outcome {
                FileOutcome::Read(bytes) if bytes == data => Ok(took),
                FileOutcome::Read(bytes) => Err(format!("read back {} bytes that differ", bytes.len())),
                other => Err(format!("the read answered {other:?}")),
            }
        })?;
        Ok(Rep {
            latencies: vec![took],
            wall: took,
            ..Rep::default()
        })
    };
    let host = || -> Result<Rep, String> {
        let dst = host_dir.path().join("dst.bin");
        let t = Instant::now();
        let status = Command::new("cp")
            .arg(&src)
            .arg(&dst)
            .status()
            .map_err(|e| format!("cannot run cp: {e}"))?;
        let took = t.elapsed();
        if !status.success() {
            return Err(format!("cp failed: {status}"));
        }
        Ok(Rep {
            latencies: vec![took],
            wall: took,
            ..Rep::default()
        })
    };
    warm_local_vs_host(
        ctx,
        manager.clone(),
        ("write + read", ours),
        ("host cp", host),
        Goal::AtMost(20.0),
    )
}
