//! Ownership: which sandboxes a manager may stop as orphans, so that two wrappers, two `msbw exec`
//! processes, or a wrapper and `msbw serve` with the same owner mark never stop each other's live
//! sandboxes, while a crashed manager's sandboxes are still reclaimed.
//!
//! **The rule.** Every manager has an owner id (8 random hex digits, fresh for every manager) that
//! every sandbox name it makes carries ([`crate::naming`]). While it lives, it holds an exclusive
//! `flock` on its lease file `{lease_dir}/{mark}-{owner}.lease`; the kernel releases the lock when
//! the process ends, however it ends (SIGKILL included). Orphan cleanup stops a sandbox with its
//! mark only when
//! - the owner is itself and no live or retiring session uses the sandbox, or
//! - the owner's lease file exists and nobody holds its lock: the owner is provably gone.
//!
//! A live peer's lock is held, so its sandboxes are never touched. An owner without a lease file
//! in this lease directory (another host, another lease directory, a name made by hand) is
//! *unknown*: left alone and counted, unless [`Ownership::reclaim_unknown_owners`] is set.
//!
//! **Lease files.** Created atomically (a temporary name, locked, then renamed), so a peer never
//! sees an unlocked lease of a live manager. Removed by a clean shutdown that stopped every
//! sandbox; left behind (unlocked) by a crash or a drop without shutdown, which is what lets the
//! next manager reclaim. The directory must be private to the user or sticky (like `/tmp`): a
//! directory that others could write to without the sticky bit is not used (then this manager
//! judges no other owner dead, and its own sandboxes look unknown to its peers: nothing live is
//! ever stopped, only reclaim after a crash is lost).
//!
//! **Trade-offs.** Liveness is visible only to managers on the same host (sharing the lease
//! directory): the microsandbox server lists names only, with no labels or activity a lease could
//! live in. Managers on different hosts with one owner mark never reclaim each other's
//! crashes; give each host its own mark, or set `reclaim_unknown_owners` where a single host uses
//! the mark.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rustix::fs::{FlockOperation, flock};

use crate::naming;

/// The environment variable naming the lease directory.
pub const LEASE_DIR_VAR: &str = "MSB_OWNER_LEASE_DIR";

/// The environment variable that, set to `true`, reclaims sandboxes of unknown owners.
pub const RECLAIM_UNKNOWN_VAR: &str = "MSB_RECLAIM_UNKNOWN_OWNERS";

/// How a manager proves it is alive to its peers, and finds the dead ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ownership {
    /// Where lease files live: `MSB_OWNER_LEASE_DIR`, by default `msbw-owners` in the system's
    /// temporary directory (shared by every process on the host). `None`: no lease at all.
    pub lease_dir: Option<PathBuf>,
    /// Also stop marked sandboxes whose owner has no lease here (`MSB_RECLAIM_UNKNOWN_OWNERS`,
    /// default `false`). Only safe where one host uses the owner mark.
    pub reclaim_unknown_owners: bool,
}

impl Default for Ownership {
    /// [`Ownership::from_env`].
    fn default() -> Self {
        Ownership::from_env()
    }
}

impl Ownership {
    /// The settings from `MSB_OWNER_LEASE_DIR` and `MSB_RECLAIM_UNKNOWN_OWNERS`.
    pub fn from_env() -> Self {
        let lease_dir = match std::env::var_os(LEASE_DIR_VAR) {
            Some(dir) if !dir.is_empty() => PathBuf::from(dir),
            _ => std::env::temp_dir().join("msbw-owners"),
        };
        Ownership {
            lease_dir: Some(lease_dir),
            reclaim_unknown_owners: std::env::var(RECLAIM_UNKNOWN_VAR).is_ok_and(|v| v.eq_ignore_ascii_case("true")),
        }
    }

    /// Leases in `dir`, unknown owners left alone.
    pub fn in_dir(dir: impl Into<PathBuf>) -> Self {
        Ownership {
            lease_dir: Some(dir.into()),
            reclaim_unknown_owners: false,
        }
    }
}

/// What orphan cleanup may do with a sandbox of some owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// This manager's own.
    Mine,
    /// Its owner is provably gone: reclaim it.
    Dead,
    /// Its owner is alive: never touch it.
    Alive,
    /// Nothing here says whether its owner lives.
    Unknown,
}

/// This manager's owner id and the lease that proves it alive.
#[derive(Debug)]
pub(crate) struct Lease {
    owner: String,
    mark: String,
    dir: Option<PathBuf>,
    /// The locked lease file; the lock lasts as long as it is open.
    held: Option<(File, PathBuf)>,
    reclaim_unknown: bool,
}

impl Lease {
    /// A fresh owner id and its lease. A lease that cannot be taken is logged, not fatal: the
    /// manager then only ever stops its own sandboxes.
    pub(crate) fn take(mark: &str, ownership: &Ownership) -> Lease {
        let owner = naming::owner_id();
        let dir = ownership.lease_dir.as_deref().and_then(|d| match usable_dir(d) {
            Ok(()) => Some(d.to_path_buf()),
            Err(e) => {
                tracing::warn!(dir = %d.display(), error = %e, "owner lease directory not usable; orphans of crashed peers will not be reclaimed");
                None
            }
        });
        let held = dir.as_deref().and_then(|d| match create_lease(d, mark, &owner) {
            Ok(held) => Some(held),
            Err(e) => {
                tracing::warn!(dir = %d.display(), error = %e, "could not take an owner lease");
                None
            }
        });
        Lease {
            owner,
            mark: mark.to_owned(),
            dir: if held.is_some() { dir } else { None },
            held,
            reclaim_unknown: ownership.reclaim_unknown_owners,
        }
    }

    /// This manager's owner id.
    pub(crate) fn owner(&self) -> &str {
        &self.owner
    }

    /// Whether this manager holds a lease its peers can see.
    pub(crate) fn is_held(&self) -> bool {
        self.held.is_some()
    }

    /// What orphan cleanup may do with a sandbox of `owner`.
    pub(crate) fn judge(&self, owner: &str) -> Verdict {
        if owner == self.owner {
            return Verdict::Mine;
        }
        let verdict = match &self.dir {
            None => Verdict::Unknown,
            Some(dir) => probe(&lease_path(dir, &self.mark, owner)),
        };
        match verdict {
            Verdict::Unknown if self.reclaim_unknown => Verdict::Dead,
            v => v,
        }
    }

    /// Gives the lease up after a clean shutdown that stopped everything: the file goes, so no
    /// peer looks for this owner's sandboxes again.
    pub(crate) fn release(&mut self) {
        if let Some((file, path)) = self.held.take() {
            let _ = std::fs::remove_file(&path);
            drop(file);
        }
    }
}

fn lease_path(dir: &Path, mark: &str, owner: &str) -> PathBuf {
    dir.join(format!("{mark}-{owner}.lease"))
}

/// Whether the owner of the lease at `path` is alive: its lock is held.
fn probe(path: &Path) -> Verdict {
    let file = match OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(path)
    {
        Ok(file) => file,
        // No lease here, or one we may not read: nothing proves the owner gone.
        Err(_) => return Verdict::Unknown,
    };
    match file.metadata() {
        Ok(m) if m.is_file() => {}
        _ => return Verdict::Unknown,
    }
    match flock(&file, FlockOperation::NonBlockingLockExclusive) {
        // Nobody holds it: the owner is gone. Our lock ends when `file` closes.
        Ok(()) => Verdict::Dead,
        Err(rustix::io::Errno::WOULDBLOCK) => Verdict::Alive,
        Err(_) => Verdict::Unknown,
    }
}

/// Creates `dir` if needed (sticky and world-writable, like `/tmp`, so every user's managers can
/// lease there) and checks that nobody else can replace leases in it: owned by this user or
/// root, and sticky if others may write to it.
fn usable_dir(dir: &Path) -> io::Result<()> {
    if std::fs::symlink_metadata(dir).is_err() {
        std::fs::create_dir_all(dir)?;
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o1777));
    }
    let meta = std::fs::symlink_metadata(dir)?;
    if !meta.is_dir() {
        return Err(io::Error::other("not a directory"));
    }
    let me = rustix::process::geteuid().as_raw();
    if meta.uid() != me && meta.uid() != 0 {
        return Err(io::Error::other("owned by another user"));
    }
    let mode = meta.mode();
    if mode & 0o022 != 0 && mode & 0o1000 == 0 {
        return Err(io::Error::other("writable by others without the sticky bit"));
    }
    Ok(())
}

/// Creates this owner's lease, locked, under its final name in one step (rename), so that no
/// peer ever sees it unlocked while this manager lives.
fn create_lease(dir: &Path, mark: &str, owner: &str) -> io::Result<(File, PathBuf)> {
    let tmp = dir.join(format!(".{mark}-{owner}-{:08x}.tmp", fastrand::u32(..)));
    let file = OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
    let locked = flock(&file, FlockOperation::NonBlockingLockExclusive).map_err(io::Error::from);
    let path = lease_path(dir, mark, owner);
    let renamed = locked.and_then(|()| std::fs::rename(&tmp, &path));
    if let Err(e) = renamed {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    Ok((file, path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_lease_is_alive_a_left_one_dead_a_missing_one_unknown() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ownership = Ownership::in_dir(dir.path());
        let a = Lease::take("msbw", &ownership);
        let b = Lease::take("msbw", &ownership);
        assert!(a.is_held() && b.is_held());
        assert_eq!(a.judge(a.owner()), Verdict::Mine);
        assert_eq!(a.judge(b.owner()), Verdict::Alive);
        assert_eq!(b.judge(a.owner()), Verdict::Alive);
        assert_eq!(a.judge("0badc0de"), Verdict::Unknown);
        let gone = b.owner().to_owned();
        drop(b); // a crash: the lock goes, the file stays
        assert_eq!(a.judge(&gone), Verdict::Dead);
        let reclaiming = Lease::take(
            "msbw",
            &Ownership {
                reclaim_unknown_owners: true,
                ..ownership
            },
        );
        assert_eq!(reclaiming.judge("0badc0de"), Verdict::Dead);
    }

    #[test]
    fn a_clean_release_removes_the_lease() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut a = Lease::take("msbw", &Ownership::in_dir(dir.path()));
        let b = Lease::take("msbw", &Ownership::in_dir(dir.path()));
        let owner = a.owner().to_owned();
        a.release();
        assert_eq!(b.judge(&owner), Verdict::Unknown);
    }

    #[test]
    fn a_directory_others_may_write_without_the_sticky_bit_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).expect("chmod");
        let lease = Lease::take("msbw", &Ownership::in_dir(dir.path()));
        assert!(!lease.is_held());
        assert_eq!(lease.judge("0badc0de"), Verdict::Unknown);
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o1777)).expect("chmod");
        assert!(Lease::take("msbw", &Ownership::in_dir(dir.path())).is_held());
    }
}
