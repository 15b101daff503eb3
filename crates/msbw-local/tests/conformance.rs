//! The shared conformance suite, run against the local backend.

use msbw_backend::conformance::{ConformanceOptions, run_all};
use msbw_local::{LocalBackend, LocalConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_backend_passes_the_conformance_suite() {
    let backend = LocalBackend::new(LocalConfig::default());
    let options = ConformanceOptions {
        name_prefix: "local-conformance".into(),
        ..ConformanceOptions::default()
    };
    let report = run_all(&backend, &options).await;
    println!("{report}");
    report.assert_all_passed();
}
