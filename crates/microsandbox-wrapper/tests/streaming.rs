//! Streaming through the facade over the local backend: output as it happens, and a dropped
//! stream cancelling the execution (checked in the host's process table).

#![allow(clippy::unwrap_used)] // test helpers may unwrap

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::eventually;
use futures_util::StreamExt;
use microsandbox_wrapper::{
    CallEvent, CodeCall, EventStream, ExecutionResult, LocalBackend, MicrosandboxWrapper, SessionStatus, WrapperConfig,
};

fn wrapper() -> MicrosandboxWrapper {
    let config = WrapperConfig::default();
    let local = LocalBackend::from_config(&config).unwrap();
    MicrosandboxWrapper::with_backend(config, Arc::new(local)).unwrap()
}

fn status(w: &MicrosandboxWrapper, id: &str) -> SessionStatus {
    w.session(id).unwrap().unwrap().status
}

/// Host processes whose command line holds `needle`.
fn host_processes_with(needle: &str) -> usize {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_str().is_some_and(|n| n.parse::<u32>().is_ok()))
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .filter(|c| String::from_utf8_lossy(c).contains(needle))
        .count()
}

/// The stream's next event, which must come within a minute.
async fn next_event(stream: &mut EventStream<ExecutionResult>) -> CallEvent<ExecutionResult> {
    let next = tokio::time::timeout(Duration::from_secs(60), stream.next()).await;
    next.expect("an event within a minute")
        .expect("the stream has not ended")
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flushed_line_arrives_while_the_code_still_runs() {
    let w = wrapper();
    w.start().await.unwrap();
    let mut stream = w
        .execute_code_stream(
            CodeCall::new("import time\nprint('a', flush=True)\ntime.sleep(3)\nprint('b')").session("ab"),
        )
        .unwrap();
    assert_eq!(next_event(&mut stream).await, CallEvent::Stdout("a\n".into()));
    // `a` is here while the run is still going: the session is still busy with it.
    assert_eq!(status(&w, "ab"), SessionStatus::Running);
    let mut rest = Vec::new();
    while let Some(event) = stream.next().await {
        rest.push(event.unwrap());
    }
    assert_eq!(rest.len(), 2, "{rest:?}");
    assert_eq!(rest[0], CallEvent::Stdout("b\n".into()));
    let CallEvent::Finished(result) = &rest[1] else {
        panic!("{rest:?}")
    };
    assert_eq!(result.stdout, "a\nb", "the result is the buffered call's, trimmed");
    assert!(result.success && result.session_created);
    assert_eq!(status(&w, "ab"), SessionStatus::Ready);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_stream_kills_the_code_and_the_session_says_so() {
    let w = wrapper();
    w.start().await.unwrap();
    let tag = format!("msbw-facade-stream-drop-{}", std::process::id());
    let code = format!(
        "import subprocess\nchild = subprocess.Popen(['sh', '-c', 'sleep 300; : {tag}'])\nprint('started', flush=True)\nchild.wait()"
    );
    let mut stream = w.execute_code_stream(CodeCall::new(code).session("drop")).unwrap();
    assert_eq!(next_event(&mut stream).await, CallEvent::Stdout("started\n".into()));
    assert!(eventually(Duration::from_secs(30), || host_processes_with(&tag) > 0).await);
    drop(stream);
    assert!(
        eventually(Duration::from_secs(10), || host_processes_with(&tag) == 0).await,
        "the cancelled code's processes are gone from the host"
    );
    assert!(eventually(Duration::from_secs(10), || status(&w, "drop") == SessionStatus::Ready).await);
    let info = w.session("drop").unwrap().unwrap();
    assert!(info.last_execution_cancelled, "{info:?}");
    // The session is usable; the local backend restarted its interpreter.
    let next = w
        .execute_code(CodeCall::new("print('again')").session("drop"))
        .await
        .unwrap();
    assert_eq!(next.stdout, "again");
    assert!(!next.sandbox_replaced);
    assert!(!w.session("drop").unwrap().unwrap().last_execution_cancelled);
    w.stop().await;
}
