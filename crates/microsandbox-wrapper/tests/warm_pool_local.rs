//! The warm pool over the real local backend: with `MSB_WARM_POOL=python:small=1`, the first call
//! is served by the sandbox started ahead, and after `stop` no sandbox process is left in the
//! host's process table. (Its own test binary, so the process table holds no other test's
//! sandboxes.)

#![cfg(feature = "local")]
#![allow(clippy::unwrap_used)] // test helpers may unwrap

mod common;

use std::time::Duration;

use common::eventually;
use microsandbox_wrapper::{CodeCall, MicrosandboxWrapper, WrapperConfig};

/// Every process on the host descended from this test process (not counting itself).
fn descendants() -> Vec<(u32, String)> {
    let me = std::process::id();
    let mut parent = std::collections::HashMap::new();
    let mut name = std::collections::HashMap::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid ...: the comm may hold spaces and parentheses.
        let Some((comm, rest)) = stat.rsplit_once(") ") else {
            continue;
        };
        let ppid = rest.split(' ').nth(1).and_then(|p| p.parse::<u32>().ok()).unwrap_or(0);
        parent.insert(pid, ppid);
        name.insert(pid, comm.split_once(" (").map_or("", |c| c.1).to_owned());
    }
    let mut found = Vec::new();
    for &pid in parent.keys() {
        let mut at = pid;
        for _ in 0..64 {
            match parent.get(&at) {
                Some(&p) if p == me && pid != me => {
                    found.push((pid, name[&pid].clone()));
                    break;
                }
                Some(&p) if p > 1 => at = p,
                _ => break,
            }
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_call_is_served_by_the_pooled_sandbox_and_nothing_is_left_after_stop() {
    let config = WrapperConfig::from_vars([
        ("MSB_BACKEND", "local"),
        ("MSB_WARM_POOL", "python:small=1"),
        ("MSB_SHUTDOWN_TIMEOUT", "10"),
    ])
    .unwrap();
    let wrapper = MicrosandboxWrapper::new(config).await.unwrap();
    wrapper.start().await.unwrap();
    let ready = || {
        wrapper
            .get_resource_stats()
            .is_ok_and(|s| s.warm_pool.first().is_some_and(|p| p.ready == 1))
    };
    assert!(
        eventually(Duration::from_secs(30), ready).await,
        "the pool did not fill"
    );
    assert!(!descendants().is_empty(), "the pooled sandbox runs as host processes");

    let r = wrapper
        .execute_code(CodeCall::new("import os\nprint(os.getpid())").session("first"))
        .await
        .unwrap();
    assert!(r.success && r.session_created, "{r:?}");
    assert!(
        r.sandbox.name.starts_with("msbw-pool-python-small-"),
        "served by the pooled sandbox: {}",
        r.sandbox
    );
    let listed = wrapper.get_sessions(Some("first")).unwrap();
    assert_eq!(listed[0].sandbox_name, r.sandbox.name);
    // The pool refills behind the claimed sandbox; then both are stopped.
    assert!(
        eventually(Duration::from_secs(30), ready).await,
        "the pool did not refill"
    );

    let report = wrapper.stop().await;
    assert!(report.failed.is_empty(), "{report:?}");
    assert_eq!(
        report.stopped, 2,
        "the session's sandbox and the pooled one: {report:?}"
    );
    let gone = eventually(Duration::from_secs(10), || descendants().is_empty()).await;
    assert!(gone, "sandbox processes left: {:?}", descendants());
}
