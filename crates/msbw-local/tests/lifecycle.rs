//! Starting, listing and stopping local sandboxes, commands, configuration and clean-up.

mod common;

use std::time::Duration;

use common::*;
use msbw_backend::{
    CodeRequest, CommandRequest, ErrorKind, ExecStatus, ListFilter, SandboxBackend, SandboxBackendExt, Template,
    VolumeMapping,
};

fn entries(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .expect("readable directory")
        .map(|e| e.expect("readable entry").file_name().to_string_lossy().into_owned())
        .collect()
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
    let backend = backend_with(|config| config.node = Some("/nonexistent/bin/node".into()));
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
    let backend = backend_in(dir.path());

    let mut bad = spec("bad", Template::Python);
    bad.volumes
        .push(VolumeMapping::new("/nonexistent-msbw-volume", "/data").unwrap());
    let err = backend.start(&bad).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    let mut bad = spec("bad", Template::Python);
    bad.volumes.push(VolumeMapping::new("/usr", "/proc/x").unwrap());
    assert_eq!(backend.start(&bad).await.unwrap_err().kind(), ErrorKind::InvalidInput);
    assert!(entries(dir.path()).is_empty(), "{:?}", entries(dir.path()));

    let sandbox = Sandbox::start(&backend, &spec("dir", Template::Python)).await;
    sandbox.python("open('/tmp/f', 'w').write('x' * 100000)").await;
    assert_eq!(entries(dir.path()).len(), 1);
    sandbox.stop().await;
    assert!(entries(dir.path()).is_empty(), "{:?}", entries(dir.path()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_reports_memory_cpu_and_disk() {
    let backend = backend();
    let a = Sandbox::start(&backend, &spec("list-a", Template::Python)).await;
    let b = Sandbox::start(&backend, &spec("list-b", Template::Python)).await;
    a.python(
        "import time\nend = time.process_time() + 0.3\nwhile time.process_time() < end:\n    pass\n\
         blob = bytearray(64 << 20)\nfor i in range(0, len(blob), 4096):\n    blob[i] = 1\n\
         open('/tmp/file', 'wb').write(b'x' * (1 << 20))",
    )
    .await;
    let all = backend.list(&ListFilter::namespace("test")).await.unwrap();
    let info = all.iter().find(|i| i.id == a.id).expect("a is listed");
    assert!(all.iter().any(|i| i.id == b.id));
    assert!(info.memory_mb.unwrap() >= 64, "{info:?}");
    assert!(info.cpu_percent.unwrap() > 0.0, "{info:?}");
    assert!(info.disk_bytes.unwrap() >= 1 << 20, "{info:?}");
    let only_b = backend.list(&ListFilter::sandbox(&b.id)).await.unwrap();
    assert_eq!(only_b.len(), 1);
    assert!(only_b[0].memory_mb.unwrap() < 64, "{only_b:?}");
    a.stop().await;
    b.stop().await;
    assert!(backend.list(&ListFilter::default()).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_run_directly_in_the_work_directory_with_the_specs_environment() {
    let mut spec = spec("cmd", Template::Python);
    spec.env.push(("GREETING".into(), "hello from the spec".into()));
    let sandbox = Sandbox::start(&backend(), &spec).await;
    let out = sandbox.command("echo", &["$HOME", "*"]).await;
    assert_eq!(out.stdout, "$HOME *\n", "no shell expands anything: {out:?}");
    let out = sandbox.shell("pwd; echo $HOME; echo $GREETING; hostname").await;
    assert_eq!(
        out.stdout, "/workspace\n/workspace\nhello from the spec\nsandbox\n",
        "{out:?}"
    );
    let out = sandbox
        .python("import os\nprint(os.getcwd(), os.environ['GREETING'])")
        .await;
    assert_eq!(out.stdout, "/workspace hello from the spec\n", "{out:?}");
    // The same files from code and from commands.
    sandbox.python("open('shared.txt', 'w').write('written by code')").await;
    let out = sandbox.command("cat", &["/workspace/shared.txt"]).await;
    assert_eq!(out.stdout, "written by code");

    let out = sandbox.command("no-such-program-msbw", &[]).await;
    assert_eq!(out.exit_code, Some(127), "{out:?}");
    assert!(out.stderr.contains("cannot run \"no-such-program-msbw\""), "{out:?}");
    let out = sandbox.command("/etc/passwd", &[]).await;
    assert_eq!(out.exit_code, Some(126), "{out:?}");
    let out = sandbox.shell("kill -9 $$").await;
    assert_eq!((out.status, out.exit_code), (ExecStatus::Completed, None), "{out:?}");

    let request = CodeRequest {
        language: Template::Node,
        code: "1".into(),
        timeout: QUICK,
    };
    let err = sandbox.backend.run_code(&sandbox.id, &request).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    let empty = CommandRequest {
        command: String::new(),
        args: vec![],
        timeout: QUICK,
    };
    let err = sandbox.backend.run_command(&sandbox.id, &empty).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    sandbox.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_in_one_sandbox_run_at_the_same_time() {
    let sandbox = Sandbox::new("concurrent", Template::Python).await;
    // The first command can only finish once the second has run.
    let waiter = sandbox.shell("while [ ! -e /tmp/go ]; do sleep 0.01; done; echo released");
    let releaser = async {
        tokio::task::yield_now().await;
        sandbox.command("touch", &["/tmp/go"]).await
    };
    let (waited, released) = tokio::join!(waiter, releaser);
    assert_eq!(released.exit_code, Some(0), "{released:?}");
    assert_eq!(waited.stdout, "released\n", "{waited:?}");
    sandbox.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_backend_kills_its_sandboxes() {
    let dir = tempfile::tempdir().unwrap();
    let sandbox = Sandbox::start(&backend_in(dir.path()), &spec("drop", Template::Python)).await;
    let tag = marker("drop");
    let out = sandbox.python(&background(&tag)).await;
    assert!(out.success(), "{out:?}");
    let found = wait_until_present(&tag, Duration::from_secs(10));
    assert!(!found.is_empty(), "the background process did not start: {out:?}");
    // The sandbox holds the only reference to its backend.
    assert_eq!(std::sync::Arc::strong_count(&sandbox.backend), 1);
    drop(sandbox);
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
    let sandbox = Sandbox::new("partial", Template::Python).await;
    let second = Duration::from_secs(1);
    let out = sandbox
        .command_with("sh", &["-c", "echo before; echo oops >&2; sleep 300"], second)
        .await;
    assert!(out.timed_out(), "{out:?}");
    assert_eq!(
        (out.stdout.as_str(), out.stderr.as_str()),
        ("before\n", "oops\n"),
        "{out:?}"
    );
    let out = sandbox
        .code_with(
            Template::Python,
            "import time\nprint('before', flush=True)\ntime.sleep(300)",
            second,
        )
        .await;
    assert!(out.timed_out(), "{out:?}");
    assert_eq!(out.stdout, "before\n", "{out:?}");
    sandbox.stop().await;
}
