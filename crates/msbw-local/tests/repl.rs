//! The interpreters behind `run_code`: state, output capture, errors, and what happens when the
//! interpreter dies, for Python and Node.js.

mod common;

use std::time::Duration;

use common::*;
use msbw_backend::{ExecStatus, SandboxBackend, Template};
use msbw_local::{LocalBackend, LocalConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_shows_the_last_expression_and_supports_top_level_await() {
    let backend = backend();
    let id = start(&backend, &spec("py-repl", Template::Python)).await;
    let out = python(&backend, &id, "x = 20\nx * 2 + 2").await;
    assert_eq!(out.stdout, "42\n", "{out:?}");
    let out = python(&backend, &id, "None").await;
    assert_eq!(out.stdout, "", "{out:?}");
    let out = python(
        &backend,
        &id,
        "import asyncio\nasync def twice(v):\n    await asyncio.sleep(0)\n    return 2 * v\ny = await twice(x)\nprint(y)",
    )
    .await;
    assert_eq!(out.stdout, "40\n", "{out:?}");
    let out = python(&backend, &id, "print(y + 1)").await;
    assert_eq!(out.stdout, "41\n", "{out:?}");
    // User code may run its own event loop too.
    let out = python(&backend, &id, "import asyncio\nprint(asyncio.run(twice(5)))").await;
    assert_eq!(out.stdout, "10\n", "{out:?}");
    let out = python(&backend, &id, "print(await twice(1))").await;
    assert_eq!(out.stdout, "2\n", "{out:?}");
    backend.stop(&id).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_captures_output_of_child_processes_per_execution() {
    let backend = backend();
    let id = start(&backend, &spec("py-children", Template::Python)).await;
    let out = python(
        &backend,
        &id,
        "import os, subprocess, sys\nprint('parent')\nsys.stdout.flush()\n\
         subprocess.run(['echo', 'child'])\nos.system('echo from-shell; echo to-stderr >&2')\n\
         _ = subprocess.run(['sh', '-c', 'echo child-err >&2'])",
    )
    .await;
    assert_eq!(out.stdout, "parent\nchild\nfrom-shell\n", "{out:?}");
    assert_eq!(out.stderr, "to-stderr\nchild-err\n", "{out:?}");

    // A background child that keeps writing after its execution ended does not leak into the
    // next execution.
    let out = python(
        &backend,
        &id,
        "import subprocess\nbg = subprocess.Popen(['sh', '-c', 'i=0; while [ $i -lt 200 ]; do echo late; i=$((i+1)); sleep 0.01; done'])\nprint('started')",
    )
    .await;
    assert!(out.stdout.contains("started"), "{out:?}");
    for _ in 0..5 {
        let out = python(&backend, &id, "import time\ntime.sleep(0.05)\nprint('clean')").await;
        assert_eq!(out.stdout, "clean\n", "{out:?}");
    }
    let out = python(&backend, &id, "bg.kill(); bg.wait(); print('stopped')").await;
    assert_eq!(out.stdout, "stopped\n", "{out:?}");
    backend.stop(&id).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_errors_exits_and_crashes_are_reported() {
    let backend = backend();
    let id = start(&backend, &spec("py-errors", Template::Python)).await;
    let out = python(&backend, &id, "kept = 1\ndef f():\n    raise KeyError('boom')\nf()").await;
    assert_eq!(out.status, ExecStatus::Raised);
    assert!(out.stderr.contains("KeyError: 'boom'"), "{out:?}");
    assert!(out.stderr.contains("line 3, in f"), "{out:?}");
    assert!(!out.stderr.contains("_msbw_driver"), "driver frames leak: {out:?}");
    let out = python(&backend, &id, "def broken(:\n    pass").await;
    assert_eq!(out.status, ExecStatus::Raised);
    assert!(out.stderr.contains("SyntaxError"), "{out:?}");
    let out = python(&backend, &id, "import sys\nsys.exit(0)").await;
    assert_eq!(out.status, ExecStatus::Completed, "{out:?}");
    let out = python(&backend, &id, "import sys\nsys.exit(3)").await;
    assert_eq!(out.status, ExecStatus::Raised, "{out:?}");
    assert!(out.stderr.contains("SystemExit: 3"), "{out:?}");
    let out = python(&backend, &id, "print(kept)").await;
    assert_eq!(out.stdout, "1\n", "state survives exceptions: {out:?}");

    // The interpreter itself dies: reported, restarted, usable (with fresh state).
    let out = python(&backend, &id, "import os\nprint('bye', flush=True)\nos._exit(7)").await;
    assert_eq!(out.status, ExecStatus::Raised, "{out:?}");
    assert_eq!(out.stdout, "bye\n", "{out:?}");
    assert!(out.stderr.contains("exited with code 7"), "{out:?}");
    assert!(out.stderr.contains("state was lost"), "{out:?}");
    let out = python(&backend, &id, "print('kept' in globals())").await;
    assert_eq!(out.stdout, "False\n", "{out:?}");
    backend.stop(&id).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_output_arrives_whole_and_a_cap_is_reported() {
    let backend = backend();
    let id = start(&backend, &spec("big", Template::Python)).await;
    let out = python(
        &backend,
        &id,
        "import sys\nsys.stdout.write('x' * (3 << 20))\nprint('!', file=sys.stderr)",
    )
    .await;
    assert_eq!(out.stdout.len(), 3 << 20);
    assert_eq!(out.stderr, "!\n");
    let out = command(&backend, &id, "head", &["-c", "3000000", "/dev/zero"]).await;
    assert_eq!(out.stdout.len(), 3_000_000, "{:?}", out.stderr);
    backend.stop(&id).await.unwrap();

    let mut config = LocalConfig::default();
    config.max_output_bytes = 1000;
    let backend = LocalBackend::new(config);
    let id = start(&backend, &spec("cap", Template::Python)).await;
    let out = python(&backend, &id, "print('y' * 5000)").await;
    assert!(out.stdout.starts_with(&"y".repeat(1000)), "{out:?}");
    assert!(out.stdout.contains("4001 more bytes of stdout were dropped"), "{out:?}");
    backend.stop(&id).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_executions_do_not_confuse_the_next_one() {
    let backend = backend();
    let id = start(&backend, &spec("abandon", Template::Python)).await;
    python(&backend, &id, "state = 'old'").await;
    // The caller gives up while the code runs (its future is dropped).
    let slow = code_with(
        &backend,
        &id,
        Template::Python,
        "import time\ntime.sleep(30)\nprint('late')",
        QUICK,
    );
    assert!(tokio::time::timeout(Duration::from_millis(300), slow).await.is_err());
    let out = python(&backend, &id, "print(globals().get('state'))").await;
    assert_eq!(out.stdout, "None\n", "{out:?}");
    assert!(out.stderr.contains("abandoned"), "{out:?}");
    backend.stop(&id).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_keeps_declarations_and_supports_top_level_await() {
    let backend = backend();
    let id = start(&backend, &spec("node-repl", Template::Node)).await;
    for (source, expected) in [
        ("var a = 1; let b = 2; const c = 3;", ""),
        ("console.log(a + b + c)", "6\n"),
        ("a + b", "3\n"),
        ("const v = await Promise.resolve(39)", ""),
        ("v + c", "42\n"),
        ("function f() { return b * 10 }", ""),
        ("console.log(f())", "20\n"),
        ("require('path').join('a', 'b')", "'a/b'\n"),
        ("console.error('to-stderr')", ""),
    ] {
        let out = node(&backend, &id, source).await;
        assert_eq!(out.stdout, expected, "{source}: {out:?}");
        assert_eq!(out.status, ExecStatus::Completed, "{source}: {out:?}");
    }
    let out = node(&backend, &id, "console.error('oops')").await;
    assert_eq!((out.stdout.as_str(), out.stderr.as_str()), ("", "oops\n"));
    let out = node(
        &backend,
        &id,
        "require('child_process').execSync('echo from-child >&2; echo ignored')",
    )
    .await;
    assert!(out.stderr.contains("from-child"), "{out:?}");
    backend.stop(&id).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_errors_and_rejections_are_raised_and_late_output_is_dropped() {
    let backend = backend();
    let id = start(&backend, &spec("node-errors", Template::Node)).await;
    let out = node(&backend, &id, "function g() { throw new TypeError('bad thing') }\ng()").await;
    assert_eq!(out.status, ExecStatus::Raised, "{out:?}");
    assert!(out.stderr.contains("TypeError: bad thing"), "{out:?}");
    assert!(!out.stderr.contains("msbwDriver"), "driver frames leak: {out:?}");
    let out = node(&backend, &id, "Promise.reject(new Error('nobody caught me')); 1").await;
    assert_eq!(out.status, ExecStatus::Raised, "{out:?}");
    assert!(out.stderr.contains("nobody caught me"), "{out:?}");
    let out = node(
        &backend,
        &id,
        "await new Promise((_, reject) => reject(new RangeError('awaited')))",
    )
    .await;
    assert_eq!(out.status, ExecStatus::Raised, "{out:?}");
    assert!(out.stderr.contains("RangeError: awaited"), "{out:?}");
    let out = node(&backend, &id, "let = ;").await;
    assert_eq!(out.status, ExecStatus::Raised, "{out:?}");
    assert!(out.stderr.contains("SyntaxError"), "{out:?}");

    // Timers of a finished execution write nothing into later ones. (A tick that comes before
    // the execution has ended belongs to it: 50 ms keeps that out of this test on a busy host.)
    let out = node(
        &backend,
        &id,
        "globalThis.ticker = setInterval(() => { console.log('late'); console.error('late') }, 50); 'armed'",
    )
    .await;
    assert_eq!(out.stdout, "'armed'\n", "{out:?}");
    for _ in 0..5 {
        let out = node(
            &backend,
            &id,
            "await new Promise((r) => setTimeout(r, 60)); console.log('clean')",
        )
        .await;
        assert_eq!((out.stdout.as_str(), out.stderr.as_str()), ("clean\n", ""), "{out:?}");
    }
    node(&backend, &id, "clearInterval(ticker)").await;

    let out = node(&backend, &id, "process.exit(5)").await;
    assert_eq!(out.status, ExecStatus::Raised, "{out:?}");
    assert!(out.stderr.contains("exited with code 5"), "{out:?}");
    let out = node(&backend, &id, "typeof ticker").await;
    assert_eq!(out.stdout, "'undefined'\n", "a fresh interpreter: {out:?}");
    backend.stop(&id).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_heap_exhaustion_is_survived() {
    let backend = backend();
    let id = start(&backend, &spec("node-mem", Template::Node)).await;
    let out = code_with(
        &backend,
        &id,
        Template::Node,
        "const hog = []; while (true) { hog.push(new Array(1e6).fill(1)) }",
        QUICK,
    )
    .await;
    assert_eq!(out.status, ExecStatus::Raised, "{out:?}");
    assert!(out.stderr.contains("state was lost"), "{out:?}");
    let out = node(&backend, &id, "console.log('alive')").await;
    assert_eq!(out.stdout, "alive\n", "{out:?}");
    backend.stop(&id).await.unwrap();
}
