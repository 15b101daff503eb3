//! Retries happen where they are safe (idempotent calls, requests that were never sent) and
//! never where code or a command may have run.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::*;
use msbw_backend::{CodeRequest, ErrorKind, ExecStatus, ListFilter, SandboxBackend, SandboxSpec, Template};
use msbw_http::{HttpBackend, RetryPolicy};
use serde_json::json;
use wiremock::ResponseTemplate;

fn code() -> CodeRequest {
    code_request("print(1)", Duration::from_secs(1))
}

fn unavailable() -> ResponseTemplate {
    ResponseTemplate::new(503).set_body_string("Service Unavailable")
}

#[tokio::test]
async fn listing_retries_gateway_errors_then_succeeds() {
    let server =
        server_answering_in_turn("sandbox.metrics.get", vec![(unavailable(), 2)], metrics(&[("a", true)])).await;
    let listed = backend(&server).list(&ListFilter::default()).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(requests(&server).await.len(), 3);
}

#[tokio::test]
async fn retries_are_bounded() {
    let server = server_answering("sandbox.metrics.get", unavailable()).await;
    let err = backend(&server).list(&ListFilter::default()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Connect);
    assert!(err.to_string().contains("HTTP 503"), "{err}");
    assert_eq!(requests(&server).await.len(), 3, "max_attempts is 3 in the test config");
}

#[tokio::test]
async fn stop_and_health_retry_too() {
    let server = server_answering_in_turn(
        "sandbox.stop",
        vec![(unavailable(), 1)],
        ok(json!("Sandbox a stopped successfully")),
    )
    .await;
    answer(&server, "sandbox.metrics.get", metrics(&[("a", false)])).await;
    health()
        .respond_with(ResponseTemplate::new(504))
        .up_to_n_times(2)
        .mount(&server)
        .await;
    health().respond_with(healthy()).mount(&server).await;
    let backend = backend(&server);
    backend.stop(&id("a")).await.unwrap();
    assert_eq!(params_of(&server, "sandbox.stop").await.len(), 2);
    assert_eq!(backend.health().await.unwrap().message, "Service is healthy");
}

#[tokio::test]
async fn a_slow_listing_is_retried_but_slow_code_is_not() {
    let server = server_answering_in_turn(
        "sandbox.metrics.get",
        vec![(metrics(&[]).set_delay(Duration::from_secs(3)), 1)],
        metrics(&[("a", true)]),
    )
    .await;
    answer(
        &server,
        "sandbox.command.run",
        command_result(0, &[]).set_delay(Duration::from_secs(3)),
    )
    .await;
    let backend = backend_with(&server, |c| {
        c.request_timeout = Duration::from_millis(300);
        c.exec_grace = Duration::from_millis(200);
    });
    assert_eq!(backend.list(&ListFilter::default()).await.unwrap().len(), 1);
    assert_eq!(params_of(&server, "sandbox.metrics.get").await.len(), 2);

    let request = command_request("sleep", &["100"], Duration::from_secs(1));
    let out = backend.run_command(&id("a"), &request).await.unwrap();
    assert!(out.timed_out(), "{out:?}");
    assert_eq!(
        params_of(&server, "sandbox.command.run").await.len(),
        1,
        "a command is never re-sent"
    );
}

#[tokio::test]
async fn code_commands_and_starts_are_not_resent_after_a_gateway_error() {
    let server = server_answering("sandbox.repl.run", unavailable()).await;
    answer(&server, "sandbox.command.run", unavailable()).await;
    answer(&server, "sandbox.metrics.get", metrics(&[])).await;
    answer(&server, "sandbox.start", unavailable()).await;
    answer(&server, "sandbox.stop", ok(json!("stopped"))).await;
    let backend = backend(&server);
    let err = backend.run_code(&id("a"), &code()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Connect);
    let request = command_request("echo", &[], Duration::from_secs(1));
    backend.run_command(&id("a"), &request).await.unwrap_err();
    let err = backend
        .start(&SandboxSpec::new(id("a"), Template::Python))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Connect);
    for method in ["sandbox.repl.run", "sandbox.command.run", "sandbox.start"] {
        assert_eq!(params_of(&server, method).await.len(), 1, "{method} was sent again");
    }
}

#[tokio::test]
async fn code_that_was_never_sent_is_sent_once_the_server_is_up() {
    let port = closed_port();
    let mut config = config(&format!("http://127.0.0.1:{port}"));
    config.retry = RetryPolicy {
        max_attempts: 40,
        initial_backoff: Duration::from_millis(25),
        max_backoff: Duration::from_millis(50),
    };
    let backend = HttpBackend::new(config).unwrap();
    let answer = json!({"jsonrpc": "2.0", "result": {"status": "success", "language": "python",
        "output": [{"stream": "stdout", "text": "1"}]}, "id": 1});
    let late_server = std::thread::spawn(move || {
        // The server comes up while the client is retrying refused connections.
        std::thread::sleep(Duration::from_millis(300));
        let listener = std::net::TcpListener::bind(("127.0.0.1", port)).expect("rebind the port");
        raw_server(listener, Some(answer.to_string()))
    });
    let out = backend.run_code(&id("a"), &code()).await.unwrap();
    let connections = late_server.join().unwrap();
    assert_eq!((out.stdout.as_str(), out.status), ("1\n", ExecStatus::Completed));
    assert_eq!(connections.load(Ordering::SeqCst), 1, "sent exactly once");
}

#[tokio::test]
async fn code_is_not_resent_when_the_connection_breaks_after_sending() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let connections = raw_server(listener, None);
    let backend = HttpBackend::new(config(&url).with_api_key(KEY)).unwrap();
    let err = backend.run_code(&id("a"), &code()).await.unwrap_err();
    assert_clean(&err);
    assert_eq!(err.kind(), ErrorKind::Connect);
    assert!(!err.is_retryable(), "the code may have run: {err}");
    assert!(err.to_string().contains("not repeated"), "{err}");
    assert_eq!(connections.load(Ordering::SeqCst), 1);

    // The same break on an idempotent call is retried.
    let err = backend.list(&ListFilter::default()).await.unwrap_err();
    assert!(err.is_retryable());
    assert_eq!(connections.load(Ordering::SeqCst), 1 + 3);
}
