//! `msbw serve` end to end: the real `msbw` binary, started by this suite on a free loopback
//! port over the local backend, in dev mode and with a server key. Against each: the backend
//! conformance suite and the facade suite through `HttpBackend`, unchanged; then this suite's
//! own checks: the binary starts and answers, keys minted by `msbw serve keygen` are enforced,
//! and SIGTERM stops every sandbox and exits 0, leaving no process behind.

use std::path::Path;
use std::time::{Duration, Instant};

use msbw_backend::{CodeRequest, ErrorKind, ListFilter, SandboxBackend, Template};

use crate::msbw_serve::{self, ServeProcess};
use crate::report::{Outcome, SuiteReport, ensure};
use crate::suites::{CHECK_LIMIT, conformance, expect_kind, facade};
use crate::target::{Mode, Target};

/// How long `msbw serve` may take to stop its sandboxes and exit after SIGTERM.
const STOP_WAIT: Duration = Duration::from_secs(60);
/// A namespace the namespace-scoped key is not for.
const OTHER_NAMESPACE: &str = "msbw-it-other";

/// What the summary says the suite ran against before a server exists.
const AGAINST: &str = "msbw serve (local backend)";

/// The suite: for dev mode and keyed mode, the `conformance`, `facade` and `serve` reports.
pub async fn run(target: &Target) -> Vec<SuiteReport> {
    let msbw = match msbw_serve::available(target).await {
        Ok(msbw) => msbw,
        Err(why) => return vec![SuiteReport::not_yet_available("serve", AGAINST, why)],
    };
    let mut reports = Vec::new();
    for mode in [Mode::Dev, Mode::Keyed] {
        reports.extend(one_mode(target, &msbw, mode).await);
    }
    reports
}

/// A report of the `serve` suite that failed before it could run its checks.
fn failed(against: &str, check: &str, took: Option<Duration>, why: String) -> SuiteReport {
    let mut report = SuiteReport::new("serve", against);
    report.record(check, took, Outcome::Failed(why));
    report
}

/// Starts `msbw serve` in `mode`: the process, the target for the suites, and how long the
/// start took.
pub(crate) async fn start_serve(
    target: &Target,
    msbw: &Path,
    mode: Mode,
    folder: &str,
) -> Result<(ServeProcess, Target, Duration), String> {
    let started = Instant::now();
    let server_key = match mode {
        Mode::Keyed => Some(msbw_serve::random_key()?),
        _ => None,
    };
    let dir = target.work_dir.join(format!("{folder}-{mode}"));
    let serve = ServeProcess::start(msbw, server_key.as_deref(), &dir).await?;
    let client_key = match mode {
        Mode::Keyed => Some(serve.keygen("*", "1h").await?),
        _ => None,
    };
    let st = target.serve_at(serve.url().to_owned(), mode, client_key);
    // Ready when its health route answers, as for the real server.
    let backend = st.backend()?;
    let mut last = String::new();
    while started.elapsed() < Duration::from_secs(30) {
        match backend.health().await {
            Ok(_) => {
                println!(
                    "\n== msbw serve ({mode} mode) answers at {} (pid {}, log {})",
                    serve.url(),
                    serve.pid(),
                    serve.log_path().display()
                );
                return Ok((serve, st, started.elapsed()));
            }
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(format!(
        "msbw serve at {} never answered its health route: {last}",
        serve.url()
    ))
}

async fn one_mode(target: &Target, msbw: &Path, mode: Mode) -> Vec<SuiteReport> {
    let (serve, st, took) = match start_serve(target, msbw, mode, "serve").await {
        Ok(started) => started,
        Err(why) => {
            return vec![failed(
                &format!("{AGAINST}, {mode} mode"),
                "the_msbw_binary_serves_on_a_free_loopback_port",
                None,
                why,
            )];
        }
    };
    let keys = match mode {
        Mode::Keyed => keys_are_enforced(&st, &serve).await,
        _ => dev_mode_needs_no_key(&st).await,
    };
    let mut reports = vec![conformance::run(&st).await, facade::run(&st).await];

    let mut report = SuiteReport::new("serve", st.describe());
    report.record(
        "the_msbw_binary_serves_on_a_free_loopback_port",
        Some(took),
        Outcome::Passed,
    );
    let keys_check = match mode {
        Mode::Keyed => "keys_minted_by_msbw_serve_keygen_are_enforced",
        _ => "dev_mode_needs_no_key",
    };
    report.record(
        keys_check,
        None,
        match keys {
            Ok(()) => Outcome::Passed,
            Err(why) => Outcome::Failed(why),
        },
    );
    report
        .check(
            "sigterm_stops_every_sandbox_and_exits_0_leaving_no_process",
            CHECK_LIMIT,
            sigterm(&st, serve),
        )
        .await;
    reports.push(report);
    reports
}

/// Dev mode: calls without a key are served.
async fn dev_mode_needs_no_key(st: &Target) -> Result<(), String> {
    st.backend_with_key(None)?
        .list(&ListFilter::default())
        .await
        .map(drop)
        .map_err(|e| format!("listing without a key failed in dev mode: {e}"))
}

/// Keyed mode: no key is refused; a key minted by `msbw serve keygen` for one namespace works
/// there and nowhere else; the key for every namespace works everywhere.
async fn keys_are_enforced(st: &Target, serve: &ServeProcess) -> Result<(), String> {
    expect_kind(
        "listing without a key",
        ErrorKind::Unauthorized,
        st.backend_with_key(None)?.list(&ListFilter::default()).await,
    )?;
    let scoped_key = serve.keygen(&st.namespace, "1h").await?;
    let scoped = st.backend_with_key(Some(&scoped_key))?;
    scoped
        .list(&ListFilter::namespace(&st.namespace))
        .await
        .map_err(|e| format!("a key minted for {} was refused there: {e}", st.namespace))?;
    expect_kind(
        "listing another namespace with a key for one",
        ErrorKind::Unauthorized,
        scoped.list(&ListFilter::namespace(OTHER_NAMESPACE)).await,
    )?;
    expect_kind(
        "listing every namespace with a key for one",
        ErrorKind::Unauthorized,
        scoped.list(&ListFilter::default()).await,
    )?;
    st.backend()?
        .list(&ListFilter::default())
        .await
        .map(drop)
        .map_err(|e| format!("the key for every namespace was refused: {e}"))
}

/// Starts a python and a node sandbox, then SIGTERM: `msbw serve` stops exactly those two
/// (nothing the other suites started is left), exits 0, and none of its processes (the
/// sandboxes') outlives it.
async fn sigterm(st: &Target, serve: ServeProcess) -> Result<(), String> {
    let backend = st.backend()?;
    let ids = [st.id("sv", "term-py")?, st.id("sv", "term-js")?];
    let mut prepared = Ok(());
    for (id, template) in ids.iter().zip([Template::Python, Template::Node]) {
        let started = backend.start(&st.spec(id.clone(), template)).await;
        let ran = match started {
            Ok(()) => backend
                .run_code(
                    id,
                    &CodeRequest {
                        language: template,
                        code: "1 + 1".into(),
                        timeout: Duration::from_secs(30),
                    },
                )
                .await
                .map(drop),
            Err(e) => Err(e),
        };
        if let Err(e) = ran {
            prepared = Err(format!("starting {id} failed: {e}"));
            break;
        }
    }
    let listed = backend
        .list(&ListFilter::namespace(&st.namespace))
        .await
        .map_err(|e| format!("listing failed: {e}"));
    let processes = serve.descendants();
    // Whatever happened, the server is stopped now.
    let exited = serve.terminate(STOP_WAIT).await?;
    prepared?;
    let listed = listed?;
    ensure(listed.len() == 2, || {
        let names: Vec<String> = listed.iter().map(|s| s.id.to_string()).collect();
        format!(
            "before SIGTERM exactly the 2 sandboxes of this check should run (the other suites stop theirs), ran: {}",
            names.join(", ")
        )
    })?;
    ensure(processes.len() >= 2, || {
        format!("msbw serve should have sandbox processes before SIGTERM: {processes:?}")
    })?;
    ensure(exited.status.success(), || {
        format!(
            "msbw serve exited with {} after SIGTERM: {}",
            exited.status,
            exited.log.trim()
        )
    })?;
    ensure(exited.log.contains("stopped 2 sandboxes"), || {
        format!("msbw serve should say it stopped 2 sandboxes: {}", exited.log.trim())
    })?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let alive: Vec<String> = processes
            .iter()
            .filter(|p| p.is_alive())
            .map(ToString::to_string)
            .collect();
        if alive.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!(
                "processes of msbw serve outlived it by 10 s: {}",
                alive.join(", ")
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "            (msbw serve exited {:.2} s after SIGTERM; {} processes of its sandboxes ended with it)",
        exited.took.as_secs_f64(),
        processes.len()
    );
    Ok(())
}
