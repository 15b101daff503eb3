//! Changing the mount table: mounting over system directories, remounting them writable,
//! unmounting the sandbox's `/proc`, directly or from a nested user namespace. Every attempt
//! fails and the host's directories are unchanged.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mounts_cannot_be_changed_from_inside() {
    let (sandbox, tag) = Sandbox::with_marker("mount", Template::Python).await;
    for script in [
        format!("mount -t tmpfs none /usr && touch /usr/{tag}"),
        format!("mount -o remount,rw /usr && touch /usr/{tag}"),
        format!("mount --bind /tmp /etc && touch /etc/{tag}"),
        "umount /proc".to_owned(),
        "umount -l /usr".to_owned(),
        format!("unshare -rm sh -c 'mount -o remount,rw,bind /usr && touch /usr/{tag}'"),
        format!("unshare -rm sh -c 'umount -l /usr && mkdir -p /usr/{tag}'"),
    ] {
        let out = sandbox.shell(&script).await;
        assert_ne!(out.exit_code, Some(0), "{script}: {out:?}");
    }
    assert!(!Path::new(&format!("/usr/{tag}")).exists());
    assert!(!Path::new(&format!("/etc/{tag}")).exists());
    // The sandbox's view is intact.
    let out = sandbox
        .shell("test -d /proc/self && test -x /usr/bin/env && echo intact")
        .await;
    assert_eq!(out.stdout, "intact\n", "{out:?}");
    sandbox.stop().await;
}
