//! `msbw-integration`: runs the integration suites against a microsandbox server and prints
//! each check's outcome and a summary; exits non-zero on any failure.
//!
//! Usually started by `cargo xtask test-integration`, which owns the server. To run it against
//! a server of your own:
//!
//! ```text
//! MSB_SERVER_URL=http://127.0.0.1:5555 MSB_API_KEY=msb_... msbw-integration --suites conformance,auth
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

use msbw_harness::Flags;
use msbw_integration::control::Control;
use msbw_integration::report::{Status, SuiteReport};
use msbw_integration::suites;
use msbw_integration::target::{Mode, Target};

const HELP: &str = "msbw-integration [OPTIONS]

Runs the integration suites against a microsandbox server (see docs/testing.md). Usually run by
`cargo xtask test-integration`, which builds and starts the real server.

options (each also read from the environment variable shown):
  --url URL             the server [MSB_SERVER_URL]
  --mode MODE           dev, keyed or external [MSBW_INTEGRATION_MODE; default external]
  --suites LIST         comma-separated: conformance, auth, defences, facade, serve, python-sdk
                        [default conformance,auth,defences,facade]
  --standin             the server runs on the libkrun stand-in (enables the agent-delay checks)
  --control PATH        the harness's control socket (enables restart and key minting)
  --python-image IMAGE  image of python sandboxes [MSB_PYTHON_IMAGE]
  --node-image IMAGE    image of node sandboxes [MSB_NODE_IMAGE]
  --namespace NS        the namespace of the sandboxes [default default]
  --msbw-bin PATH       the msbw program, for the msbw serve suites [MSBW_BIN]
  --msbw-unavailable WHY  why there is no msbw program (the harness could not build it)
  --cache PATH          the integration cache, for the Python SDK's venv
                        [MSBW_INTEGRATION_CACHE; default ~/.cache/msbw-integration]
  --work-dir PATH       where the suites keep their files (msbw serve logs)
                        [default: a new folder in $TMPDIR, removed when every suite passed]
  --summary-file PATH   also write one tab-separated line per suite there
  --allow-missing       suites whose crate or binary does not exist yet do not fail the run
the API key is read from MSB_API_KEY only (a command line is visible to every user).";

struct Options {
    target: Target,
    /// Whether the work folder was chosen here (and so is removed after a run that passed).
    own_work_dir: bool,
    suites: Vec<String>,
    summary_file: Option<PathBuf>,
    allow_missing: bool,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn parse(args: &[String]) -> Result<Option<Options>, String> {
    let mut url = env("MSB_SERVER_URL");
    let mut mode = env("MSBW_INTEGRATION_MODE");
    let mut suites: Option<String> = None;
    let mut standin = false;
    let mut control = env("MSBW_INTEGRATION_CONTROL");
    let mut python_image = env("MSB_PYTHON_IMAGE");
    let mut node_image = env("MSB_NODE_IMAGE");
    let mut namespace = None;
    let mut msbw_bin = env("MSBW_BIN");
    let mut msbw_unavailable = None;
    let mut summary_file = None;
    let mut cache = env("MSBW_INTEGRATION_CACHE").map(PathBuf::from);
    let mut work_dir: Option<PathBuf> = None;
    let mut allow_missing = false;
    let mut flags = Flags::new(args);
    while let Some(flag) = flags.next_flag() {
        match flag {
            "--url" => url = Some(flags.value()?),
            "--mode" => mode = Some(flags.value()?),
            "--suites" | "--suite" => suites = Some(flags.value()?),
            "--standin" => standin = true,
            "--control" => control = Some(flags.value()?),
            "--python-image" => python_image = Some(flags.value()?),
            "--node-image" => node_image = Some(flags.value()?),
            "--namespace" => namespace = Some(flags.value()?),
            "--msbw-bin" => msbw_bin = Some(flags.value()?),
            "--msbw-unavailable" => msbw_unavailable = Some(flags.value()?),
            "--summary-file" => summary_file = Some(PathBuf::from(flags.value()?)),
            "--cache" => cache = Some(PathBuf::from(flags.value()?)),
            "--work-dir" => work_dir = Some(PathBuf::from(flags.value()?)),
            "--allow-missing" => allow_missing = true,
            "-h" | "--help" => return Ok(None),
            other => return Err(format!("unknown option {other:?}")),
        }
    }
    let mode: Mode = mode.as_deref().unwrap_or("external").parse()?;
    let suites: Vec<String> = match suites {
        Some(list) => list
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        None => suites::DEFAULT.iter().map(|s| (*s).to_owned()).collect(),
    };
    if let Some(unknown) = suites.iter().find(|s| !suites::ALL.contains(&s.as_str())) {
        return Err(format!(
            "unknown suite {unknown:?}; the suites are {}",
            suites::ALL.join(", ")
        ));
    }
    if suites.is_empty() {
        return Err("no suite named".into());
    }
    let needs_server = suites.iter().any(|s| !matches!(s.as_str(), "serve" | "python-sdk"));
    if needs_server && url.is_none() {
        return Err("no server: pass --url or set MSB_SERVER_URL".into());
    }
    let mut target = Target::new(url, mode);
    target.api_key = env("MSB_API_KEY");
    target.standin = standin;
    target.control = control.map(Control::new);
    target.python_image = python_image;
    target.node_image = node_image;
    target.msbw_bin = msbw_bin.map(PathBuf::from);
    target.msbw_unavailable = msbw_unavailable;
    if let Some(ns) = namespace {
        target.namespace = ns;
    }
    target.cache = cache.or_else(|| {
        std::env::var_os("HOME")
            .filter(|h| !h.is_empty())
            .map(|home| PathBuf::from(home).join(".cache").join("msbw-integration"))
    });
    let own_work_dir = work_dir.is_none();
    if let Some(dir) = work_dir {
        target.work_dir = dir;
    }
    if target.mode == Mode::Keyed && target.api_key.is_none() {
        return Err("keyed mode needs a key in MSB_API_KEY".into());
    }
    Ok(Some(Options {
        target,
        own_work_dir,
        suites,
        summary_file,
        allow_missing,
    }))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let options = match parse(&args) {
        Ok(Some(options)) => options,
        Ok(None) => {
            println!("{HELP}");
            return ExitCode::SUCCESS;
        }
        Err(why) => {
            eprintln!("msbw-integration: {why}\n\n{HELP}");
            return ExitCode::from(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build();
    let runtime = match runtime {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("msbw-integration: cannot build the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let started = std::time::Instant::now();
    let reports = runtime.block_on(async {
        let mut reports = Vec::new();
        for suite in &options.suites {
            reports.extend(suites::run(suite, &options.target).await);
        }
        reports
    });
    let ok = summarise(&reports, &options, started.elapsed());
    let work_dir = &options.target.work_dir;
    if work_dir.exists() {
        if ok && options.own_work_dir {
            let _ = std::fs::remove_dir_all(work_dir);
        } else if !ok {
            println!("  the suites' files (msbw serve logs) are in {}", work_dir.display());
        }
    }
    if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

/// Prints the summary and writes the summary file; whether the run passed.
fn summarise(reports: &[SuiteReport], options: &Options, took: std::time::Duration) -> bool {
    println!(
        "\n== msbw-integration summary ({:.1} s), against {}",
        took.as_secs_f64(),
        options.target.describe()
    );
    let mut ok = !reports.is_empty();
    let against = options.target.describe();
    for r in reports {
        let status = r.status();
        println!(
            "  {:<12} {:<18} {} passed ({} only after retries), {} failed, {} not applicable{}{}",
            r.suite,
            match status {
                Status::Passed => "passed",
                Status::Failed => "FAILED",
                Status::NotYetAvailable => "NOT YET AVAILABLE",
                Status::NotApplicable => "not applicable",
            },
            r.passed(),
            r.retried(),
            r.failed(),
            r.not_applicable_count(),
            if r.against == against {
                String::new()
            } else {
                format!(", against {}", r.against)
            },
            r.not_yet_available
                .as_ref()
                .map(|w| format!(": {w}"))
                .unwrap_or_default()
        );
        match status {
            Status::Failed => ok = false,
            Status::NotYetAvailable if !options.allow_missing => ok = false,
            _ => {}
        }
    }
    if let Some(path) = &options.summary_file {
        let lines: Vec<String> = reports.iter().map(SuiteReport::summary_line).collect();
        if let Err(e) = std::fs::write(path, lines.join("\n") + "\n") {
            eprintln!(
                "msbw-integration: cannot write the summary file {}: {e}",
                path.display()
            );
            ok = false;
        }
    }
    println!("  result: {}", if ok { "PASSED" } else { "FAILED" });
    ok
}
