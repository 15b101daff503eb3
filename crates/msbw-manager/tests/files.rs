//! File calls through the manager, over the in-memory fake (its files are a table): which calls
//! create sessions, the session held busy, code and files in the same sandbox, typed errors.

#![allow(clippy::unwrap_used)] // test helpers may unwrap

use std::sync::Arc;
use std::time::Duration;

use msbw_backend::fake::{FakeBackend, Reply};
use msbw_backend::{ErrorKind, ExecOutput, FileErrorKind, Template};
use msbw_config::WrapperConfig;
use msbw_manager::{CodeCall, FileCall, FileOutcome, ManagerError, SessionManager, SessionStatus};

async fn manager_over(fake: &FakeBackend) -> SessionManager {
    let manager = SessionManager::new(WrapperConfig::default(), Arc::new(fake.clone())).unwrap();
    manager.start().await.unwrap();
    manager
}

fn file_kind(e: &ManagerError) -> Option<FileErrorKind> {
    e.backend_error().and_then(|b| b.file_kind())
}

#[tokio::test(start_paused = true)]
async fn a_write_creates_the_session_and_reads_need_one() {
    let fake = FakeBackend::new();
    let manager = manager_over(&fake).await;
    let err = manager.file_call(FileCall::read("s", "/tmp/a")).await.unwrap_err();
    assert!(matches!(err, ManagerError::SessionNotFound { .. }), "{err}");
    for call in [FileCall::list("s", "/tmp"), FileCall::remove("s", "/tmp/a")] {
        let err = manager.file_call(call).await.unwrap_err();
        assert!(matches!(err, ManagerError::SessionNotFound { .. }), "{err}");
    }
    assert_eq!(fake.stats().start_calls, 0, "nothing but a write starts a sandbox");

    let r = manager
        .file_call(FileCall::write("s", "/tmp/a", b"\0bytes\xff".to_vec()))
        .await
        .unwrap();
    assert!(r.session_created);
    let r = manager.file_call(FileCall::read("s", "/tmp/a")).await.unwrap();
    assert_eq!(r.outcome, FileOutcome::Read(b"\0bytes\xff".to_vec()));
    assert!(!r.session_created);
    let FileOutcome::Listed(entries) = manager.file_call(FileCall::list("s", "/tmp")).await.unwrap().outcome else {
        panic!("a listing");
    };
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].size, 7);
    let err = manager
        .file_call(FileCall::read("s", "/tmp/a").max_bytes(6))
        .await
        .unwrap_err();
    assert_eq!(file_kind(&err), Some(FileErrorKind::TooLarge), "{err}");
    manager.file_call(FileCall::remove("s", "/tmp/a")).await.unwrap();
    let err = manager.file_call(FileCall::read("s", "/tmp/a")).await.unwrap_err();
    assert_eq!(file_kind(&err), Some(FileErrorKind::NotFound), "{err}");
    // A file's failure leaves the session usable.
    let session = &manager.sessions(Some("s")).unwrap()[0];
    assert_eq!(session.status, SessionStatus::Ready);
    assert_eq!(fake.stats().started, 1);
    manager.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn invalid_paths_are_refused_before_any_sandbox_starts() {
    let fake = FakeBackend::new();
    let manager = manager_over(&fake).await;
    for path in ["", "../etc/passwd", "/tmp/../../x", "a\0b"] {
        let err = manager
            .file_call(FileCall::write("s", path, b"x".to_vec()))
            .await
            .unwrap_err();
        assert_eq!(file_kind(&err), Some(FileErrorKind::InvalidPath), "{path:?}: {err}");
    }
    assert_eq!(fake.stats().start_calls, 0);
    manager.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_file_call_waits_for_running_code_and_works_in_a_node_session() {
    let fake = FakeBackend::with_script(|_, code| {
        if code == "slow" {
            Reply::After(
                Duration::from_secs(5),
                Box::new(Reply::Output(ExecOutput::completed("done", "", None))),
            )
        } else {
            Reply::Output(ExecOutput::completed(code, "", None))
        }
    });
    let manager = manager_over(&fake).await;
    manager
        .execute_code(CodeCall::new("x").session("n").template(Template::Node))
        .await
        .unwrap();
    let runner = {
        let manager = manager.clone();
        tokio::spawn(async move {
            manager
                .execute_code(CodeCall::new("slow").session("n").template(Template::Node))
                .await
        })
    };
    tokio::task::yield_now().await;
    let started = tokio::time::Instant::now();
    // The session is a node session: the write reuses it rather than mismatching.
    let r = manager
        .file_call(FileCall::write("n", "/tmp/f", b"x".to_vec()))
        .await
        .unwrap();
    assert!(!r.session_created);
    assert!(
        started.elapsed() >= Duration::from_secs(4),
        "the write waited for the running code"
    );
    assert!(runner.await.unwrap().is_ok());
    manager.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_gone_sandbox_puts_the_session_in_error_and_the_next_call_replaces_it() {
    let fake = FakeBackend::new();
    let manager = manager_over(&fake).await;
    manager
        .file_call(FileCall::write("s", "/tmp/a", b"x".to_vec()))
        .await
        .unwrap();
    let info = manager.sessions(Some("s")).unwrap()[0].clone();
    let sandbox = msbw_backend::SandboxId::new(info.namespace, info.sandbox_name).unwrap();
    use msbw_backend::SandboxBackend as _;
    fake.stop(&sandbox).await.unwrap();
    let err = manager.file_call(FileCall::read("s", "/tmp/a")).await.unwrap_err();
    assert_eq!(
        err.backend_error().map(|e| e.kind()),
        Some(ErrorKind::NotFound),
        "{err}"
    );
    assert_eq!(manager.sessions(Some("s")).unwrap()[0].status, SessionStatus::Error);
    // The next call gets a fresh sandbox (its files are gone).
    let err = manager.file_call(FileCall::read("s", "/tmp/a")).await.unwrap_err();
    assert_eq!(file_kind(&err), Some(FileErrorKind::NotFound), "{err}");
    assert_eq!(fake.stats().started, 2);
    manager.shutdown().await;
}
