//! Every method's success: the exact JSON sent (params, the Authorization header) and the
//! result read back.

mod common;

use std::time::Duration;

use common::*;
use msbw_backend::{ExecStatus, ListFilter, SandboxBackend, SandboxBackendExt, SandboxSpec, Template, VolumeMapping};
use serde_json::json;
use wiremock::{MockServer, ResponseTemplate};

async fn server_with_running(name: &str) -> MockServer {
    server_answering("sandbox.metrics.get", metrics(&[(name, true)])).await
}

#[tokio::test]
async fn health_reads_the_message_and_sends_no_key() {
    let server = MockServer::start().await;
    health().respond_with(healthy()).expect(1).mount(&server).await;
    let health = keyed_backend(&server).health().await.unwrap();
    assert_eq!(health.message, "Service is healthy");
    let received = server.received_requests().await.unwrap();
    assert!(
        received[0].headers.get("authorization").is_none(),
        "health needs no key"
    );
}

#[tokio::test]
async fn start_sends_the_full_config_then_waits_for_the_agent() {
    let server = server_answering("sandbox.metrics.get", not_found_namespace("default")).await;
    rpc("sandbox.start")
        .respond_with(ok(json!("Sandbox sb1 started successfully")))
        .expect(1)
        .mount(&server)
        .await;
    rpc("sandbox.command.run")
        .respond_with(command_result(0, &[]))
        .expect(1)
        .mount(&server)
        .await;
    let backend = keyed_backend(&server);
    let mut spec = SandboxSpec::new(id("sb1"), Template::Python);
    spec.memory_mb = 512;
    spec.cpus = 2;
    spec.volumes
        .push(VolumeMapping::new("/data/in", "/sandbox/in").unwrap());
    spec.env.push(("GREETING".into(), "hello=world".into()));
    backend.start(&spec).await.unwrap();

    assert_eq!(
        methods(&server).await,
        ["sandbox.metrics.get", "sandbox.start", "sandbox.command.run"]
    );
    assert_eq!(
        params_of(&server, "sandbox.start").await,
        [json!({
            "sandbox": "sb1",
            "namespace": "default",
            "config": {
                "image": "microsandbox/python",
                "memory": 512,
                "cpus": 2,
                "volumes": ["/data/in:/sandbox/in"],
                "envs": ["GREETING=hello=world"],
            }
        })]
    );
    assert_eq!(
        params_of(&server, "sandbox.command.run").await,
        [json!({"sandbox": "sb1", "namespace": "default", "command": "true", "args": [], "timeout": 5})]
    );
    for request in server.received_requests().await.unwrap() {
        assert_eq!(
            request.headers.get("authorization").and_then(|v| v.to_str().ok()),
            Some(format!("Bearer {KEY}").as_str())
        );
        assert_eq!(
            request.headers.get("content-type").and_then(|v| v.to_str().ok()),
            Some("application/json")
        );
    }
}

#[tokio::test]
async fn node_sandboxes_use_the_node_image_and_host_directory_images_get_a_shell() {
    let server = server_answering("sandbox.metrics.get", metrics(&[])).await;
    answer(&server, "sandbox.start", ok(json!("Sandbox n started successfully"))).await;
    answer(&server, "sandbox.command.run", command_result(0, &[])).await;
    let backend = backend(&server);
    backend.start(&SandboxSpec::new(id("n"), Template::Node)).await.unwrap();
    let mut own = SandboxSpec::new(id("n"), Template::Python);
    own.image = Some("/srv/rootfs".into());
    backend.start(&own).await.unwrap();

    let starts = params_of(&server, "sandbox.start").await;
    assert_eq!(starts[0]["config"]["image"], "microsandbox/node");
    assert!(
        starts[0]["config"].get("shell").is_none(),
        "OCI images run their own command"
    );
    assert_eq!(starts[1]["config"]["image"], "/srv/rootfs");
    assert_eq!(starts[1]["config"]["shell"], "/bin/sh");
    let received = server.received_requests().await.unwrap();
    assert!(
        received.iter().all(|r| r.headers.get("authorization").is_none()),
        "no key configured, no Authorization header"
    );
}

#[tokio::test]
async fn stop_sends_its_params_and_waits_until_not_running() {
    let server = MockServer::start().await;
    rpc("sandbox.stop")
        .respond_with(ok(json!("Sandbox sb1 stopped successfully")))
        .expect(1)
        .mount(&server)
        .await;
    // SIGTERM takes a moment: still running at the first look, stopped at the second.
    answer_in_turn(
        &server,
        "sandbox.metrics.get",
        vec![(metrics(&[("sb1", true)]), 1)],
        metrics(&[("sb1", false)]),
    )
    .await;
    keyed_backend(&server).stop(&id("sb1")).await.unwrap();
    assert_stopped_once(&server, "sb1").await;
    assert_eq!(
        params_of(&server, "sandbox.metrics.get").await,
        [
            json!({"namespace": "default", "sandbox": "sb1"}),
            json!({"namespace": "default", "sandbox": "sb1"})
        ]
    );
}

#[tokio::test]
async fn list_asks_every_namespace_and_keeps_running_sandboxes() {
    let server = MockServer::start().await;
    rpc("sandbox.metrics.get")
        .respond_with(ok(json!({"sandboxes": [
            {"namespace": "default", "name": "a", "running": true, "cpu_usage": 2.5, "memory_usage": 40, "disk_usage": 4096},
            {"namespace": "team", "name": "b", "running": false, "cpu_usage": null, "memory_usage": null, "disk_usage": null},
            {"namespace": "team", "name": "c", "running": true, "cpu_usage": null, "memory_usage": 7.0, "disk_usage": null},
        ]})))
        .mount(&server)
        .await;
    let backend = keyed_backend(&server);
    let all = backend.list(&ListFilter::default()).await.unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].id, id("a"));
    assert_eq!(
        (all[0].cpu_percent, all[0].memory_mb, all[0].disk_bytes),
        (Some(2.5), Some(40), Some(4096))
    );
    assert_eq!((all[1].id.namespace.as_str(), all[1].memory_mb), ("team", Some(7)));
    let team = backend.list(&ListFilter::namespace("team")).await.unwrap();
    assert_eq!(team.len(), 1, "the filter also applies on this side: {team:?}");
    assert_eq!(
        params_of(&server, "sandbox.metrics.get").await,
        [
            json!({"namespace": "*", "sandbox": null}),
            json!({"namespace": "team", "sandbox": null})
        ]
    );
}

#[tokio::test]
async fn list_of_a_namespace_that_never_had_a_sandbox_is_empty() {
    let server = server_answering("sandbox.metrics.get", not_found_namespace("fresh")).await;
    let backend = backend(&server);
    assert!(backend.list(&ListFilter::namespace("fresh")).await.unwrap().is_empty());
    assert!(!backend.is_running(&id("x")).await.unwrap());
}

#[tokio::test]
async fn run_code_sends_language_code_and_whole_seconds() {
    let server = server_with_running("sb1").await;
    rpc("sandbox.repl.run")
        .respond_with(repl_result(&[
            ("stdout", "42"),
            ("stderr", "<stdin>:1: DeprecationWarning: old"),
            ("stdout", "done  "),
        ]))
        .expect(2)
        .mount(&server)
        .await;
    let backend = keyed_backend(&server);
    let request = code_request("print(x + 1)", Duration::from_millis(2500));
    let out = backend.run_code(&id("sb1"), &request).await.unwrap();
    // Verbatim (the manager trims): each line with its newline, trailing spaces kept.
    assert_eq!(out.stdout, "42\ndone  \n");
    assert_eq!(out.stderr, "<stdin>:1: DeprecationWarning: old\n");
    assert_eq!(out.status, ExecStatus::Completed, "a warning is not a failure");
    assert_eq!(out.exit_code, None);
    let node = code_in(Template::Node, "console.log(42)", Duration::from_secs(7));
    backend.run_code(&id("sb1"), &node).await.unwrap();
    let mut params = params_of(&server, "sandbox.repl.run").await;
    // Python code gets the end-of-output statement after a blank line (a fresh marker each call).
    let code = params[0]["code"].take();
    let statement = code.as_str().unwrap().strip_prefix("print(x + 1)\n\nexec(\"").unwrap();
    assert!(
        statement.ends_with("\", {})") && statement.matches("msbw-end-").count() == 1,
        "{statement}"
    );
    assert_eq!(
        params,
        [
            json!({"sandbox": "sb1", "namespace": "default", "language": "python", "code": null, "timeout": 3}),
            json!({"sandbox": "sb1", "namespace": "default", "language": "nodejs", "code": "console.log(42)", "timeout": 7}),
        ]
    );
    let received = server.received_requests().await.unwrap();
    assert!(received.iter().all(|r| {
        r.headers
            .get("authorization")
            .is_some_and(|v| v == format!("Bearer {KEY}").as_str())
    }));
}

#[tokio::test]
async fn python_code_is_sent_unchanged_when_the_stderr_settle_is_off() {
    let server = server_with_running("sb1").await;
    answer(&server, "sandbox.repl.run", repl_result(&[])).await;
    let backend = backend_with(&server, |c| {
        c.python_stderr_settle = Duration::ZERO;
    });
    let request = code_request("for i in range(2):\n    print(i)\n", Duration::from_secs(1));
    backend.run_code(&id("sb1"), &request).await.unwrap();
    assert_eq!(
        params_of(&server, "sandbox.repl.run").await[0]["code"],
        "for i in range(2):\n    print(i)\n"
    );
}

#[tokio::test]
async fn run_code_reports_a_python_exception_as_raised() {
    let server = server_with_running("sb1").await;
    // Verbatim from the real server 0.2.6.
    rpc("sandbox.repl.run")
        .respond_with(ResponseTemplate::new(200).set_body_raw(
            r#"{"jsonrpc":"2.0","result":{"language":"python","output":[{"stream":"stderr","text":"Traceback (most recent call last):"},{"stream":"stderr","text":"  File \"<stdin>\", line 1, in <module>"},{"stream":"stderr","text":"ZeroDivisionError: division by zero"}],"status":"success"},"id":1}"#,
            "application/json",
        ))
        .mount(&server)
        .await;
    let request = code_request("1/0", Duration::from_secs(5));
    let out = backend(&server).run_code(&id("sb1"), &request).await.unwrap();
    assert_eq!(out.status, ExecStatus::Raised);
    assert!(
        out.stderr.ends_with("ZeroDivisionError: division by zero\n"),
        "{}",
        out.stderr
    );
    assert!(!out.success());
}

#[tokio::test]
async fn run_code_reports_a_node_error_written_to_stdout_as_raised() {
    let server = server_with_running("sb1").await;
    rpc("sandbox.repl.run")
        .respond_with(repl_result(&[(
            "stdout",
            "Uncaught ReferenceError: foo is not defined",
        )]))
        .mount(&server)
        .await;
    let request = code_in(Template::Node, "foo", Duration::from_secs(5));
    let out = backend(&server).run_code(&id("sb1"), &request).await.unwrap();
    assert_eq!(out.status, ExecStatus::Raised);
}

#[tokio::test]
async fn run_command_sends_command_args_timeout_and_returns_the_exit_code() {
    let server = server_with_running("sb1").await;
    answer(
        &server,
        "sandbox.command.run",
        command_result(3, &[("stdout", "out"), ("stderr", "err")]),
    )
    .await;
    let request = command_request("sh", &["-c", "echo out; echo err >&2; exit 3"], Duration::from_secs(10));
    let out = keyed_backend(&server).run_command(&id("sb1"), &request).await.unwrap();
    assert_eq!((out.stdout.as_str(), out.stderr.as_str()), ("out\n", "err\n"));
    assert_eq!(out.exit_code, Some(3));
    assert_eq!(out.status, ExecStatus::Completed, "a non-zero exit is a result");
    assert_eq!(
        params_of(&server, "sandbox.command.run").await,
        [json!({
            "sandbox": "sb1", "namespace": "default", "command": "sh",
            "args": ["-c", "echo out; echo err >&2; exit 3"], "timeout": 10,
        })]
    );
}

#[tokio::test]
async fn capabilities_follow_the_health_announcement_and_are_refreshed_by_health() {
    let server = MockServer::start().await;
    health().respond_with(healthy()).up_to_n_times(1).mount(&server).await;
    health()
        .respond_with(
            ResponseTemplate::new(200).set_body_json(
                json!({"message": "msbw serve", "capabilities": {"read_only_volumes": true, "future": 1}}),
            ),
        )
        .mount(&server)
        .await;
    let backend = backend(&server);
    let caps = backend.capabilities().await;
    assert!(!caps.read_only_volumes, "an old server announces nothing");
    assert_eq!(caps.templates, Template::ALL.to_vec());
    assert!(caps.concurrent_commands && caps.metrics && !caps.streaming && !caps.network_isolated);
    assert!(!backend.capabilities().await.read_only_volumes, "the answer is cached");
    assert_eq!(server.received_requests().await.unwrap().len(), 1);
    backend.health().await.unwrap();
    assert!(
        backend.capabilities().await.read_only_volumes,
        "health refreshes the cache"
    );
}

#[tokio::test]
async fn the_backends_debug_shows_neither_the_key_nor_url_credentials() {
    let mut config = config("http://admin:hunter2@127.0.0.1:1");
    config.api_key = Some(KEY.into());
    let backend = msbw_http::HttpBackend::new(config).unwrap();
    let debug = format!("{backend:?}");
    assert!(
        !debug.contains("test-secret-key") && !debug.contains("hunter2"),
        "{debug}"
    );
    assert!(debug.contains("http://***@127.0.0.1:1"), "{debug}");
    assert!(debug.contains("microsandbox/python"), "{debug}");
    assert_eq!(backend.name(), "microsandbox");
}

#[tokio::test]
async fn from_config_maps_the_wrapper_configuration() {
    let wrapper = msbw_config::WrapperConfig::builder()
        .server_url("http://127.0.0.1:5999")
        .api_key(KEY)
        .set(msbw_config::ConfigKey::PythonImage, "my/python")
        .build()
        .unwrap();
    let backend = msbw_http::HttpBackend::from_config(&wrapper).unwrap();
    assert_eq!(backend.config().server_url, "http://127.0.0.1:5999");
    assert_eq!(backend.config().python_image, "my/python");
    assert_eq!(backend.config().node_image, "microsandbox/node");
    assert!(backend.config().api_key.is_some());
}

#[tokio::test]
async fn a_bad_url_is_refused_at_construction() {
    for url in ["127.0.0.1:5555", "ftp://host", "http://"] {
        let err = msbw_http::HttpBackend::new(msbw_http::HttpBackendConfig::new(url)).unwrap_err();
        assert_eq!(err.kind(), msbw_backend::ErrorKind::InvalidInput, "{url}");
        assert!(err.to_string().contains("server URL"), "{err}");
    }
}
