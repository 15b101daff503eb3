//! Native streaming: output arrives as the program writes it, bytes as written, bounded by the
//! output cap with the truncation reported, and dropping the stream kills the execution.

mod common;

use std::time::Duration;

use common::*;
use futures_util::StreamExt;
use msbw_backend::{CodeRequest, CommandRequest, ExecEvent, ExecStatus, ExecStream, SandboxBackend, Template};
use msbw_local::{LocalBackend, LocalConfig};

fn code(source: &str) -> CodeRequest {
    CodeRequest {
        language: Template::Python,
        code: source.to_owned(),
        timeout: QUICK,
    }
}

fn cmd(program: &str, args: &[&str]) -> CommandRequest {
    CommandRequest {
        command: program.to_owned(),
        args: args.iter().map(|a| (*a).to_owned()).collect(),
        timeout: QUICK,
    }
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flushed_output_arrives_while_the_code_still_runs() {
    let backend = backend();
    assert!(backend.capabilities().await.streaming);
    let id = start(&backend, &spec("stream-ab", Template::Python)).await;
    let mut stream = backend
        .run_code_stream(
            &id,
            &code("import time\nprint('a', flush=True)\ntime.sleep(3)\nprint('b')"),
        )
        .await
        .unwrap();
    // `a` comes alone, before `b` is printed and before the result: it was sent as written.
    assert_eq!(next(&mut stream).await, ExecEvent::Stdout("a\n".into()));
    let (out, _, result) = rest(&mut stream).await;
    assert_eq!(out, b"b\n");
    assert_eq!(result.stdout, "a\nb\n");
    assert_eq!(result.status, ExecStatus::Completed);
    // Unflushed prints stream too: the driver's stdout is line-buffered.
    let mut stream = backend
        .run_code_stream(&id, &code("import time\nprint('c')\ntime.sleep(2)\nprint('d')"))
        .await
        .unwrap();
    assert_eq!(next(&mut stream).await, ExecEvent::Stdout("c\n".into()));
    backend.stop(&id).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_output_is_streamed_byte_for_byte() {
    let backend = backend();
    let id = start(&backend, &spec("stream-bin", Template::Python)).await;
    let mut stream = backend
        .run_command_stream(&id, &cmd("printf", &["\\377\\000x\\r"]))
        .await
        .unwrap();
    let (out, _, result) = rest(&mut stream).await;
    assert_eq!(out, b"\xff\x00x\r", "no line buffering, no decoding of the chunks");
    assert_eq!(
        result.stdout, "\u{fffd}\0x\r",
        "the final text is as the buffered call returns it"
    );
    let mut stream = backend
        .run_code_stream(
            &id,
            &code("import sys\nsys.stdout.buffer.write(b'\\x00\\xfe'); sys.stdout.flush()"),
        )
        .await
        .unwrap();
    assert_eq!(rest(&mut stream).await.0, b"\x00\xfe");
    backend.stop(&id).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_output_cap_bounds_the_stream_and_the_cut_is_reported() {
    let mut config = LocalConfig::default();
    config.max_output_bytes = 1000;
    let backend = LocalBackend::new(config);
    let id = start(&backend, &spec("stream-cap", Template::Python)).await;
    let mut stream = backend
        .run_code_stream(&id, &code("for i in range(100):\n    print('x' * 99, flush=True)"))
        .await
        .unwrap();
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
    backend.stop(&id).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_code_stream_kills_the_code_and_keeps_the_sandbox() {
    let backend = backend();
    let id = start(&backend, &spec("stream-drop", Template::Python)).await;
    let tag = marker("stream-drop");
    let mut stream = backend
        .run_code_stream(
            &id,
            &code(&format!(
                "import subprocess\nchild = subprocess.Popen(['sh', '-c', 'sleep 300; : {tag}'])\nprint('started', flush=True)\nchild.wait()"
            )),
        )
        .await
        .unwrap();
    assert_eq!(next(&mut stream).await, ExecEvent::Stdout("started\n".into()));
    assert!(!wait_until_present(&tag, QUICK).is_empty(), "the code's process runs");
    drop(stream);
    let left = wait_until_gone(&tag, Duration::from_secs(10));
    assert!(left.is_empty(), "the dropped execution's processes are gone: {left:?}");
    // The sandbox is usable; the next execution says the REPL was restarted.
    let out = python(&backend, &id, "print('next')").await;
    assert_eq!(out.stdout, "next\n");
    assert!(out.stderr.contains("abandoned"), "{out:?}");
    backend.stop(&id).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_command_stream_kills_the_command() {
    let backend = backend();
    let id = start(&backend, &spec("stream-dropcmd", Template::Python)).await;
    let tag = marker("stream-dropcmd");
    let script = format!("echo started; sleep 300; : {tag}");
    let mut stream = backend
        .run_command_stream(&id, &cmd("sh", &["-c", &script]))
        .await
        .unwrap();
    assert_eq!(next(&mut stream).await, ExecEvent::Stdout("started\n".into()));
    assert!(!wait_until_present(&tag, QUICK).is_empty());
    drop(stream);
    let left = wait_until_gone(&tag, Duration::from_secs(10));
    assert!(left.is_empty(), "the dropped command's processes are gone: {left:?}");
    assert_eq!(shell(&backend, &id, "echo ok").await.stdout, "ok\n");
    backend.stop(&id).await.unwrap();
}
