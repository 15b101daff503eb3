//! Helpers shared by the manager's integration tests.

#![allow(dead_code, unreachable_pub, reason = "each test file uses a different part")]

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use msbw_backend::fake::FakeBackend;
use msbw_config::WrapperConfig;
use msbw_manager::SessionManager;
use proptest::test_runner::{Config, TestRunner};

/// Runs `test` with `cases` random seeds, each on a runtime of its own with tokio's paused
/// clock; fails naming the (shrunk) seed of a run that panicked.
pub fn for_random_seeds<F: Future<Output = ()>>(cases: u32, test: fn(u64) -> F) {
    let mut runner = TestRunner::new(Config {
        cases,
        ..Config::default()
    });
    let result = runner.run(&(0u64..u64::MAX), |seed| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap();
        runtime.block_on(test(seed));
        Ok(())
    });
    if let Err(failure) = result {
        panic!("{failure}");
    }
}

/// A started manager over `fake`.
pub async fn started(config: WrapperConfig, fake: &FakeBackend) -> SessionManager {
    let manager = SessionManager::new(config, Arc::new(fake.clone())).expect("valid config");
    manager.start().await.expect("starts");
    manager
}

/// A started manager over a new fake.
pub async fn started_on_a_fake(config: WrapperConfig) -> (FakeBackend, SessionManager) {
    let fake = FakeBackend::new();
    let manager = started(config, &fake).await;
    (fake, manager)
}

/// A fake whose every start takes `delay` (on tokio's clock).
pub fn fake_starting_in(delay: Duration) -> FakeBackend {
    let fake = FakeBackend::new();
    fake.set_start_delay(delay);
    fake
}

/// Shuts `manager` down and asserts that nothing failed and every sandbox the fake started
/// was stopped.
pub async fn shut_down_cleanly(manager: &SessionManager, fake: &FakeBackend) {
    let report = manager.shutdown().await;
    assert!(report.failed.is_empty(), "{report:?}");
    let stats = fake.stats();
    assert_eq!(stats.started, stats.stopped, "every sandbox started was stopped");
    assert!(fake.running().is_empty());
}
