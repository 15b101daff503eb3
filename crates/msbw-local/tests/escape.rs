//! Attempts to break out of a local sandbox. Each test asserts that the attempt fails, and where
//! it matters that the same action succeeds where it is allowed (so the test can fail).

mod common;

use std::io::ErrorKind;
use std::net::TcpListener;
use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use common::*;
use msbw_backend::{Aftermath, ExecStatus, SandboxBackend, Template, VolumeMapping};
use msbw_local::{LocalBackend, LocalConfig};

fn assert_no_connection(listener: &TcpListener) {
    listener.set_nonblocking(true).expect("non-blocking listener");
    match listener.accept() {
        Err(e) if e.kind() == ErrorKind::WouldBlock => {}
        Ok((_, from)) => panic!("the host listener accepted a connection from {from}"),
        Err(e) => panic!("accept: {e}"),
    }
}

const CONNECT: &str = r#"
import socket
try:
    socket.create_connection(("127.0.0.1", PORT), timeout=3).close()
    print("connected")
except OSError as e:
    print("failed:", type(e).__name__)
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cannot_reach_a_listener_on_the_hosts_loopback() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let backend = backend();
    let id = start(&backend, &spec("net", Template::Python)).await;

    let out = python(&backend, &id, &CONNECT.replace("PORT", &port.to_string())).await;
    assert!(out.stdout.starts_with("failed:"), "{out:?}");
    assert_no_connection(&listener);
    // Not even a TCP handshake through another program.
    let script = format!("exec 3<>/dev/tcp/127.0.0.1/{port} && echo open");
    let curlish = command(&backend, &id, "bash", &["-c", &script]).await;
    assert!(!curlish.stdout.contains("open"), "{curlish:?}");
    assert_no_connection(&listener);

    // The sandbox's own loopback works: the failure above is isolation, not a broken stack.
    let inside = python(
        &backend,
        &id,
        "import socket\ns = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen()\n\
         c = socket.create_connection(s.getsockname(), timeout=3); a, _ = s.accept()\n\
         c.sendall(b'ping'); print(a.recv(4).decode())",
    )
    .await;
    assert_eq!(inside.stdout, "ping\n", "{inside:?}");
    backend.stop(&id).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_local_network_enabled_the_same_connection_succeeds() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut config = LocalConfig::default();
    config.network = true;
    let backend = LocalBackend::new(config);
    assert!(!backend.capabilities().await.network_isolated);
    let id = start(&backend, &spec("net-on", Template::Python)).await;
    let out = python(&backend, &id, &CONNECT.replace("PORT", &port.to_string())).await;
    assert_eq!(out.stdout, "connected\n", "{out:?}");
    listener.set_nonblocking(true).unwrap();
    assert!(
        listener.accept().is_ok(),
        "the connection should have reached the host listener"
    );
    backend.stop(&id).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cannot_write_outside_the_writable_paths() {
    let backend = backend();
    let id = start(&backend, &spec("fs", Template::Python)).await;
    let tag = marker("fs");
    // The host's home directories are not even there.
    let targets = [
        format!("/etc/{tag}"),
        format!("/usr/{tag}"),
        format!("/usr/local/bin/{tag}"),
        format!("/{tag}"),
        format!("/var/{tag}"),
        format!("/root/{tag}"),
        format!("/home/{tag}"),
    ];
    let source = format!(
        "import os\nfor path in {targets:?}:\n    try:\n        os.makedirs(os.path.dirname(path), exist_ok=True)\n        \
         open(path, 'w').write('x')\n        print('WROTE', path)\n    except OSError as e:\n        \
         print('denied', path, type(e).__name__)\n\
         for path in ['/tmp/{tag}', '/workspace/{tag}']:\n    open(path, 'w').write('ok')\n    print('ok', path)"
    );
    let out = python(&backend, &id, &source).await;
    assert!(out.success(), "{out:?}");
    assert!(!out.stdout.contains("WROTE"), "{}", out.stdout);
    assert_eq!(out.stdout.matches("denied").count(), targets.len(), "{}", out.stdout);
    assert_eq!(out.stdout.matches("ok /").count(), 2, "{}", out.stdout);
    for target in &targets {
        assert!(!std::path::Path::new(target).exists(), "{target} appeared on the host");
    }
    // The sandbox's /tmp is its own, not the host's.
    assert!(!std::path::Path::new(&format!("/tmp/{tag}")).exists());

    // Through a shell, and by trying to make the system directories writable again.
    let out = shell(&backend, &id, &format!("echo x > /etc/{tag}")).await;
    assert_ne!(out.exit_code, Some(0), "{out:?}");
    let out = shell(&backend, &id, "mount -o remount,rw /usr").await;
    assert_ne!(out.exit_code, Some(0), "{out:?}");
    let out = shell(
        &backend,
        &id,
        &format!("unshare -rm sh -c 'mount -o remount,rw,bind /usr && touch /usr/{tag}'"),
    )
    .await;
    assert_ne!(out.exit_code, Some(0), "{out:?}");
    assert!(!std::path::Path::new(&format!("/usr/{tag}")).exists());

    // Secrets of the host are not readable either.
    let out = python(
        &backend,
        &id,
        "try:\n    open('/etc/shadow').read(); print('READ')\nexcept OSError as e:\n    print('denied', type(e).__name__)",
    )
    .await;
    assert!(out.stdout.starts_with("denied"), "{out:?}");
    backend.stop(&id).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_volumes_stay_read_only_and_writable_ones_are_writable() {
    let ro = tempfile::tempdir().unwrap();
    let rw = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    std::fs::write(ro.path().join("data.txt"), "host data").unwrap();
    let (ro_file, rw_file) = (files.path().join("ro.txt"), files.path().join("rw.txt"));
    std::fs::write(&ro_file, "ro file").unwrap();
    std::fs::write(&rw_file, "rw file").unwrap();
    let backend = backend();
    let mut spec = spec("vol", Template::Python);
    spec.volumes = vec![
        VolumeMapping::read_only(&ro.path().display().to_string(), "/data/ro").unwrap(),
        VolumeMapping::new(&rw.path().display().to_string(), "/data/rw").unwrap(),
        VolumeMapping::read_only(&ro_file.display().to_string(), "/data/ro.txt").unwrap(),
        VolumeMapping::new(&rw_file.display().to_string(), "/data/rw.txt").unwrap(),
    ];
    let id = start(&backend, &spec).await;

    let out = python(
        &backend,
        &id,
        "print(open('/data/ro/data.txt').read())\n\
         for action in ('write', 'remove', 'chmod'):\n    try:\n        \
         if action == 'write': open('/data/ro/new.txt', 'w').write('x')\n        \
         elif action == 'remove': __import__('os').remove('/data/ro/data.txt')\n        \
         else: __import__('os').chmod('/data/ro/data.txt', 0o777)\n        print('DID', action)\n    \
         except OSError as e:\n        print('denied', action, e.errno)\n\
         open('/data/rw/out.txt', 'w').write('from the sandbox')",
    )
    .await;
    assert!(out.success(), "{out:?}");
    assert!(out.stdout.starts_with("host data\n"), "{out:?}");
    assert!(!out.stdout.contains("DID"), "{out:?}");
    assert_eq!(out.stdout.matches("denied").count(), 3, "{out:?}");

    // Remounting the volume, directly or from a new user namespace, fails too.
    for script in [
        "mount -o remount,rw /data/ro && touch /data/ro/remounted".to_owned(),
        "unshare -rm sh -c 'mount -o remount,rw,bind /data/ro && touch /data/ro/remounted'".to_owned(),
    ] {
        let out = shell(&backend, &id, &script).await;
        assert_ne!(out.exit_code, Some(0), "{script}: {out:?}");
    }

    // Volumes that are single files.
    let out = python(
        &backend,
        &id,
        "open('/data/rw.txt', 'a').write(' + sandbox')\n\
         try:\n    open('/data/ro.txt', 'a').write('x')\nexcept OSError as e:\n    print('denied', e.errno)",
    )
    .await;
    assert!(out.stdout.starts_with("denied"), "{out:?}");
    assert_eq!(std::fs::read_to_string(&rw_file).unwrap(), "rw file + sandbox");
    assert_eq!(std::fs::read_to_string(&ro_file).unwrap(), "ro file");

    let names: Vec<String> = std::fs::read_dir(ro.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["data.txt"]);
    assert_eq!(
        std::fs::read_to_string(ro.path().join("data.txt")).unwrap(),
        "host data"
    );
    let written = rw.path().join("out.txt");
    assert_eq!(std::fs::read_to_string(&written).unwrap(), "from the sandbox");
    // Files the sandbox writes belong to the volume's owner, not to a sandbox-only uid.
    assert_eq!(
        std::fs::metadata(&written).unwrap().uid(),
        rw.path().metadata().unwrap().uid()
    );
    backend.stop(&id).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_processes_are_invisible_and_cannot_be_signalled() {
    let backend = backend();
    let id = start(&backend, &spec("pid", Template::Python)).await;
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
    let out = python(&backend, &id, &source).await;
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
    let out = python(
        &backend,
        &id,
        "import os, signal\ntry:\n    os.kill(1, signal.SIGKILL)\nexcept PermissionError:\n    print('denied')\nprint('still here')",
    )
    .await;
    assert!(out.stdout.ends_with("still here\n"), "{out:?}");
    // Nor can anything in the sandbox look into the processes it can see but does not own.
    // (The test process's environment has CARGO_PKG_NAME; the sandbox's has not.)
    let out = shell(
        &backend,
        &id,
        "for p in /proc/[0-9]*; do cat $p/environ $p/cmdline 2>/dev/null; done | tr '\\0' '\\n' | grep -c 'CARGO_PKG_NAM[E]' || true",
    )
    .await;
    assert_eq!(
        out.stdout.trim(),
        "0",
        "the host process's environment is readable: {out:?}"
    );
    backend.stop(&id).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cannot_allocate_past_the_memory_limit() {
    let backend = backend();
    let mut spec = spec("mem", Template::Python);
    spec.memory_mb = 256;
    let id = start(&backend, &spec).await;
    let out = python(&backend, &id, "block = bytearray(1 << 30)").await;
    assert_eq!(out.status, ExecStatus::Raised, "{out:?}");
    assert!(out.stderr.contains("MemoryError"), "{out:?}");

    // Many small allocations end the same way, or with the interpreter killed and restarted.
    let out = python(
        &backend,
        &id,
        "chunks = []\nwhile True:\n    chunks.append(bytearray(8 << 20))",
    )
    .await;
    assert_eq!(out.status, ExecStatus::Raised, "{out:?}");
    assert!(
        out.stderr.contains("MemoryError") || out.stderr.contains("state was lost"),
        "{out:?}"
    );
    // The sandbox keeps working.
    let after = python(&backend, &id, "print('alive')").await;
    assert_eq!(after.stdout, "alive\n", "{after:?}");
    // A command is held to the same limit.
    let out = command(&backend, &id, "python3", &["-c", "bytearray(1 << 30)"]).await;
    assert_ne!(out.exit_code, Some(0), "{out:?}");
    assert!(out.stderr.contains("MemoryError"), "{out:?}");
    backend.stop(&id).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fork_bombs_are_contained() {
    let mut config = LocalConfig::default();
    config.max_processes = 48;
    let backend = LocalBackend::new(config);
    let id = start(&backend, &spec("fork", Template::Python)).await;

    // Forking stops at the limit.
    let out = python(
        &backend,
        &id,
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
    let out = command_with(&backend, &id, "bash", &["-c", &script], Duration::from_secs(3)).await;
    assert!(out.timed_out(), "{out:?}");
    assert!(wait_until_gone(&tag, Duration::from_secs(10)).is_empty());

    // The sandbox is still usable.
    let ok = command(&backend, &id, "echo", &["ok"]).await;
    assert_eq!(ok.stdout, "ok\n", "{ok:?}");
    let ok = python(&backend, &id, "print('ok')").await;
    assert_eq!(ok.stdout, "ok\n", "{ok:?}");
    backend.stop(&id).await.unwrap();
}

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
    assert!(
        matches!(
            out.status,
            ExecStatus::TimedOut {
                aftermath: Aftermath::StateLost,
                ..
            }
        ),
        "{out:?}"
    );
    assert!(
        wait_until_gone(&tag, Duration::from_secs(10)).is_empty(),
        "processes outlived the code's timeout"
    );
    let after = python(&backend, &id, "print('fresh')").await;
    assert_eq!(after.stdout, "fresh\n", "{after:?}");
    backend.stop(&id).await.unwrap();
}
