//! Fork bombs: forking stops at the task limit, and nothing of the bomb is left in the host's
//! process table after its timeout.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fork_bombs_are_contained() {
    let backend = backend_with(|config| config.max_processes = 48);
    let sandbox = Sandbox::start(&backend, &spec("fork", Template::Python)).await;

    // Forking stops at the limit.
    let out = sandbox
        .python(
            "import os, time\nchildren = []\ntry:\n    for _ in range(1000):\n        pid = os.fork()\n        \
         if pid == 0:\n            time.sleep(60)\n            os._exit(0)\n        children.append(pid)\n\
         except OSError as e:\n    print('refused after', len(children), e.errno)\n\
         for pid in children:\n    os.kill(pid, 9)\n    os.waitpid(pid, 0)",
        )
        .await;
    let refused_after: usize = out
        .stdout
        .strip_prefix("refused after ")
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("forking was not refused: {out:?}"));
    assert!(refused_after < 48, "{out:?}");

    // A classic shell fork bomb: it hits the limit, then its timeout kills all of it.
    let tag = marker("bomb");
    let script = format!("# {tag}\nbomb() {{ bomb | bomb & }}; bomb; sleep 30");
    assert_timeout_leaves_nothing(&sandbox, &script, Duration::from_secs(3), &tag).await;

    // The sandbox is still usable.
    let ok = sandbox.command("echo", &["ok"]).await;
    assert_eq!(ok.stdout, "ok\n", "{ok:?}");
    sandbox.assert_prints("print('ok')", "ok\n").await;
    sandbox.stop().await;
}
