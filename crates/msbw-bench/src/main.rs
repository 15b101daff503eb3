//! The side-by-side benchmarks of microsandbox-wrapper, one table: each row measures our side and
//! a reference side in the same run, interleaved, and compares their ratio with the row's goal.
//!
//! Run through `cargo xtask bench` (release build) or `cargo xtask bench --quick` (tiny sizes,
//! checks that every row still runs). Writes `target/bench/report.json`. Rows live in
//! [`rows`], one function per row, grouped by what they measure; see docs/benchmarks.md for how
//! to add one.

mod bare;
mod machine;
mod measure;
mod report;
mod rows;
mod stub;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

const USAGE: &str = "usage: msbw-bench [--quick] [--only TEXT] [--out PATH] [--baseline PATH]

  --quick          every row with tiny sizes (checks the harness; ratios are not meaningful)
  --only TEXT      only the rows whose id contains TEXT
  --out PATH       where the JSON report goes (default target/bench/report.json)
  --baseline PATH  an earlier report.json: each row's change of our side against it";

fn main() -> ExitCode {
    let mut quick = false;
    let mut only = None;
    let mut out = PathBuf::from("target/bench/report.json");
    let mut baseline = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => quick = true,
            "--only" => only = args.next(),
            "--baseline" => match args.next() {
                Some(path) => baseline = Some(PathBuf::from(path)),
                None => return usage(),
            },
            "--out" => match args.next() {
                Some(path) => out = PathBuf::from(path),
                None => return usage(),
            },
            _ => return usage(),
        }
    }
    let ctx = match measure::Ctx::new(quick) {
        Ok(ctx) => ctx,
        Err(e) => {
            eprintln!("msbw-bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    let machine = machine::Machine::detect();
    println!("{machine}");
    println!(
        "mode: {}\n",
        if quick {
            "quick (tiny sizes: ratios not meaningful)"
        } else {
            "full"
        }
    );
    let started = Instant::now();
    let mut results = Vec::new();
    for def in rows::all() {
        if only.as_deref().is_some_and(|text| !def.id.contains(text)) {
            continue;
        }
        eprintln!("msbw-bench: {} ...", def.id);
        let t = Instant::now();
        let outcome = (def.run)(&ctx);
        eprintln!("msbw-bench: {} took {:.1} s", def.id, t.elapsed().as_secs_f64());
        results.push(report::Entry::new(def, outcome));
    }
    let report = report::Report::new(machine, quick, started.elapsed(), results);
    print!("{}", report.table());
    if let Some(path) = baseline {
        match report::Baseline::read(&path) {
            Ok(base) => print!("\n{}", report.compare(&base)),
            Err(e) => eprintln!("msbw-bench: cannot read the baseline {}: {e}", path.display()),
        }
    }
    if let Err(e) = report.write(&out) {
        eprintln!("msbw-bench: cannot write {}: {e}", out.display());
        return ExitCode::FAILURE;
    }
    println!("\nreport: {} ({:.1} s)", out.display(), report.seconds());
    if report.errors() > 0 {
        eprintln!("msbw-bench: {} rows could not be measured", report.errors());
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

fn usage() -> ExitCode {
    eprintln!("{USAGE}");
    ExitCode::from(2)
}
