//! Planting a set-uid file on the host through a writable volume (issue 11, item 1): the
//! sandbox copies a program into the volume and makes it set-uid/set-gid in every way it can.
//! On the host, no file of the volume carries either bit, and every file belongs to the volume's
//! owner, never to host root. A writable volume owned by host root is refused outright.

use super::*;

const EVERY_WAY: &str = r#"
import os
results = []
def attempt(name, f):
    try:
        f()
        results.append(name + ' DID')
    except OSError as e:
        results.append(name + ' denied ' + str(e.errno))
attempt('chmod', lambda: os.chmod('/sandbox/rw/x', 0o4755))
attempt('chmod-setgid', lambda: os.chmod('/sandbox/rw/x', 0o2755))
attempt('fchmod', lambda: os.fchmod(os.open('/sandbox/rw/x', os.O_RDONLY), 0o6755))
attempt('fchmodat', lambda: os.chmod('x', 0o4755, dir_fd=os.open('/sandbox/rw', os.O_RDONLY)))
attempt('creat', lambda: os.close(os.open('/sandbox/rw/y', os.O_CREAT | os.O_WRONLY, 0o4755)))
attempt('tmpfile', lambda: os.close(os.open('/sandbox/rw', os.O_TMPFILE | os.O_WRONLY, 0o6755)))
attempt('mknod', lambda: os.mknod('/sandbox/rw/z', 0o100000 | 0o6755))
attempt('dir-setgid', lambda: (os.mkdir('/sandbox/rw/d'), os.chmod('/sandbox/rw/d', 0o2777)))
attempt('plain-chmod', lambda: os.chmod('/sandbox/rw/x', 0o755))
print('\n'.join(results))
"#;

/// The issue's reproduction: copy a program into the volume, then make it set-uid and set-gid.
const COPY_AND_CHMOD: &str = "cp /usr/bin/id /sandbox/rw/x && chmod 6755 /sandbox/rw/x; echo chmod=$?";

/// Set-uid copies made by tools that set the mode themselves.
const INSTALL_AND_COPY_MODES: &str = "install -m 4755 /usr/bin/id /sandbox/rw/w; cp -p /usr/bin/id /sandbox/rw/v; true";

/// Reads a file of a read-only volume, then tries to create one and to make it set-uid.
const READ_CREATE_AND_CHMOD: &str = "cat /sandbox/ro/data; touch /sandbox/ro/new; chmod 4755 /sandbox/ro/data";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_made_set_uid_in_a_volume_is_not_set_uid_on_the_host() {
    let vol = volume_dir();
    let mut spec = spec("suid", Template::Python);
    spec.volumes = vec![mapping(vol.path(), "/sandbox/rw")];
    let sandbox = Sandbox::start(&backend(), &spec).await;

    // The issue's reproduction: the copy works, the chmod does not.
    let out = sandbox.shell(COPY_AND_CHMOD).await;
    assert!(out.stdout.contains("chmod=1"), "{out:?}");
    let out = sandbox.shell(INSTALL_AND_COPY_MODES).await;
    assert_eq!(out.exit_code, Some(0), "{out:?}");
    let out = sandbox.python(EVERY_WAY).await;
    assert!(out.success(), "{out:?}");
    for refused in [
        "chmod",
        "chmod-setgid",
        "fchmod",
        "fchmodat",
        "creat",
        "tmpfile",
        "mknod",
        "dir-setgid",
    ] {
        assert!(
            out.stdout.contains(&format!("{refused} denied 1\n")),
            "{refused}: {out:?}"
        );
    }
    // Changing a mode without those bits still works (so the filter is not just "no chmod").
    assert!(out.stdout.contains("plain-chmod DID"), "{out:?}");
    sandbox.stop().await;

    let files = host_tree(vol.path());
    assert!(
        files.iter().any(|(p, _)| p.ends_with("x")),
        "the copy is there: {files:?}"
    );
    for (path, meta) in &files {
        assert_eq!(
            meta.mode() & 0o6000,
            0,
            "{} is set-uid/set-gid on the host",
            path.display()
        );
        assert_eq!(
            meta.uid(),
            volume_owner(),
            "{} belongs to uid {}",
            path.display(),
            meta.uid()
        );
        assert_ne!(meta.gid(), 0, "{} belongs to host root's group", path.display());
        if is_root() {
            assert_ne!(meta.uid(), 0, "{} belongs to host root", path.display());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writable_volume_owned_by_host_root_is_refused() {
    let vol = tempfile::tempdir().unwrap();
    let backend = backend();
    let mut spec = spec("rootvol", Template::Python);
    spec.volumes = vec![mapping(vol.path(), "/sandbox/rw")];
    if !is_root() {
        // Not root: the volume is ours, and so is what the sandbox writes there.
        let out = Sandbox::shell_once(&backend, &spec, "echo x > /sandbox/rw/f").await;
        assert_eq!(out.exit_code, Some(0), "{out:?}");
        assert_eq!(std::fs::metadata(vol.path().join("f")).unwrap().uid(), volume_owner());
        return;
    }
    let err = backend.start(&spec).await.expect_err("a root-owned writable volume");
    assert_eq!(err.kind(), msbw_backend::ErrorKind::InvalidInput, "{err}");
    assert!(err.to_string().contains("belongs to root"), "{err}");
    assert!(!backend.is_running(&spec.id).await.unwrap());
    // Read-only, the same directory is fine: nothing can be created through it.
    std::fs::write(vol.path().join("data"), "root's").unwrap();
    spec.volumes = vec![read_only(vol.path(), "/sandbox/ro")];
    let out = Sandbox::shell_once(&backend, &spec, READ_CREATE_AND_CHMOD).await;
    assert!(out.stdout.starts_with("root's"), "{out:?}");
    assert_ne!(out.exit_code, Some(0), "{out:?}");
    assert!(!vol.path().join("new").exists());
    assert_eq!(
        std::fs::metadata(vol.path().join("data")).unwrap().mode() & 0o7777,
        0o644
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sandboxs_root_is_never_host_root() {
    let base = tempfile::tempdir().unwrap();
    let sandbox = Sandbox::start(&backend_in(base.path()), &spec("whoami", Template::Python)).await;
    let out = sandbox
        .shell("id -u; echo x > /tmp/mine; echo y > /workspace/mine")
        .await;
    assert!(out.stdout.starts_with("0\n"), "root inside: {out:?}");
    let created: Vec<_> = host_tree(base.path())
        .into_iter()
        .filter(|(p, _)| p.ends_with("mine"))
        .collect();
    assert_eq!(created.len(), 2, "{created:?}");
    for (path, meta) in &created {
        if is_root() {
            assert_ne!(meta.uid(), 0, "{} was written as host root", path.display());
            assert_ne!(meta.gid(), 0, "{} was written as host root's group", path.display());
        } else {
            assert_eq!(meta.uid(), volume_owner());
        }
    }
    sandbox.stop().await;
}
