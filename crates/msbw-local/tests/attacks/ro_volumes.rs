//! Writing through read-only volumes: the host files stay as they were; writable volumes are
//! writable (so the test can fail).

use std::os::unix::fs::MetadataExt;

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_volumes_stay_read_only_and_writable_ones_are_writable() {
    let ro = tempfile::tempdir().unwrap();
    let rw = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    std::fs::write(ro.path().join("data.txt"), "host data").unwrap();
    let (ro_file, rw_file) = (files.path().join("ro.txt"), files.path().join("rw.txt"));
    std::fs::write(&ro_file, "ro file").unwrap();
    std::fs::write(&rw_file, "rw file").unwrap();
    // Writable volumes belong to an unprivileged user (a root-owned one is refused: see
    // setuid_plant.rs); the read-only ones stay root's.
    give_to_volume_owner(rw.path());
    give_to_volume_owner(&rw_file);
    let mut spec = spec("vol", Template::Python);
    spec.volumes = vec![
        read_only(ro.path(), "/data/ro"),
        mapping(rw.path(), "/data/rw"),
        read_only(&ro_file, "/data/ro.txt"),
        mapping(&rw_file, "/data/rw.txt"),
    ];
    let sandbox = Sandbox::start(&backend(), &spec).await;

    let out = sandbox
        .python(
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
        let out = sandbox.shell(&script).await;
        assert_ne!(out.exit_code, Some(0), "{script}: {out:?}");
    }

    // Volumes that are single files.
    let out = sandbox
        .python(
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
    // Files the sandbox writes belong to the volume's owner (never to host root), not to a
    // sandbox-only uid.
    assert_eq!(std::fs::metadata(&written).unwrap().uid(), volume_owner());
    assert_eq!(std::fs::metadata(&rw_file).unwrap().uid(), volume_owner());
    sandbox.stop().await;
}
