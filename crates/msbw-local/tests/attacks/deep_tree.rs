//! A tree deeper than any recursion can take (issue 11, item 3): code builds 20,000 nested
//! directories in its `/tmp`. Stopping the sandbox removes the tree without the backend
//! crashing (iterative removal on a blocking thread), the host directory is gone, and the
//! backend keeps working; a tree a dead backend left behind is swept by the next one.

use super::*;

const BUILD: &str =
    "import os\nos.chdir('/tmp')\nfor i in range(DEPTH):\n    os.mkdir('d')\n    os.chdir('d')\nprint('built')";

fn sandbox_dirs(base: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(base)
        .expect("the base directory")
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("msbw-local-"))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_twenty_thousand_level_tree_is_removed_and_the_backend_survives() {
    let base = tempfile::tempdir().unwrap();
    let backend = backend_in(base.path());
    let sandbox = Sandbox::start(&backend, &spec("deep", Template::Python)).await;
    let build = BUILD.replace("DEPTH", "20000");
    let out = sandbox
        .code_with(Template::Python, &build, Duration::from_secs(900))
        .await;
    assert_eq!(out.stdout, "built\n", "{out:?}");
    assert_eq!(sandbox_dirs(base.path()).len(), 1);
    sandbox.stop().await;
    // `stop` returns once the removal is done: nothing is left.
    assert!(sandbox_dirs(base.path()).is_empty(), "{:?}", sandbox_dirs(base.path()));
    // This process is alive (the test goes on) and the backend still works.
    let sandbox = Sandbox::start(&backend, &spec("after-deep", Template::Python)).await;
    sandbox.assert_prints("print('alive')", "alive\n").await;
    sandbox.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deep_tree_left_by_a_dead_backend_is_swept_by_the_next() {
    let base = tempfile::tempdir().unwrap();
    // A pid that is gone: a child that has exited and been reaped.
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    let stale = base.path().join(format!("msbw-local-{dead}-old-x"));
    std::fs::create_dir(&stale).unwrap();
    let mut deep = stale.clone();
    // (Built below PATH_MAX; the removal itself does not care about path lengths.)
    for _ in 0..1500 {
        deep.push("d");
    }
    std::fs::create_dir_all(&deep).unwrap();
    // The first use of the backend starts the sweep, on a thread of its own.
    let sandbox = Sandbox::start(&backend_in(base.path()), &spec("sweeper", Template::Python)).await;
    assert!(
        eventually(Duration::from_secs(300), || !stale.exists()),
        "the stale tree is still there"
    );
    sandbox.stop().await;
}
