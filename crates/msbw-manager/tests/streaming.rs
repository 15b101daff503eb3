//! Streamed calls: chunks then the buffered call's result, the session held for the stream's
//! life, and a dropped stream cancelling the execution as a timeout would.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use msbw_backend::fake::{FakeBackend, Reply};
use msbw_backend::{Capabilities, ExecOutput};
use msbw_config::WrapperConfig;
use msbw_manager::{CallEvent, CodeCall, CommandCall, SessionManager, SessionStatus};

fn config() -> WrapperConfig {
    WrapperConfig {
        session_timeout: Duration::from_secs(60),
        cleanup_interval: Duration::from_secs(10),
        default_execution_timeout: Duration::from_secs(600),
        ..WrapperConfig::default()
    }
}

async fn started(fake: &FakeBackend) -> SessionManager {
    let manager = SessionManager::new(config(), Arc::new(fake.clone())).expect("valid config");
    manager.start().await.expect("started");
    manager
}

fn status(manager: &SessionManager, id: &str) -> Option<SessionStatus> {
    manager.sessions(Some(id)).ok()?.first().map(|s| s.status)
}

/// Lets the manager's tasks run until `done` holds (bounded, with the clock paused).
async fn until(mut done: impl FnMut() -> bool) {
    for _ in 0..10_000 {
        if done() {
            return;
        }
        tokio::task::yield_now().await;
    }
    panic!("the condition never held");
}

#[tokio::test(start_paused = true)]
async fn a_streamed_call_yields_its_output_then_the_buffered_result() {
    let fake =
        FakeBackend::with_script(|_, text| Reply::Output(ExecOutput::completed(format!("{text}\n"), "warn\n", None)));
    let manager = started(&fake).await;
    let buffered = manager.execute_code(CodeCall::new("x").session("s")).await.unwrap();
    let mut stream = manager.execute_code_stream(CodeCall::new("x").session("s")).unwrap();
    let mut events = Vec::new();
    while let Some(event) = stream.next().await {
        events.push(event.unwrap());
    }
    assert_eq!(events.len(), 3, "{events:?}");
    assert_eq!(
        events[0],
        CallEvent::Stdout("x\n".into()),
        "the backend's output, verbatim"
    );
    assert_eq!(events[1], CallEvent::Stderr("warn\n".into()));
    let CallEvent::Finished(result) = &events[2] else {
        panic!("Finished last: {events:?}")
    };
    assert_eq!(
        (&result.stdout, &result.stderr, result.success),
        (&buffered.stdout, &buffered.stderr, true)
    );
    assert!(!result.session_created);
    let info = &manager.sessions(Some("s")).unwrap()[0];
    assert_eq!((info.executions, info.last_execution_cancelled), (2, false));
    // Commands too; `finish` collects a stream into the result.
    let r = manager
        .execute_command_stream(CommandCall::new("echo", ["hi"]).session("s"))
        .unwrap()
        .finish()
        .await
        .unwrap();
    assert_eq!(r.stdout, "echo hi");
    manager.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn invalid_calls_fail_before_a_stream_and_limits_come_through_it() {
    let fake = FakeBackend::new();
    let manager = started(&fake).await;
    assert!(
        manager
            .execute_code_stream(CodeCall::new("x").timeout(Duration::ZERO))
            .is_err()
    );
    assert!(
        manager
            .execute_command_stream(CommandCall::new(" ", Vec::<String>::new()))
            .is_err()
    );
    let mut call = CodeCall::new("x").session("missing");
    call.options.must_exist = true;
    let mut stream = manager.execute_code_stream(call).unwrap();
    let first = stream.next().await.expect("an item");
    assert!(first.is_err(), "an unknown session is the stream's error: {first:?}");
    assert!(stream.next().await.is_none());
    manager.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn the_session_is_held_for_the_streams_life() {
    let done = Reply::Output(ExecOutput::completed("done", "", None));
    let fake = FakeBackend::with_script(move |_, _| Reply::After(Duration::from_secs(300), Box::new(done.clone())));
    let manager = started(&fake).await;
    let mut stream = manager.execute_code_stream(CodeCall::new("slow").session("s")).unwrap();
    until(|| status(&manager, "s") == Some(SessionStatus::Running)).await;
    // Well past the idle timeout, with cleanup passes in between: the busy session stays.
    tokio::time::sleep(Duration::from_secs(120)).await;
    assert_eq!(manager.cleanup_idle_sessions().await.unwrap().reaped.len(), 0);
    assert_eq!(status(&manager, "s"), Some(SessionStatus::Running));
    assert_eq!(manager.resource_stats().active_sessions, 1);
    let mut last = None;
    while let Some(event) = stream.next().await {
        last = Some(event.unwrap());
    }
    assert!(matches!(last, Some(CallEvent::Finished(r)) if r.stdout == "done"));
    assert_eq!(status(&manager, "s"), Some(SessionStatus::Ready));
    manager.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn dropping_the_stream_cancels_the_execution_as_a_timeout_does() {
    let fake = FakeBackend::with_script(|_, text| {
        if text == "hang" {
            Reply::Hang
        } else {
            Reply::Output(ExecOutput::completed("ok", "", None))
        }
    });
    let manager = started(&fake).await;
    let stream = manager.execute_code_stream(CodeCall::new("hang").session("s")).unwrap();
    until(|| status(&manager, "s") == Some(SessionStatus::Running)).await;
    let sandbox = manager.sessions(Some("s")).unwrap()[0].sandbox_name.clone();
    drop(stream);
    // A backend that does not stream natively may still be running it: the session is in
    // error, says why, and its next call gets a fresh sandbox.
    until(|| status(&manager, "s") == Some(SessionStatus::Error)).await;
    let info = &manager.sessions(Some("s")).unwrap()[0];
    assert!(info.last_execution_cancelled);
    assert_eq!(info.executions, 1);
    let next = manager.execute_code(CodeCall::new("after").session("s")).await.unwrap();
    assert!(next.sandbox_replaced);
    assert_ne!(next.sandbox.name, sandbox);
    assert!(!manager.sessions(Some("s")).unwrap()[0].last_execution_cancelled);
    manager.shutdown().await;

    // A native streamer stops what a dropped stream ran: the session stays usable.
    let fake = FakeBackend::with_script(|_, _| Reply::Hang);
    fake.set_capabilities(Capabilities::basic().with_streaming(true));
    let manager = started(&fake).await;
    let stream = manager.execute_code_stream(CodeCall::new("hang").session("s")).unwrap();
    until(|| status(&manager, "s") == Some(SessionStatus::Running)).await;
    drop(stream);
    until(|| status(&manager, "s") == Some(SessionStatus::Ready)).await;
    assert!(manager.sessions(Some("s")).unwrap()[0].last_execution_cancelled);
    assert_eq!(fake.stats().executions, 1);
    manager.shutdown().await;
}
