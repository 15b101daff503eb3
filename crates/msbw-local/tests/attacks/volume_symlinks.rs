//! Getting a host directory mounted by swapping a volume's path for a symbolic link (issue 11,
//! item 2). Host paths are opened once without following links and the mount is made from that
//! descriptor, so a link anywhere in a host path, or planted where a nested volume's mount point
//! goes, makes the start fail with a clear error; the link's target is never mounted.

use super::*;

/// A host directory the sandbox must never get: root's, with a secret in it.
fn secret_dir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("a temporary directory");
    std::fs::write(dir.path().join("secret.txt"), "host secret").expect("writing the secret");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).expect("chmod");
    dir
}

fn assert_untouched(secret: &Path) {
    let names: Vec<_> = std::fs::read_dir(secret)
        .expect("the secret directory")
        .map(|e| e.expect("an entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["secret.txt"], "the secret directory was changed");
    assert_eq!(
        std::fs::read_to_string(secret.join("secret.txt")).expect("the secret"),
        "host secret"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nested_volume_swapped_for_a_symlink_is_never_followed() {
    let secret = secret_dir();
    let base = volume_dir();
    let sub = base.path().join("sub");
    std::fs::create_dir(&sub).unwrap();
    give_to_volume_owner(&sub);
    let backend = backend();
    let mut spec = spec("nested", Template::Python);
    // `/data` and `/data/sub` of the host both mapped, `sub` writable through the first.
    spec.volumes = vec![mapping(base.path(), "/data"), mapping(&sub, "/sub")];
    let sandbox = Sandbox::start(&backend, &spec).await;
    let script = format!(
        "rm -rf /data/sub && ln -s {} /data/sub && echo swapped",
        secret.path().display()
    );
    let out = sandbox.shell(&script).await;
    assert!(out.stdout.contains("swapped"), "{out:?}");
    sandbox.stop().await;
    assert!(sub.symlink_metadata().unwrap().file_type().is_symlink());

    // The next run: refused, with the reason, instead of mounting the secret directory.
    let err = backend
        .start(&spec)
        .await
        .expect_err("a volume through a symbolic link");
    assert_eq!(err.kind(), msbw_backend::ErrorKind::InvalidInput, "{err}");
    assert!(err.to_string().contains("symbolic link"), "{err}");
    assert_untouched(secret.path());
    // The outer volume alone still works: the refusal is about the link, nothing else.
    spec.volumes = vec![mapping(base.path(), "/data")];
    let out = Sandbox::shell_once(&backend, &spec, "cat /data/sub/secret.txt").await;
    assert_ne!(out.exit_code, Some(0), "the link leads nowhere inside: {out:?}");
    assert_untouched(secret.path());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_symlink_anywhere_in_a_host_path_is_refused() {
    let secret = secret_dir();
    let links = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(secret.path(), links.path().join("link")).unwrap();
    let backend = backend();
    std::fs::create_dir(secret.path().join("inner")).unwrap();
    // The link itself, and a real directory named through it.
    for host in [links.path().join("link"), links.path().join("link/inner")] {
        let mut spec = spec("link", Template::Python);
        spec.volumes = vec![read_only(&host, "/data")];
        let err = backend
            .start(&spec)
            .await
            .expect_err("a volume through a symbolic link");
        assert_eq!(err.kind(), msbw_backend::ErrorKind::InvalidInput, "{err}");
        assert!(err.to_string().contains("symbolic link"), "{}: {err}", host.display());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mount_point_planted_as_a_symlink_inside_a_volume_is_not_followed() {
    let base = volume_dir();
    let inner = volume_dir();
    std::fs::write(inner.path().join("in.txt"), "inner").unwrap();
    let backend = backend();
    // Nested inside the sandbox: /data/inner is mounted on top of the /data volume.
    let mut spec = spec("point", Template::Python);
    spec.volumes = vec![mapping(base.path(), "/data"), mapping(inner.path(), "/data/inner")];
    let out = Sandbox::shell_once(&backend, &spec, "cat /data/inner/in.txt && echo w > /data/inner/w.txt").await;
    assert_eq!(out.stdout, "inner", "nested volumes work: {out:?}");
    assert!(inner.path().join("w.txt").exists());

    // Another sandbox with only /data replaces the mount point by a link.
    let mut outer = spec.clone();
    outer.id = unique_id("point-outer");
    outer.volumes = vec![mapping(base.path(), "/data")];
    let out = Sandbox::shell_once(
        &backend,
        &outer,
        "rm -rf /data/inner && ln -s /etc /data/inner && echo planted",
    )
    .await;
    assert!(out.stdout.contains("planted"), "{out:?}");

    let err = backend
        .start(&spec)
        .await
        .expect_err("a mount point that is a symbolic link");
    assert!(err.to_string().contains("symbolic link"), "{err}");
    assert!(!backend.is_running(&spec.id).await.unwrap());
    assert!(
        base.path()
            .join("inner")
            .symlink_metadata()
            .unwrap()
            .file_type()
            .is_symlink()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_volume_inside_a_writable_one_is_refused() {
    let base = volume_dir();
    let sub = base.path().join("sub");
    std::fs::create_dir(&sub).unwrap();
    let backend = backend();
    let mut spec = spec("overlap", Template::Python);
    spec.volumes = vec![mapping(base.path(), "/data"), read_only(&sub, "/ro")];
    let err = backend.start(&spec).await.expect_err("overlapping volumes");
    assert_eq!(err.kind(), msbw_backend::ErrorKind::InvalidInput, "{err}");
    assert!(err.to_string().contains("lies inside the writable volume"), "{err}");
}
