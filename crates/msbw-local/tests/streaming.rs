//! Native streaming: output arrives as the program writes it, bytes as written, bounded by the
//! output cap with the truncation reported, and dropping the stream kills the execution.

mod common;

use std::time::Duration;

use common::*;
use futures_util::StreamExt;
use msbw_backend::{CodeRequest, CommandRequest, ExecEvent, ExecStatus, ExecStream, SandboxBackend, Template};

/// Streams Python code that should finish quickly.
async fn code_stream(sandbox: &Sandbox, source: &str) -> ExecStream {
    let request = CodeRequest {
        language: Template::Python,
        code: source.to_owned(),
        timeout: QUICK,
    };
    let stream = sandbox.backend.run_code_stream(&sandbox.id, &request).await;
    stream.unwrap_or_else(|e| panic!("run_code_stream {source:?}: {e}"))
}

/// Streams a command that should finish quickly.
async fn command_stream(sandbox: &Sandbox, program: &str, args: &[&str]) -> ExecStream {
    let request = CommandRequest {
        command: program.to_owned(),
        args: args.iter().map(|a| (*a).to_owned()).collect(),
        timeout: QUICK,
    };
    let stream = sandbox.backend.run_command_stream(&sandbox.id, &request).await;
    stream.unwrap_or_else(|e| panic!("run_command_stream {program} {args:?}: {e}"))
}

async fn next(stream: &mut ExecStream) -> ExecEvent {
    tokio::time::timeout(QUICK, stream.next())
        .await
        .expect("an event in time")
        .expect("the stream has not ended")
        .expect("no error")
}

/// Every event to the end: (stdout bytes, stderr bytes, the final result's stdout and stderr).
async fn rest(stream: &mut ExecStream) -> (Vec<u8>, Vec<u8>, msbw_backend::ExecOutput) {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    loop {
        match next(stream).await {
            ExecEvent::Stdout(b) => out.extend_from_slice(&b),
            ExecEvent::Stderr(b) => err.extend_from_slice(&b),
            ExecEvent::Finished(o) => {
                assert!(stream.next().await.is_none(), "Finished is the last event");
                return (out, err, o);
            }
            other => panic!("unexpected event {other:?}"),
        }
    }
}

/// Waits for `stream` to say `started` and for the process marked `tag` to run on the host,
/// drops the stream, and asserts that the process is gone from the host's process table.
async fn drop_while_running(mut stream: ExecStream, tag: &str) {
    assert_eq!(next(&mut stream).await, ExecEvent::Stdout("started\n".into()));
    assert!(!wait_until_present(tag, QUICK).is_empty(), "the streamed process runs");
    drop(stream);
    let left = wait_until_gone(tag, Duration::from_secs(10));
    assert!(left.is_empty(), "the dropped execution's processes are gone: {left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flushed_output_arrives_while_the_code_still_runs() {
    let sandbox = Sandbox::new("stream-ab", Template::Python).await;
    assert!(sandbox.backend.capabilities().await.streaming);
    let mut stream = code_stream(
        &sandbox,
        "import time\nprint('a', flush=True)\ntime.sleep(3)\nprint('b')",
    )
    .await;
    // `a` comes alone, before `b` is printed and before the result: it was sent as written.
    assert_eq!(next(&mut stream).await, ExecEvent::Stdout("a\n".into()));
    let (out, _, result) = rest(&mut stream).await;
    assert_eq!(out, b"b\n");
    assert_eq!(result.stdout, "a\nb\n");
    assert_eq!(result.status, ExecStatus::Completed);
    // Unflushed prints stream too: the driver's stdout is line-buffered.
    let mut stream = code_stream(&sandbox, "import time\nprint('c')\ntime.sleep(2)\nprint('d')").await;
    assert_eq!(next(&mut stream).await, ExecEvent::Stdout("c\n".into()));
    sandbox.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_output_is_streamed_byte_for_byte() {
    let sandbox = Sandbox::new("stream-bin", Template::Python).await;
    let mut stream = command_stream(&sandbox, "printf", &["\\377\\000x\\r"]).await;
    let (out, _, result) = rest(&mut stream).await;
    assert_eq!(out, b"\xff\x00x\r", "no line buffering, no decoding of the chunks");
    assert_eq!(
        result.stdout, "\u{fffd}\0x\r",
        "the final text is as the buffered call returns it"
    );
    let source = "import sys\nsys.stdout.buffer.write(b'\\x00\\xfe'); sys.stdout.flush()";
    assert_eq!(rest(&mut code_stream(&sandbox, source).await).await.0, b"\x00\xfe");
    sandbox.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_output_cap_bounds_the_stream_and_the_cut_is_reported() {
    let backend = backend_with(|config| config.max_output_bytes = 1000);
    let sandbox = Sandbox::start(&backend, &spec("stream-cap", Template::Python)).await;
    let mut stream = code_stream(&sandbox, "for i in range(100):\n    print('x' * 99, flush=True)").await;
    let (out, _, result) = rest(&mut stream).await;
    let text = String::from_utf8(out).unwrap();
    assert_eq!(
        text, result.stdout,
        "the chunks add up to the result, the note included"
    );
    assert!(text.starts_with(&"x".repeat(99)));
    assert!(
        text.ends_with("\n[msbw-local: 9000 more bytes of stdout were dropped]\n"),
        "{:?}",
        &text[900..]
    );
    assert_eq!(
        text.matches('x').count(),
        1000 - 10,
        "at most the cap of the program's bytes"
    );
    sandbox.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_code_stream_kills_the_code_and_keeps_the_sandbox() {
    let (sandbox, tag) = Sandbox::with_marker("stream-drop", Template::Python).await;
    let source = format!(
        "import subprocess\nchild = subprocess.Popen(['sh', '-c', 'sleep 300; : {tag}'])\nprint('started', flush=True)\nchild.wait()"
    );
    drop_while_running(code_stream(&sandbox, &source).await, &tag).await;
    // The sandbox is usable; the next execution says the REPL was restarted.
    let out = sandbox.python("print('next')").await;
    assert_eq!(out.stdout, "next\n");
    assert!(out.stderr.contains("abandoned"), "{out:?}");
    sandbox.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_command_stream_kills_the_command() {
    let (sandbox, tag) = Sandbox::with_marker("stream-dropcmd", Template::Python).await;
    let script = format!("echo started; sleep 300; : {tag}");
    drop_while_running(command_stream(&sandbox, "sh", &["-c", &script]).await, &tag).await;
    assert_eq!(sandbox.shell("echo ok").await.stdout, "ok\n");
    sandbox.stop().await;
}
