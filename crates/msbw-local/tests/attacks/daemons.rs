//! Processes that try to outlive their execution or their sandbox: none is left in the host's
//! process table.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_outlives_a_timeout() {
    let sandbox = Sandbox::new("timeout", Template::Python).await;

    // A command that ignores SIGTERM and leaves a double-forked, detached child behind.
    let tag = marker("cmd");
    let script = format!("trap '' TERM; (trap '' TERM; setsid bash -c 'exec -a {tag} sleep 300' &) ; sleep 300");
    assert_timeout_leaves_nothing(&sandbox, &script, Duration::from_secs(1), &tag).await;

    // Code that does the same from the interpreter.
    let tag = marker("code");
    let source = format!(
        "import os, signal, subprocess, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n\
         subprocess.Popen(['setsid', 'sh', '-c', 'trap \"\" TERM; sleep 300; : {tag}'], start_new_session=True)\n\
         if os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n        os.execvp('sleep', ['{tag}', '300'])\n    os._exit(0)\n\
         time.sleep(300)"
    );
    let out = sandbox
        .code_with(Template::Python, &source, Duration::from_secs(2))
        .await;
    assert_timed_out(&out, Aftermath::StateLost);
    assert!(
        wait_until_gone(&tag, Duration::from_secs(10)).is_empty(),
        "processes outlived the code's timeout"
    );
    sandbox.assert_prints("print('fresh')", "fresh\n").await;
    sandbox.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_daemon_outlives_its_sandbox() {
    let (sandbox, tag) = Sandbox::with_marker("daemon", Template::Python).await;
    let source = format!(
        "import os, signal\n\
         if os.fork() == 0:\n    os.setsid()\n    signal.signal(signal.SIGHUP, signal.SIG_IGN)\n    \
         if os.fork() == 0:\n        os.execvp('sleep', ['{tag}', '300'])\n    os._exit(0)\n\
         print('started')"
    );
    sandbox.assert_prints(&source, "started\n").await;
    // The daemon runs, detached, after its execution finished...
    assert!(!wait_until_present(&tag, Duration::from_secs(10)).is_empty());
    // ...and is gone from the host's process table once the sandbox stops.
    sandbox.stop().await;
    assert!(
        wait_until_gone(&tag, Duration::from_secs(10)).is_empty(),
        "a daemon outlived its sandbox"
    );
}
