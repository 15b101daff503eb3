//! Processes that try to outlive their execution or their sandbox: none is left in the host's
//! process table.

use std::time::Duration;

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_outlives_a_timeout() {
    let backend = backend();
    let id = start(&backend, &spec("timeout", Template::Python)).await;

    // A command that ignores SIGTERM and leaves a double-forked, detached child behind.
    let tag = marker("cmd");
    let script = format!("trap '' TERM; (trap '' TERM; setsid bash -c 'exec -a {tag} sleep 300' &) ; sleep 300");
    let out = command_with(&backend, &id, "bash", &["-c", &script], Duration::from_secs(1)).await;
    assert!(out.timed_out(), "{out:?}");
    assert!(
        wait_until_gone(&tag, Duration::from_secs(10)).is_empty(),
        "processes outlived the command's timeout"
    );

    // Code that does the same from the interpreter.
    let tag = marker("code");
    let source = format!(
        "import os, signal, subprocess, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n\
         subprocess.Popen(['setsid', 'sh', '-c', 'trap \"\" TERM; sleep 300; : {tag}'], start_new_session=True)\n\
         if os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n        os.execvp('sleep', ['{tag}', '300'])\n    os._exit(0)\n\
         time.sleep(300)"
    );
    let out = code_with(&backend, &id, Template::Python, &source, Duration::from_secs(2)).await;
    assert_timed_out(&out, Aftermath::StateLost);
    assert!(
        wait_until_gone(&tag, Duration::from_secs(10)).is_empty(),
        "processes outlived the code's timeout"
    );
    let after = python(&backend, &id, "print('fresh')").await;
    assert_eq!(after.stdout, "fresh\n", "{after:?}");
    backend.stop(&id).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_daemon_outlives_its_sandbox() {
    let backend = backend();
    let id = start(&backend, &spec("daemon", Template::Python)).await;
    let tag = marker("daemon");
    let source = format!(
        "import os, signal\n\
         if os.fork() == 0:\n    os.setsid()\n    signal.signal(signal.SIGHUP, signal.SIG_IGN)\n    \
         if os.fork() == 0:\n        os.execvp('sleep', ['{tag}', '300'])\n    os._exit(0)\n\
         print('started')"
    );
    let out = python(&backend, &id, &source).await;
    assert_eq!(out.stdout, "started\n", "{out:?}");
    // The daemon runs, detached, after its execution finished...
    assert!(!wait_until_present(&tag, Duration::from_secs(10)).is_empty());
    // ...and is gone from the host's process table once the sandbox stops.
    backend.stop(&id).await.unwrap();
    assert!(
        wait_until_gone(&tag, Duration::from_secs(10)).is_empty(),
        "a daemon outlived its sandbox"
    );
}
