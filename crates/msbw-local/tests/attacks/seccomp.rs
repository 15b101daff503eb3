//! Attack 7: system calls an interpreter does not need, tried from inside the sandbox with
//! Python's `ctypes` (`libc.syscall(nr, ...)`). Each must fail with `ENOSYS` (the seccomp
//! filter's answer) without reaching the kernel's implementation, and nothing may happen on
//! the host (no key in the host's keyring).
#![cfg(target_arch = "x86_64")]
#![allow(clippy::unwrap_used)]

use msbw_backend::{ExecStatus, Template};

use crate::common::{Sandbox, backend, spec};

/// The system calls the filter must refuse, by name and number.
const DENIED: &[(&str, i64)] = &[
    ("add_key", libc::SYS_add_key),
    ("request_key", libc::SYS_request_key),
    ("keyctl", libc::SYS_keyctl),
    ("io_uring_setup", libc::SYS_io_uring_setup),
    ("io_uring_enter", libc::SYS_io_uring_enter),
    ("io_uring_register", libc::SYS_io_uring_register),
    ("bpf", libc::SYS_bpf),
    ("userfaultfd", libc::SYS_userfaultfd),
    ("perf_event_open", libc::SYS_perf_event_open),
    ("kexec_load", libc::SYS_kexec_load),
    ("kexec_file_load", libc::SYS_kexec_file_load),
    ("init_module", libc::SYS_init_module),
    ("finit_module", libc::SYS_finit_module),
    ("delete_module", libc::SYS_delete_module),
    ("mount", libc::SYS_mount),
    ("umount2", libc::SYS_umount2),
    ("pivot_root", libc::SYS_pivot_root),
    ("chroot", libc::SYS_chroot),
    ("move_mount", libc::SYS_move_mount),
    ("open_tree", libc::SYS_open_tree),
    ("fsopen", libc::SYS_fsopen),
    ("fsconfig", libc::SYS_fsconfig),
    ("fsmount", libc::SYS_fsmount),
    ("fspick", libc::SYS_fspick),
    ("mount_setattr", libc::SYS_mount_setattr),
    ("setns", libc::SYS_setns),
    ("clone3", libc::SYS_clone3),
    ("ptrace", libc::SYS_ptrace),
    ("process_vm_readv", libc::SYS_process_vm_readv),
    ("process_vm_writev", libc::SYS_process_vm_writev),
    ("kcmp", libc::SYS_kcmp),
    ("pidfd_getfd", libc::SYS_pidfd_getfd),
    ("open_by_handle_at", libc::SYS_open_by_handle_at),
    ("name_to_handle_at", libc::SYS_name_to_handle_at),
    ("fanotify_init", libc::SYS_fanotify_init),
    ("swapon", libc::SYS_swapon),
    ("reboot", libc::SYS_reboot),
    ("syslog", libc::SYS_syslog),
    ("settimeofday", libc::SYS_settimeofday),
    ("clock_settime", libc::SYS_clock_settime),
    ("adjtimex", libc::SYS_adjtimex),
    ("iopl", libc::SYS_iopl),
    ("ioperm", libc::SYS_ioperm),
    ("modify_ldt", libc::SYS_modify_ldt),
    ("personality", libc::SYS_personality),
    ("acct", libc::SYS_acct),
    ("quotactl", libc::SYS_quotactl),
    ("io_setup", libc::SYS_io_setup),
    ("mbind", libc::SYS_mbind),
    ("uselib", libc::SYS_uselib),
];

/// The users that hold keys on the host (`/proc/key-users`: `uid: usage nkeys/nikeys ...`).
fn host_key_users() -> Vec<String> {
    std::fs::read_to_string("/proc/key-users")
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denied_system_calls_fail_with_enosys_and_do_nothing() {
    let sandbox = Sandbox::new("seccomp", Template::Python).await;
    let keys_before = host_key_users();
    let table: String = DENIED.iter().map(|(name, nr)| format!("({name:?}, {nr}), ")).collect();
    // Real arguments where a call would do something if it went through: add a key to the
    // user keyring, set up an io_uring, create a user namespace, clone into new namespaces.
    let source = format!(
        r#"
import ctypes, errno, json
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
def attempt(nr, *args):
    ctypes.set_errno(0)
    r = libc.syscall(ctypes.c_long(nr), *[ctypes.c_long(a) if isinstance(a, int) else a for a in args])
    return r, ctypes.get_errno()
params = ctypes.create_string_buffer(120)
real = {{
    {add_key}: (b"user", b"msbw-attack-key", b"payload", 7, -4),
    {io_uring_setup}: (8, params),
}}
found = {{}}
for name, nr in [{table}]:
    found[name] = attempt(nr, *real.get(nr, (0, 0, 0, 0, 0)))
# Namespaces through clone and unshare (which are allowed without namespace flags).
found["unshare(CLONE_NEWUSER)"] = attempt({unshare}, 0x10000000)
found["unshare(CLONE_NEWNET)"] = attempt({unshare}, 0x40000000)
found["unshare(CLONE_NEWNS)"] = attempt({unshare}, 0x00020000)
found["clone(CLONE_NEWUSER|SIGCHLD)"] = attempt({clone}, 0x10000000 | 17, 0, 0, 0, 0)
found["clone(CLONE_NEWPID|SIGCHLD)"] = attempt({clone}, 0x20000000 | 17, 0, 0, 0, 0)
# The x32 system call numbers are not the allowed ones.
found["x32 getpid"] = attempt(0x40000000 + {getpid})
# What stays allowed.
found["ok unshare(CLONE_FS)"] = attempt({unshare}, 0x00000200)
found["ok getpid"] = attempt({getpid})
print(json.dumps(found))
"#,
        add_key = libc::SYS_add_key,
        io_uring_setup = libc::SYS_io_uring_setup,
        unshare = libc::SYS_unshare,
        clone = libc::SYS_clone,
        getpid = libc::SYS_getpid,
    );
    let out = sandbox.python(&source).await;
    assert_eq!(out.status, ExecStatus::Completed, "{out:?}");
    let found: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(out.stdout.trim()).unwrap_or_else(|e| panic!("{e}: {out:?}"));
    assert_eq!(found.len(), DENIED.len() + 8, "{found:?}");
    for (name, result) in &found {
        let (ret, errno) = (result[0].as_i64().unwrap(), result[1].as_i64().unwrap());
        if name.starts_with("ok ") {
            assert!(ret >= 0, "{name} should work: errno {errno}");
        } else {
            assert_eq!(
                (ret, errno),
                (-1, i64::from(libc::ENOSYS)),
                "{name} was not refused by the filter"
            );
        }
    }
    // Nothing of it on the host: no new key user, no changed key count.
    assert_eq!(host_key_users(), keys_before, "the sandbox reached the host's keyring");
    sandbox.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_program_runs_under_the_filter_and_still_works() {
    let backend = backend();
    let sandbox = Sandbox::start(&backend, &spec("seccomp-py", Template::Python)).await;
    let filtered = |text: &str| {
        text.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["Seccomp:", "2"])
    };
    // The interpreter, its children, commands.
    let out = sandbox.python("print(open('/proc/self/status').read())").await;
    assert!(filtered(&out.stdout), "{out:?}");
    let out = sandbox.shell("cat /proc/self/status").await;
    assert!(filtered(&out.stdout), "{out:?}");
    // What interpreters and commands do keeps working: threads, subprocesses (clone without
    // namespace flags, glibc's fallback from clone3), pipes, files, sockets on the loopback.
    let out = sandbox
        .python(
            r#"
import os, socket, subprocess, threading, tempfile
t = threading.Thread(target=lambda: None); t.start(); t.join()
print(subprocess.run(['sh', '-c', 'cp /etc/hostname /tmp/h && chmod 600 /tmp/h && ls -l /tmp/h | cut -c1-10 && id -u'], capture_output=True, text=True, check=True).stdout, end='')
pid = os.fork()
if pid == 0:
    os._exit(7)
print(os.waitpid(pid, 0)[1] >> 8)
server = socket.socket(); server.bind(('127.0.0.1', 0)); server.listen()
client = socket.create_connection(server.getsockname()); peer, _ = server.accept()
client.sendall(b'ping'); print(peer.recv(4).decode())
"#,
        )
        .await;
    assert_eq!(out.stdout, "-rw-------\n0\n7\nping\n", "{out:?}");
    sandbox.stop().await;

    // A worker is a second V8 isolate: give it the address space for one.
    let mut node_spec = spec("seccomp-node", Template::Node);
    node_spec.memory_mb = 2048;
    let sandbox = Sandbox::start(&backend, &node_spec).await;
    let out = sandbox
        .node("console.log(require('fs').readFileSync('/proc/self/status', 'utf8').match(/Seccomp:\\s*(\\d)/)[1])")
        .await;
    assert_eq!(out.stdout, "2\n", "{out:?}");
    let out = sandbox
        .node(
            r#"
const { Worker } = require('worker_threads');
const fs = require('fs');
await fs.promises.writeFile('/tmp/n', 'node');
const viaWorker = await new Promise((done) => new Worker("require('worker_threads').parentPort.postMessage(6 * 7)", { eval: true }).on('message', done));
console.log(require('child_process').execSync('echo child').toString().trim(), await fs.promises.readFile('/tmp/n', 'utf8'), viaWorker);
"#,
        )
        .await;
    assert_eq!(out.stdout, "child node 42\n", "{out:?}");
    sandbox.stop().await;
}

#[test]
fn the_host_report_shows_the_filter() {
    let support = msbw_local::LocalBackend::probe(&msbw_local::LocalConfig::default());
    let summary = support.seccomp.as_ref().expect("this host has seccomp filters");
    assert_eq!(summary.arch, "x86_64");
    assert!(summary.denied >= DENIED.len(), "{summary:?}");
    assert!(support.to_string().contains("seccomp: filter active"), "{support}");
}
