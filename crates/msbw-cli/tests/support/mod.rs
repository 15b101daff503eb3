//! Running the real `msbw` binary in tests.

#![allow(dead_code, unreachable_pub)] // each test file uses part of this

use std::io::Write;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// `msbw` with a clean environment (no MSB_* from the caller), the local backend, and a private
/// working directory (so no stray .env is read).
pub fn msbw(dir: &std::path::Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_msbw"));
    for (k, _) in std::env::vars() {
        if k.starts_with("MSB_") || k.starts_with("MSBW_") || k == "NO_COLOR" || k.starts_with("CLICOLOR") {
            cmd.env_remove(k);
        }
    }
    cmd.env("MSB_BACKEND", "local").current_dir(dir);
    cmd
}

/// Exit status (-1 when killed by a signal), stdout and stderr.
pub fn run(cmd: &mut Command) -> (i32, String, String) {
    outcome(cmd.output().expect("msbw runs"))
}

/// [`run`] with `input` written to a piped stdin, which is then closed.
pub fn run_with_stdin(cmd: &mut Command, input: &[u8]) -> (i32, String, String) {
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("msbw starts");
    child
        .stdin
        .take()
        .expect("a piped stdin")
        .write_all(input)
        .expect("msbw reads stdin");
    outcome(child.wait_with_output().expect("wait for msbw"))
}

/// Fails the test, showing `text`, unless `text` contains every one of `parts`.
#[track_caller]
pub fn assert_contains_all(text: &str, parts: &[&str]) {
    let missing: Vec<&str> = parts.iter().copied().filter(|part| !text.contains(part)).collect();
    assert!(missing.is_empty(), "{missing:?} missing from:\n{text}");
}

/// Exit status (-1 when killed by a signal), stdout and stderr of a finished `msbw`.
fn outcome(out: Output) -> (i32, String, String) {
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Waits for a child to exit, failing the test (and killing it) after `limit`.
pub fn wait_within(child: Child, limit: Duration) -> Output {
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(out) => out.expect("wait for msbw"),
        Err(_) => {
            let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
            panic!("msbw (pid {pid}) did not exit within {limit:?}");
        }
    }
}

/// The pids of live (not zombie) host processes whose command line is exactly `argv`.
pub fn processes_with_argv(argv: &[&str]) -> Vec<u32> {
    let want: Vec<u8> = argv.iter().flat_map(|a| a.bytes().chain([0])).collect();
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        let zombie = stat.rsplit_once(") ").is_some_and(|(_, rest)| rest.starts_with('Z'));
        if cmdline == want && !zombie {
            found.push(pid);
        }
    }
    found
}

/// The unprivileged host user that owns volume directories of tests run as root (the local
/// backend refuses a writable volume owned by host root: what a sandbox writes in a volume
/// belongs to the volume's owner).
pub const VOLUME_OWNER: u32 = 4242;

/// A temporary directory, mode 0755, to map into a sandbox as a writable volume: given to
/// [`VOLUME_OWNER`] when the tests run as root, left to the user otherwise.
pub fn volume_dir() -> tempfile::TempDir {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let dir = tempfile::tempdir().expect("a temporary directory");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    if std::fs::metadata("/proc/self").map(|m| m.uid()).unwrap_or(1) == 0 {
        std::os::unix::fs::chown(dir.path(), Some(VOLUME_OWNER), Some(VOLUME_OWNER)).expect("chown");
    }
    dir
}

/// Whether the tests run as root.
pub fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").map(|m| m.uid()).unwrap_or(1) == 0
}
