//! Project automation, run as `cargo xtask <task>`.

mod bench;
mod integration;

use std::process::ExitCode;

const USAGE: &str = "usage: cargo xtask <task>

tasks:
  ci                  format check, clippy, and the test suite
  bench               the side-by-side benchmarks, one table and target/bench/report.json
                      (release build; `--quick`: tiny sizes, dev build, under a minute)
  test-integration    the wrapper against the real microsandbox server 0.2.6 (see docs/testing.md;
                      `cargo xtask test-integration --help` for its options)";

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let task = args.next();
    let rest: Vec<String> = args.collect();
    match task.as_deref() {
        Some("ci") => ci(),
        Some("bench") => bench::main(&rest),
        Some("test-integration") => integration::main(&rest),
        Some(integration::REAPER_TASK) => integration::reaper_main(&rest),
        _ => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
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
