//! The backend conformance suite through `HttpBackend`, over real HTTP, against `msbw serve` over
//! the local backend: in dev mode and with a key.

#![allow(clippy::unwrap_used)] // test helpers may unwrap

mod support;

use microsandbox_wrapper::backend::conformance::{ConformanceOptions, run_all};
use microsandbox_wrapper::{
    BackendKind, HttpBackend, HttpBackendConfig, MicrosandboxWrapper, SandboxBackend, WrapperConfig,
};
use msbw_serve::{ServeOptions, key as auth};
use support::Served;

async fn serve_local(key: Option<&str>) -> Served {
    let config = WrapperConfig {
        backend: BackendKind::Local,
        ..WrapperConfig::default()
    };
    let wrapper = MicrosandboxWrapper::new(config).await.unwrap();
    let options = ServeOptions {
        key: key.map(microsandbox_wrapper::ApiKey::from),
        ..Default::default()
    };
    Served::start(wrapper, options).await
}

async fn conformance(key: Option<&str>) {
    let served = serve_local(key).await;
    let mut config = HttpBackendConfig::new(served.url());
    if let Some(k) = key {
        config = config.with_api_key(auth::mint(k, "*", std::time::Duration::from_secs(3600)));
    }
    let backend = HttpBackend::new(config).unwrap();
    assert!(
        backend.capabilities().await.read_only_volumes,
        "msbw serve announces read-only volumes"
    );
    assert!(
        backend.capabilities().await.native_files,
        "msbw serve announces its file extension"
    );
    let options = ConformanceOptions {
        name_prefix: "serve".into(),
        ..Default::default()
    };
    let report = run_all(&backend, &options).await;
    println!("{report}");
    let shutdown = served.stop().await;
    assert!(shutdown.failed.is_empty(), "{shutdown:?}");
    report.assert_all_passed();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_backend_conforms_against_msbw_serve_in_dev_mode() {
    conformance(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_backend_conforms_against_msbw_serve_with_a_key() {
    conformance(Some("conformance-server-key")).await;
}
