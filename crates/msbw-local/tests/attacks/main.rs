//! The attack suite of the local backend: one module per attack, each test asserting the
//! outcome on the **host** (file modes and owners on the host, the host's process table, the
//! test process and the backend still working). See `docs/security.md` for the threat model and
//! the mechanism that stops each attack.
//!
//! Run as root (as CI does) and, where the machine allows it, again as an unprivileged user:
//! [`unprivileged`] re-runs the attacks that make sense there under a dropped uid.
//!
//! Adding an attack: a file `tests/attacks/<name>.rs` starting with `use super::*;`, and one
//! `mod <name>;` line below.

#[path = "../common/mod.rs"]
mod common;

mod daemons;
mod deep_tree;
mod file_api;
mod fork_bomb;
mod host_processes;
mod host_writes;
mod memory;
mod mount;
mod network;
mod node_output;
mod ptrace;
mod ro_volumes;
mod seccomp;
mod setuid_plant;
mod timeout_leftovers;
mod unprivileged;
mod volume_symlinks;

pub(crate) use std::os::unix::fs::MetadataExt as _;
pub(crate) use std::path::{Path, PathBuf};
pub(crate) use std::time::Duration;

pub(crate) use common::*;
pub(crate) use msbw_backend::{Aftermath, ExecStatus, SandboxBackend, SandboxBackendExt, Template, VolumeMapping};

/// The unprivileged host user that owns the test volumes when the suite runs as root.
pub(crate) const VOLUME_OWNER: u32 = 4242;

/// Whether the suite runs as root.
pub(crate) fn is_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false)
}

/// Who owns what the test gives a sandbox to write: [`VOLUME_OWNER`] as root, else ourselves.
pub(crate) fn volume_owner() -> u32 {
    if is_root() {
        VOLUME_OWNER
    } else {
        std::fs::metadata("/proc/self")
            .map(|m| std::os::unix::fs::MetadataExt::uid(&m))
            .unwrap_or(u32::MAX)
    }
}

/// Gives `path` to [`volume_owner`] (as root; a no-op otherwise).
pub(crate) fn give_to_volume_owner(path: &Path) {
    if is_root() {
        std::os::unix::fs::chown(path, Some(VOLUME_OWNER), Some(VOLUME_OWNER)).expect("chown");
    }
}

/// A fresh host directory for a writable volume, owned by [`volume_owner`].
pub(crate) fn volume_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("a temporary directory");
    give_to_volume_owner(dir.path());
    dir
}

/// A volume mapping from a host path.
pub(crate) fn mapping(host: &Path, inside: &str) -> VolumeMapping {
    VolumeMapping::new(&host.display().to_string(), inside).expect("a valid mapping")
}

/// A read-only volume mapping from a host path.
pub(crate) fn read_only(host: &Path, inside: &str) -> VolumeMapping {
    VolumeMapping::read_only(&host.display().to_string(), inside).expect("a valid mapping")
}

/// Runs `bash -c script` in `sandbox` with `timeout`, asserts that it timed out, and that no host
/// process whose command line carries `tag` is left (polled for up to 10 s).
pub(crate) async fn assert_timeout_leaves_nothing(sandbox: &Sandbox, script: &str, timeout: Duration, tag: &str) {
    let out = sandbox.command_with("bash", &["-c", script], timeout).await;
    assert!(out.timed_out(), "{out:?}");
    let left = wait_until_gone(tag, Duration::from_secs(10));
    assert!(left.is_empty(), "processes outlived the command's timeout: {left:?}");
}

/// Every entry below `dir` on the host (not following links), with its metadata.
pub(crate) fn host_tree(dir: &Path) -> Vec<(PathBuf, std::fs::Metadata)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read_dir").flatten() {
            let meta = entry.path().symlink_metadata().expect("lstat");
            if meta.is_dir() {
                stack.push(entry.path());
            }
            out.push((entry.path(), meta));
        }
    }
    out
}
