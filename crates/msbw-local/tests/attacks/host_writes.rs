//! Writing to the host outside the writable paths: nothing appears on the host.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cannot_write_outside_the_writable_paths() {
    let (sandbox, tag) = Sandbox::with_marker("fs", Template::Python).await;
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
    let out = sandbox.python(&source).await;
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
    for script in [
        format!("echo x > /etc/{tag}"),
        "mount -o remount,rw /usr".to_owned(),
        format!("unshare -rm sh -c 'mount -o remount,rw,bind /usr && touch /usr/{tag}'"),
    ] {
        let out = sandbox.shell(&script).await;
        assert_ne!(out.exit_code, Some(0), "{script}: {out:?}");
    }
    assert!(!std::path::Path::new(&format!("/etc/{tag}")).exists());
    assert!(!std::path::Path::new(&format!("/usr/{tag}")).exists());

    // Secrets of the host are not readable either.
    let out = sandbox
        .python("try:\n    open('/etc/shadow').read(); print('READ')\nexcept OSError as e:\n    print('denied', type(e).__name__)")
        .await;
    assert!(out.stdout.starts_with("denied"), "{out:?}");
    sandbox.stop().await;
}
