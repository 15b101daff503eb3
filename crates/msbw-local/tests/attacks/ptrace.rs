//! Tracing processes the sandbox can see but does not own (its execution's init, the sandbox's
//! holder, both copies of the backend process): refused, their memory unreadable, and they keep
//! running. The seccomp allow-list denies `ptrace` to everything in a sandbox (`ENOSYS`), its own
//! children included; reading another process's memory is checked separately, so the test can
//! still fail if either barrier goes.

use super::*;

const TRACE: &str = r#"
import ctypes, os, signal, time
libc = ctypes.CDLL(None, use_errno=True)
PTRACE_ATTACH, PTRACE_DETACH = 16, 17
def attach(pid):
    r = libc.ptrace(PTRACE_ATTACH, pid, 0, 0)
    e = ctypes.get_errno()
    if r == 0:
        os.waitpid(pid, 0) if pid != 1 else None
        libc.ptrace(PTRACE_DETACH, pid, 0, 0)
    return 'attached' if r == 0 else 'refused %d' % e
for pid in sorted(int(p) for p in os.listdir('/proc') if p.isdigit() and int(p) != os.getpid()):
    try:
        name = open('/proc/%d/comm' % pid).read().strip()
    except OSError:
        continue
    if name.startswith('msbw'):
        try:
            open('/proc/%d/mem' % pid, 'rb').read(1)
            mem = 'mem READ'
        except OSError as e:
            mem = 'mem denied'
        print(name, attach(pid), mem)
child = os.fork()
if child == 0:
    time.sleep(30)
    os._exit(0)
print('own-child', attach(child))
os.kill(child, signal.SIGKILL)
os.waitpid(child, 0)
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_of_the_backend_cannot_be_traced_or_read() {
    let sandbox = Sandbox::new("ptrace", Template::Python).await;
    let out = sandbox.python(TRACE).await;
    assert!(out.success(), "{out:?}");
    let backend_lines: Vec<&str> = out.stdout.lines().filter(|l| l.starts_with("msbw")).collect();
    assert!(
        !backend_lines.is_empty(),
        "the backend's processes are visible: {out:?}"
    );
    for line in &backend_lines {
        assert!(line.contains("refused"), "{line}");
        assert!(line.contains("mem denied"), "{line}");
    }
    // Even its own child: ptrace is not on the seccomp allow-list (ENOSYS is 38).
    assert!(out.stdout.contains("own-child refused 38"), "{out:?}");
    // Everything still runs: the sandbox answers, and so does a new execution.
    sandbox.assert_prints("print('alive')", "alive\n").await;
    let out = sandbox.command("true", &[]).await;
    assert_eq!(out.exit_code, Some(0), "{out:?}");
    sandbox.stop().await;
}
