//! The facade over a custom backend (the in-memory fake): the reference's operations, the
//! lifecycle, and the error codes, categories, context and suggestions.

#![allow(clippy::unwrap_used)] // test helpers may unwrap

use std::sync::Arc;
use std::time::Duration;

use microsandbox_wrapper::backend::fake::{FakeBackend, Reply};
use microsandbox_wrapper::{
    CodeCall, CommandCall, ErrorCategory, ErrorKind, MicrosandboxWrapper, SandboxFlavor, SandboxId, Template,
    VolumeMapping, WrapperConfig, WrapperError,
};

fn wrapper(fake: &FakeBackend, config: WrapperConfig) -> MicrosandboxWrapper {
    MicrosandboxWrapper::with_backend(config, Arc::new(fake.clone())).unwrap()
}

#[tokio::test(start_paused = true)]
async fn calls_before_start_fail_clearly_but_health_works() {
    let fake = FakeBackend::new();
    let w = wrapper(&fake, WrapperConfig::default());
    let err = w.execute_code("print(1)").await.unwrap_err();
    assert!(matches!(err, WrapperError::NotStarted));
    assert_eq!(err.code(), "WRAPPER_NOT_STARTED_ERROR");
    assert_eq!(err.to_string(), "the wrapper has not been started; call start() first");
    assert!(w.get_sessions(None).is_err());
    assert!(w.get_resource_stats().is_err());
    let health = w.health_check().await;
    assert!(health.healthy);
    assert!(!health.started);
    assert_eq!(health.backend, "fake");
    assert_eq!(w.backend_selection().requested, "custom");
}

#[tokio::test(start_paused = true)]
async fn scoped_use_always_stops_every_sandbox() {
    let fake = FakeBackend::new();
    let w = wrapper(&fake, WrapperConfig::default());
    let result: Result<(), WrapperError> = w
        .scoped(|w| async move {
            w.execute_code(CodeCall::new("a").session("one")).await?;
            w.execute_code(CodeCall::new("b").session("two")).await?;
            Err(WrapperError::InvalidInput {
                what: "test".into(),
                message: "fail on purpose".into(),
            })
        })
        .await;
    assert!(result.is_err());
    assert!(fake.running().is_empty(), "stopped even though the body failed");
    assert_eq!(fake.stats().started, 2);
    assert_eq!(fake.stats().stopped, 2);
}

#[tokio::test(start_paused = true)]
async fn the_references_operations_work() {
    let fake = FakeBackend::new();
    let config = WrapperConfig {
        shared_volume_mappings: vec![VolumeMapping::new("/tmp", "/sandbox/tmp").unwrap()],
        ..WrapperConfig::default()
    };
    let w = wrapper(&fake, config);
    w.start().await.unwrap();
    let r = w
        .execute_code(CodeCall::new("x = 1").session("s").flavor(SandboxFlavor::Medium))
        .await
        .unwrap();
    assert!(r.session_created && r.success);
    assert_eq!(r.template, Template::Python);
    let c = w
        .execute_command(
            CommandCall::new("echo", ["hi"])
                .session("s")
                .flavor(SandboxFlavor::Medium),
        )
        .await
        .unwrap();
    assert_eq!(c.stdout, "echo hi");
    assert!(!c.session_created);
    let sessions = w.get_sessions(None).unwrap();
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0].flavor, SandboxFlavor::Medium);
    assert_eq!(w.get_sessions(Some("nope")).unwrap().len(), 0);
    assert_eq!(w.get_volume_mappings().len(), 1);
    let stats = w.get_resource_stats().unwrap();
    assert_eq!(
        (stats.active_sessions, stats.total_memory_mb, stats.total_cpus),
        (1, 2048, 2)
    );
    assert_eq!(w.get_background_task_status().len(), 2);
    w.pause_background_tasks().unwrap();
    assert!(w.get_background_task_status().iter().all(|t| t.paused));
    w.resume_background_tasks().unwrap();
    w.restart_background_tasks().await.unwrap();
    assert!(w.stop_session("s").await.unwrap());
    assert!(!w.stop_session("s").await.unwrap());
    // A crashed peer's leftover: its owner's lease file is there, and nobody holds its lock.
    let naming = microsandbox_wrapper::manager::naming::owned_sandbox_name;
    let dead = microsandbox_wrapper::manager::naming::owner_id();
    let leases = microsandbox_wrapper::manager::Ownership::from_env().lease_dir.unwrap();
    std::fs::write(leases.join(format!("msbw-{dead}.lease")), "").unwrap();
    let orphan = microsandbox_wrapper::backend::SandboxSpec::new(
        microsandbox_wrapper::SandboxId::new("default", naming("msbw", &dead, "left")).unwrap(),
        Template::Python,
    );
    fake.insert_running(orphan);
    assert_eq!(w.cleanup_orphan_sandboxes().await.unwrap(), 1);
    let report = w.stop().await;
    assert!(report.failed.is_empty());
    assert!(matches!(
        w.execute_code("x").await.unwrap_err(),
        WrapperError::ShuttingDown
    ));
}

#[tokio::test(start_paused = true)]
async fn resource_limit_errors_carry_code_category_context_and_suggestions() {
    let fake = FakeBackend::new();
    let w = wrapper(
        &fake,
        WrapperConfig {
            max_concurrent_sessions: 1,
            ..WrapperConfig::default()
        },
    );
    w.start().await.unwrap();
    w.execute_code(CodeCall::new("x").session("a")).await.unwrap();
    let err = w.execute_code(CodeCall::new("x").session("b")).await.unwrap_err();
    assert_eq!(err.code(), "RESOURCE_LIMIT_ERROR");
    assert_eq!(err.category(), ErrorCategory::Resource);
    assert!(err.is_retryable());
    let context = err.context();
    assert!(context.contains(&("current_usage", "1".to_owned())));
    assert!(context.contains(&("limit", "1".to_owned())));
    assert!(err.suggestions().iter().any(|s| s.contains("MSB_MAX_SESSIONS")));
    assert_eq!(
        err.to_string(),
        "concurrent sessions limit reached: 1 in use, limit 1, this session needs 1"
    );
    w.stop().await;
}

#[tokio::test(start_paused = true)]
async fn backend_failures_map_to_typed_errors() {
    let fake = FakeBackend::with_script(|_, code| match code {
        "down" => Reply::Fail(ErrorKind::Connect, "connection refused".into()),
        "denied" => Reply::Fail(ErrorKind::Unauthorized, "invalid credentials".into()),
        _ => Reply::Fail(ErrorKind::Internal, "agent crashed".into()),
    });
    let w = wrapper(&fake, WrapperConfig::default());
    w.start().await.unwrap();
    let err = w.execute_code(CodeCall::new("down").session("s")).await.unwrap_err();
    assert_eq!(
        (err.code(), err.category()),
        ("CONNECTION_ERROR", ErrorCategory::Network)
    );
    let err = w.execute_code(CodeCall::new("denied").session("s")).await.unwrap_err();
    assert_eq!(err.code(), "AUTHENTICATION_ERROR");
    let err = w.execute_code(CodeCall::new("other").session("s")).await.unwrap_err();
    assert_eq!(
        (err.code(), err.category()),
        ("CODE_EXECUTION_ERROR", ErrorCategory::Execution)
    );
    assert!(err.to_string().contains("agent crashed"), "{err}");
    let err = w
        .execute_command(CommandCall::new("other", Vec::<String>::new()).session("s"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "COMMAND_EXECUTION_ERROR");
    assert!(err.context().contains(&("command", "other".to_owned())));
    fake.fail_next_starts(1);
    let err = w.execute_code(CodeCall::new("x").session("new")).await.unwrap_err();
    assert_eq!(err.code(), "SANDBOX_CREATION_ERROR");
    let err = w
        .execute_code(CodeCall::new("x").session("s").template(Template::Node))
        .await
        .unwrap_err();
    assert_eq!(
        (err.code(), err.category()),
        ("SESSION_MISMATCH_ERROR", ErrorCategory::Session)
    );
    let err = w
        .execute_code(CodeCall::new("x").timeout(Duration::ZERO))
        .await
        .unwrap_err();
    assert_eq!(
        (err.code(), err.category()),
        ("INVALID_INPUT_ERROR", ErrorCategory::Input)
    );
    w.stop().await;
}

#[tokio::test(start_paused = true)]
async fn an_invalid_configuration_is_refused_with_every_problem() {
    let config = WrapperConfig {
        max_concurrent_sessions: 0,
        session_timeout: Duration::from_secs(1),
        ..Default::default()
    };
    let err = MicrosandboxWrapper::with_backend(config, Arc::new(FakeBackend::new())).unwrap_err();
    assert_eq!(err.code(), "CONFIGURATION_ERROR");
    assert_eq!(err.category(), ErrorCategory::Configuration);
    let text = err.to_string();
    assert!(
        text.contains("MSB_SESSION_TIMEOUT") && text.contains("MSB_MAX_SESSIONS"),
        "{text}"
    );
}

#[tokio::test(start_paused = true)]
async fn fronts_open_sessions_list_sandboxes_and_read_capabilities_through_the_facade() {
    use microsandbox_wrapper::{Capabilities, SessionSpec};
    let fake = FakeBackend::new();
    let mut caps = Capabilities::default();
    caps.read_only_volumes = true;
    fake.set_capabilities(caps);
    let config = WrapperConfig {
        namespace: "front".into(),
        ..WrapperConfig::default()
    };
    let w = wrapper(&fake, config);
    assert!(
        w.capabilities().await.read_only_volumes,
        "capabilities work before start"
    );
    w.start().await.unwrap();
    let spec = SessionSpec {
        session_id: "ns/box".into(),
        template: Template::Node,
        flavor: SandboxFlavor::Small,
        extra_volumes: vec![VolumeMapping::new("/tmp", "/extra").unwrap()],
        env: vec![("GREETING".into(), "hi".into())],
    };
    let (info, created) = w.open_session(spec.clone()).await.unwrap();
    assert!(created);
    assert_eq!(fake.stats().started, 1, "the sandbox started eagerly, before any call");
    let started = fake
        .spec_of(&SandboxId::new("front", &info.sandbox_name).unwrap())
        .unwrap();
    assert!(
        started.volumes.iter().any(|v| v.container_path == "/extra"),
        "{started:?}"
    );
    assert!(
        started.env.iter().any(|(k, v)| k == "GREETING" && v == "hi"),
        "{started:?}"
    );
    let (again, created) = w.open_session(spec.clone()).await.unwrap();
    assert!(!created, "an existing session is returned as it is");
    assert_eq!(again.sandbox_name, info.sandbox_name);
    let err = w
        .open_session(SessionSpec {
            template: Template::Python,
            ..spec
        })
        .await
        .unwrap_err();
    assert!(matches!(err, WrapperError::SessionMismatch { .. }), "{err:?}");

    assert_eq!(w.session("ns/box").unwrap().unwrap().sandbox_name, info.sandbox_name);
    assert!(w.session("nobody").unwrap().is_none());
    let listed = w.list_sandboxes().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id.name, info.sandbox_name);
    assert_eq!(listed[0].id.namespace, "front");
    assert!(w.stop_session("ns/box").await.unwrap());
    assert!(w.list_sandboxes().await.unwrap().is_empty());
    w.stop().await;
}

#[cfg(all(feature = "http", feature = "local"))]
#[tokio::test]
async fn each_backend_validates_its_own_settings_before_anything_is_built() {
    use microsandbox_wrapper::{BackendKind, ConfigKey};
    let mut config = WrapperConfig {
        backend: BackendKind::Local,
        ..WrapperConfig::default()
    };
    config.backend_settings.set(ConfigKey::PythonImage, "my python");
    config.backend_settings.set(ConfigKey::LocalNetwork, "maybe");
    // Both backends' settings are checked, whichever backend is selected.
    let problems = microsandbox_wrapper::validate_config(&config).unwrap_err();
    let keys: Vec<ConfigKey> = problems.problems().iter().map(|p| p.key).collect();
    assert_eq!(keys, [ConfigKey::PythonImage, ConfigKey::LocalNetwork]);
    let err = MicrosandboxWrapper::new(config).await.unwrap_err();
    assert_eq!(err.code(), "CONFIGURATION_ERROR", "{err}");
    let text = err.to_string();
    assert!(
        text.contains("MSB_PYTHON_IMAGE (python_image) = \"my python\""),
        "{text}"
    );
    assert!(
        text.contains("MSB_LOCAL_NETWORK (local_network) = \"maybe\": is not a boolean"),
        "{text}"
    );

    let selection = microsandbox_wrapper::choose_backend(&WrapperConfig {
        backend: BackendKind::Local,
        ..WrapperConfig::default()
    })
    .await;
    assert_eq!(selection.kind, Some(BackendKind::Local));
    assert_eq!(selection.backend, "local");
    assert_eq!(
        microsandbox_wrapper::available_backends(),
        [BackendKind::Microsandbox, BackendKind::Local]
    );
}

/// A stop that fails to connect is reported as a connection failure (the backend's error is kept
/// whole), not as an internal error.
#[tokio::test(start_paused = true)]
async fn a_failed_stop_keeps_its_backend_error_kind() {
    let fake = FakeBackend::new();
    let w = wrapper(&fake, WrapperConfig::default());
    w.start().await.unwrap();
    w.execute_code(CodeCall::new("x").session("s")).await.unwrap();
    fake.fail_next_stops(1);
    let err = w.stop_session("s").await.unwrap_err();
    assert_eq!(
        (err.code(), err.category()),
        ("CONNECTION_ERROR", ErrorCategory::Network),
        "{err}"
    );
    let source = std::error::Error::source(&err)
        .map(ToString::to_string)
        .unwrap_or_default();
    assert!(source.contains("injected stop failure"), "{source}");
    w.stop().await;
}

/// A sandbox that vanishes mid-call is SANDBOX_LOST_ERROR: typed, not retryable, with the session
/// and the sandbox in its context; the code reached the backend once, and the next call works.
#[tokio::test(start_paused = true)]
async fn a_sandbox_lost_mid_call_is_a_typed_error_and_the_code_is_not_repeated() {
    let fake = FakeBackend::with_script(|_, code| {
        Reply::After(
            Duration::from_secs(if code == "slow" { 10 } else { 0 }),
            Box::new(Reply::Output(microsandbox_wrapper::ExecOutput::completed(
                code, "", None,
            ))),
        )
    });
    let w = wrapper(&fake, WrapperConfig::default());
    w.start().await.unwrap();
    let first = w.execute_code(CodeCall::new("x").session("s")).await.unwrap();
    let w2 = w.clone();
    let call = tokio::spawn(async move { w2.execute_code(CodeCall::new("slow").session("s")).await });
    tokio::time::sleep(Duration::from_secs(1)).await;
    fake.kill(&first.sandbox);
    let err = call.await.unwrap().unwrap_err();
    assert_eq!(
        (err.code(), err.category(), err.is_retryable()),
        ("SANDBOX_LOST_ERROR", ErrorCategory::Execution, false),
        "{err}"
    );
    assert!(err.context().contains(&("sandbox", first.sandbox.to_string())));
    assert!(err.suggestions().iter().any(|s| s.contains("may have run")));
    assert_eq!(fake.times_received("slow"), 1);
    assert!(
        w.execute_code(CodeCall::new("y").session("s"))
            .await
            .unwrap()
            .sandbox_replaced
    );
    w.stop().await;
}
