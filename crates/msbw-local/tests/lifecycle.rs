//! Starting, listing and stopping local sandboxes, commands, configuration and clean-up.

mod common;

use std::time::Duration;

use common::*;
use msbw_backend::{
    CodeRequest, CommandRequest, ErrorKind, ExecStatus, ListFilter, SandboxBackend, SandboxBackendExt, Template,
    VolumeMapping,
};
use msbw_local::{LocalBackend, LocalConfig};

fn entries(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .expect("readable directory")
        .map(|e| e.expect("readable entry").file_name().to_string_lossy().into_owned())
        .collect()
}

fn with_temp_dir(dir: &std::path::Path) -> LocalBackend {
    let mut config = LocalConfig::default();
    config.temp_dir = Some(dir.to_owned());
    LocalBackend::new(config)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_host_support_and_capabilities_describe_this_host() {
    let backend = backend();
    let support = backend.host_support();
    assert!(support.usable(), "{support}");
    let text = support.to_string();
    assert!(
        text.contains("namespaces: user, mount, pid, ipc, uts, network"),
        "{text}"
    );
    let caps = backend.capabilities().await;
    assert!(caps.read_only_volumes && caps.metrics && caps.concurrent_commands && caps.network_isolated);
    assert!(caps.streaming);
    assert_eq!(support.python.is_some(), caps.templates.contains(&Template::Python));
    assert_eq!(support.node.is_some(), caps.templates.contains(&Template::Node));
    assert!(backend.health().await.unwrap().message.starts_with("local backend"));
    assert_eq!(backend.name(), "local");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_interpreter_is_left_out_and_explained() {
    let mut config = LocalConfig::default();
    config.node = Some("/nonexistent/bin/node".into());
    let backend = LocalBackend::new(config);
    assert_eq!(backend.capabilities().await.templates, vec![Template::Python]);
    let spec = spec("no-node", Template::Node);
    let err = backend.start(&spec).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");
    assert!(err.to_string().contains("no node interpreter was found"), "{err}");
    assert!(backend.check_supported(&spec).await.is_err());
    assert!(!backend.is_running(&spec.id).await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_removes_the_sandbox_directory_and_refused_specs_create_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let backend = with_temp_dir(dir.path());

    let mut bad = spec("bad", Template::Python);
    bad.volumes
        .push(VolumeMapping::new("/nonexistent-msbw-volume", "/data").unwrap());
    let err = backend.start(&bad).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    let mut bad = spec("bad", Template::Python);
    bad.volumes.push(VolumeMapping::new("/usr", "/proc/x").unwrap());
    assert_eq!(backend.start(&bad).await.unwrap_err().kind(), ErrorKind::InvalidInput);
    assert!(entries(dir.path()).is_empty(), "{:?}", entries(dir.path()));

    let id = start(&backend, &spec("dir", Template::Python)).await;
    python(&backend, &id, "open('/tmp/f', 'w').write('x' * 100000)").await;
    assert_eq!(entries(dir.path()).len(), 1);
    backend.stop(&id).await.unwrap();
    assert!(entries(dir.path()).is_empty(), "{:?}", entries(dir.path()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_reports_memory_cpu_and_disk() {
    let backend = backend();
    let a = start(&backend, &spec("list-a", Template::Python)).await;
    let b = start(&backend, &spec("list-b", Template::Python)).await;
    python(
        &backend,
        &a,
        "import time\nend = time.process_time() + 0.3\nwhile time.process_time() < end:\n    pass\n\
         blob = bytearray(64 << 20)\nfor i in range(0, len(blob), 4096):\n    blob[i] = 1\n\
         open('/tmp/file', 'wb').write(b'x' * (1 << 20))",
    )
    .await;
    let all = backend.list(&ListFilter::namespace("test")).await.unwrap();
    let info = all.iter().find(|i| i.id == a).expect("a is listed");
    assert!(all.iter().any(|i| i.id == b));
    assert!(info.memory_mb.unwrap() >= 64, "{info:?}");
    assert!(info.cpu_percent.unwrap() > 0.0, "{info:?}");
    assert!(info.disk_bytes.unwrap() >= 1 << 20, "{info:?}");
    let only_b = backend.list(&ListFilter::sandbox(&b)).await.unwrap();
    assert_eq!(only_b.len(), 1);
    assert!(only_b[0].memory_mb.unwrap() < 64, "{only_b:?}");
    backend.stop(&a).await.unwrap();
    backend.stop(&b).await.unwrap();
    assert!(backend.list(&ListFilter::default()).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_run_directly_in_the_work_directory_with_the_specs_environment() {
    let backend = backend();
    let mut spec = spec("cmd", Template::Python);
    spec.env.push(("GREETING".into(), "hello from the spec".into()));
    let id = start(&backend, &spec).await;
    let out = command(&backend, &id, "echo", &["$HOME", "*"]).await;
    assert_eq!(out.stdout, "$HOME *\n", "no shell expands anything: {out:?}");
    let out = shell(&backend, &id, "pwd; echo $HOME; echo $GREETING; hostname").await;
    assert_eq!(
        out.stdout, "/workspace\n/workspace\nhello from the spec\nsandbox\n",
        "{out:?}"
    );
    let out = python(&backend, &id, "import os\nprint(os.getcwd(), os.environ['GREETING'])").await;
    assert_eq!(out.stdout, "/workspace hello from the spec\n", "{out:?}");
    // The same files from code and from commands.
    python(&backend, &id, "open('shared.txt', 'w').write('written by code')").await;
    let out = command(&backend, &id, "cat", &["/workspace/shared.txt"]).await;
    assert_eq!(out.stdout, "written by code");

    let out = command(&backend, &id, "no-such-program-msbw", &[]).await;
    assert_eq!(out.exit_code, Some(127), "{out:?}");
    assert!(out.stderr.contains("cannot run \"no-such-program-msbw\""), "{out:?}");
    let out = command(&backend, &id, "/etc/passwd", &[]).await;
    assert_eq!(out.exit_code, Some(126), "{out:?}");
    let out = shell(&backend, &id, "kill -9 $$").await;
    assert_eq!((out.status, out.exit_code), (ExecStatus::Completed, None), "{out:?}");

    let request = CodeRequest {
        language: Template::Node,
        code: "1".into(),
        timeout: QUICK,
    };
    let err = backend.run_code(&id, &request).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    let empty = CommandRequest {
        command: String::new(),
        args: vec![],
        timeout: QUICK,
    };
    assert_eq!(
        backend.run_command(&id, &empty).await.unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
    backend.stop(&id).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_in_one_sandbox_run_at_the_same_time() {
    let backend = backend();
    let id = start(&backend, &spec("concurrent", Template::Python)).await;
    // The first command can only finish once the second has run.
    let waiter = command_with(
        &backend,
        &id,
        "sh",
        &["-c", "while [ ! -e /tmp/go ]; do sleep 0.01; done; echo released"],
        Duration::from_secs(20),
    );
    let releaser = async {
        tokio::task::yield_now().await;
        command(&backend, &id, "touch", &["/tmp/go"]).await
    };
    let (waited, released) = tokio::join!(waiter, releaser);
    assert_eq!(released.exit_code, Some(0), "{released:?}");
    assert_eq!(waited.stdout, "released\n", "{waited:?}");
    backend.stop(&id).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_backend_kills_its_sandboxes() {
    let dir = tempfile::tempdir().unwrap();
    let backend = with_temp_dir(dir.path());
    let id = start(&backend, &spec("drop", Template::Python)).await;
    let tag = marker("drop");
    let out = python(
        &backend,
        &id,
        &format!("import subprocess\nchild = subprocess.Popen(['sh', '-c', 'sleep 300; : {tag}'])\nprint(child.pid)"),
    )
    .await;
    assert!(out.success(), "{out:?}");
    let found = wait_until_present(&tag, Duration::from_secs(10));
    assert!(!found.is_empty(), "the background process did not start: {out:?}");
    drop(backend);
    assert!(wait_until_gone(&tag, Duration::from_secs(10)).is_empty());
    // A drop never blocks the dropping thread: the sandbox's folder goes in the background.
    assert!(
        eventually(Duration::from_secs(10), || entries(dir.path()).is_empty()),
        "{:?}",
        entries(dir.path())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timed_out_executions_return_what_they_wrote() {
    let backend = backend();
    let id = start(&backend, &spec("partial", Template::Python)).await;
    let second = Duration::from_secs(1);
    let out = command_with(
        &backend,
        &id,
        "sh",
        &["-c", "echo before; echo oops >&2; sleep 300"],
        second,
    )
    .await;
    assert!(out.timed_out(), "{out:?}");
    assert_eq!(
        (out.stdout.as_str(), out.stderr.as_str()),
        ("before\n", "oops\n"),
        "{out:?}"
    );
    let out = code_with(
        &backend,
        &id,
        Template::Python,
        "import time\nprint('before', flush=True)\ntime.sleep(300)",
        second,
    )
    .await;
    assert!(out.timed_out(), "{out:?}");
    assert_eq!(out.stdout, "before\n", "{out:?}");
    backend.stop(&id).await.unwrap();
}
