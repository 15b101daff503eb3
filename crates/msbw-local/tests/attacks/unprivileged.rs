//! The attacks again with the backend running as an unprivileged user (uid 65534), as a
//! developer or a rootless container would run it: there the sandbox's root is that user, there
//! are no id-mapped mounts, and the holder opens the volumes itself. As root, this test re-runs
//! this very test binary under `setpriv` with a dropped uid and the attack modules below as the
//! filter, and asserts that they all pass there. Where that is impossible it says why and
//! asserts what it can instead.

use std::process::Command;

use super::*;

/// The unprivileged user the attacks are re-run as.
const USER: &str = "65534";

/// The attack modules that make sense without root (the others need root's cgroups, or are
/// root-only by nature).
const ATTACKS: [&str; 11] = [
    "setuid_plant::",
    "volume_symlinks::",
    "network::cannot_reach",
    "host_writes::",
    "ro_volumes::",
    "mount::",
    "daemons::",
    "ptrace::",
    "node_output::",
    "timeout_leftovers::",
    "seccomp::",
];

fn setpriv() -> Option<&'static str> {
    ["/usr/bin/setpriv", "/bin/setpriv"]
        .into_iter()
        .find(|p| Path::new(p).exists())
}

fn as_user(setpriv: &str) -> Command {
    let mut cmd = Command::new(setpriv);
    cmd.args([
        &format!("--reuid={USER}"),
        &format!("--regid={USER}"),
        "--clear-groups",
        "--",
    ]);
    cmd
}

#[test]
fn the_attacks_also_fail_for_an_unprivileged_backend() {
    if !is_root() {
        println!(
            "not re-run: this suite already runs as the unprivileged uid {}, so every attack ran unprivileged",
            volume_owner()
        );
        assert_ne!(volume_owner(), 0);
        return;
    }
    let Some(setpriv) = setpriv() else {
        println!("skipped: setpriv (util-linux) is not installed, so the attacks cannot be re-run under a dropped uid");
        // What can be asserted without it: as root, sandboxes never run as host root.
        let backend = backend();
        let support = backend.host_support();
        assert!(support.root, "{support}");
        return;
    };
    let probe = as_user(setpriv)
        .args(["unshare", "--user", "--map-root-user", "true"])
        .status();
    match probe {
        Ok(status) if status.success() => {}
        other => {
            println!(
                "skipped: uid {USER} cannot create a user namespace on this host ({other:?}), so the local backend \
                 cannot run unprivileged here (it would report that in `health()`)"
            );
            return;
        }
    }
    let home = tempfile::tempdir().unwrap();
    std::os::unix::fs::chown(home.path(), Some(65534), Some(65534)).unwrap();
    let exe = std::env::current_exe().unwrap();
    let output = as_user(setpriv)
        .arg(&exe)
        .args(ATTACKS)
        .args(["--test-threads=2", "--color=never"])
        .env("TMPDIR", home.path())
        .env("HOME", home.path())
        .output()
        .expect("running the attacks as an unprivileged user");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "as uid {USER}:\n{stdout}\n{stderr}");
    let passed: usize = stdout
        .lines()
        .find_map(|l| l.strip_prefix("test result: ok. "))
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(
        passed >= ATTACKS.len(),
        "only {passed} attacks ran as uid {USER}:\n{stdout}"
    );
    assert!(!stdout.contains("not re-run"), "the child re-ran itself:\n{stdout}");
}
