//! The upstream microsandbox Python SDK 0.1.8 (from PyPI, unmodified) against `msbw serve` over the
//! local backend, in dev mode and with a key. The test installs the SDK into a virtual
//! environment under the target directory (once; later runs reuse it).

#![allow(clippy::unwrap_used)] // test helpers may unwrap

use std::path::{Path, PathBuf};
use std::process::Command;

use microsandbox_wrapper::{BackendKind, MicrosandboxWrapper, WrapperConfig};
use msbw_cli::serve::{ServeOptions, Server, auth};

const SDK: &str = "microsandbox==0.1.8";

/// A virtual environment with the SDK, created and filled on first use.
fn sdk_python() -> PathBuf {
    static INSTALL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _once = INSTALL.lock().unwrap_or_else(|p| p.into_inner());
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("microsandbox-sdk-0.1.8");
    let python = venv.join("bin/python");
    let marker = venv.join(".installed");
    if !marker.exists() {
        let status = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .expect("python3 runs");
        assert!(status.success(), "python3 -m venv failed: install python3-venv");
        let out = Command::new(&python)
            .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", SDK])
            .output()
            .expect("pip runs");
        assert!(
            out.status.success(),
            "pip install {SDK} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::write(&marker, SDK).unwrap();
    }
    python
}

async fn run_sdk_against_serve(key: Option<&str>) {
    let python = sdk_python();
    let config = WrapperConfig {
        backend: BackendKind::Local,
        ..WrapperConfig::default()
    };
    let wrapper = MicrosandboxWrapper::new(config).await.unwrap();
    let watcher = wrapper.clone();
    let options = ServeOptions {
        key: key.map(str::to_owned),
        ..Default::default()
    };
    let server = Server::bind("127.0.0.1:0".parse().unwrap(), wrapper, options)
        .await
        .unwrap();
    let url = format!("http://{}", server.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.run(async move {
        let _ = rx.await;
    }));

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sdk/sdk_check.py");
    let cwd = tempfile::tempdir().unwrap();
    let mut cmd = tokio::process::Command::new(&python);
    cmd.arg(&script)
        .current_dir(cwd.path())
        .env("MSB_SERVER_URL", &url)
        .env_remove("MSB_API_KEY");
    if let Some(k) = key {
        cmd.env(
            "MSB_API_KEY",
            auth::mint(k, "default", std::time::Duration::from_secs(600)),
        );
    }
    let out = cmd.output().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the SDK script failed:\nstdout: {stdout}\nstderr: {stderr}"
    );
    assert!(stdout.contains("SDK OK"), "{stdout}");
    assert!(
        watcher.get_sessions(None).unwrap().is_empty(),
        "the SDK stopped its sandboxes on exit"
    );

    let _ = tx.send(());
    let report = task.await.unwrap().unwrap();
    assert!(report.failed.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_sdk_works_against_msbw_serve_in_dev_mode() {
    run_sdk_against_serve(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_sdk_works_against_msbw_serve_with_a_key() {
    run_sdk_against_serve(Some("sdk-server-key")).await;
}
