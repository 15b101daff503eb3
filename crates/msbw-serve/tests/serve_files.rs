//! 64 MiB files in and out, byte for byte: through the facade over the local backend, and
//! through `HttpBackend` → `msbw serve` (its `msbw.fs.*` extension) → the local backend. The
//! times are printed next to a host `cp` of the same file, for people; nothing asserts speed.

#![allow(clippy::unwrap_used)] // test helpers may unwrap

mod support;

use std::time::{Duration, Instant};

use microsandbox_wrapper::backend::SandboxSpec;
use microsandbox_wrapper::{
    BackendKind, CodeCall, FileErrorKind, HttpBackend, HttpBackendConfig, MicrosandboxWrapper, SandboxBackend,
    SandboxId, Template, WrapperConfig, WrapperError,
};
use msbw_serve::ServeOptions;
use support::Served;

const SIZE: usize = 64 * 1024 * 1024;

fn payload() -> Vec<u8> {
    // Every byte value, no period a chunk size divides.
    (0..SIZE as u64)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect()
}

async fn local_wrapper() -> MicrosandboxWrapper {
    let config = WrapperConfig {
        backend: BackendKind::Local,
        ..WrapperConfig::default()
    };
    MicrosandboxWrapper::new(config).await.unwrap()
}

fn rate(what: &str, bytes: usize, took: Duration) {
    eprintln!(
        "{what}: {} MiB in {:.2} s = {:.1} MiB/s",
        bytes >> 20,
        took.as_secs_f64(),
        (bytes as f64 / 1048576.0) / took.as_secs_f64()
    );
}

/// Fails unless `back` is `data` (without printing megabytes of either).
#[track_caller]
fn assert_read_back(back: &[u8], data: &[u8]) {
    let (got, written) = (back.len(), data.len());
    assert!(
        back == data,
        "read back {got} bytes that differ from the {written} written"
    );
}

fn host_cp(data: &[u8]) {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    std::fs::write(&a, data).unwrap();
    let started = Instant::now();
    let status = std::process::Command::new("cp").arg(&a).arg(&b).status().unwrap();
    assert!(status.success());
    rate("host cp", data.len(), started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_64_mib_file_round_trips_through_the_facade_over_the_local_backend() {
    let data = payload();
    host_cp(&data);
    let wrapper = local_wrapper().await;
    wrapper.start().await.unwrap();
    let started = Instant::now();
    let created = wrapper.write_file("big", "/tmp/big.bin", data.clone()).await.unwrap();
    rate("facade/local write", SIZE, started.elapsed());
    assert!(created, "writing into a new session creates it");
    let started = Instant::now();
    let back = wrapper.read_file("big", "/tmp/big.bin").await.unwrap();
    rate("facade/local read", SIZE, started.elapsed());
    assert_read_back(&back, &data);
    // The sandbox's own code sees the same file.
    let out = wrapper
        .execute_code(CodeCall::new("import os; print(os.path.getsize('/tmp/big.bin'))").session("big"))
        .await
        .unwrap();
    assert_eq!(out.stdout, SIZE.to_string());
    let err = wrapper
        .read_file_limited("big", "/tmp/big.bin", 1024)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            WrapperError::File {
                kind: FileErrorKind::TooLarge,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.code(), "FILE_TOO_LARGE_ERROR");
    let err = wrapper.read_file("nobody", "/tmp/x").await.unwrap_err();
    assert_eq!(err.code(), "SESSION_NOT_FOUND_ERROR", "{err}");
    wrapper.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_64_mib_file_round_trips_through_msbw_serve() {
    let data = payload();
    let served = Served::start(local_wrapper().await, ServeOptions::default()).await;
    let backend = HttpBackend::new(HttpBackendConfig::new(served.url())).unwrap();
    assert!(backend.capabilities().await.native_files);
    let spec = SandboxSpec::new(SandboxId::new("default", "files-big").unwrap(), Template::Python);
    backend.start(&spec).await.unwrap();

    let started = Instant::now();
    backend.write_file(&spec.id, "/tmp/big.bin", &data).await.unwrap();
    rate("HttpBackend -> serve -> local write", SIZE, started.elapsed());
    let started = Instant::now();
    let back = backend.read_file(&spec.id, "/tmp/big.bin", SIZE as u64).await.unwrap();
    rate("HttpBackend -> serve -> local read", SIZE, started.elapsed());
    assert_read_back(&back, &data);
    let err = backend
        .read_file(&spec.id, "/tmp/big.bin", SIZE as u64 - 1)
        .await
        .unwrap_err();
    assert_eq!(err.file_kind(), Some(FileErrorKind::TooLarge), "{err}");

    backend.stop(&spec.id).await.unwrap();
    let report = served.stop().await;
    assert!(report.failed.is_empty(), "{report:?}");
}
