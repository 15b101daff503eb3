//! `cargo xtask bench`: builds and runs the side-by-side benchmarks (crates/msbw-bench), which
//! print one table and write `target/bench/report.json`.
//!
//! A full run uses a release build; `--quick` (every row with tiny sizes, as CI runs it so the
//! harness cannot rot) uses the dev build the tests already made.

use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::time::Instant;

/// Runs the benchmarks; `rest` goes to msbw-bench (`--quick`, `--only TEXT`).
pub(crate) fn main(rest: &[String]) -> ExitCode {
    let quick = rest.iter().any(|a| a == "--quick");
    let out = target_dir().join("bench").join("report.json");
    let mut cargo = Command::new(env!("CARGO"));
    cargo.args(["run", "--quiet", "-p", "msbw-bench"]);
    if !quick {
        cargo.arg("--release");
    }
    cargo.arg("--").args(rest);
    if !rest.iter().any(|a| a == "--out") {
        cargo.arg("--out").arg(&out);
    }
    let started = Instant::now();
    eprintln!("xtask: msbw-bench {}", rest.join(" "));
    let ok = cargo.status().is_ok_and(|s| s.success());
    eprintln!("xtask: the benchmarks took {:.0} s", started.elapsed().as_secs_f64());
    if ok {
        ExitCode::SUCCESS
    } else {
        eprintln!("xtask: the benchmarks failed");
        ExitCode::FAILURE
    }
}

/// The workspace's target folder (CARGO_TARGET_DIR when set).
fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join("target"),
    }
}
