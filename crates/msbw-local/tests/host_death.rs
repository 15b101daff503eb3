//! A sandbox dies with the process that started it, even when that process is killed and runs
//! no clean-up at all. This test runs without libtest: it starts itself again as the "host"
//! process, which starts a sandbox with a long-running command and a background program of the
//! interpreter in it, then kills that host with SIGKILL and checks that both are gone.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use msbw_backend::Template;

const HELPER: &str = "MSBW_LOCAL_HOST_DEATH_DIR";
const TAG: &str = "MSBW_LOCAL_HOST_DEATH_TAG";

fn main() {
    match (std::env::var(HELPER), std::env::var(TAG)) {
        (Ok(dir), Ok(tag)) => host(&dir, &tag),
        _ => test(),
    }
}

/// The host process: starts a sandbox with a background program, says so, then waits to die.
fn host(dir: &str, tag: &str) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let backend = backend_in(std::path::Path::new(dir));
    runtime.block_on(async {
        let sandbox = Sandbox::start(&backend, &spec("host-death", Template::Python)).await;
        let out = sandbox.python(&background(&format!("{tag}-code"))).await;
        assert!(out.success(), "{out:?}");
        // A command still running when the host dies.
        let script = format!("sleep 300; : {tag}-command");
        tokio::spawn(async move {
            sandbox
                .command_with("sh", &["-c", &script], Duration::from_secs(600))
                .await;
        });
        for what in ["code", "command"] {
            let found = wait_until_present(&format!("{tag}-{what}"), Duration::from_secs(10));
            assert!(!found.is_empty(), "the {what} did not start");
        }
    });
    println!("READY");
    loop {
        std::thread::park();
    }
}

/// The host process, killed if the test fails early (it would otherwise live on).
struct Host(std::process::Child);

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn test() {
    print!("test a_sandbox_dies_with_its_host_process ... ");
    let dir = tempfile::tempdir().expect("tempdir");
    let tag = marker("host-death");
    let mut host = Host(
        Command::new(std::env::current_exe().expect("current exe"))
            .env(HELPER, dir.path())
            .env(TAG, &tag)
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the host process"),
    );
    let stdout = host.0.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx.recv_timeout(Duration::from_secs(60)).unwrap_or_default();
    assert_eq!(line.trim(), "READY", "the host process did not start its sandbox");
    for what in ["code", "command"] {
        let running = host_processes_with(&format!("{tag}-{what}"));
        assert!(!running.is_empty(), "the sandbox's {what} is not running");
    }
    host.0.kill().expect("kill the host process");
    host.0.wait().expect("reap the host process");
    let left = wait_until_gone(&tag, Duration::from_secs(10));
    assert!(left.is_empty(), "the sandbox outlived its host process: {left:?}");
    // The next backend removes what the killed one could not (its cgroups, its directory).
    assert!(backend_in(dir.path()).host_support().usable());
    // The sweep runs in the background: poll the folder until it is empty or the deadline passes.
    let read = || -> Vec<_> { std::fs::read_dir(dir.path()).expect("read the directory").collect() };
    eventually(Duration::from_secs(20), || read().is_empty());
    let left = read();
    assert!(
        left.is_empty(),
        "the killed host's sandbox directory is still there: {left:?}"
    );
    println!("ok");
}
