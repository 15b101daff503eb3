//! The file API from the attacker's side: sandbox code plants links, FIFOs and devices, and the
//! caller's paths try to climb out. Each test asserts what happened on the host.

use msbw_backend::files::MAX_FILE_BYTES;
use msbw_backend::{ErrorKind, FileErrorKind};

use super::*;

fn file_kind(e: &msbw_backend::BackendError) -> Option<FileErrorKind> {
    e.file_kind()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_planted_by_the_sandbox_never_reach_host_files() {
    let host = tempfile::tempdir().unwrap();
    let secret = host.path().join("secret.txt");
    std::fs::write(&secret, "host secret").unwrap();
    let victim = host.path().join("victim.txt");
    std::fs::write(&victim, "host victim").unwrap();
    let sandbox = Sandbox::new("files-link", Template::Python).await;
    let (backend, id) = (&sandbox.backend, &sandbox.id);
    let script = format!(
        "ln -s {} /tmp/secret && ln -s {} /tmp/victim && ln -s / /tmp/root && echo ok",
        secret.display(),
        victim.display()
    );
    let out = sandbox.shell(&script).await;
    assert_eq!(out.stdout.trim(), "ok", "{out:?}");

    // Reading through the link resolves inside the sandbox, where the host path does not exist.
    let err = backend.read_file(id, "/tmp/secret", 1 << 20).await.unwrap_err();
    assert_eq!(file_kind(&err), Some(FileErrorKind::NotFound), "{err}");
    // Writing through a link is refused (a dangling link is not a regular file).
    let err = backend.write_file(id, "/tmp/victim", b"overwritten").await.unwrap_err();
    assert_eq!(file_kind(&err), Some(FileErrorKind::NotAFile), "{err}");
    // A link to the root lists the sandbox's own /tmp, not the host's.
    let listed = backend.list_files(id, "/tmp/root/tmp/").await.unwrap();
    assert!(listed.iter().any(|e| e.name == "victim"), "{listed:?}");
    assert!(
        !listed
            .iter()
            .any(|e| e.name == host.path().file_name().unwrap().to_str().unwrap()),
        "{listed:?}"
    );
    // Removing the link removes the link only.
    backend.remove_file(id, "/tmp/secret").await.unwrap();

    assert_eq!(std::fs::read_to_string(&secret).unwrap(), "host secret");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "host victim");
    sandbox.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dot_dot_paths_are_refused_before_anything_runs() {
    let sandbox = Sandbox::new("files-dotdot", Template::Python).await;
    let (backend, id) = (&sandbox.backend, &sandbox.id);
    let before = std::fs::read("/etc/passwd").unwrap();
    for path in [
        "../../etc/passwd",
        "/tmp/../../etc/passwd",
        "/tmp/a/../../../etc/shadow",
    ] {
        let err = backend.read_file(id, path, 1 << 20).await.unwrap_err();
        assert_eq!(file_kind(&err), Some(FileErrorKind::InvalidPath), "{path}: {err}");
        let err = backend
            .write_file(id, path, b"root::0:0::/:/bin/sh\n")
            .await
            .unwrap_err();
        assert_eq!(file_kind(&err), Some(FileErrorKind::InvalidPath), "{path}: {err}");
        let err = backend.remove_file(id, path).await.unwrap_err();
        assert_eq!(file_kind(&err), Some(FileErrorKind::InvalidPath), "{path}: {err}");
    }
    // /etc inside the sandbox is the host's, read-only: writing it is refused.
    let err = backend.write_file(id, "/etc/passwd", b"owned\n").await.unwrap_err();
    assert_eq!(file_kind(&err), Some(FileErrorKind::PermissionDenied), "{err}");
    let err = backend.remove_file(id, "/etc/passwd").await.unwrap_err();
    assert_eq!(file_kind(&err), Some(FileErrorKind::PermissionDenied), "{err}");
    assert_eq!(
        std::fs::read("/etc/passwd").unwrap(),
        before,
        "the host's /etc/passwd is untouched"
    );
    sandbox.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_volumes_refuse_writes_and_removals_and_writable_ones_take_them() {
    let ro = tempfile::tempdir().unwrap();
    std::fs::write(ro.path().join("data.txt"), "host data").unwrap();
    let rw = volume_dir();
    let mut spec = spec("files-ro", Template::Python);
    spec.volumes = vec![read_only(ro.path(), "/data/ro"), mapping(rw.path(), "/data/rw")];
    let sandbox = Sandbox::start(&backend(), &spec).await;
    let (backend, id) = (&sandbox.backend, &sandbox.id);

    assert_eq!(
        backend.read_file(id, "/data/ro/data.txt", 100).await.unwrap(),
        b"host data"
    );
    for path in ["/data/ro/data.txt", "/data/ro/new.txt", "/data/ro/sub/new.txt"] {
        let err = backend.write_file(id, path, b"x").await.unwrap_err();
        assert_eq!(file_kind(&err), Some(FileErrorKind::PermissionDenied), "{path}: {err}");
    }
    let err = backend.remove_file(id, "/data/ro/data.txt").await.unwrap_err();
    assert_eq!(file_kind(&err), Some(FileErrorKind::PermissionDenied), "{err}");

    backend
        .write_file(id, "/data/rw/sub/out.bin", &[0, 1, 2, 255])
        .await
        .unwrap();
    let written = rw.path().join("sub/out.bin");
    assert_eq!(std::fs::read(&written).unwrap(), [0, 1, 2, 255]);
    // Written as the sandbox's code would write it: owned by the volume's owner, never root.
    assert_eq!(std::fs::metadata(&written).unwrap().uid(), volume_owner());

    // Nothing was added to, changed in or removed from the read-only folder.
    let tree = host_tree(ro.path());
    assert_eq!(
        tree.len(),
        1,
        "data.txt only: {:?}",
        tree.iter().map(|(p, _)| p).collect::<Vec<_>>()
    );
    assert_eq!(std::fs::read(ro.path().join("data.txt")).unwrap(), b"host data");
    sandbox.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifos_and_devices_are_not_files_and_nothing_hangs() {
    let sandbox = Sandbox::new("files-fifo", Template::Python).await;
    let (backend, id) = (&sandbox.backend, &sandbox.id);
    sandbox
        .assert_prints(
            "import os\nos.mkfifo('/tmp/fifo')\nprint(os.path.exists('/tmp/fifo'))",
            "True\n",
        )
        .await;
    let deadline = Duration::from_secs(30);
    for path in ["/tmp/fifo", "/dev/zero", "/dev/null", "/tmp"] {
        let read = tokio::time::timeout(deadline, backend.read_file(id, path, 1 << 20)).await;
        let err = read.expect("reading did not hang").unwrap_err();
        assert_eq!(file_kind(&err), Some(FileErrorKind::NotAFile), "{path}: {err}");
        let write = tokio::time::timeout(deadline, backend.write_file(id, path, b"x")).await;
        let err = write.expect("writing did not hang").unwrap_err();
        assert_eq!(file_kind(&err), Some(FileErrorKind::NotAFile), "{path}: {err}");
    }
    let entries = backend.list_files(id, "/tmp").await.unwrap();
    let fifo = entries.iter().find(|e| e.name == "fifo").unwrap();
    assert_eq!(fifo.kind, msbw_backend::FileKind::Other);
    // The sandbox still works.
    sandbox.assert_prints("print(1)", "1\n").await;
    sandbox.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_file_is_refused_before_it_is_read() {
    let sandbox = Sandbox::new("files-huge", Template::Python).await;
    let (backend, id) = (sandbox.backend.clone(), sandbox.id.clone());
    // A sparse file far over the limit: reading it would exhaust the host's memory.
    let huge = MAX_FILE_BYTES * 64;
    let sparse = format!("f = open('/tmp/huge', 'wb'); f.truncate({huge}); f.close(); print('ok')");
    sandbox.assert_prints(&sparse, "ok\n").await;
    let err = backend.read_file(&id, "/tmp/huge", u64::MAX).await.unwrap_err();
    assert_eq!(file_kind(&err), Some(FileErrorKind::TooLarge), "{err}");
    assert!(
        err.to_string().contains(&MAX_FILE_BYTES.to_string()),
        "names the limit: {err}"
    );
    let err = backend.read_file(&id, "/tmp/huge", 10).await.unwrap_err();
    assert_eq!(file_kind(&err), Some(FileErrorKind::TooLarge), "{err}");
    // An unknown sandbox is the sandbox's error, not the file's.
    sandbox.stop().await;
    let err = backend.read_file(&id, "/tmp/huge", 10).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
}
