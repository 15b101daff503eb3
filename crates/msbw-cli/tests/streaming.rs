//! `msbw exec` / `msbw run` print output as it happens: the real binary's stdout shows a flushed
//! line while the code still runs, and `--jsonl` prints one event per line.

mod support;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Duration;

use support::{msbw, wait_within};

#[test]
fn exec_prints_a_flushed_line_while_the_code_still_runs() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = msbw(dir.path())
        .args(["exec", "import time\nprint('a', flush=True)\ntime.sleep(3)\nprint('b')"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line, "a\n");
    // `a` is on stdout while msbw is still running the code (`b` comes 3 s later).
    assert!(
        child.try_wait().unwrap().is_none(),
        "msbw had not finished when `a` arrived"
    );
    line.clear();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line, "b\n");
    let out = wait_within(child, Duration::from_secs(60));
    assert!(out.status.success(), "{out:?}");
}

#[test]
fn run_jsonl_prints_events_then_the_result_and_keeps_the_exit_status() {
    let dir = tempfile::tempdir().unwrap();
    let child = msbw(dir.path())
        .args([
            "run",
            "--jsonl",
            "--",
            "sh",
            "-c",
            "echo out; printf '\\377' >&2; exit 3",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = wait_within(child, Duration::from_secs(60));
    assert_eq!(out.status.code(), Some(3));
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        lines.contains(&serde_json::json!({"event": "stdout", "data": "out\n"})),
        "{lines:?}"
    );
    assert!(
        lines.contains(&serde_json::json!({"event": "stderr", "data_base64": "/w=="})),
        "{lines:?}"
    );
    let last = lines.last().unwrap();
    assert_eq!(last["event"], "finished");
    assert_eq!(last["result"]["exit_code"], 3);
    assert_eq!(last["result"]["stdout"], "out");
}

#[test]
fn output_without_a_final_newline_still_ends_its_line_and_json_keeps_the_result() {
    let dir = tempfile::tempdir().unwrap();
    let (code, stdout, _) = support::run(msbw(dir.path()).args(["exec", "print('x', end='')"]));
    assert_eq!((code, stdout.as_str()), (0, "x\n"));
    let (code, stdout, _) = support::run(msbw(dir.path()).args(["--json", "exec", "print('y')"]));
    assert_eq!(code, 0);
    let result: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(result["stdout"], "y", "--json prints only the final result");
}
