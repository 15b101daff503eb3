//! The interpreters behind `run_code`: state, output capture, errors, and what happens when the
//! interpreter dies, for Python and Node.js.

mod common;

use std::time::Duration;

use common::*;
use msbw_backend::{ExecOutput, Template};

/// Starts a sandbox of `template` and runs each `(source, stdout)` of `steps` in it in turn,
/// asserting that it printed `stdout`; returns the sandbox.
async fn run_in_turn(prefix: &str, template: Template, steps: &[(&str, &str)]) -> Sandbox {
    let sandbox = Sandbox::new(prefix, template).await;
    for (source, stdout) in steps {
        sandbox.assert_prints(source, stdout).await;
    }
    sandbox
}

/// Runs `source`, which must raise with `needle` in its stderr, and asserts that the traceback
/// shows none of the frames of the driver that runs user code.
async fn assert_raises_without_driver_frames(sandbox: &Sandbox, source: &str, needle: &str) -> ExecOutput {
    let out = sandbox.assert_raises(source, needle).await;
    let driver = match sandbox.template {
        Template::Node => "msbwDriver",
        _ => "_msbw_driver",
    };
    assert!(!out.stderr.contains(driver), "driver frames leak: {out:?}");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_shows_the_last_expression_and_supports_top_level_await() {
    let sandbox = run_in_turn("py-repl", Template::Python, &[
        ("x = 20\nx * 2 + 2", "42\n"),
        ("None", ""),
        (
            "import asyncio\nasync def twice(v):\n    await asyncio.sleep(0)\n    return 2 * v\ny = await twice(x)\nprint(y)",
            "40\n",
        ),
        ("print(y + 1)", "41\n"),
        // User code may run its own event loop too.
        ("import asyncio\nprint(asyncio.run(twice(5)))", "10\n"),
        ("print(await twice(1))", "2\n"),
    ])
    .await;
    sandbox.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_captures_output_of_child_processes_per_execution() {
    let sandbox = Sandbox::new("py-children", Template::Python).await;
    let out = sandbox
        .assert_prints(
            "import os, subprocess, sys\nprint('parent')\nsys.stdout.flush()\n\
             subprocess.run(['echo', 'child'])\nos.system('echo from-shell; echo to-stderr >&2')\n\
             _ = subprocess.run(['sh', '-c', 'echo child-err >&2'])",
            "parent\nchild\nfrom-shell\n",
        )
        .await;
    assert_eq!(out.stderr, "to-stderr\nchild-err\n", "{out:?}");

    // A background child that keeps writing after its execution ended does not leak into the
    // next execution.
    // (Its first lines may come before this execution has ended: they belong to it.)
    let out = sandbox
        .python("import subprocess\nbg = subprocess.Popen(['sh', '-c', 'i=0; while [ $i -lt 200 ]; do echo late; i=$((i+1)); sleep 0.01; done'])\nprint('started')")
        .await;
    assert!(out.stdout.contains("started"), "{out:?}");
    for _ in 0..5 {
        sandbox
            .assert_prints("import time\ntime.sleep(0.05)\nprint('clean')", "clean\n")
            .await;
    }
    sandbox
        .assert_prints("bg.kill(); bg.wait(); print('stopped')", "stopped\n")
        .await;
    sandbox.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_errors_exits_and_crashes_are_reported() {
    let sandbox = Sandbox::new("py-errors", Template::Python).await;
    let source = "kept = 1\ndef f():\n    raise KeyError('boom')\nf()";
    let out = assert_raises_without_driver_frames(&sandbox, source, "KeyError: 'boom'").await;
    assert!(out.stderr.contains("line 3, in f"), "{out:?}");
    sandbox.assert_raises("def broken(:\n    pass", "SyntaxError").await;
    sandbox.assert_prints("import sys\nsys.exit(0)", "").await;
    sandbox.assert_raises("import sys\nsys.exit(3)", "SystemExit: 3").await;
    // State survives exceptions.
    sandbox.assert_prints("print(kept)", "1\n").await;

    // The interpreter itself dies: reported, restarted, usable (with fresh state).
    let out = sandbox
        .assert_raises("import os\nprint('bye', flush=True)\nos._exit(7)", "exited with code 7")
        .await;
    assert_eq!(out.stdout, "bye\n", "{out:?}");
    assert!(out.stderr.contains("state was lost"), "{out:?}");
    sandbox.assert_prints("print('kept' in globals())", "False\n").await;
    sandbox.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_output_arrives_whole_and_a_cap_is_reported() {
    let sandbox = Sandbox::new("big", Template::Python).await;
    let out = sandbox
        .python("import sys\nsys.stdout.write('x' * (3 << 20))\nprint('!', file=sys.stderr)")
        .await;
    assert_eq!(out.stdout.len(), 3 << 20);
    assert_eq!(out.stderr, "!\n");
    let out = sandbox.command("head", &["-c", "3000000", "/dev/zero"]).await;
    assert_eq!(out.stdout.len(), 3_000_000, "{:?}", out.stderr);
    sandbox.stop().await;

    let backend = backend_with(|config| config.max_output_bytes = 1000);
    let sandbox = Sandbox::start(&backend, &spec("cap", Template::Python)).await;
    let out = sandbox.python("print('y' * 5000)").await;
    assert!(out.stdout.starts_with(&"y".repeat(1000)), "{out:?}");
    assert!(out.stdout.contains("4001 more bytes of stdout were dropped"), "{out:?}");
    sandbox.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_executions_do_not_confuse_the_next_one() {
    let sandbox = Sandbox::new("abandon", Template::Python).await;
    sandbox.python("state = 'old'").await;
    // The caller gives up while the code runs (its future is dropped).
    let slow = sandbox.python("import time\ntime.sleep(30)\nprint('late')");
    assert!(tokio::time::timeout(Duration::from_millis(300), slow).await.is_err());
    let out = sandbox.python("print(globals().get('state'))").await;
    assert_eq!(out.stdout, "None\n", "{out:?}");
    assert!(out.stderr.contains("abandoned"), "{out:?}");
    sandbox.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_keeps_declarations_and_supports_top_level_await() {
    let sandbox = run_in_turn(
        "node-repl",
        Template::Node,
        &[
            ("var a = 1; let b = 2; const c = 3;", ""),
            ("console.log(a + b + c)", "6\n"),
            ("a + b", "3\n"),
            ("const v = await Promise.resolve(39)", ""),
            ("v + c", "42\n"),
            ("function f() { return b * 10 }", ""),
            ("console.log(f())", "20\n"),
            ("require('path').join('a', 'b')", "'a/b'\n"),
            ("console.error('to-stderr')", ""),
        ],
    )
    .await;
    let out = sandbox.node("console.error('oops')").await;
    assert_eq!((out.stdout.as_str(), out.stderr.as_str()), ("", "oops\n"));
    let out = sandbox
        .node("require('child_process').execSync('echo from-child >&2; echo ignored')")
        .await;
    assert!(out.stderr.contains("from-child"), "{out:?}");
    sandbox.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_errors_and_rejections_are_raised_and_late_output_is_dropped() {
    let sandbox = Sandbox::new("node-errors", Template::Node).await;
    let source = "function g() { throw new TypeError('bad thing') }\ng()";
    assert_raises_without_driver_frames(&sandbox, source, "TypeError: bad thing").await;
    for (source, needle) in [
        ("Promise.reject(new Error('nobody caught me')); 1", "nobody caught me"),
        (
            "await new Promise((_, reject) => reject(new RangeError('awaited')))",
            "RangeError: awaited",
        ),
        ("let = ;", "SyntaxError"),
    ] {
        sandbox.assert_raises(source, needle).await;
    }

    // Timers of a finished execution write nothing into later ones. (A tick that comes before
    // the execution has ended belongs to it: 50 ms keeps that out of this test on a busy host.)
    sandbox
        .assert_prints(
            "globalThis.ticker = setInterval(() => { console.log('late'); console.error('late') }, 50); 'armed'",
            "'armed'\n",
        )
        .await;
    for _ in 0..5 {
        let out = sandbox
            .node("await new Promise((r) => setTimeout(r, 60)); console.log('clean')")
            .await;
        assert_eq!((out.stdout.as_str(), out.stderr.as_str()), ("clean\n", ""), "{out:?}");
    }
    sandbox.node("clearInterval(ticker)").await;

    sandbox.assert_raises("process.exit(5)", "exited with code 5").await;
    // A fresh interpreter.
    sandbox.assert_prints("typeof ticker", "'undefined'\n").await;
    sandbox.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_heap_exhaustion_is_survived() {
    let sandbox = Sandbox::new("node-mem", Template::Node).await;
    sandbox
        .assert_raises(
            "const hog = []; while (true) { hog.push(new Array(1e6).fill(1)) }",
            "state was lost",
        )
        .await;
    sandbox.assert_prints("console.log('alive')", "alive\n").await;
    sandbox.stop().await;
}
