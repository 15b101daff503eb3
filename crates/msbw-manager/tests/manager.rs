//! The manager's policies, each proven against the fake backend (counters, fault injection) or
//! the mockall mock, with tokio's paused clock: no test waits for real time.

#![allow(clippy::unwrap_used)] // test helpers may unwrap

mod common;

use std::sync::Arc;
use std::time::Duration;

use msbw_backend::fake::{FakeBackend, Reply};
use msbw_backend::{
    Aftermath, ExecOutput, ExecStatus, MockSandboxBackend, SandboxId, SandboxSpec, Template, VolumeMapping,
};
use msbw_config::{LimitPolicy, SandboxFlavor, WrapperConfig};
use msbw_manager::{
    CodeCall, CommandCall, ExecutionResult, LimitExceeded, ManagerError, Ownership, Resource, SessionManager,
    SessionOptions, SessionSpec, SessionStatus, naming,
};
use tokio::time::{Instant, sleep};

use common::{started, started_on_a_fake};

fn config() -> WrapperConfig {
    WrapperConfig {
        session_timeout: Duration::from_secs(60),
        cleanup_interval: Duration::from_secs(10),
        orphan_cleanup_interval: Duration::from_secs(60),
        default_execution_timeout: Duration::from_secs(30),
        sandbox_start_timeout: Duration::from_secs(30),
        ..WrapperConfig::default()
    }
}

/// [`config`] with at most `max` sessions at once.
fn limited(max: u32) -> WrapperConfig {
    WrapperConfig {
        max_concurrent_sessions: max,
        ..config()
    }
}

/// A manager whose owner leases live in `dir`.
async fn started_in(config: WrapperConfig, fake: &FakeBackend, dir: &std::path::Path) -> SessionManager {
    let manager = SessionManager::with_ownership(config, Arc::new(fake.clone()), &Ownership::in_dir(dir)).unwrap();
    manager.start().await.expect("starts");
    assert!(manager.has_owner_lease());
    manager
}

/// The owner id of a manager that crashed: its lease file is left in `dir`, unlocked.
fn dead_owner(dir: &std::path::Path) -> String {
    let owner = naming::owner_id();
    std::fs::write(dir.join(format!("msbw-{owner}.lease")), "").unwrap();
    owner
}

/// Runs `code` in the session `session`, which must succeed.
async fn code_in(manager: &SessionManager, code: &str, session: &str) -> ExecutionResult {
    manager
        .execute_code(CodeCall::new(code).session(session))
        .await
        .unwrap()
}

/// Makes `call`, which must fail; returns the error.
async fn code_err(manager: &SessionManager, call: CodeCall) -> ManagerError {
    manager.execute_code(call).await.unwrap_err()
}

fn slow(secs: u64, text: &str) -> Reply {
    Reply::After(
        Duration::from_secs(secs),
        Box::new(Reply::Output(ExecOutput::completed(text, "", None))),
    )
}

mod sessions {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_session_starts_lazily_with_its_flavor_volumes_and_start_timeout() {
        let fake = FakeBackend::new();
        let mut cfg = config();
        cfg.default_flavor = SandboxFlavor::Medium;
        cfg.shared_volume_mappings = vec![VolumeMapping::read_only("/data", "/sandbox/data").unwrap()];
        let manager = started(cfg, &fake).await;
        assert_eq!(fake.stats().start_calls, 0, "nothing starts before the first call");

        let result = code_in(&manager, "print(1)", "s1").await;
        assert!(result.session_created);
        assert!(result.success);
        assert_eq!(result.stdout, "print(1)");
        let spec = fake.spec_of(&result.sandbox).expect("running");
        assert_eq!((spec.memory_mb, spec.cpus), (2048, 2));
        assert_eq!(
            spec.volumes,
            vec![VolumeMapping::read_only("/data", "/sandbox/data").unwrap()]
        );
        assert_eq!(spec.start_timeout, Duration::from_secs(30));
        assert_eq!(spec.template, Template::Python);
        assert_eq!(spec.id.namespace, "default");
    }

    #[tokio::test(start_paused = true)]
    async fn an_existing_session_is_reused_and_only_the_first_call_creates_it() {
        let (fake, manager) = started_on_a_fake(config()).await;
        let first = code_in(&manager, "a", "user-1").await;
        let second = code_in(&manager, "b", "user-1").await;
        assert!(first.session_created);
        assert!(!second.session_created);
        assert!(!second.sandbox_replaced);
        assert_eq!(first.sandbox, second.sandbox);
        assert_eq!(fake.stats().started, 1);
        assert_eq!(manager.sessions(Some("user-1")).unwrap()[0].executions, 2);
    }

    #[tokio::test(start_paused = true)]
    async fn without_an_id_each_call_gets_a_new_generated_session() {
        let (_, manager) = started_on_a_fake(config()).await;
        let a = manager.execute_code(CodeCall::new("a")).await.unwrap();
        let b = manager.execute_code(CodeCall::new("b")).await.unwrap();
        assert_ne!(a.session_id, b.session_id);
        assert!(a.session_created && b.session_created);
        assert_eq!(manager.sessions(None).unwrap().len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn similar_session_ids_get_distinct_sandboxes_marked_as_ours() {
        let (fake, manager) = started_on_a_fake(config()).await;
        let a = code_in(&manager, "a", "user-abc-1").await;
        let b = code_in(&manager, "b", "user-abc-2").await;
        let c = code_in(&manager, "c", "user/abc/1").await;
        assert_ne!(a.sandbox, b.sandbox);
        assert_ne!(a.sandbox, c.sandbox);
        for r in [&a, &b, &c] {
            assert!(naming::is_owned("msbw", &r.sandbox.name), "{}", r.sandbox.name);
        }
        assert_eq!(fake.running().len(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn asking_an_existing_session_for_another_template_or_flavor_is_an_error() {
        let (fake, manager) = started_on_a_fake(config()).await;
        code_in(&manager, "a", "s").await;
        let err = code_err(&manager, CodeCall::new("a").session("s").template(Template::Node)).await;
        let ManagerError::SessionMismatch(mismatch) = &err else {
            panic!("not a session mismatch: {err}");
        };
        assert_eq!(mismatch.requested_template, Template::Node);
        assert_eq!(
            err.to_string(),
            "session \"s\" is a python/small session; this call asked for node/small"
        );
        let err = code_err(&manager, CodeCall::new("a").session("s").flavor(SandboxFlavor::Large)).await;
        assert!(matches!(err, ManagerError::SessionMismatch { .. }), "{err}");
        assert_eq!(fake.stats().started, 1);
    }

    /// Makes `calls` at once on a fake whose executions take 10 s each: the fake, how long the
    /// calls took together, and their results (which must be successes).
    async fn ten_second_calls(calls: impl Iterator<Item = CodeCall>) -> (FakeBackend, Duration, Vec<ExecutionResult>) {
        let fake = FakeBackend::with_script(|_, code| slow(10, code));
        let manager = started(config(), &fake).await;
        let t0 = Instant::now();
        let results = futures_join_all(calls.map(|call| manager.execute_code(call))).await;
        let took = t0.elapsed();
        let results: Vec<_> = results.into_iter().map(Result::unwrap).collect();
        assert!(results.iter().all(|r| r.success), "{results:?}");
        (fake, took, results)
    }

    #[tokio::test(start_paused = true)]
    async fn executions_within_a_session_are_serialised() {
        let (fake, took, results) =
            ten_second_calls((0..5).map(|i| CodeCall::new(format!("c{i}")).session("one"))).await;
        assert_eq!(fake.stats().max_concurrent_execs_per_sandbox, 1);
        assert_eq!(took, Duration::from_secs(50), "five 10 s executions one after another");
        assert_eq!(results.iter().filter(|r| r.session_created).count(), 1);
        assert_eq!(fake.stats().started, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn different_sessions_run_in_parallel() {
        let (_, took, _) = ten_second_calls((0..3).map(|i| CodeCall::new("x").session(format!("s{i}")))).await;
        assert_eq!(took, Duration::from_secs(10));
    }

    #[tokio::test(start_paused = true)]
    async fn statuses_go_creating_running_ready() {
        let fake = FakeBackend::with_script(|_, code| slow(10, code));
        fake.set_start_delay(Duration::from_secs(5));
        let manager = started(config(), &fake).await;
        let m = manager.clone();
        let call = tokio::spawn(async move { m.execute_code(CodeCall::new("x").session("s")).await });
        sleep(Duration::from_secs(1)).await;
        assert_eq!(manager.sessions(Some("s")).unwrap()[0].status, SessionStatus::Creating);
        sleep(Duration::from_secs(6)).await;
        assert_eq!(manager.sessions(Some("s")).unwrap()[0].status, SessionStatus::Running);
        call.await.unwrap().unwrap();
        assert_eq!(manager.sessions(Some("s")).unwrap()[0].status, SessionStatus::Ready);
    }

    #[tokio::test(start_paused = true)]
    async fn calls_before_start_and_after_shutdown_fail_clearly() {
        let fake = FakeBackend::new();
        let manager = SessionManager::new(config(), Arc::new(fake.clone())).unwrap();
        let err = manager.execute_code(CodeCall::new("x")).await.unwrap_err();
        assert!(matches!(err, ManagerError::NotStarted));
        assert_eq!(err.to_string(), "the wrapper has not been started; call start() first");
        assert!(matches!(manager.sessions(None), Err(ManagerError::NotStarted)));
        manager.start().await.unwrap();
        manager.shutdown().await;
        let err = manager.execute_code(CodeCall::new("x")).await.unwrap_err();
        assert!(matches!(err, ManagerError::ShuttingDown), "{err}");
        assert!(manager.start().await.is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn bad_arguments_are_refused_before_anything_starts() {
        let (fake, manager) = started_on_a_fake(config()).await;
        for call in [
            CodeCall::new("x").timeout(Duration::ZERO),
            CodeCall::new("x").timeout(Duration::from_secs(3601)),
            CodeCall::new("x").session(""),
            CodeCall::new("x").session("a\nb"),
            CodeCall::new("x".repeat(msbw_manager::MAX_INPUT_BYTES + 1)),
        ] {
            let err = manager.execute_code(call).await.unwrap_err();
            assert!(matches!(err, ManagerError::InvalidInput { .. }), "{err}");
        }
        let err = manager
            .execute_command(CommandCall::new("  ", Vec::<String>::new()))
            .await
            .unwrap_err();
        assert!(
            matches!(err, ManagerError::InvalidInput { what: "command", .. }),
            "{err}"
        );
        assert_eq!(fake.stats().start_calls, 0);
        let err = code_err(&manager, CodeCall::new("x").timeout(Duration::ZERO)).await;
        assert_eq!(
            err.to_string(),
            "invalid timeout: must be more than zero; leave it out for the configured default"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_default_timeout_is_the_configured_one() {
        let fake = FakeBackend::with_script(|_, code| slow(29, code));
        let manager = started(config(), &fake).await;
        assert!(manager.execute_code(CodeCall::new("x")).await.unwrap().success);
        let fake = FakeBackend::with_script(|_, code| slow(31, code));
        let manager = started(config(), &fake).await;
        let r = manager.execute_code(CodeCall::new("x")).await.unwrap();
        assert!(matches!(r.status, ExecStatus::TimedOut { after, .. } if after == Duration::from_secs(30)));
    }

    #[tokio::test(start_paused = true)]
    async fn commands_report_exit_codes_as_results() {
        let fake = FakeBackend::with_script(|_, text| {
            Reply::Output(ExecOutput::completed(format!("ran {text}\n"), "oops\n", Some(3)))
        });
        let manager = started(config(), &fake).await;
        let r = manager
            .execute_command(CommandCall::new("sh", ["-c", "exit 3"]).session("s"))
            .await
            .unwrap();
        assert_eq!(r.exit_code, Some(3));
        assert!(!r.success);
        assert_eq!(r.stdout, "ran sh -c exit 3");
        assert_eq!(r.stderr, "oops");
        assert_eq!(r.command, "sh");
        assert_eq!(r.args, vec!["-c", "exit 3"]);
    }

    #[tokio::test(start_paused = true)]
    async fn stop_session_stops_its_sandbox_and_says_whether_it_existed() {
        let (fake, manager) = started_on_a_fake(config()).await;
        let r = code_in(&manager, "x", "s").await;
        assert!(manager.stop_session("s").await.unwrap());
        assert!(!manager.stop_session("s").await.unwrap());
        assert!(fake.spec_of(&r.sandbox).is_none());
        assert!(manager.sessions(None).unwrap().is_empty());
        let again = code_in(&manager, "x", "s").await;
        assert!(again.session_created);
    }
}

mod open_sessions {
    use super::*;

    fn spec(id: &str) -> SessionSpec {
        SessionSpec {
            session_id: id.into(),
            template: Template::Node,
            flavor: SandboxFlavor::Small,
            extra_volumes: vec![VolumeMapping::read_only("/srv/in", "/in").unwrap()],
            env: vec![("MODE".into(), "test".into())],
        }
    }

    #[tokio::test(start_paused = true)]
    async fn open_session_starts_now_with_its_extras_and_is_idempotent() {
        let fake = FakeBackend::new();
        let cfg = WrapperConfig {
            shared_volume_mappings: vec![VolumeMapping::new("/shared", "/shared").unwrap()],
            ..config()
        };
        let manager = started(cfg, &fake).await;
        let (info, created) = manager.open_session(spec("ns/box")).await.unwrap();
        assert!(created);
        assert_eq!(info.status, SessionStatus::Ready);
        let id = SandboxId::new(info.namespace.clone(), info.sandbox_name.clone()).unwrap();
        let started_spec = fake.spec_of(&id).expect("started before open_session returned");
        assert_eq!(started_spec.volumes.len(), 2, "configured plus extra volumes");
        assert_eq!(started_spec.env, vec![("MODE".to_owned(), "test".to_owned())]);
        let (again, created) = manager.open_session(spec("ns/box")).await.unwrap();
        assert!(!created);
        assert_eq!(again.sandbox_name, info.sandbox_name);
        assert_eq!(fake.stats().started, 1);
        let mut other = spec("ns/box");
        other.template = Template::Python;
        assert!(matches!(
            manager.open_session(other).await,
            Err(ManagerError::SessionMismatch { .. })
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn a_replacement_sandbox_keeps_the_sessions_extras() {
        let (fake, manager) = started_on_a_fake(config()).await;
        let (info, _) = manager.open_session(spec("s")).await.unwrap();
        fake.kill(&SandboxId::new(info.namespace, info.sandbox_name).unwrap());
        let r = manager
            .execute_code(CodeCall::new("x").session("s").template(Template::Node))
            .await
            .unwrap();
        assert!(r.sandbox_replaced);
        assert_eq!(
            fake.spec_of(&r.sandbox).unwrap().env,
            vec![("MODE".to_owned(), "test".to_owned())]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn must_exist_refuses_to_create() {
        let (fake, manager) = started_on_a_fake(config()).await;
        let mut call = CodeCall::new("x").session("ghost");
        call.options = SessionOptions {
            must_exist: true,
            ..call.options
        };
        let err = manager.execute_code(call).await.unwrap_err();
        assert!(matches!(err, ManagerError::SessionNotFound { .. }), "{err}");
        assert_eq!(fake.stats().start_calls, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn open_session_counts_against_the_limits() {
        let fake = FakeBackend::new();
        let manager = started(limited(2), &fake).await;
        let opens = (0..5).map(|i| manager.open_session(spec(&format!("s{i}"))));
        let results = futures_join_all(opens).await;
        assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 2);
        assert_eq!(fake.stats().max_running, 2);
    }
}

mod admission {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_new_session_over_the_limit_is_rejected_with_resource_usage_and_limit() {
        let fake = FakeBackend::new();
        let manager = started(limited(2), &fake).await;
        code_in(&manager, "x", "a").await;
        code_in(&manager, "x", "b").await;
        let err = manager.execute_code(CodeCall::new("x").session("c")).await.unwrap_err();
        match &err {
            ManagerError::ResourceLimit(LimitExceeded {
                resource,
                usage,
                limit,
                requested,
                waited,
                ..
            }) => {
                assert_eq!(
                    (*resource, *usage, *limit, *requested, *waited),
                    (Resource::Sessions, 2, 2, 1, None)
                );
            }
            other => panic!("expected a resource limit error, got {other}"),
        }
        assert_eq!(
            err.to_string(),
            "concurrent sessions limit reached: 2 in use, limit 2, this session needs 1"
        );
        assert!(err.is_retryable());
        assert_eq!(fake.stats().start_calls, 2);
    }

    #[tokio::test(start_paused = true)]
    async fn reusing_a_session_at_the_limit_never_counts() {
        let fake = FakeBackend::new();
        let manager = started(limited(1), &fake).await;
        for _ in 0..5 {
            code_in(&manager, "x", "only").await;
        }
        assert_eq!(fake.stats().started, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn the_memory_limit_counts_flavors() {
        let fake = FakeBackend::new();
        let cfg = WrapperConfig {
            max_total_memory_mb: Some(3072),
            ..config()
        };
        let manager = started(cfg, &fake).await;
        manager
            .execute_code(CodeCall::new("x").session("m").flavor(SandboxFlavor::Medium))
            .await
            .unwrap();
        let err = code_err(&manager, CodeCall::new("x").session("m2").flavor(SandboxFlavor::Medium)).await;
        assert!(
            matches!(
                err,
                ManagerError::ResourceLimit(LimitExceeded {
                    resource: Resource::MemoryMb,
                    usage: 2048,
                    limit: 3072,
                    requested: 2048,
                    ..
                })
            ),
            "{err}"
        );
        code_in(&manager, "x", "s").await;
        assert_eq!(manager.resource_stats().total_memory_mb, 3072);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_start_leaks_no_reservation() {
        let fake = FakeBackend::new();
        let manager = started(limited(1), &fake).await;
        fake.fail_next_starts(1);
        let err = manager.execute_code(CodeCall::new("x").session("a")).await.unwrap_err();
        assert_eq!(err.phase(), msbw_manager::Phase::Starting);
        assert!(manager.sessions(None).unwrap().is_empty());
        assert_eq!(manager.resource_stats().total_memory_mb, 0);
        code_in(&manager, "x", "b").await;
    }

    #[tokio::test(start_paused = true)]
    async fn the_managers_start_deadline_has_a_grace_over_the_backends() {
        let fake = FakeBackend::new();
        // A backend that answers just after its own start timeout (30 s) is not cut short.
        fake.set_start_delay(Duration::from_secs(35));
        let manager = started(limited(1), &fake).await;
        let t0 = Instant::now();
        let r = code_in(&manager, "x", "a").await;
        assert!(r.success);
        assert_eq!(t0.elapsed(), Duration::from_secs(35));
        assert_eq!(fake.spec_of(&r.sandbox).unwrap().start_timeout, Duration::from_secs(30));
    }

    #[tokio::test(start_paused = true)]
    async fn a_start_that_times_out_is_stopped_and_releases_its_slot() {
        let fake = FakeBackend::new();
        // Past the start timeout (30 s) and the manager's grace over it.
        fake.set_start_delay(Duration::from_secs(60));
        let manager = started(limited(1), &fake).await;
        let err = manager.execute_code(CodeCall::new("x").session("a")).await.unwrap_err();
        assert!(matches!(err, ManagerError::StartTimeout { .. }), "{err}");
        assert!(err.to_string().contains("timed out after 30.0 s"), "{err}");
        fake.set_start_delay(Duration::ZERO);
        code_in(&manager, "x", "b").await;
        assert_eq!(fake.running().len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_callers_never_start_more_sandboxes_than_the_limit() {
        let fake = FakeBackend::with_script(|_, code| slow(3, code));
        fake.set_start_delay(Duration::from_secs(2));
        let manager = started(limited(3), &fake).await;
        let calls = (0..20).map(|i| manager.execute_code(CodeCall::new("x").session(format!("s{i}"))));
        let results = futures_join_all(calls).await;
        assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 3);
        assert!(
            results
                .iter()
                .filter_map(|r| r.as_ref().err())
                .all(|e| matches!(e, ManagerError::ResourceLimit { .. }))
        );
        assert_eq!(fake.stats().max_running, 3);
        assert_eq!(fake.stats().start_calls, 3);
    }

    #[tokio::test(start_paused = true)]
    async fn at_most_max_concurrent_starts_sandboxes_start_at_once() {
        let fake = common::fake_starting_in(Duration::from_secs(5));
        let cfg = WrapperConfig {
            max_concurrent_starts: 2,
            ..config()
        };
        let manager = started(cfg, &fake).await;
        let t0 = Instant::now();
        let calls = (0..6).map(|i| manager.execute_code(CodeCall::new("x").session(format!("s{i}"))));
        for r in futures_join_all(calls).await {
            r.unwrap();
        }
        assert_eq!(fake.stats().max_concurrent_starts, 2);
        assert_eq!(t0.elapsed(), Duration::from_secs(15), "three rounds of two 5 s starts");
    }

    /// One session at most; a call over the limit waits up to 20 s for a slot.
    fn waiting_up_to_20s() -> WrapperConfig {
        WrapperConfig {
            limit_policy: LimitPolicy::Wait,
            limit_wait_timeout: Duration::from_secs(20),
            ..limited(1)
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_wait_policy_waits_for_a_slot() {
        let fake = FakeBackend::new();
        let manager = started(waiting_up_to_20s(), &fake).await;
        code_in(&manager, "x", "a").await;
        let m = manager.clone();
        let waiter = tokio::spawn(async move { m.execute_code(CodeCall::new("x").session("b")).await });
        sleep(Duration::from_secs(5)).await;
        assert_eq!(manager.resource_stats().waiting_callers, 1);
        assert!(!waiter.is_finished());
        assert!(manager.stop_session("a").await.unwrap());
        let r = waiter.await.unwrap().unwrap();
        assert!(r.session_created);
        assert_eq!(manager.resource_stats().waiting_callers, 0);
        assert_eq!(fake.stats().max_running, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn the_wait_policy_gives_up_after_its_bound() {
        let fake = FakeBackend::new();
        let manager = started(waiting_up_to_20s(), &fake).await;
        code_in(&manager, "x", "a").await;
        let t0 = Instant::now();
        let err = manager.execute_code(CodeCall::new("x").session("b")).await.unwrap_err();
        assert_eq!(t0.elapsed(), Duration::from_secs(20));
        assert!(
            matches!(err, ManagerError::ResourceLimit(LimitExceeded { waited: Some(w), .. }) if w == Duration::from_secs(20)),
            "{err}"
        );
        assert!(err.to_string().ends_with("(waited 20.0 s for a slot)"), "{err}");
        assert_eq!(manager.resource_stats().waiting_callers, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn the_evict_policy_stops_the_least_recently_used_idle_session() {
        let fake = FakeBackend::new();
        let cfg = WrapperConfig {
            limit_policy: LimitPolicy::Evict,
            ..limited(2)
        };
        let manager = started(cfg, &fake).await;
        let a = code_in(&manager, "x", "a").await;
        sleep(Duration::from_secs(1)).await;
        let b = code_in(&manager, "x", "b").await;
        sleep(Duration::from_secs(1)).await;
        code_in(&manager, "x", "a").await; // a is now the most recent
        let c = code_in(&manager, "x", "c").await;
        assert!(c.session_created);
        assert!(fake.spec_of(&b.sandbox).is_none(), "b was the least recently used");
        assert!(fake.spec_of(&a.sandbox).is_some());
        let ids: Vec<String> = manager
            .sessions(None)
            .unwrap()
            .into_iter()
            .map(|s| s.session_id)
            .collect();
        assert_eq!(ids.len(), 2);
        assert!(!ids.contains(&"b".to_owned()));
        assert_eq!(fake.stats().max_running, 2);
    }

    #[tokio::test(start_paused = true)]
    async fn the_evict_policy_never_evicts_a_busy_session() {
        let fake = FakeBackend::with_script(|_, code| slow(100, code));
        let cfg = WrapperConfig {
            limit_policy: LimitPolicy::Evict,
            ..limited(1)
        };
        let manager = started(cfg, &fake).await;
        let m = manager.clone();
        let busy = tokio::spawn(async move {
            m.execute_code(CodeCall::new("x").session("busy").timeout(Duration::from_secs(200)))
                .await
        });
        sleep(Duration::from_secs(1)).await;
        let err = code_err(&manager, CodeCall::new("x").session("new")).await;
        assert!(matches!(err, ManagerError::ResourceLimit { .. }), "{err}");
        assert!(busy.await.unwrap().unwrap().success);
    }
}

mod cleanup {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn an_idle_session_is_reaped_after_the_session_timeout() {
        let fake = FakeBackend::new();
        let manager = started(config(), &fake).await; // timeout 60 s, cleanup every 10 s
        let r = code_in(&manager, "x", "s").await;
        sleep(Duration::from_secs(55)).await;
        assert_eq!(manager.sessions(None).unwrap().len(), 1, "not yet idle for 60 s");
        sleep(Duration::from_secs(10)).await; // the pass at t=60 s sees 60 s of idleness
        assert!(manager.sessions(None).unwrap().is_empty(), "reaped by the pass at 60 s");
        assert!(fake.spec_of(&r.sandbox).is_none());
        let status = manager.background_task_status();
        assert!(
            status
                .iter()
                .any(|t| t.runs >= 6 && t.last_outcome.as_deref().unwrap_or("").contains("reaped 1"))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn use_resets_the_idle_clock() {
        let (fake, manager) = started_on_a_fake(config()).await;
        code_in(&manager, "x", "s").await;
        for _ in 0..5 {
            sleep(Duration::from_secs(40)).await;
            code_in(&manager, "x", "s").await;
        }
        assert_eq!(fake.stats().started, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_running_session_is_never_reaped() {
        let fake = FakeBackend::with_script(|_, code| slow(300, code));
        let manager = started(config(), &fake).await;
        let m = manager.clone();
        let call = tokio::spawn(async move {
            m.execute_code(CodeCall::new("long").session("busy").timeout(Duration::from_secs(600)))
                .await
        });
        sleep(Duration::from_secs(250)).await;
        assert_eq!(manager.sessions(None).unwrap()[0].status, SessionStatus::Running);
        assert_eq!(fake.stats().stopped, 0);
        let r = call.await.unwrap().unwrap();
        assert!(r.success, "the long execution completed: {r:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiting_call_keeps_its_session_alive() {
        let fake = FakeBackend::with_script(|_, code| slow(100, code));
        let manager = started(config(), &fake).await;
        let (m1, m2) = (manager.clone(), manager.clone());
        let first = tokio::spawn(async move {
            m1.execute_code(CodeCall::new("1").session("s").timeout(Duration::from_secs(200)))
                .await
        });
        sleep(Duration::from_secs(1)).await;
        let second = tokio::spawn(async move {
            m2.execute_code(CodeCall::new("2").session("s").timeout(Duration::from_secs(200)))
                .await
        });
        let (a, b) = (first.await.unwrap().unwrap(), second.await.unwrap().unwrap());
        assert!(a.success && b.success);
        assert!(!b.session_created);
        assert_eq!(fake.stats().started, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_stop_keeps_the_slot_and_is_retried_on_the_next_pass() {
        let fake = FakeBackend::new();
        let manager = started(limited(1), &fake).await;
        let r = code_in(&manager, "x", "s").await;
        fake.fail_next_stops(1);
        let report = manager.cleanup_idle_sessions().await.unwrap();
        assert!(report.reaped.is_empty());
        sleep(Duration::from_secs(61)).await;
        // The background pass at 60 s reaped the session, but its stop failed.
        assert!(manager.sessions(None).unwrap().is_empty());
        assert!(fake.spec_of(&r.sandbox).is_some(), "the sandbox still runs");
        assert_eq!(manager.resource_stats().stopping_sandboxes, 1);
        let err = manager.execute_code(CodeCall::new("x").session("t")).await.unwrap_err();
        assert!(
            matches!(err, ManagerError::ResourceLimit { .. }),
            "the unstopped sandbox still counts: {err}"
        );
        sleep(Duration::from_secs(10)).await;
        assert!(fake.spec_of(&r.sandbox).is_none(), "stopped on the next pass");
        assert_eq!(manager.resource_stats().stopping_sandboxes, 0);
        code_in(&manager, "x", "t").await;
    }

    /// A backend whose first `n` stops panic; everything else is the fake's.
    #[derive(Debug)]
    struct PanickyStops {
        fake: FakeBackend,
        panics: std::sync::atomic::AtomicUsize,
    }

    /// Implements the backend trait for a wrapper of the fake in `self.fake`: each listed method
    /// is the fake's; the methods written after the list are the wrapper's own.
    macro_rules! backend_by_fake {
        ($wrapper:ty { $(async fn $method:ident(&self $(, $arg:ident: $ty:ty)*) -> $out:ty;)* } $($own:tt)*) => {
            #[async_trait::async_trait]
            impl msbw_backend::SandboxBackend for $wrapper {
                $(async fn $method(&self $(, $arg: $ty)*) -> $out {
                    self.fake.$method($($arg),*).await
                })*
                $($own)*
            }
        };
    }

    use msbw_backend::{BackendError, Capabilities, CodeRequest, CommandRequest, Health, ListFilter, SandboxInfo};

    backend_by_fake!(PanickyStops {
        async fn capabilities(&self) -> Capabilities;
        async fn health(&self) -> Result<Health, BackendError>;
        async fn start(&self, spec: &SandboxSpec) -> Result<(), BackendError>;
        async fn run_code(&self, id: &SandboxId, request: &CodeRequest) -> Result<ExecOutput, BackendError>;
        async fn run_command(&self, id: &SandboxId, request: &CommandRequest) -> Result<ExecOutput, BackendError>;
        async fn list(&self, filter: &ListFilter) -> Result<Vec<SandboxInfo>, BackendError>;
    }
        fn name(&self) -> &'static str {
            "panicky"
        }

        async fn stop(&self, id: &SandboxId) -> Result<(), BackendError> {
            let left = self.panics.load(std::sync::atomic::Ordering::SeqCst);
            if left > 0 {
                self.panics.store(left - 1, std::sync::atomic::Ordering::SeqCst);
                panic!("injected panic in stop");
            }
            self.fake.stop(id).await
        }
    );

    #[tokio::test(start_paused = true)]
    async fn a_panicking_stop_keeps_the_slot_and_is_retried_not_leaked() {
        let fake = FakeBackend::new();
        let backend = Arc::new(PanickyStops {
            fake: fake.clone(),
            panics: std::sync::atomic::AtomicUsize::new(1),
        });
        let cfg = limited(1);
        let manager = SessionManager::new(cfg, backend).unwrap();
        manager.start().await.unwrap();
        code_in(&manager, "x", "a").await;
        let err = manager.stop_session("a").await.unwrap_err();
        assert_eq!(err.phase(), msbw_manager::Phase::Stopping, "{err}");
        assert!(err.to_string().contains("panicked"), "{err}");
        // The sandbox may still exist: it keeps its slot...
        assert_eq!(manager.resource_stats().stopping_sandboxes, 1);
        let refused = manager.execute_code(CodeCall::new("x").session("b")).await.unwrap_err();
        assert!(matches!(refused, ManagerError::ResourceLimit { .. }), "{refused}");
        // ...and the next pass retries it (it is not stuck "in progress"), freeing the slot.
        let report = manager.cleanup_idle_sessions().await.unwrap();
        assert_eq!((report.stopped, report.failed), (1, 0));
        assert_eq!(manager.resource_stats().stopping_sandboxes, 0);
        assert!(fake.running().is_empty());
        code_in(&manager, "x", "b").await;
    }

    #[tokio::test(start_paused = true)]
    async fn paused_tasks_do_not_reap_and_resumed_ones_do() {
        let (_, manager) = started_on_a_fake(config()).await;
        code_in(&manager, "x", "s").await;
        manager.pause_background_tasks().unwrap();
        assert!(manager.background_task_status().iter().all(|t| t.paused && t.running));
        sleep(Duration::from_secs(200)).await;
        assert_eq!(manager.sessions(None).unwrap().len(), 1);
        manager.resume_background_tasks().unwrap();
        sleep(Duration::from_secs(10)).await;
        assert!(manager.sessions(None).unwrap().is_empty());
        manager.restart_background_tasks().await.unwrap();
        assert!(
            manager
                .background_task_status()
                .iter()
                .all(|t| t.runs == 0 && t.running && !t.paused)
        );
    }
}

mod orphans {
    use super::*;

    fn spec(name: &str) -> SandboxSpec {
        SandboxSpec::new(SandboxId::new("default", name).unwrap(), Template::Python)
    }

    #[tokio::test(start_paused = true)]
    async fn marked_orphans_are_stopped_at_start_and_foreign_sandboxes_never() {
        let dir = tempfile::tempdir().unwrap();
        let fake = FakeBackend::new();
        let dead = dead_owner(dir.path());
        let orphan = naming::owned_sandbox_name("msbw", &dead, "crashed-session");
        let other_owner = naming::owned_sandbox_name("other", &dead, "theirs");
        // Marked, but nothing here says whether its owner lives (another host, say).
        let unknown = naming::sandbox_name("msbw", "unknown");
        fake.insert_running(spec(&orphan));
        fake.insert_running(spec(&other_owner));
        fake.insert_running(spec(&unknown));
        fake.insert_running(spec("sandbox-1a2b3c4d"));
        fake.insert_running(SandboxSpec::new(
            SandboxId::new("elsewhere", naming::owned_sandbox_name("msbw", &dead, "x")).unwrap(),
            Template::Python,
        ));

        let manager =
            SessionManager::with_ownership(config(), Arc::new(fake.clone()), &Ownership::in_dir(dir.path())).unwrap();
        let report = manager.start().await.unwrap().orphans.unwrap();
        assert_eq!(report.examined, 4, "only this manager's namespace is listed");
        assert_eq!(report.foreign, 2);
        assert_eq!(report.unknown_owners, 1);
        assert_eq!(report.stopped.len(), 1);
        assert_eq!(report.stopped[0].name, orphan);
        let running: Vec<String> = fake.running().into_iter().map(|id| id.name).collect();
        assert!(!running.contains(&orphan));
        assert!(running.contains(&other_owner));
        assert!(running.contains(&unknown));
        assert!(running.contains(&"sandbox-1a2b3c4d".to_owned()));
        assert_eq!(running.len(), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn live_sessions_are_not_orphans_and_periodic_passes_find_new_ones() {
        let dir = tempfile::tempdir().unwrap();
        let fake = FakeBackend::new();
        let manager = started_in(
            WrapperConfig {
                session_timeout: Duration::from_secs(600),
                ..config()
            },
            &fake,
            dir.path(),
        )
        .await;
        let live = code_in(&manager, "x", "live").await;
        let orphan = naming::owned_sandbox_name("msbw", &dead_owner(dir.path()), "left-behind");
        fake.insert_running(spec(&orphan));
        let report = manager.cleanup_orphan_sandboxes().await.unwrap();
        assert_eq!(
            report.stopped.iter().map(|id| id.name.clone()).collect::<Vec<_>>(),
            vec![orphan.clone()]
        );
        assert!(fake.spec_of(&live.sandbox).is_some());

        let another = naming::owned_sandbox_name("msbw", &dead_owner(dir.path()), "later");
        fake.insert_running(spec(&another));
        sleep(Duration::from_secs(61)).await; // the orphan task runs every 60 s
        assert!(!fake.running().iter().any(|id| id.name == another));
        assert!(fake.spec_of(&live.sandbox).is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn a_session_being_created_is_not_an_orphan() {
        let fake = common::fake_starting_in(Duration::from_secs(10));
        let manager = started(config(), &fake).await;
        let m = manager.clone();
        let call = tokio::spawn(async move { m.execute_code(CodeCall::new("x").session("new")).await });
        sleep(Duration::from_secs(5)).await;
        let report = manager.cleanup_orphan_sandboxes().await.unwrap();
        assert!(report.stopped.is_empty());
        call.await.unwrap().unwrap();
    }
}

/// Issue 12: ownership that cannot take a live peer's sandbox.
mod ownership {
    use super::*;

    fn long_lived() -> WrapperConfig {
        WrapperConfig {
            session_timeout: Duration::from_secs(3600),
            ..config()
        }
    }

    /// Two managers with default settings (same owner mark, the environment's lease directory)
    /// over one backend: neither start-up pass, explicit pass nor periodic pass stops the other's
    /// live sandboxes.
    #[tokio::test(start_paused = true)]
    async fn two_managers_with_default_settings_never_stop_each_others_live_sandboxes() {
        let fake = FakeBackend::new();
        let a = started(long_lived(), &fake).await;
        let a1 = code_in(&a, "x", "s").await;
        let b = started(long_lived(), &fake).await;
        assert_ne!(a.owner_id(), b.owner_id());
        let b1 = code_in(&b, "x", "s").await;
        assert_eq!(fake.stats().stop_calls, 0, "B's start-up pass stopped nothing");
        let report = a.cleanup_orphan_sandboxes().await.unwrap();
        assert!(report.stopped.is_empty(), "{report:?}");
        assert_eq!(report.peers, 1);
        assert!(b.cleanup_orphan_sandboxes().await.unwrap().stopped.is_empty());
        sleep(Duration::from_secs(60 * 10)).await; // ten periodic passes each
        assert_eq!(fake.stats().stop_calls, 0);
        let a2 = code_in(&a, "y", "s").await;
        let b2 = code_in(&b, "y", "s").await;
        assert!(!a2.sandbox_replaced && a2.sandbox == a1.sandbox);
        assert!(!b2.sandbox_replaced && b2.sandbox == b1.sandbox);
        a.shutdown().await;
        assert_eq!(fake.running(), vec![b1.sandbox.clone()], "A's shutdown stops only A's");
        b.shutdown().await;
        assert!(fake.running().is_empty());
    }

    /// A manager dropped without shutdown (a crash: its lease's lock goes, its lease file stays)
    /// leaves sandboxes that the next manager's start-up pass reclaims, and only those.
    #[tokio::test(start_paused = true)]
    async fn a_crashed_managers_sandboxes_are_reclaimed_at_the_next_start() {
        let dir = tempfile::tempdir().unwrap();
        let fake = FakeBackend::new();
        let live_peer = started_in(long_lived(), &fake, dir.path()).await;
        let peer = code_in(&live_peer, "x", "p").await;
        let crashed = started_in(long_lived(), &fake, dir.path()).await;
        let mut left: Vec<SandboxId> = Vec::new();
        for s in ["a", "b"] {
            left.push(
                crashed
                    .execute_code(CodeCall::new("x").session(s))
                    .await
                    .unwrap()
                    .sandbox,
            );
        }
        drop(crashed);
        left.sort();
        let next = started_in(long_lived(), &fake, dir.path()).await;
        let report = next.start().await.unwrap(); // already started: no second pass
        assert!(report.orphans.unwrap().stopped.is_empty());
        let report = next.cleanup_orphan_sandboxes().await.unwrap();
        assert!(
            report.stopped.is_empty(),
            "the start-up pass already reclaimed them: {report:?}"
        );
        assert_eq!(
            fake.running(),
            vec![peer.sandbox.clone()],
            "exactly the crashed manager's sandboxes went"
        );
        for id in &left {
            assert!(fake.spec_of(id).is_none());
        }
        let still = code_in(&live_peer, "y", "p").await;
        assert_eq!(still.sandbox, peer.sandbox);
    }

    /// A clean shutdown gives the lease up; a manager without a usable lease directory still
    /// works and stops only its own sandboxes.
    #[tokio::test(start_paused = true)]
    async fn without_a_lease_directory_nothing_of_a_peer_is_touched() {
        let fake = FakeBackend::new();
        let peer = started(long_lived(), &fake).await;
        let theirs = code_in(&peer, "x", "p").await;
        let none = Ownership {
            lease_dir: None,
            reclaim_unknown_owners: false,
        };
        let lone = SessionManager::with_ownership(long_lived(), Arc::new(fake.clone()), &none).unwrap();
        lone.start().await.unwrap();
        assert!(!lone.has_owner_lease());
        let mine = code_in(&lone, "x", "m").await;
        let report = lone.cleanup_orphan_sandboxes().await.unwrap();
        assert_eq!((report.stopped.len(), report.unknown_owners), (0, 1));
        assert!(fake.spec_of(&theirs.sandbox).is_some() && fake.spec_of(&mine.sandbox).is_some());
        lone.shutdown().await;
        peer.shutdown().await;
        assert!(fake.running().is_empty());
    }
}

/// Issue 12 item 8: many callers with random timeouts, dropped futures and `stop_session`
/// racing executions and starts, on the paused clock.
mod stress {
    use super::*;

    #[test]
    fn stop_session_during_a_start_leaves_no_sandbox_behind() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap();
        runtime.block_on(async {
            let fake = common::fake_starting_in(Duration::from_secs(5));
            let manager = started(config(), &fake).await;
            let m = manager.clone();
            let call = tokio::spawn(async move { m.execute_code(CodeCall::new("x").session("s")).await });
            sleep(Duration::from_secs(1)).await;
            assert!(manager.stop_session("s").await.unwrap());
            let err = call.await.unwrap().unwrap_err();
            assert!(matches!(err, ManagerError::SessionNotFound { .. }), "{err}");
            assert!(
                fake.running().is_empty(),
                "the sandbox that finished starting was stopped"
            );
            assert_eq!(manager.resource_stats().stopping_sandboxes, 0);
            let stats = fake.stats();
            assert_eq!((stats.started, stats.executions), (1, 0));
        });
    }

    /// Calls run in the caller's task; a caller that drops one mid-execution (or mid-start)
    /// must still leave it to finish, recorded, in the same sandbox: nothing replaced, nothing
    /// run twice, the session ready for the next call.
    #[tokio::test(start_paused = true)]
    async fn a_dropped_call_still_finishes_in_its_sandbox() {
        let fake = FakeBackend::with_script(|_, code| slow(code.parse().unwrap_or(0), code));
        fake.set_start_delay(Duration::from_secs(2));
        let manager = started(config(), &fake).await;
        // Dropped during the start.
        let first = manager.execute_code(CodeCall::new("3").session("s"));
        assert!(tokio::time::timeout(Duration::from_secs(1), first).await.is_err());
        // Dropped during a warm execution.
        sleep(Duration::from_secs(10)).await;
        let info = manager.sessions(Some("s")).unwrap().remove(0);
        assert_eq!((info.status, info.executions), (SessionStatus::Ready, 1), "{info:?}");
        let second = manager.execute_code(CodeCall::new("5").session("s"));
        assert!(tokio::time::timeout(Duration::from_secs(1), second).await.is_err());
        let busy = manager.sessions(Some("s")).unwrap().remove(0);
        assert_eq!(busy.status, SessionStatus::Running, "the execution goes on: {busy:?}");
        sleep(Duration::from_secs(10)).await;
        let after = manager.sessions(Some("s")).unwrap().remove(0);
        assert_eq!((after.status, after.executions), (SessionStatus::Ready, 2), "{after:?}");
        assert!(!after.last_execution_cancelled);
        let third = manager.execute_code(CodeCall::new("0").session("s")).await.unwrap();
        assert!(!third.sandbox_replaced && !third.session_created, "{third:?}");
        assert_eq!(third.sandbox.name, info.sandbox_name);
        let stats = fake.stats();
        assert_eq!((stats.started, stats.executions), (1, 3));
        assert_eq!((fake.times_received("3"), fake.times_received("5")), (1, 1));
        manager.shutdown().await;
    }

    #[test]
    fn thousands_of_racing_callers_leave_limits_sessions_and_sandboxes_consistent() {
        common::for_random_seeds(4, stress);
    }

    async fn stress(seed: u64) {
        const LIMIT: u32 = 8;
        let fake = FakeBackend::with_script(|_, code| slow(code.parse().unwrap_or(0), code));
        fake.set_start_delay(Duration::from_secs(1));
        let cfg = WrapperConfig {
            max_concurrent_sessions: LIMIT,
            limit_policy: LimitPolicy::Wait,
            limit_wait_timeout: Duration::from_secs(30),
            ..config()
        };
        let manager = started(cfg, &fake).await;
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut callers = tokio::task::JoinSet::new();
        for _ in 0..2000 {
            let m = manager.clone();
            let session = format!("s{}", rng.u32(0..24));
            let at = Duration::from_millis(rng.u64(0..120_000));
            let exec = rng.u64(0..6);
            let patience = Duration::from_secs(rng.u64(1..40));
            let stop = rng.u8(0..12) == 0;
            callers.spawn(async move {
                sleep(at).await;
                if stop {
                    m.stop_session(&session).await.map(drop)
                } else {
                    let call = m.execute_code(CodeCall::new(exec.to_string()).session(session));
                    // A caller that gives up drops the future.
                    match tokio::time::timeout(patience, call).await {
                        Err(_) => Ok(()),
                        Ok(Ok(r)) => {
                            assert!(r.success, "{r:?}");
                            Ok(())
                        }
                        Ok(Err(e)) => Err(e),
                    }
                }
            });
        }
        while let Some(joined) = callers.join_next().await {
            match joined.unwrap() {
                Ok(())
                | Err(ManagerError::ResourceLimit(_))
                | Err(ManagerError::SandboxLost(_))
                | Err(ManagerError::SessionNotFound { .. }) => {}
                Err(other) => panic!("unexpected error {other}"),
            }
        }
        // Calls whose callers gave up still finish in their own tasks.
        sleep(Duration::from_secs(120)).await;
        let stats = fake.stats();
        assert!(
            stats.max_running <= LIMIT as usize,
            "{} sandboxes at once > {LIMIT}",
            stats.max_running
        );
        assert!(
            stats.max_concurrent_execs_per_sandbox <= 1,
            "executions in one session are serialised"
        );
        for s in manager.sessions(None).unwrap() {
            assert!(
                matches!(s.status, SessionStatus::Ready | SessionStatus::Error),
                "stuck: {s:?}"
            );
        }
        let rs = manager.resource_stats();
        assert_eq!(rs.waiting_callers, 0);
        assert!(rs.active_sessions <= LIMIT as usize);
        // Every session still serves a call.
        for s in manager.sessions(None).unwrap() {
            manager
                .execute_code(CodeCall::new("0").session(s.session_id))
                .await
                .unwrap();
        }
        common::shut_down_cleanly(&manager, &fake).await;
    }
}

mod timeouts {
    use super::*;

    /// Runs the code "loop", which never ends, in session "s" with a 5 s timeout, on a fake whose
    /// timed-out executions leave their sandbox `aftermath`; other code answers at once.
    async fn a_timed_out_loop(aftermath: Aftermath) -> (FakeBackend, SessionManager, ExecutionResult) {
        let fake = FakeBackend::with_script(|_, code| if code == "loop" { slow(1000, "") } else { slow(0, code) });
        fake.set_timeout_aftermath(aftermath);
        let manager = started(config(), &fake).await;
        let r = manager
            .execute_code(CodeCall::new("loop").session("s").timeout(Duration::from_secs(5)))
            .await
            .unwrap();
        assert!(!r.success);
        let after = Duration::from_secs(5);
        assert_eq!(r.status, ExecStatus::TimedOut { after, aftermath });
        (fake, manager, r)
    }

    #[tokio::test(start_paused = true)]
    async fn a_timeout_that_kept_the_sandbox_leaves_the_session_usable() {
        let (_, manager, r) = a_timed_out_loop(Aftermath::StateLost).await;
        assert_eq!(manager.sessions(Some("s")).unwrap()[0].status, SessionStatus::Ready);
        let next = code_in(&manager, "ok", "s").await;
        assert!(!next.sandbox_replaced);
        assert_eq!(next.sandbox, r.sandbox);
    }

    #[tokio::test(start_paused = true)]
    async fn an_unusable_sandbox_is_replaced_on_next_use() {
        let (fake, manager, r) = a_timed_out_loop(Aftermath::Unusable).await;
        assert_eq!(manager.sessions(Some("s")).unwrap()[0].status, SessionStatus::Error);
        let next = code_in(&manager, "ok", "s").await;
        assert!(next.sandbox_replaced);
        assert!(!next.session_created);
        assert_ne!(next.sandbox, r.sandbox);
        assert!(fake.spec_of(&r.sandbox).is_none(), "the unusable sandbox was stopped");
        assert_eq!(fake.running(), vec![next.sandbox.clone()]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_backend_that_never_answers_is_cut_off_and_its_sandbox_replaced() {
        let fake = FakeBackend::with_script(|_, code| if code == "hang" { Reply::Hang } else { slow(0, code) });
        let manager = started(config(), &fake).await;
        let t0 = Instant::now();
        let r = manager
            .execute_code(CodeCall::new("hang").session("s").timeout(Duration::from_secs(10)))
            .await
            .unwrap();
        assert_eq!(t0.elapsed(), Duration::from_secs(40), "the timeout plus the 30 s grace");
        assert!(matches!(
            r.status,
            ExecStatus::TimedOut {
                aftermath: Aftermath::Unusable,
                ..
            }
        ));
        let next = code_in(&manager, "ok", "s").await;
        assert!(next.sandbox_replaced);
    }

    #[tokio::test(start_paused = true)]
    async fn a_sandbox_that_vanished_is_replaced_transparently() {
        let (fake, manager) = started_on_a_fake(config()).await;
        let r = code_in(&manager, "a", "s").await;
        assert!(fake.kill(&r.sandbox));
        let next = code_in(&manager, "b", "s").await;
        assert!(next.success);
        assert!(next.sandbox_replaced);
        assert_ne!(next.sandbox, r.sandbox);
        assert_eq!(fake.running().len(), 1);
        assert_eq!(
            fake.times_received("b"),
            1,
            "refused unsent, then run once in the replacement"
        );
    }

    /// Issue 12: a sandbox that vanishes while the code may have reached it (here: while it
    /// runs) fails the call with a typed error, and the code is never sent again; the session's
    /// next call gets a fresh sandbox.
    #[tokio::test(start_paused = true)]
    async fn code_that_may_have_run_is_never_sent_twice() {
        let fake = FakeBackend::with_script(|_, code| {
            if code.starts_with("append") {
                slow(10, code)
            } else {
                Reply::Output(ExecOutput::completed(code, "", None))
            }
        });
        let manager = started(config(), &fake).await;
        let first = code_in(&manager, "x = 1", "s").await;
        let m = manager.clone();
        let call = tokio::spawn(async move { m.execute_code(CodeCall::new("append line").session("s")).await });
        sleep(Duration::from_secs(1)).await;
        assert!(fake.kill(&first.sandbox), "the sandbox vanishes mid-call");
        let err = call.await.unwrap().unwrap_err();
        match &err {
            ManagerError::SandboxLost(lost) => {
                assert_eq!(lost.session_id, "s");
                assert_eq!(lost.sandbox, first.sandbox);
            }
            other => panic!("expected SandboxLost, got {other}"),
        }
        assert!(!err.is_retryable(), "a caller must not blindly repeat it");
        assert_eq!(
            fake.times_received("append line"),
            1,
            "the code reached the backend exactly once"
        );
        assert_eq!(manager.sessions(Some("s")).unwrap()[0].status, SessionStatus::Error);

        let next = code_in(&manager, "print(1)", "s").await;
        assert!(next.success && next.sandbox_replaced && !next.session_created);
        assert_ne!(next.sandbox, first.sandbox);
        assert_eq!(fake.times_received("append line"), 1);
        assert_eq!(fake.running(), vec![next.sandbox.clone()]);
    }

    /// The same for commands.
    #[tokio::test(start_paused = true)]
    async fn a_command_that_may_have_run_is_never_sent_twice() {
        let fake = FakeBackend::with_script(|_, text| slow(if text.starts_with("touch") { 10 } else { 0 }, text));
        let manager = started(config(), &fake).await;
        let first = code_in(&manager, "x", "s").await;
        let m = manager.clone();
        let call = tokio::spawn(async move { m.execute_command(CommandCall::new("touch", ["f"]).session("s")).await });
        sleep(Duration::from_secs(1)).await;
        fake.kill(&first.sandbox);
        let err = call.await.unwrap().unwrap_err();
        assert!(matches!(err, ManagerError::SandboxLost(_)), "{err}");
        assert_eq!(fake.times_received("touch f"), 1);
    }
}

mod shutdown {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn shutdown_stops_every_sandbox_it_started() {
        let (fake, manager) = started_on_a_fake(config()).await;
        for i in 0..5 {
            manager
                .execute_code(CodeCall::new("x").session(format!("s{i}")))
                .await
                .unwrap();
        }
        let foreign = SandboxSpec::new(SandboxId::new("default", "not-ours").unwrap(), Template::Python);
        fake.insert_running(foreign.clone());
        let report = manager.shutdown().await;
        assert_eq!(report.stopped, 5);
        assert!(report.failed.is_empty());
        let stats = fake.stats();
        assert_eq!(stats.started, stats.stopped, "starts == stops");
        assert_eq!(fake.running(), vec![foreign.id]);
        assert!(manager.background_task_status().iter().all(|t| !t.running));
        assert_eq!(manager.shutdown().await, Default::default());
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_waits_for_running_executions_up_to_its_bound() {
        let fake = FakeBackend::with_script(|_, code| if code == "long" { slow(500, code) } else { slow(5, code) });
        let cfg = WrapperConfig {
            shutdown_timeout: Duration::from_secs(20),
            ..config()
        };
        let manager = started(cfg, &fake).await;
        let (m1, m2) = (manager.clone(), manager.clone());
        let short = tokio::spawn(async move { m1.execute_code(CodeCall::new("short").session("a")).await });
        let long = tokio::spawn(async move {
            m2.execute_code(CodeCall::new("long").session("b").timeout(Duration::from_secs(1000)))
                .await
        });
        sleep(Duration::from_secs(1)).await;
        let t0 = Instant::now();
        let report = manager.shutdown().await;
        assert_eq!(t0.elapsed(), Duration::from_secs(20));
        assert_eq!(report.interrupted_executions, 1);
        assert_eq!(report.stopped, 2);
        assert!(
            short.await.unwrap().unwrap().success,
            "the short execution finished first"
        );
        assert!(long.await.unwrap().is_err(), "the long one lost its sandbox");
        assert!(fake.running().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_reports_what_it_could_not_stop() {
        let (fake, manager) = started_on_a_fake(config()).await;
        code_in(&manager, "x", "a").await;
        fake.fail_next_stops(2);
        let report = manager.shutdown().await;
        assert_eq!(report.stopped, 0);
        assert_eq!(report.failed.len(), 1);
        assert!(report.failed[0].1.contains("injected stop failure"), "{report:?}");
    }
}

mod with_mocks {
    use super::*;

    /// A mock named "mock" with the basic capabilities and no sandboxes to list; each test adds
    /// what it expects of starts and executions.
    fn basic_mock() -> MockSandboxBackend {
        let mut mock = MockSandboxBackend::new();
        mock.expect_name().return_const("mock");
        mock.expect_capabilities().returning(msbw_backend::Capabilities::basic);
        mock.expect_list().returning(|_| Ok(vec![]));
        mock
    }

    #[tokio::test(start_paused = true)]
    async fn a_read_only_volume_on_a_backend_that_cannot_is_refused_before_start() {
        let mut mock = basic_mock();
        mock.expect_start().never();
        let cfg = WrapperConfig {
            shared_volume_mappings: vec![VolumeMapping::read_only("/data", "/sandbox/data").unwrap()],
            ..config()
        };
        let manager = SessionManager::new(cfg, Arc::new(mock)).unwrap();
        manager.start().await.unwrap();
        let err = manager.execute_code(CodeCall::new("x")).await.unwrap_err();
        let source = err.backend_error().expect("a backend error");
        assert_eq!(source.kind(), msbw_backend::ErrorKind::Unsupported);
        assert!(err.to_string().contains("cannot mount /data read-only"), "{err}");
        assert_eq!(manager.resource_stats().active_sessions, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn the_backend_gets_the_exact_spec_and_request() {
        let mut mock = basic_mock();
        mock.expect_start()
            .withf(|spec| {
                spec.template == Template::Node
                    && spec.memory_mb == 4096
                    && spec.cpus == 4
                    && spec.id.name.starts_with("team7-job-42-")
            })
            .times(1)
            .returning(|_| Ok(()));
        // A buffered call asks the backend for a buffered result (only streamed calls stream).
        mock.expect_run_code()
            .withf(|_, req| {
                req.language == Template::Node && req.code == "1+1" && req.timeout == Duration::from_secs(12)
            })
            .times(1)
            .returning(|_, _| Ok(ExecOutput::completed("2\n\n", "", None)));
        mock.expect_run_code_stream().never();
        mock.expect_stop().times(1).returning(|_| Ok(()));
        let cfg = WrapperConfig {
            owner_mark: "team7".into(),
            ..config()
        };
        let manager = SessionManager::new(cfg, Arc::new(mock)).unwrap();
        manager.start().await.unwrap();
        let r = manager
            .execute_code(
                CodeCall::new("1+1")
                    .template(Template::Node)
                    .flavor(SandboxFlavor::Large)
                    .session("job 42")
                    .timeout(Duration::from_secs(12)),
            )
            .await
            .unwrap();
        assert_eq!(r.stdout, "2", "trailing white space is trimmed");
        assert_eq!(manager.shutdown().await.stopped, 1);
    }
}

mod stats {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn resource_stats_count_sessions_memory_and_cpus() {
        let (_, manager) = started_on_a_fake(config()).await;
        code_in(&manager, "x", "a").await;
        manager
            .execute_code(CodeCall::new("x").session("b").flavor(SandboxFlavor::Large))
            .await
            .unwrap();
        sleep(Duration::from_secs(7)).await;
        let s = manager.resource_stats();
        assert_eq!(s.active_sessions, 2);
        assert_eq!(s.max_sessions, 10);
        assert_eq!(s.sessions_by_flavor.get("small"), Some(&1));
        assert_eq!(s.sessions_by_flavor.get("large"), Some(&1));
        assert_eq!(s.total_memory_mb, 1024 + 4096);
        assert_eq!(s.total_cpus, 5);
        assert_eq!(s.uptime_seconds, 7);
        assert_eq!(s.backend, "fake");
    }
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

        /// Any number of callers with any limit and any schedule: never more sandboxes than the
        /// limit, every refusal is a limit error, and shutdown stops everything started.
        #[test]
        fn limits_hold_under_any_schedule(
            limit in 1u32..6,
            callers in prop::collection::vec((0u64..20, 0u64..3, 0u64..15), 1..24),
            start_delay in 0u64..4,
            policy in prop::sample::select(vec![LimitPolicy::Reject, LimitPolicy::Wait, LimitPolicy::Evict]),
        ) {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().unwrap();
            runtime.block_on(async move {
                let fake = FakeBackend::with_script(|_, code| slow(code.parse().unwrap_or(0), code));
                fake.set_start_delay(Duration::from_secs(start_delay));
                let cfg = WrapperConfig {
                    max_concurrent_sessions: limit,
                    limit_policy: policy,
                    limit_wait_timeout: Duration::from_secs(5),
                    ..config()
                };
                let manager = started(cfg, &fake).await;
                let mut tasks = Vec::new();
                for (delay, session, exec) in callers {
                    let m = manager.clone();
                    tasks.push(tokio::spawn(async move {
                        tokio::time::sleep(Duration::from_secs(delay)).await;
                        m.execute_code(CodeCall::new(exec.to_string()).session(format!("s{session}-{delay}"))).await
                    }));
                }
                for t in tasks {
                    match t.await.unwrap() {
                        Ok(r) => assert!(r.success),
                        Err(ManagerError::ResourceLimit { .. }) => {}
                        Err(other) => panic!("unexpected error {other}"),
                    }
                }
                assert!(fake.stats().max_running <= limit as usize, "{} > {limit}", fake.stats().max_running);
                assert!(manager.resource_stats().active_sessions <= limit as usize);
                manager.shutdown().await;
                let stats = fake.stats();
                assert_eq!(stats.started, stats.stopped, "shutdown stops everything started");
                assert!(fake.running().is_empty());
            });
        }
    }
}

/// Runs futures concurrently on the current task and collects their outputs in order.
async fn futures_join_all<F: std::future::Future>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output> {
    let mut set = Vec::new();
    for f in futures {
        set.push(Box::pin(f));
    }
    let mut outputs: Vec<Option<F::Output>> = (0..set.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, f) in set.iter_mut().enumerate() {
            if outputs[i].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => outputs[i] = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    outputs.into_iter().map(|o| o.expect("every future finished")).collect()
}
