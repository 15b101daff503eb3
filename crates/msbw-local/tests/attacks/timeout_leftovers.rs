//! Attack 6: what a timed-out execution leaves behind, and forged frames on the driver's
//! descriptor. A timed-out execution must leave no thread, process or frame: once the result
//! says `TimedOut`, nothing of it writes to the host any more and the next call sees nothing
//! of it. Frames the code writes on descriptor 3 can never end another execution or confuse
//! the backend.
#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use msbw_backend::{Aftermath, CodeRequest, ErrorKind, ExecOutput, ExecStatus, SandboxBackend, SandboxSpec, Template};

use crate::common::{Sandbox, assert_timed_out, backend, host_processes_with, marker, spec};

/// Starts a sandbox for `spec` with a host directory every uid may write mapped read-write at
/// `/sandbox/rw`.
async fn with_volume(mut spec: SandboxSpec) -> (Sandbox, tempfile::TempDir) {
    // Owned by an unprivileged user: a writable volume owned by host root is refused.
    let dir = crate::volume_dir();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    spec.volumes = vec![crate::mapping(dir.path(), "/sandbox/rw")];
    (Sandbox::start(&backend(), &spec).await, dir)
}

fn size(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// Checks a timed-out execution's result: every one of `files` was written before the timeout
/// (everything ran), and no process marked `mark` is left the moment the result is back (no
/// waiting, no polling). Returns the files' sizes.
#[track_caller]
fn all_ran_and_none_is_left<const N: usize>(out: &ExecOutput, files: &[PathBuf; N], mark: &str) -> [u64; N] {
    for file in files {
        assert!(size(file) > 0, "{} was never written: {out:?}", file.display());
    }
    assert_eq!(
        host_processes_with(mark),
        vec![],
        "processes of the timed-out execution remain"
    );
    files.each_ref().map(|f| size(f))
}

/// Checks that none of `files` has grown from `sizes`: nothing wrote after the timeout.
#[track_caller]
fn nothing_wrote_since<const N: usize>(files: &[PathBuf; N], sizes: [u64; N]) {
    assert_eq!(
        files.each_ref().map(|f| size(f)),
        sizes,
        "a leftover wrote after the timeout"
    );
}

/// Long enough for the attack to be running on a busy machine (the code says when it is).
const TIMEOUT: Duration = Duration::from_secs(6);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_threads_and_children_of_a_timed_out_execution_are_gone_when_it_returns() {
    let (sandbox, dir) = with_volume(spec("leftover-py", Template::Python)).await;
    let mark = marker("py-leftover");
    let source = format!(
        r#"
import os, subprocess, sys, threading, time
def tick():
    while True:
        with open('/sandbox/rw/thread', 'a') as f:
            f.write('tick\n')
        print('late', flush=True)
        time.sleep(0.002)
threading.Thread(target=tick, daemon=True).start()
subprocess.Popen(['sh', '-c', 'while :; do echo c >> /sandbox/rw/child; done; : {mark}'])
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.execv('/bin/sh', ['sh', '-c', 'while :; do echo d >> /sandbox/rw/daemon; done; : {mark}'])
    os._exit(0)
# Hang only once all three are writing.
names = ['/sandbox/rw/thread', '/sandbox/rw/child', '/sandbox/rw/daemon']
while not all(os.path.exists(n) and os.path.getsize(n) > 0 for n in names):
    time.sleep(0.01)
print('all running', flush=True)
time.sleep(3600)
"#
    );
    let out = sandbox.code_with(Template::Python, &source, TIMEOUT).await;
    assert_timed_out(&out, Aftermath::StateLost);
    assert!(out.stdout.contains("all running"), "{out:?}");
    let files = ["thread", "child", "daemon"].map(|f| dir.path().join(f));
    let sizes = all_ran_and_none_is_left(&out, &files, &mark);
    // The next call sees nothing of it, and while it runs nothing writes to the host files.
    let out = sandbox.python("import time\ntime.sleep(0.5)\nprint('next')").await;
    assert_eq!((out.stdout.as_str(), out.stderr.as_str()), ("next\n", ""), "{out:?}");
    nothing_wrote_since(&files, sizes);
    sandbox.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_timers_workers_and_children_of_a_timed_out_execution_are_gone_when_it_returns() {
    let mut spec = spec("leftover-node", Template::Node);
    // A worker is a second V8 isolate: give it the address space for one.
    spec.memory_mb = 2048;
    let (sandbox, dir) = with_volume(spec).await;
    let mark = marker("node-leftover");
    let source = format!(
        r#"
const fs = require('fs');
setInterval(() => {{ fs.appendFileSync('/sandbox/rw/timer', 'tick\n'); console.log('late'); console.error('late'); }}, 2);
const {{ Worker }} = require('worker_threads');
const worker = new Worker("const {{ parentPort }} = require('worker_threads'); setInterval(() => {{ require('fs').appendFileSync('/sandbox/rw/worker', 'w'); parentPort.postMessage(1); }}, 2)", {{ eval: true }});
require('child_process').spawn('sh', ['-c', 'while :; do echo c >> /sandbox/rw/child; done; : {mark}'], {{ detached: true, stdio: 'ignore' }});
// Hang only once all three are writing.
await new Promise((r) => worker.once('message', r));
while (!['timer', 'child'].every((f) => fs.existsSync('/sandbox/rw/' + f) && fs.statSync('/sandbox/rw/' + f).size > 0)) {{
  await new Promise((r) => setTimeout(r, 10));
}}
process.stderr.write('all running\n');
await new Promise(() => {{}});
"#
    );
    let out = sandbox.code_with(Template::Node, &source, TIMEOUT).await;
    assert_timed_out(&out, Aftermath::StateLost);
    assert!(out.stderr.contains("all running"), "{out:?}");
    let files = ["timer", "worker", "child"].map(|f| dir.path().join(f));
    let sizes = all_ran_and_none_is_left(&out, &files, &mark);
    let out = sandbox
        .node("await new Promise((r) => setTimeout(r, 500)); console.log(typeof Worker)")
        .await;
    assert_eq!(
        (out.stdout.as_str(), out.stderr.as_str()),
        ("undefined\n", ""),
        "{out:?}"
    );
    nothing_wrote_since(&files, sizes);
    sandbox.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_processes_of_a_timed_out_command_are_gone_when_it_returns() {
    let (sandbox, dir) = with_volume(spec("leftover-cmd", Template::Python)).await;
    let mark = marker("cmd-leftover");
    let script = format!(
        "while :; do echo b >> /sandbox/rw/bg; done & : {mark}; until [ -s /sandbox/rw/bg ]; do :; done; echo running; sleep 3600"
    );
    let out = sandbox.command_with("sh", &["-c", &script], TIMEOUT).await;
    assert_timed_out(&out, Aftermath::Intact);
    assert_eq!(
        host_processes_with(&mark),
        vec![],
        "processes of the timed-out command remain"
    );
    let written = size(&dir.path().join("bg"));
    assert!(written > 0);
    sandbox.assert_prints("import time\ntime.sleep(0.3)", "").await;
    assert_eq!(
        size(&dir.path().join("bg")),
        written,
        "a leftover wrote after the timeout"
    );
    sandbox.stop().await;
}

/// Python that writes frames on the driver's descriptor.
const FRAMES: &str = r#"
import json, os, struct
def frame(message):
    body = json.dumps(message).encode()
    return struct.pack('>I', len(body)) + body
def forge(ident, nonce, status='ok'):
    os.write(3, frame({'type': 'result', 'id': ident, 'nonce': nonce, 'status': status}))
"#;

/// Forged results for every id a session may use, with guessed nonces, and a second `ready`.
const FORGE_EVERY_RESULT: &str = r#"
import time
for i in range(1, 100):
    for n in (0, 1, 2**53 - 1):
        forge(i, n, 'raised')
os.write(3, frame({'type': 'ready', 'language': 'python', 'version': '0'}))
time.sleep(0.3)
print('real end')
"#;

/// A forked process that keeps the driver's descriptor and floods it with forged results.
const FORK_A_FORGER: &str = r#"
if os.fork() == 0:
    import time
    for _ in range(200):
        for i in range(1, 100):
            forge(i, 0)
        time.sleep(0.005)
    os._exit(0)
print('forked')
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_result_frames_end_no_execution() {
    let sandbox = Sandbox::new("forge", Template::Python).await;
    sandbox.python(FRAMES).await;
    // Results for every id this session may use, with guessed nonces, and a second `ready`.
    sandbox.assert_prints(FORGE_EVERY_RESULT, "real end\n").await;
    // A forked process keeps the descriptor and floods it between and during later calls.
    sandbox.assert_prints(FORK_A_FORGER, "forked\n").await;
    for n in 0..5 {
        let source = format!("import time\ntime.sleep(0.1)\nprint({n})");
        sandbox.assert_prints(&source, &format!("{n}\n")).await;
    }
    sandbox.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stolen_nonce_ends_only_its_own_execution_and_the_next_call_is_its_own() {
    let sandbox = Sandbox::new("steal", Template::Python).await;
    sandbox.python(FRAMES).await;
    // The code runs in the driver's process and can read the nonce from the driver's frame:
    // it can end its own execution early (its own business), but nothing else.
    sandbox
        .assert_prints(
            "import sys, time\nf = sys._getframe()\nwhile f is not None and not isinstance(f.f_locals.get('message'), dict):\n    f = f.f_back\n\
             m = f.f_locals['message']\nforge(m['id'], m['nonce'])\ntime.sleep(1)\nprint('after')",
            "",
        )
        .await;
    for n in 0..3 {
        let out = sandbox.python(&format!("print({n})")).await;
        assert_eq!(
            (out.stdout.as_str(), out.stderr.as_str()),
            (format!("{n}\n").as_str(), ""),
            "{out:?}"
        );
    }
    sandbox.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_the_drivers_descriptor_is_a_clean_error_and_the_session_goes_on() {
    let backend = backend();
    for template in [Template::Python, Template::Node] {
        let sandbox = Sandbox::start(&backend, &spec("garbage", template)).await;
        let attacks: [&str; 3] = match template {
            Template::Python => [
                "import os\nos.write(3, b'\\xff\\xff\\xff\\xff')",
                "import os\nos.write(3, b'\\x00\\x00')",
                "import os\nos.write(3, b'\\x00\\x00\\x00\\x05{\"a\":')",
            ],
            _ => [
                "require('fs').writeSync(3, Buffer.from([255, 255, 255, 255]))",
                "require('fs').writeSync(3, Buffer.from([0, 0]))",
                "require('fs').writeSync(3, Buffer.from([0, 0, 16, 0, 123]))",
            ],
        };
        for attack in attacks {
            let request = CodeRequest {
                language: template,
                code: attack.to_owned(),
                timeout: Duration::from_secs(5),
            };
            match backend.run_code(&sandbox.id, &request).await {
                // Usually: the backend sees a frame no driver writes and restarts the interpreter.
                Err(e) => assert_eq!(e.kind(), ErrorKind::Protocol, "{template} {attack}: {e}"),
                // A plausible length prefix swallows the driver's answer: the execution then
                // runs into its timeout, as any code that blocks itself does.
                Ok(out) => assert!(
                    matches!(
                        out.status,
                        ExecStatus::TimedOut {
                            aftermath: Aftermath::StateLost,
                            ..
                        }
                    ),
                    "{template} {attack}: {out:?}"
                ),
            }
            let next = match template {
                Template::Python => sandbox.python("print('next')").await,
                _ => sandbox.node("console.log('next')").await,
            };
            assert_eq!(next.stdout, "next\n", "{template} after {attack}: {next:?}");
        }
        sandbox.stop().await;
    }
}
