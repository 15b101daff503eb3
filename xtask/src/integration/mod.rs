//! `cargo xtask test-integration`: the wrapper against the REAL microsandbox server 0.2.6 and its
//! real agent, on a machine that cannot boot microVMs (issue 8; docs/testing.md).
//!
//! 1. Checks the prerequisites (cc, python3, node), then builds what is missing into the cache
//!    ([`cache`]): the TEST-ONLY libkrun stand-in from `xtask/standin/krun_standin.c`, and
//!    `microsandbox-cli` / `microsandbox-portal` 0.2.6 from crates.io.
//! 2. Builds the suites, the separate program `msbw-integration`.
//! 3. For each mode (dev, keyed) starts a server ([`server`]) on a free loopback port with a
//!    private `MICROSANDBOX_HOME`, offers it to the suites through a control socket
//!    ([`control`]: restart, keys), runs the suites against it, and stops it.
//! 4. Runs the suites of `msbw serve` (`serve`, `python-sdk`), which start the `msbw` binary
//!    themselves, in dev mode and with a key.
//! 5. Ends every process the run started and checks that none is left ([`procs`], [`run`]),
//!    also on failure and on Ctrl-C; prints the summary.
//!
//! With `MSB_SERVER_URL` set (and `MSB_API_KEY` if the server wants one) steps 1 and 3 are
//! skipped: the suites run against that server.

mod cache;
mod control;
mod minihttp;
mod prereqs;
mod procs;
mod run;
mod server;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::{Arc, Mutex, PoisonError};

use std::time::{Duration, Instant};

pub(crate) use run::{REAPER_TASK, reaper_main};

use control::Control;
use msbw_config::redact_url;
use msbw_harness::Flags;
use run::Run;
use server::{LocalServer, Mode};

/// Every suite of `msbw-integration`, in the order they run.
const SUITES: [&str; 6] = ["conformance", "auth", "defences", "facade", "serve", "python-sdk"];
/// The suites run against each local server mode.
const DEV_SUITES: [&str; 3] = ["conformance", "defences", "facade"];
const KEYED_SUITES: [&str; 4] = ["conformance", "auth", "defences", "facade"];
/// The suites run against `msbw serve` (which they start themselves, in both modes).
const SERVE_SUITES: [&str; 2] = ["serve", "python-sdk"];

const HELP: &str = "cargo xtask test-integration [OPTIONS]

Runs the wrapper against the REAL microsandbox server 0.2.6 and its real agent. On a machine
without microVMs the server runs on a TEST-ONLY libkrun stand-in with NO isolation (the agent runs
on the host). Builds everything it needs into a cache (~/.cache/msbw-integration, or
$MSBW_INTEGRATION_CACHE): about 5 minutes the first time, seconds afterwards. See docs/testing.md.

options:
  --suite LIST      only these suites (comma-separated; repeatable):
                    conformance, auth, defences, facade, serve, python-sdk
  --mode LIST       only these server modes: dev, keyed (default: both)
  --allow-missing   suites whose crate or binary does not exist yet are reported, but do not
                    fail the run
  --keep            keep the run's folder (server logs, MICROSANDBOX_HOME) even when all passed
  --rebuild         rebuild the stand-in and reinstall the server and agent

environment:
  MSB_SERVER_URL, MSB_API_KEY   run the suites against that server instead (no local build)
  MSBW_INTEGRATION_CACHE        the build cache (default ~/.cache/msbw-integration)
  MSBW_BIN                      an msbw binary to use for the msbw serve suites (default: build it)";

/// The command line.
#[derive(Debug, Default)]
struct Options {
    suites: Option<Vec<String>>,
    modes: Option<Vec<Mode>>,
    allow_missing: bool,
    keep: bool,
    rebuild: bool,
    help: bool,
}

impl Options {
    fn parse(args: &[String]) -> Result<Options, String> {
        let mut options = Options::default();
        let mut flags = Flags::new(args);
        while let Some(flag) = flags.next_flag() {
            match flag {
                "--suite" | "--suites" => {
                    let list = flags.value()?;
                    for suite in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                        if !SUITES.contains(&suite) {
                            return Err(format!("unknown suite {suite:?}; the suites are {}", SUITES.join(", ")));
                        }
                        options.suites.get_or_insert_with(Vec::new).push(suite.to_owned());
                    }
                }
                "--mode" | "--modes" => {
                    let list = flags.value()?;
                    for mode in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                        let mode = match mode {
                            "dev" => Mode::Dev,
                            "keyed" => Mode::Keyed,
                            other => return Err(format!("unknown mode {other:?}; the modes are dev, keyed")),
                        };
                        options.modes.get_or_insert_with(Vec::new).push(mode);
                    }
                }
                "--allow-missing" => options.allow_missing = true,
                "--keep" => options.keep = true,
                "--rebuild" => options.rebuild = true,
                "-h" | "--help" => options.help = true,
                other => return Err(format!("unknown option {other:?}\n\n{HELP}")),
            }
        }
        Ok(options)
    }

    /// The wanted suites among `candidates`.
    fn pick(&self, candidates: &[&str]) -> Vec<String> {
        candidates
            .iter()
            .filter(|s| self.suites.as_ref().is_none_or(|wanted| wanted.iter().any(|w| w == *s)))
            .map(|s| (*s).to_owned())
            .collect()
    }

    fn wants_mode(&self, mode: Mode) -> bool {
        self.modes.as_ref().is_none_or(|m| m.contains(&mode))
    }
}

/// `cargo xtask test-integration`.
pub(crate) fn main(args: &[String]) -> ExitCode {
    let options = match Options::parse(args) {
        Ok(options) => options,
        Err(why) => {
            eprintln!("xtask test-integration: {why}");
            return ExitCode::from(2);
        }
    };
    if options.help {
        println!("{HELP}");
        return ExitCode::SUCCESS;
    }
    match run(&options) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(why) => {
            eprintln!("\nxtask test-integration FAILED: {why}");
            ExitCode::FAILURE
        }
    }
}

/// The workspace root (xtask's parent).
fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_owned()
}

fn cargo() -> PathBuf {
    std::env::var_os("CARGO").map_or_else(|| PathBuf::from("cargo"), PathBuf::from)
}

fn env_nonempty(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// One line of the summary: what ran against what, and how it went.
#[derive(Debug, Clone)]
struct Row {
    against: String,
    suite: String,
    status: String,
    passed: u32,
    retried: u32,
    failed: u32,
    not_applicable: u32,
    detail: String,
}

impl Row {
    /// Reads a line of a summary file written by `msbw-integration --summary-file`.
    fn parse(line: &str) -> Option<Row> {
        let f: Vec<&str> = line.split('\t').collect();
        let [against, suite, status, passed, retried, failed, not_applicable, detail] = f.as_slice() else {
            return None;
        };
        Some(Row {
            against: (*against).to_owned(),
            suite: (*suite).to_owned(),
            status: (*status).to_owned(),
            passed: passed.parse().ok()?,
            retried: retried.parse().ok()?,
            failed: failed.parse().ok()?,
            not_applicable: not_applicable.parse().ok()?,
            detail: (*detail).to_owned(),
        })
    }

    fn failure(against: &str, suite: &str, detail: String) -> Row {
        Row {
            against: against.to_owned(),
            suite: suite.to_owned(),
            status: "failed".into(),
            passed: 0,
            retried: 0,
            failed: 1,
            not_applicable: 0,
            detail,
        }
    }
}

/// Timings for the summary.
#[derive(Debug, Default)]
struct Timings(Vec<(String, Duration)>);

impl Timings {
    fn add(&mut self, what: impl Into<String>, took: Duration) {
        self.0.push((what.into(), took));
    }
}

/// The suites' program, built, `msbw` if it builds, and the build cache (the Python SDK's venv
/// goes there).
struct Programs {
    suites: PathBuf,
    msbw: Result<PathBuf, String>,
    cache: Result<PathBuf, String>,
}

fn run(options: &Options) -> Result<bool, String> {
    let started = Instant::now();
    let root = workspace_root();
    let cargo = cargo();
    let mut timings = Timings::default();
    let mut rows = Vec::new();

    let external = env_nonempty("MSB_SERVER_URL");
    let bins = match &external {
        Some(url) => {
            eprintln!(
                "xtask: MSB_SERVER_URL is set: the suites run against {} (no local build, no local server)",
                redact_url(url)
            );
            None
        }
        None => {
            let cache = cache::root()?;
            prereqs::check_local_server(!cache::server_installed(&cache))?;
            let t = Instant::now();
            let src = root.join("xtask/standin/krun_standin.c");
            let (bins, steps) = cache::ensure(&cache, &src, &cargo, options.rebuild)?;
            for step in &steps {
                let how = if step.built { "built" } else { "cached" };
                eprintln!("xtask: {}: {how} ({:.1} s)", step.what, step.took.as_secs_f64());
                timings.add(
                    format!("{} ({how})", step.what.split(" ->").next().unwrap_or(&step.what)),
                    step.took,
                );
            }
            timings.add("build cache in total", t.elapsed());
            Some(bins)
        }
    };

    let run = Run::new(options.keep)?;
    let programs = build_programs(&cargo, &root, run.dir(), &mut timings)?;

    match (&external, &bins) {
        (Some(url), _) => {
            let suites = options.pick(&["conformance", "auth", "defences", "facade"]);
            let t = Instant::now();
            rows.extend(run_suites(&programs, &run, &suites, options, Target::External { url }));
            timings.add("suites against the external server", t.elapsed());
        }
        (None, Some(bins)) => {
            for mode in [Mode::Dev, Mode::Keyed] {
                let suites = options.pick(if mode == Mode::Dev { &DEV_SUITES } else { &KEYED_SUITES });
                if !options.wants_mode(mode) || suites.is_empty() {
                    continue;
                }
                let t = Instant::now();
                rows.extend(run_mode(bins, &programs, &run, mode, &suites, options)?);
                timings.add(format!("{} mode (server and suites)", mode.as_str()), t.elapsed());
            }
        }
        (None, None) => return Err("neither an external server nor a local build".into()),
    }
    let suites = options.pick(&SERVE_SUITES);
    if !suites.is_empty() {
        let t = Instant::now();
        rows.extend(run_suites(&programs, &run, &suites, options, Target::Serve));
        timings.add("msbw serve suites", t.elapsed());
    }

    let failed_so_far = rows.iter().any(|r| r.status == "failed");
    let dir = run.dir().to_owned();
    let t = Instant::now();
    let (ended, stray) = run.finish(options.keep || failed_so_far);
    timings.add("cleanup", t.elapsed());
    timings.add("total", started.elapsed());
    let clean = ended.left.is_empty() && stray.is_empty();
    Ok(print_summary(
        &rows,
        &ended,
        &stray,
        clean,
        &timings,
        options,
        (options.keep || failed_so_far).then_some(&dir),
    ))
}

/// Builds `msbw-integration`, and `msbw` for the serve suites (a failure there only makes those
/// suites unavailable).
fn build_programs(cargo: &Path, root: &Path, dir: &Path, timings: &mut Timings) -> Result<Programs, String> {
    let t = Instant::now();
    let suites = cargo_build_bin(cargo, root, "msbw-integration", "msbw-integration", None)?;
    timings.add("build msbw-integration", t.elapsed());
    let msbw = match env_nonempty("MSBW_BIN") {
        Some(path) => Ok(PathBuf::from(path)),
        None => {
            let t = Instant::now();
            let log = dir.join("build-msbw.log");
            let built = cargo_build_bin(cargo, root, "msbw-cli", "msbw", Some(&log));
            timings.add("build msbw (for the msbw serve suites)", t.elapsed());
            built
        }
    };
    if let Err(why) = &msbw {
        eprintln!("xtask: msbw is not available: {why}");
    }
    Ok(Programs {
        suites,
        msbw,
        cache: cache::root(),
    })
}

/// `cargo build -p PACKAGE --bin BIN`; the path of the binary. With `log`, cargo's messages go
/// there instead of the terminal, and a failure quotes its first error.
fn cargo_build_bin(cargo: &Path, root: &Path, package: &str, bin: &str, log: Option<&Path>) -> Result<PathBuf, String> {
    eprintln!("xtask: cargo build -p {package} --bin {bin}");
    let mut command = Command::new(cargo);
    command
        .args([
            "build",
            "-p",
            package,
            "--bin",
            bin,
            "--message-format=json-render-diagnostics",
        ])
        .current_dir(root)
        .stdin(Stdio::null())
        .stdout(Stdio::piped());
    if let Some(log) = log {
        let file = std::fs::File::create(log).map_err(|e| format!("cannot create {}: {e}", log.display()))?;
        command.stderr(file);
    }
    let out = command
        .output()
        .map_err(|e| format!("cannot run {}: {e}", cargo.display()))?;
    if !out.status.success() {
        let first_error = log
            .and_then(|l| std::fs::read_to_string(l).ok())
            .and_then(|text| text.lines().find(|l| l.starts_with("error")).map(str::to_owned))
            .map(|e| format!(": {e}"))
            .unwrap_or_default();
        return Err(format!(
            "cargo build -p {package} failed{first_error} (run it to see every error)"
        ));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    stdout
        .lines()
        .filter(|l| l.contains("\"reason\":\"compiler-artifact\""))
        .filter_map(executable_of)
        .find(|p| p.file_name().and_then(|n| n.to_str()) == Some(bin))
        .ok_or_else(|| format!("cargo build -p {package} named no executable {bin}"))
}

/// The `"executable"` of a cargo JSON message.
fn executable_of(line: &str) -> Option<PathBuf> {
    let start = line.find("\"executable\":\"")? + "\"executable\":\"".len();
    let mut path = String::new();
    let mut chars = line.get(start..)?.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Some(PathBuf::from(path)),
            '\\' => path.push(chars.next()?),
            c => path.push(c),
        }
    }
    None
}

/// What the suites run against.
enum Target<'a> {
    /// A local server of this run.
    Local {
        url: String,
        mode: Mode,
        key: Option<String>,
        control: PathBuf,
        python_image: PathBuf,
        node_image: PathBuf,
    },
    /// `MSB_SERVER_URL` (and `MSB_API_KEY`, inherited).
    External { url: &'a str },
    /// `msbw serve` (the suites start it themselves).
    Serve,
}

/// Starts a server in `mode`, runs the suites against it, stops it and ends its sandboxes.
fn run_mode(
    bins: &cache::Binaries,
    programs: &Programs,
    run: &Run,
    mode: Mode,
    suites: &[String],
    options: &Options,
) -> Result<Vec<Row>, String> {
    let dir = run.dir().join(mode.as_str());
    let t = Instant::now();
    let server = LocalServer::start(bins, &dir, run.id(), mode)?;
    eprintln!(
        "\nxtask: msbserver {} ({} mode) answers at {} after {:.2} s (pid {}; logs and MICROSANDBOX_HOME in {})",
        cache::MSB_VERSION,
        mode.as_str(),
        server.url(),
        t.elapsed().as_secs_f64(),
        server.pid().unwrap_or(0),
        dir.display()
    );
    let key = match mode {
        Mode::Dev => None,
        Mode::Keyed => Some(server.keygen(None)?),
    };
    let target = Target::Local {
        url: server.url(),
        mode,
        key,
        control: dir.join("control.sock"),
        python_image: server.rootfs("python"),
        node_image: server.rootfs("node"),
    };
    let server = Arc::new(Mutex::new(server));
    let control = Control::start(&dir.join("control.sock"), Arc::clone(&server))?;
    let rows = run_suites(programs, run, suites, options, target);
    drop(control);
    server.lock().unwrap_or_else(PoisonError::into_inner).terminate();
    let ended = procs::end_all(run.id(), Duration::from_secs(5));
    if ended.count() > 0 {
        eprintln!(
            "xtask: after the {} mode suites, the server's leftover processes: {ended}",
            mode.as_str()
        );
    }
    if !ended.left.is_empty() {
        return Err(format!(
            "processes of the {} mode server are still running: {ended}",
            mode.as_str()
        ));
    }
    Ok(rows)
}

/// Runs `msbw-integration` with `suites` against `target`, and reads its summary.
fn run_suites(programs: &Programs, run: &Run, suites: &[String], options: &Options, target: Target<'_>) -> Vec<Row> {
    let label = match &target {
        Target::Local { mode, .. } => mode.as_str().to_owned(),
        Target::External { .. } => "external".to_owned(),
        Target::Serve => "msbw-serve".to_owned(),
    };
    let summary = run.dir().join(format!("summary-{label}.tsv"));
    let mut command = Command::new(&programs.suites);
    command
        .arg("--suites")
        .arg(suites.join(","))
        .arg("--summary-file")
        .arg(&summary)
        .arg("--work-dir")
        .arg(run.dir().join(format!("suites-{label}")))
        .env(procs::MARKER_VAR, run.id())
        .stdin(Stdio::null());
    if options.allow_missing {
        command.arg("--allow-missing");
    }
    match &programs.msbw {
        Ok(msbw) => command.arg("--msbw-bin").arg(msbw),
        Err(why) => command.arg("--msbw-unavailable").arg(why),
    };
    if let Ok(cache) = &programs.cache {
        command.arg("--cache").arg(cache);
    }
    match &target {
        Target::Local {
            url,
            mode,
            key,
            control,
            python_image,
            node_image,
        } => {
            command
                .args(["--url", url, "--mode", mode.as_str(), "--standin", "--control"])
                .arg(control)
                .arg("--python-image")
                .arg(python_image)
                .arg("--node-image")
                .arg(node_image)
                .env_remove("MSB_SERVER_URL")
                .env_remove("MSB_PYTHON_IMAGE")
                .env_remove("MSB_NODE_IMAGE");
            match key {
                // Through the environment: a command line is visible to every user.
                Some(key) => command.env("MSB_API_KEY", key),
                None => command.env_remove("MSB_API_KEY"),
            };
        }
        Target::External { url } => {
            command.args(["--url", url, "--mode", "external"]);
        }
        Target::Serve => {
            command.env_remove("MSB_SERVER_URL").env_remove("MSB_API_KEY");
        }
    }
    eprintln!(
        "\nxtask: running the suites {} against the {label} target",
        suites.join(", ")
    );
    let status = command.status();
    let rows: Vec<Row> = std::fs::read_to_string(&summary)
        .unwrap_or_default()
        .lines()
        .filter_map(Row::parse)
        .collect();
    match status {
        Ok(status) if rows.is_empty() => vec![Row::failure(
            &label,
            &suites.join(","),
            format!("msbw-integration wrote no summary ({status})"),
        )],
        Ok(status)
            if !status.success()
                && !rows
                    .iter()
                    .any(|r| r.status == "failed" || r.status == "not-yet-available") =>
        {
            let mut rows = rows;
            rows.push(Row::failure(
                &label,
                "msbw-integration",
                format!("exited with {status} although no suite failed"),
            ));
            rows
        }
        Ok(_) => rows,
        Err(e) => vec![Row::failure(
            &label,
            &suites.join(","),
            format!("cannot run {}: {e}", programs.suites.display()),
        )],
    }
}

/// Prints the summary; whether the run passed.
fn print_summary(
    rows: &[Row],
    ended: &procs::Ended,
    stray: &[procs::Proc],
    clean: bool,
    timings: &Timings,
    options: &Options,
    kept: Option<&PathBuf>,
) -> bool {
    let failed: Vec<&Row> = rows.iter().filter(|r| r.status == "failed").collect();
    let missing: Vec<&Row> = rows.iter().filter(|r| r.status == "not-yet-available").collect();
    let width = rows.iter().map(|r| r.against.len()).max().unwrap_or(10).max(10);
    println!("\n== cargo xtask test-integration: summary ==");
    println!("{:<width$}  {:<12} {:<18} checks", "against", "suite", "result");
    for r in rows {
        let counts = format!(
            "{} passed ({} after retries), {} failed{}",
            r.passed,
            r.retried,
            r.failed,
            if r.not_applicable > 0 {
                format!(", {} not applicable", r.not_applicable)
            } else {
                String::new()
            }
        );
        let result = match r.status.as_str() {
            "passed" => "passed",
            "failed" => "FAILED",
            "not-yet-available" => "NOT YET AVAILABLE",
            "not-applicable" => "not applicable",
            other => other,
        };
        let detail = if r.detail.is_empty() {
            counts
        } else {
            format!("{counts}; {}", r.detail)
        };
        println!("{:<width$}  {:<12} {:<18} {detail}", r.against, r.suite, result);
    }
    let stray_text = if stray.is_empty() {
        String::new()
    } else {
        let s: Vec<String> = stray.iter().map(ToString::to_string).collect();
        format!(
            "; processes mentioning the run's folder are STILL RUNNING: {}",
            s.join(", ")
        )
    };
    println!(
        "cleanup: processes of this run at the end: {ended}{stray_text}{}",
        if clean {
            "; checked: no msbserver, msbrun, portal or other process of this run is left"
        } else {
            ""
        }
    );
    let times: Vec<String> = timings
        .0
        .iter()
        .map(|(what, took)| format!("{what} {:.1} s", took.as_secs_f64()))
        .collect();
    println!("timings: {}", times.join("; "));
    if let Some(dir) = kept {
        println!(
            "logs (server logs, MICROSANDBOX_HOME, summaries) kept in {}",
            dir.display()
        );
    }
    let mut problems = Vec::new();
    if !failed.is_empty() {
        problems.push(format!("{} suite(s) failed", failed.len()));
    }
    if !missing.is_empty() && !options.allow_missing {
        let names: Vec<&str> = missing.iter().map(|r| r.suite.as_str()).collect();
        problems.push(format!(
            "{} suite(s) not yet available ({}); pass --allow-missing to accept that while they are being built",
            missing.len(),
            names.join(", ")
        ));
    }
    if !clean {
        problems.push("processes of this run were left running".into());
    }
    if rows.is_empty() {
        problems.push("no suite ran".into());
    }
    if problems.is_empty() {
        let note = if missing.is_empty() {
            String::new()
        } else {
            format!(
                " ({} suite(s) not yet available, allowed by --allow-missing)",
                missing.len()
            )
        };
        println!("result: PASSED{note}");
        true
    } else {
        println!("result: FAILED: {}", problems.join("; "));
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn options_parse_and_unknown_names_are_refused() {
        let o = Options::parse(&args(&["--suite", "auth,defences", "--mode=keyed", "--allow-missing"])).unwrap();
        assert_eq!(o.pick(&KEYED_SUITES), vec!["auth", "defences"]);
        assert!(o.wants_mode(Mode::Keyed) && !o.wants_mode(Mode::Dev));
        assert!(o.allow_missing);
        let all = Options::parse(&[]).unwrap();
        assert_eq!(all.pick(&DEV_SUITES), DEV_SUITES.to_vec());
        assert!(
            Options::parse(&args(&["--suite", "nope"]))
                .unwrap_err()
                .contains("unknown suite")
        );
        assert!(
            Options::parse(&args(&["--mode"]))
                .unwrap_err()
                .contains("needs a value")
        );
        assert!(
            Options::parse(&args(&["--frobnicate"]))
                .unwrap_err()
                .contains("unknown option")
        );
    }

    #[test]
    fn summary_rows_are_read() {
        let row = Row::parse("dev\tconformance\tpassed\t13\t2\t0\t0\tsome detail").unwrap();
        assert_eq!((row.passed, row.retried, row.failed), (13, 2, 0));
        assert!(Row::parse("too\tfew").is_none());
        assert!(Row::parse("a\tb\tc\tx\t0\t0\t0\td").is_none());
    }

    #[test]
    fn executables_are_found_in_cargo_messages() {
        let line = r#"{"reason":"compiler-artifact","target":{"name":"msbw-integration"},"executable":"/t/debug/msbw-integration","fresh":true}"#;
        assert_eq!(executable_of(line), Some(PathBuf::from("/t/debug/msbw-integration")));
        assert_eq!(executable_of(r#"{"executable":null}"#), None);
        assert_eq!(executable_of(r#"{"executable":"/a\\b"}"#), Some(PathBuf::from("/a\\b")));
    }

    #[test]
    fn credentials_are_redacted() {
        assert_eq!(redact_url("http://user:pw@host:1/x"), "http://***@host:1/x");
        assert_eq!(redact_url("http://host:1"), "http://host:1");
    }
}
