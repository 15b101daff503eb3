//! The real `msbw` binary, through every subcommand, on the local backend: good input and bad.

#![allow(clippy::unwrap_used)] // test helpers may unwrap

mod support;

use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::Value;
use support::{assert_contains_all, msbw, run, run_with_stdin};

/// `msbw config check --json` in a fresh working directory with these variables set: its exit
/// status and the JSON it printed.
fn config_check_json(vars: &[(&str, &str)]) -> (i32, Value) {
    config_check_json_in(tempfile::tempdir().unwrap().path(), vars)
}

/// [`config_check_json`] in `dir` (where a `.env` may be).
fn config_check_json_in(dir: &Path, vars: &[(&str, &str)]) -> (i32, Value) {
    let (code, out, err) = run(msbw(dir).args(["config", "check", "--json"]).envs(vars.iter().copied()));
    let json = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}{err}"));
    (code, json)
}

/// The strings of a JSON array.
fn strings(array: &Value) -> Vec<&str> {
    array.as_array().unwrap().iter().filter_map(Value::as_str).collect()
}

#[test]
fn help_lists_every_subcommand_and_the_exit_statuses() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, _) = run(msbw(dir.path()).arg("--help"));
    assert_eq!(code, 0);
    for word in ["exec", "run", "config", "doctor", "serve", "Exit status:", "124"] {
        assert!(out.contains(word), "--help lacks {word}:\n{out}");
    }
    for sub in [
        &["exec", "--help"][..],
        &["run", "--help"],
        &["config", "check", "--help"],
        &["serve", "keygen", "--help"],
    ] {
        let (code, out, _) = run(msbw(dir.path()).args(sub));
        assert_eq!(code, 0, "{sub:?}");
        assert!(out.contains("Usage:"), "{out}");
    }
}

#[test]
fn config_check_reports_ok_and_a_summary() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, _) = run(msbw(dir.path()).args(["config", "check"]));
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("ok       configuration is valid"), "{out}");
    assert!(
        out.contains("Configuration summary:") && out.contains("Max sessions:      10"),
        "{out}"
    );
}

#[test]
fn config_check_json_prints_every_field_and_every_problem_even_on_errors() {
    let (code, json) = config_check_json(&[
        ("MSB_SESSION_TIMEOUT", "5"),
        ("MSB_API_KEY", "msb_very-secret"),
        ("MSB_MAX_SESION", "3"),
        ("MSB_SHARED_VOLUME_PATH", r#"["/data/in:/sandbox/in:ro"]"#),
    ]);
    assert_eq!(code, 2, "errors give a non-zero status");
    assert!(!json.to_string().contains("very-secret"), "the key leaked: {json}");
    for field in [
        "server_url",
        "api_key",
        "session_timeout",
        "max_concurrent_sessions",
        "cleanup_interval",
        "default_flavor",
        "sandbox_start_timeout",
        "default_execution_timeout",
        "max_total_memory_mb",
        "shared_volume_mappings",
        "orphan_cleanup_interval",
        "log_level",
    ] {
        assert!(json.get(field).is_some(), "{field} missing: {json}");
    }
    assert_eq!(json["api_key"], "***");
    assert_eq!(json["session_timeout"], 5);
    assert_eq!(json["sandbox_start_timeout"], 180.0);
    assert_eq!(json["default_flavor"], "small");
    assert_eq!(json["log_level"], "info");
    assert_eq!(json["max_total_memory_mb"], Value::Null);
    assert_eq!(json["shared_volume_mappings"][0]["read_only"], true);
    let errors = strings(&json["errors"]);
    assert_eq!(errors.len(), 1);
    assert!(errors[0].starts_with("MSB_SESSION_TIMEOUT"), "{errors:?}");
    let warnings = strings(&json["warnings"]);
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("MSB_MAX_SESION") && w.contains("MSB_MAX_SESSIONS")),
        "{warnings:?}"
    );
}

#[test]
fn a_bad_variable_is_a_usage_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let (code, _, err) = run(msbw(dir.path())
        .args(["exec", "print(1)"])
        .env("MSB_MAX_SESSIONS", "1000"));
    assert_eq!(code, 2);
    assert_contains_all(&err, &["MSB_MAX_SESSIONS", "1000", "1 to 100", "CONFIGURATION_ERROR"]);
}

#[test]
fn env_files_are_read_and_the_environment_wins() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join(".env"),
        "MSB_MAX_SESSIONS=7\nMSB_DEFAULT_FLAVOR=medium\n",
    )
    .unwrap();
    let (_, json) = config_check_json_in(dir.path(), &[("MSB_DEFAULT_FLAVOR", "large")]);
    assert_eq!(json["max_concurrent_sessions"], 7);
    assert_eq!(json["default_flavor"], "large");
    let (_, out, _) = run(msbw(dir.path()).args(["--no-env-file", "config", "check", "--json"]));
    let json: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["max_concurrent_sessions"], 10);
    let (code, _, err) = run(msbw(dir.path()).args(["--env-file", "missing.env", "config", "check"]));
    assert_eq!(code, 2);
    assert!(err.contains("cannot load env file missing.env"), "{err}");
}

#[test]
fn bad_input_is_refused_with_status_2() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&[&str], &str); 5] = [
        (&["exec", "--template", "ruby", "1"], "unknown template \"ruby\""),
        (&["exec", "-f", "nope.py"], "cannot read nope.py"),
        (&["exec"], "no code given"),
        (&["exec", "--flavor", "huge", "1"], "not a valid flavor"),
        (&["exec", "--timeout", "0", "1"], "--timeout 0"),
    ];
    for (args, message) in cases {
        let (code, _, err) = run(msbw(dir.path()).args(args));
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(message), "{args:?}: {err}");
    }
    let (code, _, _) = run(msbw(dir.path()).args(["frobnicate"]));
    assert_eq!(code, 2);
}

#[test]
fn exec_runs_code_and_prints_its_streams() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) =
        run(msbw(dir.path()).args(["exec", "import sys\nprint(6 * 7)\nprint('warn', file=sys.stderr)"]));
    assert_eq!(code, 0, "stdout {out:?} stderr {err:?}");
    assert_eq!(out, "42\n");
    assert!(err.contains("warn"), "{err}");
    assert!(!out.contains("warn"));
}

#[test]
fn exec_reads_files_and_stdin_and_runs_node() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("job.py"), "total = sum(range(10))\nprint(total)\n").unwrap();
    let (code, out, err) = run(msbw(dir.path()).args(["exec", "-f", "job.py"]));
    assert_eq!((code, out.as_str()), (0, "45\n"), "{err}");

    let (code, out, err) = run_with_stdin(msbw(dir.path()).args(["exec", "-"]), b"print('from stdin')");
    assert_eq!((code, out.as_str()), (0, "from stdin\n"), "{err}");

    let (code, out, err) = run(msbw(dir.path()).args([
        "exec",
        "--template",
        "node",
        "console.log([1,2,3].map(x => x * 2).join(','))",
    ]));
    assert_eq!((code, out.as_str()), (0, "2,4,6\n"), "{err}");
}

#[test]
fn code_that_raises_exits_1_with_the_traceback() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) = run(msbw(dir.path()).args(["exec", "print('before')\n1 / 0"]));
    assert_eq!(code, 1);
    assert_eq!(out, "before\n");
    assert!(err.contains("ZeroDivisionError"), "{err}");
}

#[test]
fn a_timeout_exits_124() {
    let dir = tempfile::tempdir().unwrap();
    let (code, _, err) = run(msbw(dir.path()).args(["exec", "--timeout", "1", "import time\ntime.sleep(60)"]));
    assert_eq!(code, 124, "{err}");
    assert!(err.contains("timed out after 1.0 s"), "{err}");
    let (code, _, _) = run(msbw(dir.path()).args(["run", "--timeout", "1", "--", "sleep", "60"]));
    assert_eq!(code, 124);
}

#[test]
fn run_passes_the_commands_exit_code_and_streams_through() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) = run(msbw(dir.path()).args(["run", "--", "sh", "-c", "echo out; echo err >&2; exit 3"]));
    assert_eq!(code, 3);
    assert_eq!(out, "out\n");
    assert_eq!(err, "err\n");
    let (code, out, _) = run(msbw(dir.path()).args(["run", "--", "echo", "hello", "world"]));
    assert_eq!((code, out.as_str()), (0, "hello world\n"));
}

#[test]
fn json_output_is_the_result() {
    let dir = tempfile::tempdir().unwrap();
    // One-shot (a named --session is persistent: see sessions.rs).
    let (code, out, _) = run(msbw(dir.path()).args(["--json", "exec", "print('hi')"]));
    assert_eq!(code, 0);
    let json: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["stdout"], "hi");
    assert!(json["session_id"].is_string(), "{json}");
    assert_eq!(json["success"], true);
    assert_eq!(json["status"], "completed");
    assert_eq!(json["session_created"], true);
    let (code, out, _) = run(msbw(dir.path()).args(["--json", "exec", "--timeout", "1", "while True: pass"]));
    assert_eq!(code, 124);
    let json: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["status"], "timed_out");
}

#[test]
fn doctor_names_the_backend_and_why() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) = run(msbw(dir.path()).arg("doctor"));
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("selected:  local (MSB_BACKEND=local)"), "{out}");
    assert!(out.contains("health:    ok"), "{out}");
    assert!(out.contains("Local backend on this host"), "{out}");
    assert!(out.contains("seccomp: filter active ("), "{out}");
    let (code, out, _) = run(msbw(dir.path()).args(["--json", "doctor"]));
    assert_eq!(code, 0);
    let json: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["backend"]["backend"], "local");
    assert_eq!(json["healthy"], true);
    assert_eq!(json["local_backend"]["seccomp"]["active"], true, "{out}");
}

#[test]
fn serve_keygen_mints_keys_and_serve_needs_a_mode() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, _) = run(msbw(dir.path()).args(["serve", "keygen", "--key", "k", "--expire", "1h", "-n", "team"]));
    assert_eq!(code, 0);
    let key = out.trim();
    assert!(key.starts_with("msb_"), "{key}");
    let claims = msbw_protocol::key::verify("k", Some(key)).unwrap();
    assert_eq!(claims.namespace, "team");
    let (code, _, err) = run(msbw(dir.path()).args(["serve", "--port", "0"]));
    assert_eq!(code, 2);
    assert!(err.contains("--dev") && err.contains("--key"), "{err}");
}

#[test]
fn serve_answers_and_sigterm_stops_every_sandbox_it_started() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    /// Kills the server if the test fails before it is stopped.
    struct KillOnDrop(std::process::Child);
    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut guard = KillOnDrop(
        msbw(dir.path())
            .args(["serve", "--dev", "--port", "0"])
            .env("MSBW_SERVE_KEY", "ignored-because-of-dev")
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let child = &mut guard.0;
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    let url = loop {
        let mut line = String::new();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "msbw serve printed no address: {seen}"
        );
        assert!(!line.contains("cannot"), "{line}");
        seen.push_str(&line);
        if let Some(url) = line.split_whitespace().find(|w| w.starts_with("http://")) {
            break url.to_owned();
        }
    };
    assert!(
        seen.contains("ignoring the server key"),
        "--dev wins over MSBW_SERVE_KEY: {seen}"
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let client = reqwest::Client::new();
        let start = serde_json::json!({"jsonrpc": "2.0", "method": "sandbox.start", "id": 1,
            "params": {"sandbox": "sig", "namespace": "default", "config": {"image": "microsandbox/python"}}});
        let post = |body: Value| client.post(format!("{url}/api/v1/rpc")).json(&body).send();
        let resp = post(start).await.unwrap();
        assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
        let run = serde_json::json!({"jsonrpc": "2.0", "method": "sandbox.repl.run", "id": 2,
            "params": {"sandbox": "sig", "namespace": "default", "language": "python", "code": "print(7 * 6)"}});
        let body: Value = post(run).await.unwrap().json().await.unwrap();
        assert_eq!(body["result"]["output"][0]["text"], "42", "{body}");
    });
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    assert_eq!(exit.code(), Some(0), "{rest}");
    assert!(rest.contains("stopped 1 sandbox"), "{rest}");
}

#[test]
fn config_check_reports_backend_settings_validated_by_their_backends() {
    let (code, json) = config_check_json(&[
        ("MSB_LOCAL_NETWORK", "maybe"),
        ("MSB_PYTHON_IMAGE", "my python"),
        ("MSB_NODE_IMAGE", "/srv/node-root"),
    ]);
    assert_eq!(code, 2, "{json}");
    let errors = strings(&json["errors"]);
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(
        errors[0].starts_with("MSB_PYTHON_IMAGE (python_image) = \"my python\""),
        "{errors:?}"
    );
    assert!(
        errors[1].starts_with("MSB_LOCAL_NETWORK (local_network) = \"maybe\": is not a boolean"),
        "{errors:?}"
    );
    assert_eq!(json["node_image"], "/srv/node-root");
    assert_eq!(json["local_network"], "maybe", "an invalid value is shown as given");
    let (code, json) = config_check_json(&[("MSB_LOCAL_NETWORK", "yes")]);
    assert_eq!(code, 0, "{json}");
    assert_eq!(json["local_network"], true, "a switch is shown as a boolean");
    assert_eq!(json["python_image"], "microsandbox/python");
}
