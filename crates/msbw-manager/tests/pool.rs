//! The warm pool's policies (`MSB_WARM_POOL`), each against the fake backend on tokio's paused
//! clock: claim, refill, yielding at the session limit and the memory budget, shutdown, backoff,
//! no reuse, orphan cleanup and crash recovery, and racing claims.

#![allow(clippy::unwrap_used)] // test helpers may unwrap

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use msbw_backend::fake::FakeBackend;
use msbw_backend::{SandboxId, Template};
use msbw_config::{LimitPolicy, SandboxFlavor, WrapperConfig};
use msbw_manager::{CodeCall, ManagerError, Ownership, SessionManager, SessionSpec, naming};
use tokio::time::sleep;

use common::{started, started_on_a_fake};

fn config(pool: &str) -> WrapperConfig {
    WrapperConfig {
        session_timeout: Duration::from_secs(600),
        cleanup_interval: Duration::from_secs(60),
        orphan_cleanup_interval: Duration::from_secs(600),
        default_execution_timeout: Duration::from_secs(30),
        sandbox_start_timeout: Duration::from_secs(30),
        warm_pool: pool.parse().unwrap(),
        ..WrapperConfig::default()
    }
}

/// `(starting, ready)` of the pool's first entry.
fn pool_of(manager: &SessionManager) -> (usize, usize) {
    let stats = manager.resource_stats();
    stats.warm_pool.first().map_or((0, 0), |p| (p.starting, p.ready))
}

fn is_pooled(sandbox: &SandboxId) -> bool {
    sandbox.name.starts_with("msbw-pool-")
}

fn node(code: &str, session: &str) -> CodeCall {
    CodeCall::new(code).template(Template::Node).session(session)
}

#[tokio::test(start_paused = true)]
async fn a_new_session_claims_a_ready_sandbox_and_the_pool_refills() {
    let fake = common::fake_starting_in(Duration::from_secs(2));
    let manager = started(config("python:small=2"), &fake).await;
    assert_eq!(pool_of(&manager), (2, 0), "both start ahead, before any call");
    sleep(Duration::from_secs(3)).await;
    assert_eq!(pool_of(&manager), (0, 2));
    assert_eq!(
        manager.resource_stats().total_memory_mb,
        2048,
        "pooled sandboxes hold reservations"
    );

    let r = manager.execute_code(CodeCall::new("x").session("alice")).await.unwrap();
    assert!(r.session_created && !r.sandbox_replaced, "{r:?}");
    assert!(is_pooled(&r.sandbox), "served by a pooled sandbox: {}", r.sandbox);
    assert!(!r.sandbox.name.contains("alice"), "a pooled name names no session");
    // A warm call plus the claim: no start on the call's path (the paused clock would show the
    // 2 s start delay).
    assert!(r.execution_time_ms < 2000, "{} ms", r.execution_time_ms);
    // The registry maps the session to its sandbox: listing and lookups find it.
    let listed = manager.sessions(Some("alice")).unwrap();
    assert_eq!(listed[0].sandbox_name, r.sandbox.name);
    let again = manager.execute_code(CodeCall::new("y").session("alice")).await.unwrap();
    assert_eq!(again.sandbox, r.sandbox);
    assert!(!again.session_created);

    // The claimed slot is refilled in the background.
    sleep(Duration::from_secs(3)).await;
    assert_eq!(pool_of(&manager), (0, 2));
    let stats = manager.resource_stats();
    assert_eq!((stats.active_sessions, stats.pooled_sandboxes), (1, 2));
    assert_eq!(stats.warm_pool[0].claimed, 1);
    assert_eq!(stats.total_memory_mb, 3 * 1024);
    assert_eq!(fake.stats().start_calls, 3);
    manager.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn only_the_pools_template_and_flavor_without_extras_is_served_from_it() {
    let (_, manager) = started_on_a_fake(config("python:small=1")).await;
    sleep(Duration::from_secs(1)).await;
    assert_eq!(pool_of(&manager), (0, 1));
    let medium = CodeCall::new("x").session("m").flavor(SandboxFlavor::Medium);
    let r = manager.execute_code(medium).await.unwrap();
    assert!(!is_pooled(&r.sandbox), "{}", r.sandbox);
    let r = manager.execute_code(node("x", "n")).await.unwrap();
    assert!(!is_pooled(&r.sandbox), "{}", r.sandbox);
    // A session with its own environment cannot use a sandbox started ahead without it.
    let spec = SessionSpec {
        session_id: "e".into(),
        template: Template::Python,
        flavor: SandboxFlavor::Small,
        extra_volumes: Vec::new(),
        env: vec![("A".into(), "1".into())],
    };
    let (info, created) = manager.open_session(spec).await.unwrap();
    assert!(created && !info.sandbox_name.starts_with("msbw-pool-"), "{info:?}");
    assert_eq!(pool_of(&manager), (0, 1), "the pooled sandbox is still there");
    manager.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn at_the_session_limit_the_pool_yields_to_a_real_session() {
    let (fake, manager) = started_on_a_fake(WrapperConfig {
        max_concurrent_sessions: 2,
        limit_policy: LimitPolicy::Reject,
        ..config("python:small=2")
    })
    .await;
    sleep(Duration::from_secs(1)).await;
    assert_eq!(pool_of(&manager), (0, 2));
    // Two sessions the pool cannot serve: each takes the place of a pooled sandbox, not refused.
    let a = manager.execute_code(node("x", "a")).await.unwrap();
    let b = manager.execute_code(node("x", "b")).await.unwrap();
    assert!(!is_pooled(&a.sandbox) && !is_pooled(&b.sandbox));
    sleep(Duration::from_secs(10)).await;
    let stats = manager.resource_stats();
    assert_eq!((stats.active_sessions, stats.pooled_sandboxes), (2, 0));
    assert_eq!(fake.running().len(), 2, "the yielded sandboxes were stopped");
    assert!(fake.stats().max_running <= 2);
    // A third real session is refused as before (no pooled sandbox is left to yield).
    let err = manager.execute_code(node("x", "c")).await.unwrap_err();
    assert!(matches!(err, ManagerError::ResourceLimit(_)), "{err}");
    // A freed slot goes back to the pool.
    assert!(manager.stop_session("a").await.unwrap());
    sleep(Duration::from_secs(10)).await;
    assert_eq!(pool_of(&manager), (0, 1));
    assert!(fake.stats().max_running <= 2, "never above the limit");
    manager.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_pooled_sandbox_still_starting_yields_too() {
    let fake = common::fake_starting_in(Duration::from_secs(5));
    let cfg = WrapperConfig {
        max_concurrent_sessions: 1,
        ..config("python:small=1")
    };
    let manager = started(cfg, &fake).await;
    assert_eq!(pool_of(&manager), (1, 0));
    let r = manager.execute_code(node("x", "a")).await.unwrap();
    assert!(!is_pooled(&r.sandbox));
    assert_eq!(
        fake.running(),
        vec![r.sandbox.clone()],
        "the pooled one was stopped once started"
    );
    assert!(fake.stats().max_running <= 1);
    manager.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn at_the_memory_budget_the_pool_yields_as_much_as_a_session_needs() {
    let (fake, manager) = started_on_a_fake(WrapperConfig {
        max_total_memory_mb: Some(2048),
        ..config("python:small=2")
    })
    .await;
    sleep(Duration::from_secs(1)).await;
    assert_eq!(pool_of(&manager), (0, 2));
    let medium = CodeCall::new("x").session("m").flavor(SandboxFlavor::Medium);
    let r = manager.execute_code(medium).await.unwrap();
    assert!(r.success);
    sleep(Duration::from_secs(10)).await;
    let stats = manager.resource_stats();
    assert_eq!((stats.pooled_sandboxes, stats.total_memory_mb), (0, 2048));
    assert_eq!(fake.running(), vec![r.sandbox.clone()]);
    manager.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn shutdown_stops_every_pooled_sandbox() {
    let fake = common::fake_starting_in(Duration::from_secs(1));
    let manager = started(config("python:small=2,node:medium=1"), &fake).await;
    sleep(Duration::from_secs(5)).await;
    assert_eq!(fake.running().len(), 3);
    manager.execute_code(CodeCall::new("x").session("s")).await.unwrap();
    // One pooled start is still in flight when shutdown begins: it is awaited, then stopped.
    sleep(Duration::from_millis(500)).await;
    let report = manager.shutdown().await;
    assert!(report.failed.is_empty(), "{report:?}");
    assert_eq!(report.stopped, 4, "{report:?}");
    assert!(fake.running().is_empty(), "{:?}", fake.running());
    let stats = fake.stats();
    assert_eq!(stats.started, stats.stopped);
}

#[tokio::test(start_paused = true)]
async fn a_failing_pooled_start_backs_off_instead_of_looping() {
    let fake = FakeBackend::new();
    fake.fail_next_starts(1000);
    let manager = started(config("python:small=1"), &fake).await;
    sleep(Duration::from_secs(120)).await;
    let calls = fake.stats().start_calls;
    // 1 s, 2 s, 4 s, ... up to 60 s between tries: 7 or 8 tries in two minutes, not thousands.
    assert!((5..=9).contains(&calls), "{calls} pooled starts in 120 s");
    let stats = manager.resource_stats();
    assert_eq!(stats.warm_pool[0].failed_starts, calls as u64);
    assert_eq!(
        (stats.pooled_sandboxes, stats.total_memory_mb),
        (0, 0),
        "no reservation leaked"
    );
    // A real session still starts (its own start, not the pool's) once the backend recovers.
    fake.fail_next_starts(0);
    let r = manager.execute_code(CodeCall::new("x").session("s")).await.unwrap();
    assert!(r.success);
    sleep(Duration::from_secs(61)).await;
    assert_eq!(pool_of(&manager), (0, 1), "the pool recovers after its backoff");
    manager.shutdown().await;
    assert!(fake.running().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_sandbox_is_never_returned_to_the_pool_after_its_session_ends() {
    let (fake, manager) = started_on_a_fake(config("python:small=1")).await;
    let mut seen = HashSet::new();
    for round in 0..4 {
        sleep(Duration::from_secs(1)).await;
        let id = format!("s{round}");
        let r = manager.execute_code(CodeCall::new("x").session(&id)).await.unwrap();
        assert!(is_pooled(&r.sandbox), "round {round}: {}", r.sandbox);
        assert!(seen.insert(r.sandbox.clone()), "{} served two sessions", r.sandbox);
        assert!(manager.stop_session(&id).await.unwrap());
        assert!(
            !fake.running().contains(&r.sandbox),
            "the ended session's sandbox is stopped"
        );
    }
    // The idle reaper stops claimed sandboxes too; none of them comes back.
    manager.shutdown().await;
    assert_eq!(fake.stats().started, fake.stats().stopped);
}

#[tokio::test(start_paused = true)]
async fn orphan_cleanup_leaves_the_pool_alone_and_reclaims_it_after_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeBackend::new();
    let crashed = SessionManager::with_ownership(
        config("python:small=2"),
        Arc::new(fake.clone()),
        &Ownership::in_dir(dir.path()),
    )
    .unwrap();
    crashed.start().await.unwrap();
    sleep(Duration::from_secs(1)).await;
    let report = crashed.cleanup_orphan_sandboxes().await.unwrap();
    assert!(
        report.stopped.is_empty(),
        "its own pooled sandboxes are live: {report:?}"
    );
    assert_eq!(fake.running().len(), 2);
    for id in fake.running() {
        assert_eq!(naming::owner_of("msbw", &id.name), Some(crashed.owner_id()));
    }
    // A crash: the manager goes away without a shutdown, its lease unlocked.
    drop(crashed);
    sleep(Duration::from_secs(1)).await;
    let next =
        SessionManager::with_ownership(config(""), Arc::new(fake.clone()), &Ownership::in_dir(dir.path())).unwrap();
    let report = next.start().await.unwrap().orphans.unwrap();
    assert_eq!(report.stopped.len(), 2, "{report:?}");
    assert!(fake.running().is_empty());
    next.shutdown().await;
}

mod stress {
    use super::*;

    /// Many callers racing for a small pool, with stops, at a session limit: no sandbox ever
    /// serves two sessions, the limit holds, and nothing is left after shutdown.
    #[test]
    fn racing_claims_never_share_a_sandbox() {
        common::for_random_seeds(6, race);
    }

    async fn race(seed: u64) {
        const LIMIT: u32 = 8;
        let fake = common::fake_starting_in(Duration::from_millis(700));
        let cfg = WrapperConfig {
            max_concurrent_sessions: LIMIT,
            limit_policy: LimitPolicy::Reject,
            ..config("python:small=3,node:small=2")
        };
        let manager = started(cfg, &fake).await;
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut callers = tokio::task::JoinSet::new();
        for i in 0..300 {
            let m = manager.clone();
            // In bunches of callers arriving at the same instant, once the pool is ready.
            let at = Duration::from_millis(2000 + 250 * rng.u64(0..80));
            let template = if rng.bool() { Template::Python } else { Template::Node };
            let stop = rng.u8(0..3) != 0;
            let session = format!("s{i}");
            callers.spawn(async move {
                sleep(at).await;
                let r = m
                    .execute_code(CodeCall::new("x").template(template).session(&session))
                    .await;
                if stop {
                    let _ = m.stop_session(&session).await;
                }
                r.map(|r| (session, r.sandbox))
            });
        }
        let mut owner_of: std::collections::HashMap<SandboxId, String> = std::collections::HashMap::new();
        while let Some(joined) = callers.join_next().await {
            match joined.unwrap() {
                Ok((session, sandbox)) => {
                    if let Some(other) = owner_of.insert(sandbox.clone(), session.clone()) {
                        panic!("{sandbox} served {other} and {session}");
                    }
                }
                Err(ManagerError::ResourceLimit(_)) => {}
                Err(other) => panic!("unexpected error {other}"),
            }
        }
        let stats = fake.stats();
        assert!(stats.max_running <= LIMIT as usize, "{} > {LIMIT}", stats.max_running);
        assert!(
            owner_of.keys().any(is_pooled),
            "some calls were served by the pool: {:?} {:?}",
            manager.resource_stats(),
            fake.stats()
        );
        let rs = manager.resource_stats();
        assert!(
            rs.active_sessions + rs.pooled_sandboxes + rs.stopping_sandboxes <= LIMIT as usize,
            "{rs:?}"
        );
        common::shut_down_cleanly(&manager, &fake).await;
    }
}
