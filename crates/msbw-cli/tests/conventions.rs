//! The conventions of a command-line program, each checked on the real `msbw` binary: closed
//! pipes, signals, colours, completions, exit statuses, usage errors as JSON, input bounds,
//! progress next to logs, and a fast, single error for an unreachable server.

#![allow(clippy::unwrap_used)] // test helpers may unwrap

mod support;

use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use support::{msbw, processes_with_argv, run, wait_within};

/// A stdout whose reader is already gone: every write fails with EPIPE.
fn closed_pipe() -> Stdio {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    writer.into()
}

#[test]
fn a_closed_stdout_is_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &["doctor"][..],
        &["config", "check"],
        &["--json", "config", "check"],
        &["completions", "bash"],
        &["--help"],
        &["exec", "print('x\\n' * 1000)"],
    ] {
        let out = msbw(dir.path())
            .args(args)
            .stdout(closed_pipe())
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
    }
}

#[test]
fn sigint_during_exec_stops_what_it_started_and_exits_130() {
    let dir = support::volume_dir();
    let ready = dir.path().join("ready");
    let made = std::process::Command::new("mkfifo")
        .args(["-m", "666"])
        .arg(&ready)
        .status()
        .unwrap();
    assert!(made.success());
    if support::is_root() {
        // In an id-mapped volume, only files of the volume's owner are writable from inside.
        std::os::unix::fs::chown(&ready, Some(support::VOLUME_OWNER), Some(support::VOLUME_OWNER)).unwrap();
    }
    // A process of the code's own, with a command line no other test uses.
    let marker = (800_000 + std::process::id()).to_string();
    let code = format!(
        "import subprocess, time\nsubprocess.Popen(['sleep', '{marker}'])\n\
         with open('/sandbox/work/ready', 'w') as f:\n    f.write('ready')\ntime.sleep(600)\n"
    );
    let child = msbw(dir.path())
        .env(
            "MSB_SHARED_VOLUME_PATH",
            format!(r#"["{}:/sandbox/work"]"#, dir.path().display()),
        )
        .args(["exec", &code])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The FIFO opens once the code has started its process.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(std::fs::read_to_string(&ready));
    });
    let said = rx
        .recv_timeout(Duration::from_secs(90))
        .expect("the code started")
        .unwrap();
    assert_eq!(said, "ready");
    // Popen has returned, so the process exists; a loaded host may take a moment to show it.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while processes_with_argv(&["sleep", &marker]).is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        processes_with_argv(&["sleep", &marker]).len(),
        1,
        "the code's process runs"
    );

    let sent = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let out = wait_within(child, Duration::from_secs(30));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    assert!(!stderr.contains("INVALID_INPUT_ERROR"), "{stderr}");
    assert!(
        processes_with_argv(&["sleep", &marker]).is_empty(),
        "the code's process outlived msbw"
    );
}

#[test]
fn colours_follow_the_flag_then_no_color_then_clicolor_force() {
    let dir = tempfile::tempdir().unwrap();
    /// Flags, environment, whether stderr and help are coloured.
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], bool);
    let cases: [Case<'_>; 6] = [
        (&[], &[], false),
        (&[], &[("CLICOLOR_FORCE", "1")], true),
        (&[], &[("CLICOLOR_FORCE", "1"), ("NO_COLOR", "1")], false),
        (&["--color", "always"], &[("NO_COLOR", "1")], true),
        (&["--color=never"], &[("CLICOLOR_FORCE", "1")], false),
        (&["--color", "auto"], &[("NO_COLOR", "1")], false),
    ];
    for (flags, env, coloured) in cases {
        // A configuration error: printed without starting anything.
        let (code, _, err) = run(msbw(dir.path())
            .args(flags)
            .args(["exec", "1"])
            .env("MSB_MAX_SESSIONS", "1000")
            .envs(env.iter().copied()));
        assert_eq!(code, 2, "{err}");
        assert!(err.contains("CONFIGURATION_ERROR"), "{err}");
        assert_eq!(err.contains('\x1b'), coloured, "{flags:?} {env:?}: {err:?}");

        let (code, help, _) = run(msbw(dir.path()).args(flags).arg("--help").envs(env.iter().copied()));
        assert_eq!(code, 0);
        assert_eq!(help.contains('\x1b'), coloured, "help, {flags:?} {env:?}");
    }
}

#[test]
fn completions_are_printed_for_each_shell_and_bash_loads_them() {
    let dir = tempfile::tempdir().unwrap();
    for (shell, marker) in [
        ("bash", "_msbw"),
        ("zsh", "#compdef msbw"),
        ("fish", "complete -c msbw"),
        ("elvish", "msbw"),
        ("powershell", "msbw"),
    ] {
        let (code, out, err) = run(msbw(dir.path()).args(["completions", shell]));
        assert_eq!(code, 0, "{shell}: {err}");
        assert!(out.contains(marker) && out.contains("exec"), "{shell}: {out}");
    }
    let (code, _, err) = run(msbw(dir.path()).args(["completions", "tcsh"]));
    assert_eq!(code, 2, "{err}");
    let script = dir.path().join("msbw.bash");
    let (_, out, _) = run(msbw(dir.path()).args(["completions", "bash"]));
    std::fs::write(&script, out).unwrap();
    let loaded = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!("source {} && complete -p msbw", script.display()))
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&loaded.stdout).contains("-F _msbw"),
        "{}",
        String::from_utf8_lossy(&loaded.stderr)
    );
}

#[test]
fn exec_exits_with_the_codes_own_status() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&[&str], i32); 6] = [
        (&["exec", "import sys\nsys.exit(3)"], 3),
        (&["exec", "raise SystemExit(42)"], 42),
        (&["exec", "import sys\nsys.exit(0)"], 0),
        (&["exec", "import sys\nsys.exit('a message')"], 1),
        (&["exec", "raise ValueError('no')"], 1),
        (
            &["exec", "--template", "node", "console.log('bye'); process.exit(3)"],
            3,
        ),
    ];
    for (args, want) in cases {
        let (code, _, err) = run(msbw(dir.path()).args(args));
        assert_eq!(code, want, "{args:?}: {err}");
    }
}

#[test]
fn the_template_follows_the_files_extension_unless_named() {
    let dir = tempfile::tempdir().unwrap();
    // Valid JavaScript, and a NameError in Python.
    for name in ["job.js", "job.mjs", "job.cjs"] {
        std::fs::write(dir.path().join(name), "console.log([1, 2, 3].length)").unwrap();
        let (code, out, err) = run(msbw(dir.path()).args(["exec", "-f", name]));
        assert_eq!((code, out.as_str()), (0, "3\n"), "{name}: {err}");
    }
    std::fs::write(dir.path().join("job.py"), "print(len([1, 2]))").unwrap();
    let (code, out, err) = run(msbw(dir.path()).args(["exec", "-f", "job.py"]));
    assert_eq!((code, out.as_str()), (0, "2\n"), "{err}");
    std::fs::write(dir.path().join("python.js"), "print('named wins')").unwrap();
    let (code, out, err) = run(msbw(dir.path()).args(["exec", "-t", "python", "-f", "python.js"]));
    assert_eq!((code, out.as_str()), (0, "named wins\n"), "{err}");
}

#[test]
fn run_takes_the_command_without_a_double_dash() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) = run(msbw(dir.path()).args(["run", "sh", "-c", "echo out; exit 4"]));
    assert_eq!((code, out.as_str()), (4, "out\n"), "{err}");
    // Flags after the command are the command's.
    let (code, out, err) = run(msbw(dir.path()).args(["run", "--timeout", "30", "echo", "-n", "--json", "hi"]));
    assert_eq!((code, out.as_str()), (0, "--json hi\n"), "{err}");
}

#[test]
fn usage_errors_are_json_with_json() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&[&str], &str); 6] = [
        (&["--json", "exec", "--bogus"], "unexpected argument '--bogus'"),
        (&["--json", "frobnicate"], "unrecognized subcommand 'frobnicate'"),
        (
            &["exec", "--json", "--template", "ruby", "1"],
            "unknown template \"ruby\"",
        ),
        (&["--json", "exec"], "no code given"),
        (
            &["--json", "exec", "-f", "/dev/zero"],
            "/dev/zero: not a regular file or a pipe",
        ),
        (&["--json", "run"], "COMMAND"),
    ];
    for (args, message) in cases {
        let (code, out, err) = run(msbw(dir.path()).args(args));
        assert_eq!(code, 2, "{args:?}: {out} {err}");
        let json: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}: {out:?}"));
        assert_eq!(json["error"]["code"], "INVALID_INPUT_ERROR", "{json}");
        assert!(
            json["error"]["message"].as_str().unwrap().contains(message),
            "{args:?}: {json}"
        );
        assert!(!err.contains("Usage:"), "{args:?}: {err}");
    }
    let (code, out, _) = run(msbw(dir.path()).args(["--json", "--help"]));
    assert_eq!(code, 0);
    assert!(out.contains("Usage:"));
}

#[test]
fn every_input_is_bounded_and_devices_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (code, _, err) = run(msbw(dir.path()).args(["exec", "-f", "/dev/zero"]));
    assert_eq!(code, 2);
    assert!(
        err.contains("/dev/zero") && err.contains("not a regular file or a pipe"),
        "{err}"
    );
    let (code, _, err) = run(msbw(dir.path()).args(["--env-file", "/dev/zero", "config", "check"]));
    assert_eq!(code, 2);
    assert!(
        err.contains("/dev/zero") && err.contains("not a regular file or a pipe"),
        "{err}"
    );

    let limit = microsandbox_wrapper::manager::MAX_INPUT_BYTES;
    std::fs::write(dir.path().join("big.py"), "#".repeat(limit + 1)).unwrap();
    let (code, _, err) = run(msbw(dir.path()).args(["exec", "-f", "big.py"]));
    assert_eq!(code, 2);
    assert!(
        err.contains("big.py") && err.contains(&format!("larger than {limit} bytes")),
        "{err}"
    );

    // stdin is a pipe: read up to the limit, then refused.
    let mut child = msbw(dir.path())
        .args(["exec", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        let chunk = vec![b'#'; 64 * 1024];
        // Stops at EPIPE once msbw has read its fill.
        for _ in 0..1024 {
            if stdin.write_all(&chunk).is_err() {
                break;
            }
        }
    });
    let out = wait_within(child, Duration::from_secs(30));
    writer.join().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("stdin") && err.contains("larger than"), "{err}");

    // A pipe (`-f <(...)`) is read.
    let fifo = dir.path().join("code.fifo");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let path = fifo.clone();
    let writer = std::thread::spawn(move || std::fs::write(path, "print(5 * 5)"));
    let (code, out, err) = run(msbw(dir.path()).arg("exec").arg("-f").arg(&fifo));
    writer.join().unwrap().unwrap();
    assert_eq!((code, out.as_str()), (0, "25\n"), "{err}");
}

#[test]
fn an_unreachable_server_is_one_error_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) = run(msbw(dir.path())
        .args(["exec", "print(1)"])
        .env("MSB_BACKEND", "microsandbox")
        .env("MSB_SERVER_URL", "http://127.0.0.1:9"));
    assert_eq!(code, 69, "{err}");
    assert_eq!(out, "");
    let lines: Vec<&str> = err.lines().collect();
    assert!(lines[0].starts_with("msbw: error [CONNECTION_ERROR]: "), "{err}");
    assert!(
        lines.len() > 1 && lines[1..].iter().all(|l| l.starts_with("  hint: ")),
        "hints, and only hints, follow: {err}"
    );
    assert!(!err.contains("WARN") && !err.contains("retry"), "{err}");
}

#[test]
fn progress_and_log_lines_never_share_a_line() {
    let dir = tempfile::tempdir().unwrap();
    let transcript = dir.path().join("transcript");
    // `script` (util-linux) gives msbw a terminal, so the indicator is drawn; -v logs while it is.
    let status = std::process::Command::new("script")
        .args(["-q", "-e", "-c"])
        .arg(format!(
            "{} -v exec 'import time; time.sleep(1.5)'",
            env!("CARGO_BIN_EXE_msbw")
        ))
        .arg(&transcript)
        .env("MSB_BACKEND", "local")
        .env_remove("NO_COLOR")
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let raw = std::fs::read_to_string(&transcript).unwrap();
    assert!(raw.contains("running…"), "the indicator was drawn: {raw:?}");
    let mut logs = 0;
    for line in raw.split('\n') {
        // What the terminal shows: the text after the last carriage return, without escapes.
        let line = line.trim_end_matches('\r');
        let shown = strip_ansi(line.rsplit('\r').next().unwrap_or_default());
        if shown.contains(" INFO ") || shown.contains(" DEBUG ") {
            logs += 1;
            assert!(
                shown.starts_with("20"),
                "a log line starts after the indicator: {shown:?}"
            );
        }
    }
    assert!(logs >= 2, "{raw:?}");
}

fn strip_ansi(text: &str) -> String {
    let mut out = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            // CSI: ESC [ parameters final-byte
            if chars.next() == Some('[') {
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
