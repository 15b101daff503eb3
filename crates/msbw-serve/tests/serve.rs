//! `msbw serve` over the in-memory fake backend: the protocol's shapes, statuses, codes and
//! authentication, the limits, and shutdown. (The conformance suite through HttpBackend against
//! `msbw serve` over the local backend is in serve_conformance.rs.)

#![allow(clippy::unwrap_used)] // test helpers may unwrap

use std::sync::Arc;
use std::time::Duration;

use microsandbox_wrapper::backend::fake::{FakeBackend, Reply};
use microsandbox_wrapper::{ExecOutput, MicrosandboxWrapper, WrapperConfig};
use msbw_serve::key::{self as auth, Claims};
use msbw_serve::{ServeOptions, Server};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::sync::oneshot;

const KEY: &str = "test-server-key";

struct Running {
    url: String,
    client: reqwest::Client,
    fake: FakeBackend,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<microsandbox_wrapper::ShutdownReport>,
}

impl Running {
    async fn start(fake: FakeBackend, config: WrapperConfig, options: ServeOptions) -> Running {
        let wrapper = MicrosandboxWrapper::with_backend(config, Arc::new(fake.clone())).unwrap();
        let server = Server::bind("127.0.0.1:0".parse().unwrap(), wrapper, options)
            .await
            .unwrap();
        let url = format!("http://{}", server.local_addr().unwrap());
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async move {
            let _ = rx.await;
        }));
        Running {
            url,
            client: reqwest::Client::new(),
            fake,
            stop: Some(tx),
            task,
        }
    }

    async fn dev(fake: FakeBackend) -> Running {
        Running::start(fake, WrapperConfig::default(), ServeOptions::default()).await
    }

    async fn rpc_with(&self, body: Value, auth: Option<&str>) -> (StatusCode, Value) {
        let mut req = self.client.post(format!("{}/api/v1/rpc", self.url)).json(&body);
        if let Some(a) = auth {
            req = req.header("Authorization", a);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    async fn rpc(&self, method: &str, params: Value) -> (StatusCode, Value) {
        self.rpc_with(
            json!({"jsonrpc": "2.0", "method": method, "params": params, "id": 1}),
            None,
        )
        .await
    }

    async fn shutdown(mut self) -> microsandbox_wrapper::ShutdownReport {
        let _ = self.stop.take().unwrap().send(());
        self.task.await.unwrap()
    }
}

/// The params naming sandbox `name` of the default namespace.
fn sandbox(name: &str) -> Value {
    json!({"sandbox": name, "namespace": "default"})
}

/// The params of `sandbox.repl.run` of Python `code` in sandbox `name` of the default namespace.
fn python_run(name: &str, code: &str) -> Value {
    json!({"sandbox": name, "namespace": "default", "language": "python", "code": code})
}

fn start_params(name: &str, image: &str) -> Value {
    json!({"sandbox": name, "namespace": "default", "config": {"image": image, "memory": 512, "cpus": 1}})
}

#[tokio::test]
async fn health_is_open_and_announces_read_only_volumes() {
    let s = Running::dev(FakeBackend::new()).await;
    let resp = s.client.get(format!("{}/api/v1/health", s.url)).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["message"], "Service is healthy");
    assert_eq!(body["capabilities"]["read_only_volumes"], true);
    let resp = s.client.get(format!("{}/nope", s.url)).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert_eq!(resp.text().await.unwrap(), "");
    let resp = s.client.get(format!("{}/api/v1/rpc", s.url)).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
    let resp = s
        .client
        .post(format!("{}/api/v1/rpc/", s.url))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    s.shutdown().await;
}

#[tokio::test]
async fn the_five_methods_answer_with_the_real_servers_shapes() {
    let fake = FakeBackend::with_script(|_, text| match text {
        "boom" => Reply::Output(ExecOutput {
            status: microsandbox_wrapper::ExecStatus::Raised,
            ..ExecOutput::completed(
                "",
                "Traceback (most recent call last):\nZeroDivisionError: division by zero",
                None,
            )
        }),
        t if t.starts_with("sh") => Reply::Output(ExecOutput::completed("out\n", "err\n", Some(3))),
        t => Reply::Output(ExecOutput::completed(format!("{t}\nline2"), "", None)),
    });
    let s = Running::dev(fake).await;

    let (status, body) = s
        .rpc("sandbox.start", start_params("box1", "microsandbox/python"))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body,
        json!({"jsonrpc": "2.0", "result": "Sandbox box1 started successfully", "id": 1})
    );

    let (status, body) = s.rpc("sandbox.repl.run", python_run("box1", "hello")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["result"],
        json!({"status": "success", "language": "python", "output": [
            {"stream": "stdout", "text": "hello"}, {"stream": "stdout", "text": "line2"}
        ]})
    );
    let (_, body) = s.rpc("sandbox.repl.run", python_run("box1", "boom")).await;
    assert_eq!(
        body["result"]["status"], "success",
        "an exception is still a success status, as on the real server"
    );
    assert_eq!(
        body["result"]["output"][1],
        json!({"stream": "stderr", "text": "ZeroDivisionError: division by zero"})
    );

    let (status, body) = s
        .rpc(
            "sandbox.command.run",
            json!({"sandbox": "box1", "namespace": "default", "command": "sh", "args": ["-c", "exit 3"]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["result"],
        json!({"command": "sh", "args": ["-c", "exit 3"], "exit_code": 3, "success": false, "output": [
            {"stream": "stdout", "text": "out"}, {"stream": "stderr", "text": "err"}
        ]})
    );

    let (status, body) = s
        .rpc("sandbox.metrics.get", json!({"namespace": "default", "sandbox": null}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let row = &body["result"]["sandboxes"][0];
    assert_eq!(
        (
            row["namespace"].as_str(),
            row["name"].as_str(),
            row["running"].as_bool()
        ),
        (Some("default"), Some("box1"), Some(true))
    );
    assert!(row["memory_usage"].is_number(), "{row}");

    let (status, body) = s.rpc("sandbox.stop", sandbox("box1")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["result"], "Sandbox box1 stopped successfully");
    assert!(s.fake.running().is_empty(), "stop returns once the sandbox is gone");
    let (_, body) = s.rpc("sandbox.metrics.get", json!({"namespace": "*"})).await;
    assert_eq!(
        body["result"]["sandboxes"],
        json!([{"namespace": "default", "name": "box1", "running": false, "cpu_usage": null, "memory_usage": null, "disk_usage": null}])
    );
    let (status, _) = s.rpc("sandbox.stop", sandbox("box1")).await;
    assert_eq!(status, StatusCode::OK, "stopping a stopped sandbox is idempotent");
    s.shutdown().await;
}

#[tokio::test]
async fn errors_carry_the_real_servers_statuses_and_codes_and_say_why() {
    let s = Running::dev(FakeBackend::new()).await;
    let (status, body) = s.rpc("sandbox.stop", sandbox("ghost")).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(body["code"], 5002);
    assert!(body["error"].as_str().unwrap().contains("ghost"), "{body}");

    let (status, body) = s.rpc("sandbox.start", json!({"sandbox": "x"})).await;
    assert_eq!((status, body["code"].as_i64()), (StatusCode::BAD_REQUEST, Some(2001)));
    assert_eq!(body["error"], "missing field `namespace`");

    let (status, body) = s
        .rpc("sandbox.start", start_params("bad name", "microsandbox/python"))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body["error"],
        "Sandbox name can only contain alphanumeric characters, hyphens, or underscores"
    );

    let (status, body) = s.rpc("sandbox.start", start_params("b", "ubuntu:22.04")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["error"].as_str().unwrap().contains("not supported by msbw serve"),
        "{body}"
    );
    assert!(
        s.fake.running().is_empty(),
        "nothing stored or started for an invalid config"
    );

    let (status, body) = s
        .rpc("sandbox.start", start_params("b", "microsandbox/node:latest"))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = s.rpc("sandbox.start", start_params("b", "microsandbox/node")).await;
    assert_eq!(status, StatusCode::OK, "starting a running sandbox is harmless: {body}");
    assert_eq!(s.fake.stats().started, 1);
    let (status, body) = s.rpc("sandbox.start", start_params("b", "microsandbox/python")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    let (status, body) = s.rpc("sandbox.repl.run", python_run("b", "1")).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(body["error"].as_str().unwrap().contains("runs node"), "{body}");
    let (status, body) = s.rpc("sandbox.repl.run", python_run("nope", "1")).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(body["error"].as_str().unwrap().contains("not running"), "{body}");
    let (status, body) = s.rpc("sandbox.command.run", sandbox("b")).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(body["error"], "missing field `command`");
    let (status, body) = s
        .rpc("sandbox.start", json!({"sandbox": "p", "namespace": "default", "config": {"image": "microsandbox/python", "ports": ["8080:80"]}}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    s.shutdown().await;
}

#[tokio::test]
async fn envelopes_and_framework_errors_match_the_real_server() {
    let s = Running::dev(FakeBackend::new()).await;
    let (status, body) = s
        .rpc_with(json!({"jsonrpc": "2.0", "method": "sandbox.nope", "id": "abc"}), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        body,
        json!({"jsonrpc": "2.0", "error": {"code": -32601, "message": "Method not found: sandbox.nope"}, "id": "abc"})
    );
    let (status, body) = s
        .rpc_with(json!({"jsonrpc": "1.0", "method": "sandbox.stop", "id": 7}), None)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["code"], -32600);
    let (status, body) = s
        .rpc_with(
            json!({"jsonrpc": "2.0", "method": "sandbox.metrics.get", "params": {"namespace": "*"}, "id": null}),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        body.get("id").is_none(),
        "a null id is answered without an id key: {body}"
    );

    let post = |body: String, ctype: &'static str| {
        s.client
            .post(format!("{}/api/v1/rpc", s.url))
            .header("Content-Type", ctype)
            .body(body)
            .send()
    };
    assert_eq!(
        post("{not json".into(), "application/json").await.unwrap().status(),
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        post("{}".into(), "text/plain").await.unwrap().status(),
        StatusCode::UNSUPPORTED_MEDIA_TYPE
    );
    assert_eq!(
        post("[]".into(), "application/json").await.unwrap().status(),
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert_eq!(
        post(r#"{"jsonrpc":"2.0"}"#.into(), "application/json")
            .await
            .unwrap()
            .status(),
        StatusCode::UNPROCESSABLE_ENTITY
    );
    let huge = format!(
        r#"{{"jsonrpc":"2.0","method":"x","params":{{"code":"{}"}}}}"#,
        "a".repeat(2 * 1024 * 1024 + 10)
    );
    assert_eq!(
        post(huge, "application/json").await.unwrap().status(),
        StatusCode::PAYLOAD_TOO_LARGE
    );
    s.shutdown().await;
}

#[tokio::test]
async fn keys_are_checked_like_the_real_server_does() {
    let options = ServeOptions {
        key: Some(KEY.into()),
        ..Default::default()
    };
    let s = Running::start(FakeBackend::new(), WrapperConfig::default(), options).await;
    let metrics =
        json!({"jsonrpc": "2.0", "method": "sandbox.metrics.get", "params": {"namespace": "team-a"}, "id": 1});

    let (status, body) = s.rpc_with(metrics.clone(), None).await;
    assert_eq!(
        (status, body.clone()),
        (
            StatusCode::UNAUTHORIZED,
            json!({"error": "Invalid credentials", "code": 1001})
        )
    );
    let (status, body) = s.rpc_with(metrics.clone(), Some("Bearer not-a-key")).await;
    assert_eq!((status, body["code"].as_i64()), (StatusCode::UNAUTHORIZED, Some(1001)));
    let wrong = auth::mint("another-key", "*", Duration::from_secs(600));
    let (status, body) = s.rpc_with(metrics.clone(), Some(&format!("Bearer {wrong}"))).await;
    assert_eq!(
        (status, body),
        (
            StatusCode::UNAUTHORIZED,
            json!({"error": "Invalid or expired token", "code": 1004})
        )
    );
    let past = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 3600;
    let expired = auth::mint_claims(
        KEY,
        &Claims {
            exp: past,
            iat: past - 60,
            namespace: "*".into(),
        },
    );
    let (status, _) = s.rpc_with(metrics.clone(), Some(&format!("Bearer {expired}"))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let team_b = auth::mint(KEY, "team-b", Duration::from_secs(600));
    let (status, body) = s.rpc_with(metrics.clone(), Some(&format!("Bearer {team_b}"))).await;
    assert_eq!(
        (status, body),
        (StatusCode::FORBIDDEN, json!({"error": "Access denied", "code": 3001}))
    );
    let all = json!({"jsonrpc": "2.0", "method": "sandbox.metrics.get", "params": {"namespace": "*"}, "id": 1});
    let (status, _) = s.rpc_with(all, Some(&format!("Bearer {team_b}"))).await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "a scoped key cannot list every namespace"
    );

    let team_a = auth::mint(KEY, "team-a", Duration::from_secs(600));
    let (status, _) = s.rpc_with(metrics.clone(), Some(&format!("Bearer {team_a}"))).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = s.rpc_with(metrics.clone(), Some(&team_a)).await;
    assert_eq!(status, StatusCode::OK, "the raw key works too");
    let resp = s
        .client
        .post(format!("{}/api/v1/rpc", s.url))
        .header("Authorization", format!("Bearer {team_a}"))
        .header("Proxy-Authorization", "Bearer wrong")
        .json(&metrics)
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        StatusCode::UNAUTHORIZED,
        "Proxy-Authorization is read first and wins"
    );
    let resp = s.client.get(format!("{}/api/v1/health", s.url)).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK, "health needs no key");
    s.shutdown().await;
}

#[tokio::test]
async fn the_session_limit_holds_however_many_starts_arrive_at_once() {
    let config = WrapperConfig {
        max_concurrent_sessions: 2,
        ..WrapperConfig::default()
    };
    let fake = FakeBackend::new();
    fake.set_start_delay(Duration::from_millis(50));
    let s = Running::start(fake, config, ServeOptions::default()).await;
    let mut results = Vec::new();
    for i in 0..8 {
        let (client, url) = (s.client.clone(), s.url.clone());
        results.push(tokio::spawn(async move {
            let body = json!({"jsonrpc": "2.0", "method": "sandbox.start", "params": start_params(&format!("s{i}"), "microsandbox/python"), "id": i});
            let resp = client.post(format!("{url}/api/v1/rpc")).json(&body).send().await.unwrap();
            (resp.status(), resp.json::<Value>().await.unwrap())
        }));
    }
    let mut ok = 0;
    for r in results {
        let (status, body) = r.await.unwrap();
        if status == StatusCode::OK {
            ok += 1;
        } else {
            assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
            assert!(body["error"].as_str().unwrap().contains("limit reached"), "{body}");
        }
    }
    assert_eq!(ok, 2);
    assert_eq!(s.fake.stats().max_running, 2);
    let (_, body) = s.rpc("sandbox.metrics.get", json!({"namespace": "default"})).await;
    let running: Vec<String> = body["result"]["sandboxes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(running.len(), 2);
    let (status, _) = s.rpc("sandbox.stop", sandbox(&running[0])).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = s
        .rpc("sandbox.start", start_params("late", "microsandbox/python"))
        .await;
    assert_eq!(status, StatusCode::OK, "a stopped sandbox frees its slot: {body}");
    s.shutdown().await;
}

#[tokio::test]
async fn client_volumes_must_lie_under_a_volume_root_and_may_be_read_only() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let options = ServeOptions {
        key: None,
        volume_roots: vec![root.path().to_owned()],
        ..Default::default()
    };
    let s = Running::start(FakeBackend::new(), WrapperConfig::default(), options).await;
    let params = |name: &str, volume: String| json!({"sandbox": name, "namespace": "default", "config": {"image": "microsandbox/python", "volumes": [volume]}});
    let (status, body) = s.rpc("sandbox.start", params("a", "/etc:/host-etc".into())).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["error"].as_str().unwrap().contains("--volume-root"), "{body}");
    let (status, body) = s
        .rpc("sandbox.start", params("a", format!("{}:/data:ro", data.display())))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let id = s.fake.running()[0].clone();
    let spec = s.fake.spec_of(&id).unwrap();
    assert_eq!(spec.volumes.len(), 1);
    assert!(spec.volumes[0].read_only);
    assert_eq!(spec.volumes[0].container_path, "/data");
    s.shutdown().await;
}

#[tokio::test]
async fn timeouts_are_reported_like_the_real_server_but_with_the_reason() {
    let fake = FakeBackend::with_script(|_, _| {
        Reply::After(
            Duration::from_secs(30),
            Box::new(Reply::Output(ExecOutput::completed("late", "", Some(0)))),
        )
    });
    let s = Running::dev(fake).await;
    s.rpc("sandbox.start", start_params("t", "microsandbox/python")).await;
    let (status, body) = s
        .rpc(
            "sandbox.command.run",
            json!({"sandbox": "t", "namespace": "default", "command": "sleep", "args": ["30"], "timeout": 1}),
        )
        .await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(
        body["error"].as_str().unwrap().contains("timed out after 1 seconds"),
        "{body}"
    );
    let (status, body) = s
        .rpc(
            "sandbox.repl.run",
            json!({"sandbox": "t", "namespace": "default", "language": "python", "code": "x", "timeout": 1}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body["result"]["output"],
        json!([{"stream": "stderr", "text": "Error: Execution timed out after 1 seconds"}])
    );
    s.shutdown().await;
}

#[tokio::test]
async fn shutdown_stops_every_sandbox_it_started() {
    let s = Running::dev(FakeBackend::new()).await;
    for name in ["a", "b", "c"] {
        let (status, _) = s.rpc("sandbox.start", start_params(name, "microsandbox/python")).await;
        assert_eq!(status, StatusCode::OK);
    }
    let fake = s.fake.clone();
    let report = s.shutdown().await;
    assert_eq!(report.stopped, 3);
    assert!(fake.running().is_empty());
}
