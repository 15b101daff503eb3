//! Every way a call can fail: the right kind, a message a person can act on, the context, no
//! panic, and never the API key.

mod common;

use std::time::{Duration, Instant};

use common::*;
use msbw_backend::{
    Aftermath, CodeRequest, ErrorKind, ExecStatus, ListFilter, Operation, SandboxBackend, SandboxSpec, Template,
};
use msbw_http::HttpBackend;
use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// Answers every RPC with `response` and lists with a keyed backend.
async fn list_error(response: ResponseTemplate) -> msbw_backend::BackendError {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/v1/rpc"))
        .respond_with(response)
        .mount(&server)
        .await;
    let err = keyed_backend(&server)
        .list(&ListFilter::namespace("team-a"))
        .await
        .expect_err("the call must fail");
    assert_clean(&err);
    assert_eq!(err.operation(), Operation::List);
    err
}

fn code(timeout: Duration) -> CodeRequest {
    code_request("print(1)", timeout)
}

#[tokio::test]
async fn connection_refused_is_connect_and_says_where_and_what_to_do() {
    let url = format!("http://127.0.0.1:{}", closed_port());
    let backend = HttpBackend::new(config(&url).with_api_key(KEY)).unwrap();
    let err = backend.list(&ListFilter::default()).await.unwrap_err();
    assert_clean(&err);
    assert_eq!(err.kind(), ErrorKind::Connect);
    assert!(err.is_retryable());
    let text = err.to_string();
    assert!(
        text.contains(&url) && text.contains("msb server start") && text.contains("MSB_SERVER_URL"),
        "{text}"
    );
    let err = backend
        .run_code(&id("sb1"), &code(Duration::from_secs(1)))
        .await
        .unwrap_err();
    assert_clean(&err);
    assert_eq!((err.kind(), err.sandbox()), (ErrorKind::Connect, Some(&id("sb1"))));
    let err = backend.health().await.unwrap_err();
    assert_eq!((err.kind(), err.operation()), (ErrorKind::Connect, Operation::Health));
}

#[tokio::test]
async fn unauthorised_answers_say_which_problem_it_is() {
    let err = list_error(rest(401, "Invalid credentials", 1001)).await;
    assert_eq!(err.kind(), ErrorKind::Unauthorized);
    assert!(
        err.to_string().contains("invalid credentials") && err.to_string().contains("MSB_API_KEY"),
        "{err}"
    );

    let err = list_error(rest(401, "Invalid or expired token", 1004)).await;
    assert_eq!(err.kind(), ErrorKind::Unauthorized);
    assert!(err.to_string().contains("invalid or expired token"), "{err}");
    assert!(err.to_string().contains("msb server keygen"), "{err}");

    let err = list_error(rest(403, "Access denied", 3001)).await;
    assert_eq!(err.kind(), ErrorKind::Unauthorized);
    assert!(
        err.to_string().contains("access denied to namespace \"team-a\""),
        "{err}"
    );
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn a_missing_key_is_named_as_such() {
    let server = server_answering("sandbox.metrics.get", rest(401, "Invalid credentials", 1001)).await;
    let err = backend(&server).list(&ListFilter::default()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unauthorized);
    assert!(err.to_string().contains("none is configured"), "{err}");
}

#[tokio::test]
async fn an_unknown_method_means_this_is_not_a_microsandbox_server() {
    let err = list_error(ResponseTemplate::new(404).set_body_json(json!({
        "jsonrpc": "2.0", "error": {"code": -32601, "message": "Method not found: sandbox.metrics.get"}, "id": 1
    })))
    .await;
    assert_eq!(err.kind(), ErrorKind::Protocol);
    let text = err.to_string();
    assert!(
        text.contains("not a microsandbox server") && text.contains("-32601"),
        "{text}"
    );

    let err = list_error(ResponseTemplate::new(404)).await;
    assert_eq!(err.kind(), ErrorKind::Protocol);
    assert!(
        err.to_string().contains("does not look like a microsandbox server"),
        "{err}"
    );
}

#[tokio::test]
async fn a_masked_500_of_a_listing_points_at_the_servers_log() {
    let err = list_error(masked()).await;
    assert_eq!(err.kind(), ErrorKind::Internal);
    assert!(err.to_string().contains("hides the reason in its own log"), "{err}");
}

#[tokio::test]
async fn json_rpc_error_objects_are_read() {
    let envelope = |code: i64, message: &str| {
        ResponseTemplate::new(200)
            .set_body_json(json!({"jsonrpc": "2.0", "error": {"code": code, "message": message}, "id": 1}))
    };
    let err = list_error(envelope(-32603, "boom inside")).await;
    assert_eq!(err.kind(), ErrorKind::Internal);
    assert!(err.to_string().contains("boom inside"), "{err}");
    let err = list_error(envelope(-32602, "bad namespace")).await;
    assert_eq!(err.kind(), ErrorKind::Rejected);
    assert!(err.to_string().contains("bad namespace"), "{err}");
    let err = list_error(ResponseTemplate::new(400).set_body_json(
        json!({"jsonrpc": "2.0", "error": {"code": -32600, "message": "Invalid or missing jsonrpc version field"}}),
    ))
    .await;
    assert_eq!(err.kind(), ErrorKind::Protocol);
    assert!(err.to_string().contains("disagree on the protocol"), "{err}");
}

#[tokio::test]
async fn malformed_json_html_pages_empty_bodies_and_wrong_shapes_are_protocol_errors() {
    for (response, expected) in [
        (
            ResponseTemplate::new(200).set_body_raw(r#"{"jsonrpc":"2.0","result":{"sandb"#, "application/json"),
            "malformed JSON",
        ),
        (
            ResponseTemplate::new(200).set_body_raw("<html><body>Welcome to nginx!</body></html>", "text/html"),
            "HTML page",
        ),
        (
            ResponseTemplate::new(500).set_body_raw("<html><h1>500 Internal Server Error</h1></html>", "text/html"),
            "HTML page",
        ),
        (ResponseTemplate::new(200), "empty body"),
        (ok(json!(42)), "wrong shape"),
        (ok(json!({"sandboxes": [{"name": 7}]})), "wrong shape"),
        (
            ResponseTemplate::new(200).set_body_json(json!({"jsonrpc": "2.0", "id": 1})),
            "without \"result\"",
        ),
        (
            ResponseTemplate::new(200).set_body_json(json!([1, 2])),
            "not a JSON-RPC answer",
        ),
        (
            ResponseTemplate::new(422).set_body_string("Failed to deserialize the JSON body into the target type"),
            "disagree on the protocol",
        ),
        (
            ResponseTemplate::new(415).set_body_string("Expected request with `Content-Type: application/json`"),
            "disagree on the protocol",
        ),
    ] {
        let err = list_error(response).await;
        assert_eq!(err.kind(), ErrorKind::Protocol, "{err}");
        assert!(err.to_string().contains(expected), "expected {expected:?} in: {err}");
    }
}

#[tokio::test]
async fn other_statuses_map_to_what_they_mean() {
    let err = list_error(
        ResponseTemplate::new(413).set_body_string("Failed to buffer the request body: length limit exceeded"),
    )
    .await;
    assert_eq!(err.kind(), ErrorKind::Rejected);
    assert!(err.to_string().contains("2 MiB"), "{err}");
    let err = list_error(ResponseTemplate::new(502).set_body_raw("<html>Bad Gateway</html>", "text/html")).await;
    assert_eq!(err.kind(), ErrorKind::Connect);
    assert!(err.to_string().contains("HTTP 502"), "{err}");
    let err = list_error(rest(400, "Sandbox name can only contain alphanumeric characters", 2001)).await;
    assert_eq!(err.kind(), ErrorKind::Rejected);
    assert!(err.to_string().contains("Sandbox name can only contain"), "{err}");
}

#[tokio::test]
async fn a_key_echoed_by_the_server_is_scrubbed() {
    let err = list_error(rest(500, &format!("bad header Bearer {KEY}"), 5002)).await;
    assert!(err.to_string().contains("Bearer ***"), "{err}");
}

#[tokio::test]
async fn a_slow_listing_times_out() {
    let server = server_answering("sandbox.metrics.get", metrics(&[]).set_delay(Duration::from_secs(5))).await;
    let backend = backend_with(&server, |c| {
        c.request_timeout = Duration::from_millis(200);
        c.retry = msbw_http::RetryPolicy::none();
    });
    let started = Instant::now();
    let err = backend.list(&ListFilter::default()).await.unwrap_err();
    assert_clean(&err);
    assert_eq!(err.kind(), ErrorKind::Timeout);
    assert!(err.is_retryable());
    assert!(started.elapsed() < Duration::from_secs(3), "the limit was not applied");
    assert!(err.to_string().contains("did not answer"), "{err}");
}

#[tokio::test]
async fn slow_code_and_commands_are_timed_out_results_that_leave_the_sandbox_unusable() {
    let slowly = Duration::from_secs(5);
    let server = server_answering("sandbox.repl.run", repl_result(&[]).set_delay(slowly)).await;
    answer(&server, "sandbox.command.run", command_result(0, &[]).set_delay(slowly)).await;
    let backend = backend_with(&server, |c| c.exec_grace = Duration::from_millis(300));
    let out = backend
        .run_code(&id("sb1"), &code(Duration::from_millis(400)))
        .await
        .unwrap();
    assert_eq!(
        out.status,
        ExecStatus::TimedOut {
            after: Duration::from_millis(400),
            aftermath: Aftermath::Unusable
        }
    );
    assert_eq!(
        params_of(&server, "sandbox.repl.run").await[0]["timeout"],
        1,
        "rounded up"
    );
    let command = command_request("sleep", &["100"], Duration::from_secs(1));
    let out = backend.run_command(&id("sb1"), &command).await.unwrap();
    assert_timed_out_unusable(&out);
}

#[tokio::test]
async fn a_start_rejected_by_validation_is_rejected_and_needs_no_release() {
    let server = server_answering("sandbox.metrics.get", metrics(&[])).await;
    rpc("sandbox.start")
        .respond_with(rest(
            400,
            "No configuration provided and no existing configuration found for sandbox 'sb1'",
            2001,
        ))
        .mount(&server)
        .await;
    let err = keyed_backend(&server)
        .start(&SandboxSpec::new(id("sb1"), Template::Python))
        .await
        .unwrap_err();
    assert_clean(&err);
    assert_eq!((err.kind(), err.operation()), (ErrorKind::Rejected, Operation::Start));
    assert!(err.to_string().contains("No configuration provided"), "{err}");
    assert!(params_of(&server, "sandbox.stop").await.is_empty());
}

#[tokio::test]
async fn health_failures_are_classified() {
    for (response, kind, expected) in [
        (ResponseTemplate::new(404), ErrorKind::Protocol, "/api/v1/health"),
        (
            ResponseTemplate::new(200).set_body_raw("<!DOCTYPE html><html></html>", "text/html"),
            ErrorKind::Protocol,
            "HTML page",
        ),
        (
            ResponseTemplate::new(200).set_body_string("ok"),
            ErrorKind::Protocol,
            "malformed JSON",
        ),
        (ResponseTemplate::new(503), ErrorKind::Connect, "unavailable"),
    ] {
        let server = MockServer::start().await;
        health().respond_with(response).mount(&server).await;
        let backend = backend(&server);
        let err = backend.health().await.unwrap_err();
        assert_clean(&err);
        assert_eq!(err.kind(), kind, "{err}");
        assert!(err.to_string().contains(expected), "expected {expected:?} in {err}");
        assert!(
            !backend.capabilities().await.read_only_volumes,
            "a failed health check promises nothing"
        );
    }
}

#[tokio::test]
async fn invalid_input_is_refused_without_a_request() {
    let server = MockServer::start().await;
    let backend = keyed_backend(&server);
    let zero = backend.run_code(&id("sb1"), &code(Duration::ZERO)).await.unwrap_err();
    assert_eq!(zero.kind(), ErrorKind::InvalidInput);
    let huge = CodeRequest {
        code: "x".repeat(3 * 1024 * 1024),
        ..code(Duration::from_secs(1))
    };
    let err = backend.run_code(&id("sb1"), &huge).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(err.to_string().contains("2 MiB"), "{err}");
    for command in ["", "  ", "bad\0program"] {
        let request = command_request(command, &[], Duration::from_secs(1));
        let err = backend.run_command(&id("sb1"), &request).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{command:?}");
        assert_clean(&err);
    }
    let bad_id = msbw_backend::SandboxId {
        namespace: "default".into(),
        name: "../etc".into(),
    };
    assert_eq!(backend.stop(&bad_id).await.unwrap_err().kind(), ErrorKind::InvalidInput);
    let filter = ListFilter {
        namespace: Some("bad ns".into()),
        name: None,
    };
    assert_eq!(backend.list(&filter).await.unwrap_err().kind(), ErrorKind::InvalidInput);
    assert!(server.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_namespace_listing_masked_while_its_first_sandbox_is_created_is_asked_again() {
    let server = server_answering_in_turn("sandbox.metrics.get", vec![(masked(), 2)], metrics(&[("s1", true)])).await;
    let list = backend(&server).list(&ListFilter::namespace("default")).await.unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(methods(&server).await, ["sandbox.metrics.get"; 3]);
}
