//! One test (or more) per defence of the protocol spec, "Behaviour a client must defend
//! against", numbered as there.

mod common;

use std::time::{Duration, Instant};

use common::*;
use msbw_backend::{
    Aftermath, BackendError, CodeRequest, CommandRequest, ErrorKind, ExecStatus, ListFilter, SandboxBackend,
    SandboxBackendExt, SandboxSpec, Template, VolumeMapping,
};
use serde_json::json;
use wiremock::{MockServer, ResponseTemplate};

fn spec(name: &str) -> SandboxSpec {
    let mut spec = SandboxSpec::new(id(name), Template::Python);
    spec.start_timeout = Duration::from_secs(5);
    spec
}

fn code(text: &str) -> CodeRequest {
    code_request(text, Duration::from_secs(2))
}

fn command(program: &str, args: &[&str], seconds: u64) -> CommandRequest {
    command_request(program, args, Duration::from_secs(seconds))
}

/// A server whose start succeeds and whose listing says `listed`.
async fn starting_server(listed: &[(&str, bool)]) -> MockServer {
    let server = server_answering("sandbox.metrics.get", metrics(listed)).await;
    answer(&server, "sandbox.start", ok(json!("Sandbox sb started successfully"))).await;
    answer(&server, "sandbox.stop", ok(json!("Sandbox sb stopped successfully"))).await;
    server
}

// Defence 1: wait for the agent after a start; retry forwarded calls right after a start.

#[tokio::test]
async fn d1_start_returns_only_once_the_agent_answers() {
    let (server, fake) = FakeServer::start().await;
    fake.state().agent_delay = Duration::from_millis(400);
    let backend = backend(&server);
    let began = Instant::now();
    backend.start(&spec("sb")).await.unwrap();
    assert!(
        began.elapsed() >= Duration::from_millis(400),
        "returned before the agent was up"
    );
    let probes = params_of(&server, "sandbox.command.run").await;
    assert!(probes.len() > 1, "the agent was probed until it answered: {probes:?}");
    assert!(probes.iter().all(|p| p["command"] == "true"));
    let out = backend.run_code(&spec("sb").id, &code("print('ready')")).await.unwrap();
    assert_eq!(out.stdout, "ready\n");
}

/// Starts sandbox `sb` with a start limit of `limit` and asserts that it fails as a clean
/// timeout whose message contains `says`.
async fn start_times_out(server: &MockServer, limit: Duration, says: &str) {
    let mut spec = spec("sb");
    spec.start_timeout = limit;
    let err = backend(server)
        .start(&spec)
        .await
        .expect_err("the start should time out");
    assert_clean(&err);
    assert_eq!(err.kind(), ErrorKind::Timeout);
    assert!(err.to_string().contains(says), "{err}");
}

/// Asserts that `err` is a clean `Internal` error whose message contains every one of `says`.
fn assert_internal_saying(err: &BackendError, says: &[&str]) {
    assert_clean(err);
    assert_eq!(err.kind(), ErrorKind::Internal);
    let text = err.to_string();
    assert!(says.iter().all(|s| text.contains(s)), "{text}");
}

#[tokio::test]
async fn d1_an_agent_that_never_answers_fails_the_start_and_releases_it() {
    let (server, fake) = FakeServer::start().await;
    fake.state().agent_delay = Duration::from_secs(3600);
    start_times_out(&server, Duration::from_millis(600), "agent did not answer").await;
    assert_stopped_once(&server, "sb").await;
}

#[tokio::test]
async fn d1_a_sandbox_that_dies_while_its_agent_starts_fails_fast() {
    let server = server_answering_in_turn(
        "sandbox.metrics.get",
        vec![(metrics(&[]), 1)],
        metrics(&[("sb", false)]),
    )
    .await;
    answer(&server, "sandbox.start", ok(json!("Sandbox sb started successfully"))).await;
    answer(&server, "sandbox.command.run", masked()).await;
    answer(&server, "sandbox.stop", ok(json!("stopped"))).await;
    let began = Instant::now();
    let err = backend(&server).start(&spec("sb")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Internal);
    assert!(err.to_string().contains("stopped before its agent answered"), "{err}");
    assert!(
        began.elapsed() < Duration::from_secs(4),
        "it waited for the whole start timeout"
    );
    assert_eq!(params_of(&server, "sandbox.stop").await.len(), 1);
}

#[tokio::test]
async fn d1_a_masked_failure_right_after_start_is_retried() {
    let server = starting_server(&[]).await;
    answer(&server, "sandbox.command.run", command_result(0, &[])).await;
    answer_in_turn(
        &server,
        "sandbox.repl.run",
        vec![(masked(), 2)],
        repl_result(&[("stdout", "1")]),
    )
    .await;
    let backend = backend(&server);
    backend.start(&spec("sb")).await.unwrap();
    let out = backend.run_code(&id("sb"), &code("print(1)")).await.unwrap();
    assert_eq!(out.stdout, "1\n");
    assert_eq!(params_of(&server, "sandbox.repl.run").await.len(), 3);
}

#[tokio::test]
async fn d1_no_retry_for_a_sandbox_this_backend_did_not_just_start() {
    let server = server_answering_in_turn("sandbox.repl.run", vec![(masked(), 1)], repl_result(&[])).await;
    answer(&server, "sandbox.metrics.get", metrics(&[("sb", true)])).await;
    let err = backend(&server).run_code(&id("sb"), &code("x = 1")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Internal);
    assert_eq!(
        params_of(&server, "sandbox.repl.run").await.len(),
        1,
        "code may have run: not re-sent"
    );
}

// Defence 2: "timed out waiting" / "couldn't verify" are unknown until the listing says running.

#[tokio::test]
async fn d2_an_uncertain_start_is_confirmed_with_the_listing() {
    let server = server_answering_in_turn(
        "sandbox.metrics.get",
        vec![(metrics(&[]), 1), (metrics(&[("sb", false)]), 2)],
        metrics(&[("sb", true)]),
    )
    .await;
    rpc("sandbox.start")
        .respond_with(ok(json!(
            "Sandbox sb was started, but timed out waiting for it to be fully running. It may still be initializing."
        )))
        .mount(&server)
        .await;
    answer(&server, "sandbox.command.run", command_result(0, &[])).await;
    backend(&server).start(&spec("sb")).await.unwrap();
    assert_eq!(
        methods(&server).await,
        [
            "sandbox.metrics.get",
            "sandbox.start",
            "sandbox.metrics.get",
            "sandbox.metrics.get",
            "sandbox.metrics.get",
            "sandbox.command.run"
        ]
    );
}

#[tokio::test]
async fn d2_an_uncertain_start_that_never_runs_fails_and_is_released() {
    let server = server_answering("sandbox.metrics.get", metrics(&[("sb", false)])).await;
    rpc("sandbox.start")
        .respond_with(ok(json!(
            "Sandbox sb was started, but couldn't verify it's running: boom"
        )))
        .mount(&server)
        .await;
    answer(&server, "sandbox.stop", ok(json!("Sandbox sb stopped successfully"))).await;
    start_times_out(&server, Duration::from_millis(400), "couldn't verify").await;
    assert_eq!(params_of(&server, "sandbox.stop").await.len(), 1);
    assert!(params_of(&server, "sandbox.command.run").await.is_empty());
}

// Defence 3: never start a running sandbox.

#[tokio::test]
async fn d3_a_running_sandbox_is_not_started_again() {
    let server = starting_server(&[("sb", true)]).await;
    let err = backend(&server).start(&spec("sb")).await.unwrap_err();
    assert_clean(&err);
    assert_eq!(err.kind(), ErrorKind::AlreadyExists);
    assert!(err.to_string().contains("already running"), "{err}");
    assert_eq!(
        methods(&server).await,
        ["sandbox.metrics.get"],
        "nothing but the check was sent"
    );
}

#[tokio::test]
async fn d3_a_stopped_sandbox_of_the_same_name_may_start() {
    let server = starting_server(&[("sb", false)]).await;
    answer(&server, "sandbox.command.run", command_result(0, &[])).await;
    backend(&server).start(&spec("sb")).await.unwrap();
    assert_eq!(params_of(&server, "sandbox.start").await.len(), 1);
}

// Defence 4: starts in one namespace are serialised.

#[tokio::test]
async fn d4_starts_in_one_namespace_run_one_at_a_time_and_other_namespaces_are_not_blocked() {
    let (server, fake) = FakeServer::start().await;
    let delay = Duration::from_millis(500);
    fake.state().start_delay = delay;
    let backend = backend(&server);
    let other = msbw_backend::SandboxId::new("other", "c").unwrap();
    let mut other_spec = spec("c");
    other_spec.id = other;
    let (spec_a, spec_b) = (spec("a"), spec("b"));
    let (a, b, c) = tokio::join!(
        backend.start(&spec_a),
        backend.start(&spec_b),
        backend.start(&other_spec)
    );
    a.unwrap();
    b.unwrap();
    c.unwrap();
    let arrivals = fake.state().start_arrivals.clone();
    let of = |ns: &str| -> Vec<Instant> { arrivals.iter().filter(|(n, _)| n == ns).map(|(_, t)| *t).collect() };
    let default = of("default");
    assert_eq!(default.len(), 2);
    let gap = default[1].duration_since(default[0]);
    assert!(gap >= delay, "two starts in one namespace overlapped: {gap:?} apart");
    let other = of("other")[0];
    let first = default[0];
    let apart = if other > first { other - first } else { first - other };
    assert!(apart < delay * 2, "a start in another namespace waited: {apart:?}");
}

#[tokio::test]
async fn d4_two_concurrent_starts_of_one_name_start_one_sandbox() {
    let (server, _fake) = FakeServer::start().await;
    let backend = backend(&server);
    let same = spec("same");
    let (a, b) = tokio::join!(backend.start(&same), backend.start(&same));
    let kinds: Vec<_> = [a, b].into_iter().map(|r| r.err().map(|e| e.kind())).collect();
    assert!(kinds.contains(&None), "{kinds:?}");
    assert!(kinds.contains(&Some(ErrorKind::AlreadyExists)), "{kinds:?}");
    assert_eq!(params_of(&server, "sandbox.start").await.len(), 1);
}

// Defence 5: every field is validated before anything is sent.

#[tokio::test]
async fn d5_invalid_specs_are_refused_before_anything_is_sent() {
    let server = MockServer::start().await;
    let backend = backend(&server);
    let mut cases = Vec::new();
    let mut bad = spec("sb");
    bad.env.push(("NOT VALID".into(), "x".into()));
    cases.push(("env name", bad));
    let mut bad = spec("sb");
    bad.volumes.push(VolumeMapping {
        host_path: "/data:x".into(),
        container_path: "/in".into(),
        read_only: false,
    });
    cases.push(("colon in a volume", bad));
    let mut bad = spec("sb");
    bad.volumes.push(VolumeMapping::new("/a", "/in").unwrap());
    bad.volumes.push(VolumeMapping::new("/b", "/in").unwrap());
    cases.push(("duplicate guest path", bad));
    let mut bad = spec("sb");
    bad.image = Some("two words".into());
    cases.push(("image", bad));
    let mut bad = spec("sb");
    bad.memory_mb = 0;
    cases.push(("memory", bad));
    let mut bad = spec("sb");
    bad.id.name = "-bad".into();
    cases.push(("name", bad));
    for (what, spec) in cases {
        let err = backend.start(&spec).await.unwrap_err();
        assert_clean(&err);
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{what}: {err}");
    }
    let blank_image = backend_with(&server, |c| c.python_image = " ".into());
    let err = blank_image.start(&spec("sb")).await.unwrap_err();
    assert!(err.to_string().contains("MSB_PYTHON_IMAGE"), "{err}");
    assert!(
        server.received_requests().await.unwrap().is_empty(),
        "something was sent"
    );
}

#[tokio::test]
async fn d5_read_only_volumes_are_refused_unless_the_server_announces_them() {
    let server = MockServer::start().await;
    health().respond_with(healthy()).mount(&server).await;
    let mut ro = spec("sb");
    ro.volumes
        .push(VolumeMapping::read_only("/data", "/sandbox/data").unwrap());
    let backend = backend(&server);
    let err = backend.start(&ro).await.unwrap_err();
    assert_clean(&err);
    assert_eq!(err.kind(), ErrorKind::Unsupported);
    assert!(err.to_string().contains("cannot mount /data read-only"), "{err}");
    assert!(requests(&server).await.is_empty(), "no RPC was sent");
    // The shared check agrees.
    assert_eq!(
        backend.check_supported(&ro).await.unwrap_err().kind(),
        ErrorKind::Unsupported
    );
}

#[tokio::test]
async fn d5_read_only_volumes_are_sent_as_ro_when_announced() {
    let server = starting_server(&[]).await;
    answer(&server, "sandbox.command.run", command_result(0, &[])).await;
    health()
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"message": "ok", "capabilities": {"read_only_volumes": true}})),
        )
        .mount(&server)
        .await;
    let mut ro = spec("sb");
    ro.volumes
        .push(VolumeMapping::read_only("/data", "/sandbox/data").unwrap());
    ro.volumes.push(VolumeMapping::new("/out", "/sandbox/out").unwrap());
    backend(&server).start(&ro).await.unwrap();
    assert_eq!(
        params_of(&server, "sandbox.start").await[0]["config"]["volumes"],
        json!(["/data:/sandbox/data:ro", "/out:/sandbox/out"])
    );
}

// Defence 6: a start with an image replaces the whole entry, so every start sends all of it.

#[tokio::test]
async fn d6_every_start_sends_the_complete_configuration() {
    let (server, _fake) = FakeServer::start().await;
    let backend = backend(&server);
    let mut full = spec("sb");
    full.memory_mb = 777;
    full.volumes.push(VolumeMapping::new("/data", "/in").unwrap());
    full.env.push(("A".into(), "1".into()));
    backend.start(&full).await.unwrap();
    backend.stop(&full.id).await.unwrap();
    backend.start(&full).await.unwrap();
    let starts = params_of(&server, "sandbox.start").await;
    assert_eq!(starts.len(), 2);
    assert_eq!(starts[0], starts[1], "the restart sent the same complete entry");
    assert_eq!(
        starts[1]["config"],
        json!({"image": "microsandbox/python", "memory": 777, "cpus": 1, "volumes": ["/data:/in"], "envs": ["A=1"]})
    );
}

// Defence 7: a failed start is stopped, which releases its entry and port.

#[tokio::test]
async fn d7_a_failed_start_is_released() {
    let server = server_answering("sandbox.metrics.get", metrics(&[])).await;
    answer(&server, "sandbox.start", masked()).await;
    answer(&server, "sandbox.stop", ok(json!("Sandbox sb stopped successfully"))).await;
    let err = keyed_backend(&server).start(&spec("sb")).await.unwrap_err();
    assert_clean(&err);
    assert_eq!(err.kind(), ErrorKind::Internal);
    assert!(
        err.to_string().contains("own log") && err.to_string().contains("released"),
        "{err}"
    );
    assert_eq!(
        methods(&server).await,
        ["sandbox.metrics.get", "sandbox.start", "sandbox.stop"]
    );
    assert_stopped_once(&server, "sb").await;
}

#[tokio::test]
async fn d7_a_start_slower_than_its_timeout_is_abandoned_and_released() {
    let server = server_answering("sandbox.metrics.get", metrics(&[])).await;
    answer(
        &server,
        "sandbox.start",
        ok(json!("Sandbox sb started successfully")).set_delay(Duration::from_secs(5)),
    )
    .await;
    answer(&server, "sandbox.stop", ok(json!("Sandbox sb stopped successfully"))).await;
    let mut spec = spec("sb");
    spec.start_timeout = Duration::from_millis(500);
    let began = Instant::now();
    let err = backend(&server).start(&spec).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout);
    assert!(began.elapsed() < Duration::from_secs(3));
    assert!(err.to_string().contains("stopped again"), "{err}");
    assert_eq!(params_of(&server, "sandbox.start").await.len(), 1);
    assert_eq!(params_of(&server, "sandbox.stop").await.len(), 1);
}

#[tokio::test]
async fn d7_a_start_answer_of_the_wrong_shape_is_released() {
    let server = server_answering("sandbox.metrics.get", metrics(&[])).await;
    answer(&server, "sandbox.start", ok(json!({"started": true}))).await;
    answer(&server, "sandbox.stop", ok(json!("stopped"))).await;
    let err = backend(&server).start(&spec("sb")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Protocol);
    assert_eq!(params_of(&server, "sandbox.stop").await.len(), 1);
}

// Defence 8: sandboxes outlive restarts; nothing about them is cached.

#[tokio::test]
async fn d8_a_sandbox_started_before_a_restart_is_used_without_starting_it() {
    let (server, _fake) = FakeServer::start().await;
    backend(&server).start(&spec("sb")).await.unwrap();
    // A new backend: as after a restart of this process (the server's restart changes nothing
    // on the wire either).
    let after = backend(&server);
    after.run_code(&id("sb"), &code("x = 41")).await.unwrap();
    assert_eq!(
        after.run_code(&id("sb"), &code("print(x + 1)")).await.unwrap().stdout,
        "42\n"
    );
    assert!(after.is_running(&id("sb")).await.unwrap());
    after.stop(&id("sb")).await.unwrap();
    assert!(!after.is_running(&id("sb")).await.unwrap());
}

#[tokio::test]
async fn d8_a_sandbox_that_went_away_is_not_taken_for_running() {
    let (server, fake) = FakeServer::start().await;
    let backend = backend_with(&server, |c| {
        c.readiness_window = Duration::ZERO; // as long after the start
    });
    backend.start(&spec("sb")).await.unwrap();
    if let Some(sb) = fake.state().sandboxes.values_mut().next() {
        sb.running = false; // it crashed, or another client stopped it
    }
    let err = backend.run_code(&id("sb"), &code("print(1)")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert!(backend.list(&ListFilter::default()).await.unwrap().is_empty());
}

// Defence 9: masked errors are decided with the registry and the listing.

#[tokio::test]
async fn d9_code_on_an_unknown_or_stopped_sandbox_is_not_found() {
    let (server, fake) = FakeServer::start().await;
    let backend = backend(&server);
    let err = backend.run_code(&id("ghost"), &code("print(1)")).await.unwrap_err();
    assert_clean(&err);
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert!(err.to_string().contains("has no sandbox default/ghost"), "{err}");

    backend.start(&spec("sb")).await.unwrap();
    backend.stop(&id("sb")).await.unwrap();
    let err = backend
        .run_command(&id("sb"), &command("echo", &["1"], 2))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert!(err.to_string().contains("is not running"), "{err}");
    assert!(!fake.state().sandboxes.is_empty());
}

#[tokio::test]
async fn d9_a_masked_command_failure_in_a_running_sandbox_is_internal_with_the_likely_causes() {
    let (server, _fake) = FakeServer::start().await;
    let backend = backend_with(&server, |c| {
        c.readiness_window = Duration::ZERO;
    });
    backend.start(&spec("sb")).await.unwrap();
    let err = backend
        .run_command(&id("sb"), &command("no-such-program", &[], 5))
        .await
        .unwrap_err();
    assert_internal_saying(&err, &["own log", "command does not exist", "sh -c"]);
}

#[tokio::test]
async fn d9_a_command_that_failed_after_its_timeout_timed_out() {
    let (server, _fake) = FakeServer::start().await;
    let backend = backend(&server);
    backend.start(&spec("sb")).await.unwrap();
    let out = backend
        .run_command(&id("sb"), &command("sleep", &["300"], 1))
        .await
        .unwrap();
    assert_eq!(
        out.status,
        ExecStatus::TimedOut {
            after: Duration::from_secs(1),
            aftermath: Aftermath::Intact
        }
    );
    assert_eq!(
        params_of(&server, "sandbox.command.run").await.last().unwrap()["timeout"],
        1
    );
}

#[tokio::test]
async fn d9_stop_of_an_unknown_sandbox_is_not_found_and_stopping_twice_is_harmless() {
    let (server, _fake) = FakeServer::start().await;
    let backend = backend(&server);
    let err = backend.stop(&id("ghost")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    backend.start(&spec("sb")).await.unwrap();
    backend.stop(&id("sb")).await.unwrap();
    backend.stop(&id("sb")).await.unwrap();
    assert_eq!(
        backend.stop(&id("ghost")).await.unwrap_err().kind(),
        ErrorKind::NotFound
    );
}

#[tokio::test]
async fn d9_asking_for_an_unknown_name_falls_back_to_the_namespace() {
    let (server, _fake) = FakeServer::start().await;
    let backend = backend(&server);
    backend.start(&spec("sb")).await.unwrap();
    assert!(!backend.is_running(&id("ghost")).await.unwrap());
    let asked: Vec<_> = params_of(&server, "sandbox.metrics.get")
        .await
        .into_iter()
        .rev()
        .take(2)
        .collect();
    assert_eq!(
        asked,
        [
            json!({"namespace": "default", "sandbox": null}),
            json!({"namespace": "default", "sandbox": "ghost"})
        ]
    );
}

#[tokio::test]
async fn d9_when_the_listing_fails_too_both_reasons_are_given() {
    let server = server_answering("sandbox.repl.run", masked()).await;
    answer(
        &server,
        "sandbox.metrics.get",
        rest(401, "Invalid or expired token", 1004),
    )
    .await;
    let err = keyed_backend(&server)
        .run_code(&id("sb"), &code("1"))
        .await
        .unwrap_err();
    assert_internal_saying(&err, &["own log", "invalid or expired token"]);
}
