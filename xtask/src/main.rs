//! Project automation, run as `cargo xtask <task>`.

mod integration;

use std::process::ExitCode;

const USAGE: &str = "usage: cargo xtask <task>

tasks:
  ci                  format check, clippy, and the test suite
  bench               the benchmarks: manager overhead, local backend latencies (release builds)
  test-integration    the wrapper against the real microsandbox server 0.2.6 (see docs/testing.md;
                      `cargo xtask test-integration --help` for its options)";

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let task = args.next();
    let rest: Vec<String> = args.collect();
    match task.as_deref() {
        Some("ci") => ci(),
        Some("bench") => bench(&rest),
        Some("test-integration") => integration::main(&rest),
        Some(integration::REAPER_TASK) => integration::reaper_main(&rest),
        _ => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
}

/// The crates with benchmarks (`harness = false` targets that print their own figures).
const BENCH_CRATES: [&str; 2] = ["msbw-manager", "msbw-local"];

/// Runs every benchmark in release mode; extra arguments go to `cargo bench`.
fn bench(rest: &[String]) -> ExitCode {
    let mut failed = false;
    for krate in BENCH_CRATES {
        eprintln!("xtask: cargo bench -p {krate}");
        let ok = std::process::Command::new(env!("CARGO"))
            .args(["bench", "-p", krate])
            .args(rest)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!("xtask: the {krate} benchmarks failed");
            failed = true;
        }
    }
    if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS }
}

/// Runs what CI runs: formatting, clippy with warnings as errors, then the tests.
fn ci() -> ExitCode {
    let steps: [&[&str]; 3] = [
        &["fmt", "--all", "--", "--check"],
        &["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"],
        &["test", "--workspace"],
    ];
    for args in steps {
        eprintln!("xtask: cargo {}", args.join(" "));
        let ok = std::process::Command::new(env!("CARGO"))
            .args(args)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!("xtask: cargo {} failed", args.join(" "));
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}
