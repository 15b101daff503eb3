//! Crash tests (issue 12, item 6): processes that own sandboxes are killed with SIGKILL, so they
//! run no clean-up at all, and the next process must reclaim exactly what the dead one left and
//! nothing of a live peer's. Everything runs the real `msbw` binary on the local backend; the
//! second test puts `msbw exec` (the manager, backend `microsandbox`) in front of `msbw serve`.

#![allow(clippy::unwrap_used, reason = "test code")]

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use microsandbox_wrapper::{HttpBackend, HttpBackendConfig, ListFilter, SandboxBackend, SandboxId, Template};
use msbw_backend::{CodeRequest, SandboxSpec};
use tokio::time::Instant;

/// Issue 12.2: a starting `msbw exec` must not stop a live peer's sandbox (owner identities
/// and leases); before the lease, every `msbw exec` shared the owner mark `msbw` and its orphan
/// sweep stopped the peer's sandbox too.
const PEER_SURVIVES_A_NEW_EXEC: bool = true;

/// A child process that is killed (SIGKILL) and reaped when dropped, so that a failing test
/// leaves nothing running.
struct Proc(Child);

impl Proc {
    fn pid(&self) -> u32 {
        self.0.id()
    }

    /// SIGKILL, and wait until it is gone.
    fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

fn msbw(tmp: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_msbw"));
    c.arg("--no-env-file")
        .env("TMPDIR", tmp)
        .env_remove("MSB_API_KEY")
        .env_remove("MSB_SERVER_URL")
        .env_remove("MSB_OWNER_MARK")
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    c
}

/// `msbw serve --dev` on a free port over the local backend, with its sandboxes' directories in
/// `tmp`; returns once it listens.
fn serve(tmp: &Path) -> (Proc, String) {
    let mut child = msbw(tmp)
        .args(["serve", "--dev", "--port", "0"])
        .env("MSB_BACKEND", "local")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let proc = Proc(child);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        // Reads stderr to the end, so that the server never blocks on a full pipe.
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.split("listening on ").nth(1)
                && let Some(tx) = tx.take()
            {
                let _ = tx.send(rest.split_whitespace().next().unwrap_or_default().to_owned());
            }
        }
    });
    let url = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("msbw serve says where it listens");
    (proc, url)
}

fn client(url: &str) -> HttpBackend {
    HttpBackend::new(HttpBackendConfig::new(url)).unwrap()
}

/// The sandbox directories in `tmp` that the local backend of process `pid` made.
fn dirs_of(tmp: &Path, pid: u32) -> BTreeSet<String> {
    let prefix = format!("msbw-local-{pid}-");
    std::fs::read_dir(tmp)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with(&prefix))
        .collect()
}

async fn names(backend: &HttpBackend) -> BTreeSet<String> {
    backend
        .list(&ListFilter::default())
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.id.name)
        .collect()
}

/// Polls `check` until it holds or `limit` passes.
async fn eventually(what: &str, limit: Duration, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn code(text: &str) -> CodeRequest {
    CodeRequest {
        language: Template::Python,
        code: text.into(),
        timeout: Duration::from_secs(30),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_serve_leaves_only_directories_which_the_next_one_reclaims_and_no_peers() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut dead, dead_url) = serve(tmp.path());
    let (peer, peer_url) = serve(tmp.path());
    let (dead_api, peer_api) = (client(&dead_url), client(&peer_url));
    let (mine, theirs) = (
        SandboxId::new("default", "crash-dead").unwrap(),
        SandboxId::new("default", "crash-peer").unwrap(),
    );
    dead_api
        .start(&SandboxSpec::new(mine.clone(), Template::Python))
        .await
        .unwrap();
    peer_api
        .start(&SandboxSpec::new(theirs.clone(), Template::Python))
        .await
        .unwrap();
    peer_api.run_code(&theirs, &code("state = 41")).await.unwrap();
    let dead_dirs = dirs_of(tmp.path(), dead.pid());
    let peer_dirs = dirs_of(tmp.path(), peer.pid());
    assert!(
        !dead_dirs.is_empty() && !peer_dirs.is_empty(),
        "each server has a sandbox directory"
    );

    dead.kill();
    // The sandbox's processes died with it (msbw-local's host_death test proves that in
    // detail); what is left is its directory.
    assert_eq!(
        dirs_of(tmp.path(), dead.pid()),
        dead_dirs,
        "a killed server cannot clean up"
    );

    // A new server reclaims the dead one's leftovers the first time its backend is used...
    let (_next, next_url) = serve(tmp.path());
    let next_api = client(&next_url);
    let own = SandboxId::new("default", "crash-next").unwrap();
    next_api
        .start(&SandboxSpec::new(own.clone(), Template::Python))
        .await
        .unwrap();
    eventually(
        "the dead server's directories are removed",
        Duration::from_secs(10),
        async || dirs_of(tmp.path(), dead.pid()).is_empty(),
    )
    .await;
    // ...and nothing of the live peer's: its directory, its sandbox and its REPL state.
    assert_eq!(dirs_of(tmp.path(), peer.pid()), peer_dirs);
    let out = peer_api.run_code(&theirs, &code("print(state + 1)")).await.unwrap();
    assert_eq!(out.stdout.trim(), "42", "{out:?}");
    assert_eq!(names(&next_api).await, BTreeSet::from([own.name.clone()]));
    assert_eq!(names(&peer_api).await, BTreeSet::from([theirs.name.clone()]));
    next_api.stop(&own).await.unwrap();
    peer_api.stop(&theirs).await.unwrap();
}

/// `msbw exec` with code that runs for a long time, through `msbw serve` at `url`.
fn exec(tmp: &Path, url: &str, text: &str) -> Proc {
    Proc(
        msbw(tmp)
            .args(["exec", text])
            .env("MSB_BACKEND", "microsandbox")
            .env("MSB_SERVER_URL", url)
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_exec_reclaims_a_killed_execs_sandbox() {
    let tmp = tempfile::tempdir().unwrap();
    let (_server, url) = serve(tmp.path());
    let api = client(&url);
    let long = "import time\ntime.sleep(120)";

    // The owner that dies: its sandbox stays on the server, which is alive.
    let mut dead = exec(tmp.path(), &url, long);
    let mut dead_name = String::new();
    eventually(
        "the first exec's sandbox runs",
        Duration::from_secs(60),
        async || match names(&api).await.into_iter().next() {
            Some(n) => {
                dead_name = n;
                true
            }
            None => false,
        },
    )
    .await;
    dead.kill();
    assert!(
        names(&api).await.contains(&dead_name),
        "a killed exec cannot stop its sandbox"
    );

    // A live peer, in the middle of its execution.
    let _peer = exec(tmp.path(), &url, long);
    let mut peer_name = String::new();
    eventually(
        "the peer's sandbox runs",
        Duration::from_secs(60),
        async || match names(&api).await.into_iter().find(|n| *n != dead_name) {
            Some(n) => {
                peer_name = n;
                true
            }
            None => false,
        },
    )
    .await;

    // A new exec: its start-up sweep reclaims the dead owner's sandbox, and only that.
    let status = msbw(tmp.path())
        .args(["exec", "print(1)"])
        .env("MSB_BACKEND", "microsandbox")
        .env("MSB_SERVER_URL", &url)
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "{status}");
    let left = names(&api).await;
    assert!(
        !left.contains(&dead_name),
        "the dead exec's sandbox was reclaimed: {left:?}"
    );
    assert_eq!(
        left.contains(&peer_name),
        PEER_SURVIVES_A_NEW_EXEC,
        "the live peer's sandbox {peer_name} must survive (issue 12.2): {left:?}"
    );
    for name in left {
        let _ = api.stop(&SandboxId::new("default", name).unwrap()).await;
    }
}
