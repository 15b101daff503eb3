//! Seeing and signalling host processes: invisible, and the test process survives.

use super::*;

/// Python that tries to kill the sandbox's "pid 1".
const KILL_PID_1: &str = r#"
import os, signal
try:
    os.kill(1, signal.SIGKILL)
except PermissionError:
    print('denied')
print('still here')
"#;

/// A shell script that counts the processes it can see whose environment or command line names
/// `CARGO_PKG_NAME` (the bracket keeps the script itself from matching).
const COUNT_CARGO_ENVIRONMENTS: &str = r"for p in /proc/[0-9]*; do cat $p/environ $p/cmdline 2>/dev/null; done | tr '\0' '\n' | grep -c 'CARGO_PKG_NAM[E]' || true";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_processes_are_invisible_and_cannot_be_signalled() {
    let sandbox = Sandbox::new("pid", Template::Python).await;
    let me = std::process::id();
    let exe = std::env::current_exe().unwrap();
    let exe_name = exe.file_name().unwrap().to_string_lossy().into_owned();
    let source = format!(
        "import os, signal\n\
         pids = [p for p in os.listdir('/proc') if p.isdigit()]\n\
         lines = []\n\
         for p in pids:\n    try:\n        lines.append(open('/proc/%s/cmdline' % p, 'rb').read().decode(errors='replace'))\n    \
         except OSError:\n        pass\n\
         print('count', len(pids))\n\
         print('sees-host', any({exe_name:?} in l for l in lines))\n\
         print('sees-me', os.path.exists('/proc/{me}'))\n\
         try:\n    os.kill({me}, signal.SIGKILL)\n    print('signalled')\nexcept ProcessLookupError:\n    print('no such process')\n"
    );
    let out = sandbox.python(&source).await;
    assert!(out.success(), "{out:?}");
    let count: usize = out
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("count "))
        .and_then(|n| n.parse().ok())
        .unwrap_or(usize::MAX);
    assert!(count < 16, "the sandbox sees {count} processes: {out:?}");
    assert!(out.stdout.contains("sees-host False"), "{out:?}");
    if me > 1000 {
        // (pid numbers inside are small, so a large host pid cannot clash with one.)
        assert!(out.stdout.contains("sees-me False"), "{out:?}");
        assert!(out.stdout.contains("no such process"), "{out:?}");
    }
    // "pid 1" is the execution's own init, which belongs to another user; nothing outside.
    let out = sandbox.python(KILL_PID_1).await;
    assert!(out.stdout.ends_with("still here\n"), "{out:?}");
    // Nor can anything in the sandbox look into the processes it can see but does not own.
    // (The test process's environment has CARGO_PKG_NAME; the sandbox's has not.)
    let out = sandbox.shell(COUNT_CARGO_ENVIRONMENTS).await;
    assert_eq!(
        out.stdout.trim(),
        "0",
        "the host process's environment is readable: {out:?}"
    );
    sandbox.stop().await;
}
