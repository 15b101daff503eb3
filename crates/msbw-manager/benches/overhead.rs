//! The manager's own cost per call, over the in-memory fake backend (so the figures are the
//! manager's, not a sandbox's): a warm execution in an existing session, a session's whole life
//! (admission, start, execution, stop), and many callers contending for few slots.
//!
//! Run with `cargo xtask bench` (or `cargo bench -p msbw-manager`). Prints one line per case:
//! iterations, mean, p50, p95 per operation.

use std::sync::Arc;
use std::time::{Duration, Instant};

use msbw_backend::fake::FakeBackend;
use msbw_config::{LimitPolicy, WrapperConfig};
use msbw_manager::{CodeCall, SessionManager};

fn report(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let n = samples.len().max(1);
    let mean = samples.iter().sum::<Duration>() / n as u32;
    let p = |q: f64| samples[((n as f64 * q) as usize).min(n - 1)];
    println!(
        "{name:<44} n={n:<6} mean={:>9.1} µs  p50={:>9.1} µs  p95={:>9.1} µs",
        mean.as_secs_f64() * 1e6,
        p(0.50).as_secs_f64() * 1e6,
        p(0.95).as_secs_f64() * 1e6
    );
}

async fn manager(config: WrapperConfig) -> (SessionManager, FakeBackend) {
    let fake = FakeBackend::new();
    let m = SessionManager::new(config, Arc::new(fake.clone())).expect("config");
    m.start().await.expect("start");
    (m, fake)
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        // Warm execution in an existing session.
        let (m, _) = manager(WrapperConfig::default()).await;
        m.execute_code(CodeCall::new("warm-up").session("s"))
            .await
            .expect("first call");
        let mut samples = Vec::new();
        for _ in 0..5000 {
            let t = Instant::now();
            m.execute_code(CodeCall::new("x").session("s")).await.expect("call");
            samples.push(t.elapsed());
        }
        report("warm execution, existing session", samples);
        m.shutdown().await;

        // A session's whole life.
        let (m, _) = manager(WrapperConfig::default()).await;
        let mut samples = Vec::new();
        for i in 0..2000 {
            let t = Instant::now();
            let id = format!("s{i}");
            m.execute_code(CodeCall::new("x").session(id.clone()))
                .await
                .expect("call");
            m.stop_session(&id).await.expect("stop");
            samples.push(t.elapsed());
        }
        report("session life: admit, start, run, stop", samples);
        m.shutdown().await;

        // 64 callers, 8 slots, the wait policy.
        let config = WrapperConfig {
            max_concurrent_sessions: 8,
            limit_policy: LimitPolicy::Wait,
            limit_wait_timeout: Duration::from_secs(60),
            ..WrapperConfig::default()
        };
        let (m, fake) = manager(config).await;
        let t = Instant::now();
        let mut tasks = Vec::new();
        for i in 0..64 {
            let m = m.clone();
            tasks.push(tokio::spawn(async move {
                let id = format!("c{i}");
                let t = Instant::now();
                m.execute_code(CodeCall::new("x").session(id.clone()))
                    .await
                    .expect("call");
                m.stop_session(&id).await.expect("stop");
                t.elapsed()
            }));
        }
        let mut samples = Vec::new();
        for task in tasks {
            samples.push(task.await.expect("task"));
        }
        report("64 callers for 8 slots (wait), per caller", samples);
        println!(
            "{:<44} total={:.1} ms, most running at once={}",
            "",
            t.elapsed().as_secs_f64() * 1e3,
            fake.stats().max_running
        );
        m.shutdown().await;
    });
}
