//! `.env` files: bounded reads, what an implicitly found file may carry, and when it is ignored.

#![allow(clippy::unwrap_used)] // tests may unwrap

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use msbw_config::{MAX_ENV_FILE_BYTES, read_env_file, read_implicit_env_file};

/// `dir/name` with `content`, mode `mode`.
fn file_in(dir: &Path, name: &str, content: &str, mode: u32) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, content).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    path
}

#[test]
fn an_implicit_file_keeps_what_it_may_carry_and_names_what_it_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let path = file_in(
        dir.path(),
        ".env",
        "MSB_API_KEY=k\nMSB_LOCAL_NETWORK=true\nMSB_SHARED_VOLUME_PATH=/:/sandbox/host\nMSB_EXECUTION_TIMEOUT=60\n\
         MSB_DEFAULT_FLAVOR=large\nMSB_SERVER_URL=http://evil.example\nOTHER=1\n",
        0o600,
    );
    let found = read_implicit_env_file(&path).unwrap().unwrap();
    assert_eq!(found.distrusted, None);
    let names: Vec<&str> = found.vars.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(names, ["MSB_API_KEY", "MSB_EXECUTION_TIMEOUT"]);
    assert_eq!(
        found.ignored,
        [
            "MSB_LOCAL_NETWORK",
            "MSB_SHARED_VOLUME_PATH",
            "MSB_DEFAULT_FLAVOR",
            "MSB_SERVER_URL"
        ]
    );
    // The same file, named explicitly, is taken whole.
    assert_eq!(read_env_file(&path).unwrap().len(), 7);
}

#[test]
fn a_missing_implicit_file_is_none() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(read_implicit_env_file(&dir.path().join(".env")).unwrap(), None);
}

#[test]
fn an_implicit_file_others_may_write_is_ignored_whole() {
    let dir = tempfile::tempdir().unwrap();
    let path = file_in(dir.path(), ".env", "MSB_API_KEY=k\n", 0o666);
    let found = read_implicit_env_file(&path).unwrap().unwrap();
    assert!(found.vars.is_empty());
    assert_eq!(found.distrusted.as_deref(), Some("anyone may write it"));
}

#[test]
fn an_implicit_pipe_device_or_directory_is_refused_without_blocking() {
    let dir = tempfile::tempdir().unwrap();
    let target = file_in(dir.path(), "real.env", "MSB_API_KEY=k\n", 0o600);
    let link = dir.path().join("link.env");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    assert_eq!(
        read_implicit_env_file(&link).unwrap().unwrap().vars.len(),
        1,
        "a link to a file is read"
    );
    let device = dir.path().join("device.env");
    std::os::unix::fs::symlink("/dev/zero", &device).unwrap();
    let err = read_implicit_env_file(&device).unwrap_err().to_string();
    assert!(
        err.contains("device.env") && err.contains("not a regular file"),
        "{err}"
    );

    let fifo = dir.path().join("fifo.env");
    let status = std::process::Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(status.success());
    // No writer: a blocking open would hang here.
    let err = read_implicit_env_file(&fifo).unwrap_err().to_string();
    assert!(err.contains("not a regular file"), "{err}");

    let err = read_implicit_env_file(dir.path()).unwrap_err().to_string();
    assert!(err.contains("not a regular file"), "{err}");
}

#[test]
fn reads_are_bounded_and_devices_refused() {
    let err = read_env_file("/dev/zero".as_ref()).unwrap_err().to_string();
    assert!(
        err.contains("/dev/zero") && err.contains("not a regular file or a pipe"),
        "{err}"
    );
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.env");
    let line = "MSB_LOG_LEVEL=INFO\n";
    let count = usize::try_from(MAX_ENV_FILE_BYTES).unwrap() / line.len() + 1;
    std::fs::write(&big, line.repeat(count)).unwrap();
    let err = read_env_file(&big).unwrap_err().to_string();
    assert!(
        err.contains(&format!("larger than {MAX_ENV_FILE_BYTES} bytes")),
        "{err}"
    );
    std::fs::set_permissions(&big, std::fs::Permissions::from_mode(0o600)).unwrap();
    let err = read_implicit_env_file(&big).unwrap_err().to_string();
    assert!(err.contains("larger than"), "{err}");
}
