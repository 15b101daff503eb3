//! Project automation, run as `cargo xtask <task>`.

use std::process::ExitCode;

fn main() -> ExitCode {
    let task = std::env::args().nth(1);
    match task.as_deref() {
        Some("ci") => ci(),
        _ => {
            eprintln!("usage: cargo xtask <task>\n\ntasks:\n  ci    format check, clippy, and the test suite");
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
