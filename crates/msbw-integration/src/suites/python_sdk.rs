//! The upstream Python SDK `microsandbox==0.1.8` from PyPI, unmodified, against the real `msbw`
//! binary's `serve` (local backend), in dev mode and with a key minted by `msbw serve keygen`.
//!
//! The SDK is installed once into a virtual environment in the integration cache
//! (`CACHE/python-sdk-0.1.8`, built in a staging folder and renamed into place, so an interrupted
//! install leaves nothing half-done) and reused afterwards. The script is the one of the cargo
//! test (`crates/msbw-cli/tests/sdk/sdk_check.py`): python and node sandboxes, REPL state,
//! exceptions, commands with exit codes, metrics, and stopping on exit.

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use msbw_backend::{ListFilter, SandboxBackend};
use tokio::process::Command;

use crate::msbw_serve;
use crate::report::{Outcome, SuiteReport, ensure};
use crate::suites::CHECK_LIMIT;
use crate::suites::serve::start_serve;
use crate::target::{Mode, Target};

/// The SDK, exactly.
const SDK: &str = "microsandbox==0.1.8";
/// Its version, as the installed package reports it.
const SDK_VERSION: &str = "0.1.8";
/// The venv's folder in the cache.
const VENV: &str = "python-sdk-0.1.8";
/// The script, shared with the cargo test.
const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../msbw-cli/tests/sdk/sdk_check.py");
/// How long the script may run.
const SCRIPT_LIMIT: Duration = Duration::from_secs(240);
/// How long the installation may take (pip downloads from PyPI).
const INSTALL_LIMIT: Duration = Duration::from_secs(600);

/// What the summary says the suite ran against before a server exists.
const AGAINST: &str = "msbw serve (local backend), with the Python SDK microsandbox 0.1.8";

/// The suite: one report per mode (dev, keyed).
pub async fn run(target: &Target) -> Vec<SuiteReport> {
    let msbw = match msbw_serve::available(target).await {
        Ok(msbw) => msbw,
        Err(why) => {
            return vec![SuiteReport::not_yet_available(
                "python-sdk",
                AGAINST,
                format!("needs msbw serve: {why}"),
            )];
        }
    };
    let started = Instant::now();
    let venv = match tokio::time::timeout(INSTALL_LIMIT, sdk_python(target)).await {
        Ok(result) => result,
        Err(_) => Err(format!("installing {SDK} did not finish within {INSTALL_LIMIT:?}")),
    };
    let install_took = started.elapsed();
    let mut reports = Vec::new();
    for mode in [Mode::Dev, Mode::Keyed] {
        reports.push(one_mode(target, &msbw, mode, &venv, install_took).await);
    }
    reports
}

async fn one_mode(
    target: &Target,
    msbw: &Path,
    mode: Mode,
    venv: &Result<(PathBuf, String), String>,
    install_took: Duration,
) -> SuiteReport {
    let served = start_serve(target, msbw, mode, "python-sdk").await;
    let against = match &served {
        Ok((_, st, _)) => format!("{}, with the Python SDK microsandbox 0.1.8", st.describe()),
        Err(_) => format!("{AGAINST}, {mode} mode"),
    };
    let mut report = SuiteReport::new("python-sdk", against);
    let python = match venv {
        Ok((python, how)) => {
            println!("            ({SDK} {how})");
            report.record(
                "the_sdk_0_1_8_is_installed_from_pypi",
                Some(install_took),
                Outcome::Passed,
            );
            Some(python)
        }
        Err(why) => {
            report.record(
                "the_sdk_0_1_8_is_installed_from_pypi",
                Some(install_took),
                Outcome::Failed(why.clone()),
            );
            None
        }
    };
    let (serve, st, took) = match served {
        Ok(served) => served,
        Err(why) => {
            report.record("msbw_serve_starts", None, Outcome::Failed(why));
            return report;
        }
    };
    report.record("msbw_serve_starts", Some(took), Outcome::Passed);
    match python {
        Some(python) => {
            report
                .check("sdk_check_py_passes_unmodified", CHECK_LIMIT, async {
                    // The SDK's key: minted by `msbw serve keygen` for the namespace it uses.
                    let key = match mode {
                        Mode::Keyed => Some(serve.keygen(&st.namespace, "1h").await?),
                        _ => None,
                    };
                    run_script(python, &st, key.as_deref()).await
                })
                .await;
        }
        None => report.record(
            "sdk_check_py_passes_unmodified",
            None,
            Outcome::Failed("the SDK is not installed".into()),
        ),
    }
    report
        .check("the_sdk_left_no_sandbox_running", CHECK_LIMIT, async {
            let listed = st
                .backend()?
                .list(&ListFilter::namespace(&st.namespace))
                .await
                .map_err(|e| format!("listing failed: {e}"))?;
            ensure(listed.is_empty(), || {
                let names: Vec<String> = listed.iter().map(|s| s.id.to_string()).collect();
                format!("still running after the script: {}", names.join(", "))
            })
        })
        .await;
    report
        .check("sigterm_stops_msbw_serve_and_it_exits_0", CHECK_LIMIT, async {
            let exited = serve.terminate(Duration::from_secs(60)).await?;
            ensure(exited.status.success(), || {
                format!("msbw serve exited with {}: {}", exited.status, exited.log.trim())
            })
        })
        .await;
    report
}

/// Runs the script with the venv's Python against `st`, with `key` as `MSB_API_KEY`.
async fn run_script(python: &Path, st: &Target, key: Option<&str>) -> Result<(), String> {
    let script = Path::new(SCRIPT);
    ensure(script.is_file(), || format!("the SDK script {SCRIPT} is missing"))?;
    let url = st.url.as_deref().ok_or_else(|| "no URL".to_owned())?;
    let dir = st.work_dir.join(format!("python-sdk-{}-cwd", st.mode));
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let mut command = Command::new(python);
    command
        .arg(script)
        .current_dir(&dir)
        .env("MSB_SERVER_URL", url)
        .env_remove("MSB_API_KEY")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    if let Some(key) = key {
        command.env("MSB_API_KEY", key);
    }
    let out = match tokio::time::timeout(SCRIPT_LIMIT, command.output()).await {
        Ok(Ok(out)) => out,
        Ok(Err(e)) => return Err(format!("cannot run {}: {e}", python.display())),
        Err(_) => return Err(format!("the SDK script did not finish within {SCRIPT_LIMIT:?}")),
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure(out.status.success() && stdout.contains("SDK OK"), || {
        format!(
            "sdk_check.py failed ({}): stdout: {} stderr: {}",
            out.status,
            stdout.trim(),
            tail(&stderr, 30)
        )
    })
}

/// The last `n` lines of `text`.
fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.trim().lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The venv's Python with the SDK, installed into the cache if it is not there yet; and
/// whether it was installed or reused.
async fn sdk_python(target: &Target) -> Result<(PathBuf, String), String> {
    let cache = target
        .cache
        .as_deref()
        .ok_or_else(|| "no integration cache: set MSBW_INTEGRATION_CACHE or HOME".to_owned())?;
    let venv = cache.join(VENV);
    let python = venv.join("bin").join("python");
    if venv.join(".installed").is_file() {
        check_version(&python).await?;
        return Ok((python, format!("reused from {}", venv.display())));
    }
    let started = Instant::now();
    std::fs::create_dir_all(cache).map_err(|e| format!("cannot create {}: {e}", cache.display()))?;
    remove_abandoned_stagings(cache);
    let staging = cache.join(format!(".{VENV}.staging-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    let installed = install(&staging).await;
    if let Err(why) = installed {
        let _ = std::fs::remove_dir_all(&staging);
        return Err(why);
    }
    // An earlier, interrupted install (without the marker) is replaced.
    if venv.exists() && !venv.join(".installed").is_file() {
        let _ = std::fs::remove_dir_all(&venv);
    }
    if let Err(e) = std::fs::rename(&staging, &venv) {
        let _ = std::fs::remove_dir_all(&staging);
        // Another run may have installed it meanwhile.
        if !venv.join(".installed").is_file() {
            return Err(format!("cannot move the venv into {}: {e}", venv.display()));
        }
    }
    check_version(&python).await?;
    Ok((
        python,
        format!(
            "installed from PyPI into {} in {:.1} s",
            venv.display(),
            started.elapsed().as_secs_f64()
        ),
    ))
}

/// Removes the staging folders of installs whose process is gone (interrupted runs).
fn remove_abandoned_stagings(cache: &Path) {
    let Ok(entries) = std::fs::read_dir(cache) else {
        return;
    };
    let start = format!(".{VENV}.staging-");
    for entry in entries.flatten() {
        let name = entry.file_name();
        let pid = name
            .to_str()
            .and_then(|n| n.strip_prefix(&start))
            .and_then(|p| p.parse::<u32>().ok());
        if let Some(pid) = pid
            && !Path::new(&format!("/proc/{pid}")).exists()
        {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// What `command` printed, with nothing on its stdin; `program` names it if it cannot run.
async fn output(command: &mut Command, program: &str) -> Result<Output, String> {
    command
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| format!("cannot run {program}: {e}"))
}

/// `python3 -m venv DIR`, then `pip install microsandbox==0.1.8`, then the marker.
async fn install(dir: &Path) -> Result<(), String> {
    let out = output(
        Command::new("python3").args(["-m", "venv"]).arg(dir),
        "python3 (Debian: python3)",
    )
    .await?;
    ensure(out.status.success(), || {
        format!(
            "python3 -m venv failed (Debian: install python3-venv): {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )
    })?;
    let pip = ["-m", "pip", "install", "--quiet", "--disable-pip-version-check", SDK];
    let out = output(Command::new(dir.join("bin").join("python")).args(pip), "the venv's pip").await?;
    ensure(out.status.success(), || {
        format!(
            "pip install {SDK} failed: {}",
            tail(&String::from_utf8_lossy(&out.stderr), 20)
        )
    })?;
    std::fs::write(dir.join(".installed"), SDK).map_err(|e| format!("cannot write the venv's marker: {e}"))
}

/// The installed SDK is exactly 0.1.8 and imports.
async fn check_version(python: &Path) -> Result<(), String> {
    let script = "import importlib.metadata as m, microsandbox; print(m.version('microsandbox'))";
    let out = output(Command::new(python).args(["-c", script]), &python.display().to_string()).await?;
    let version = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    ensure(out.status.success() && version == SDK_VERSION, || {
        format!(
            "{} has microsandbox {version:?}, not {SDK_VERSION} ({}); delete the venv to reinstall",
            python.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shared_script_is_where_the_suite_looks() {
        assert!(Path::new(SCRIPT).is_file(), "{SCRIPT}");
    }

    #[test]
    fn tails_keep_the_last_lines() {
        assert_eq!(tail("a\nb\nc\n", 2), "b\nc");
        assert_eq!(tail("", 2), "");
    }
}
