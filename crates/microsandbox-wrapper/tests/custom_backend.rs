//! The custom backend of `examples/custom_backend.rs` passes the conformance suite over the local
//! backend, and its policy holds.

#![allow(clippy::unwrap_used)] // test helpers may unwrap

#[path = "../examples/custom_backend.rs"]
#[allow(unreachable_pub, missing_docs)]
mod custom_backend;

use custom_backend::PolicyBackend;
use microsandbox_wrapper::conformance::{ConformanceOptions, run_all};
use microsandbox_wrapper::{CommandCall, LocalBackend, MicrosandboxWrapper, WrapperConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_backend_passes_the_conformance_suite() {
    let local = LocalBackend::from_config(&WrapperConfig::default()).unwrap();
    let backend = PolicyBackend::new(local, &["sh", "echo", "sleep", "true"]);
    let report = run_all(
        &backend,
        &ConformanceOptions {
            name_prefix: "policy".into(),
            ..Default::default()
        },
    )
    .await;
    println!("{report}");
    report.assert_all_passed();
    assert!(backend.stats().calls["run_code"] > 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_off_the_allow_list_are_refused_before_reaching_the_backend() {
    let config = WrapperConfig::default();
    let backend = std::sync::Arc::new(PolicyBackend::new(
        LocalBackend::from_config(&config).unwrap(),
        &["echo"],
    ));
    let wrapper = MicrosandboxWrapper::with_backend(config, backend.clone()).unwrap();
    let outcome = wrapper
        .scoped(|w| async move {
            let ok = w.execute_command(CommandCall::new("echo", ["hi"]).session("s")).await?;
            let refused = w
                .execute_command(CommandCall::new("cat", ["/etc/passwd"]).session("s"))
                .await;
            Ok((ok, refused))
        })
        .await
        .unwrap();
    assert_eq!(outcome.0.stdout, "hi");
    let err = outcome.1.unwrap_err();
    assert_eq!(err.code(), "COMMAND_EXECUTION_ERROR");
    assert!(err.to_string().contains("not on the allow-list"), "{err}");
    assert_eq!(backend.stats().refused, 1);
}
