//! The shared conformance suite against the scripted fake of the server 0.2.6 (the integration
//! suite runs it against the real server). The fake keeps state and answers like the real
//! server, masked errors included, so this checks the backend's decisions end to end.

mod common;

use std::time::Duration;

use common::*;
use msbw_backend::SandboxBackend;
use msbw_backend::conformance::{ConformanceOptions, run_all};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_backend_passes_the_conformance_suite_against_the_scripted_server() {
    let (server, fake) = FakeServer::start().await;
    fake.state().agent_delay = Duration::from_millis(100);
    let backend = backend(&server);
    let options = ConformanceOptions {
        exec_timeout: Duration::from_secs(1),
        quick_timeout: Duration::from_secs(10),
        start_timeout: Duration::from_secs(10),
        grace: Duration::from_secs(10),
        ..ConformanceOptions::default()
    };
    let report = run_all(&backend, &options).await;
    println!("{report}");
    report.assert_all_passed();
    assert!(report.results.len() >= 13, "{report}");
    assert!(
        backend
            .list(&msbw_backend::ListFilter::default())
            .await
            .unwrap()
            .is_empty(),
        "everything was stopped"
    );
}
