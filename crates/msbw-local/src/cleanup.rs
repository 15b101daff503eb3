//! Removing sandbox directories, whatever a sandbox left in them: iteratively (a tree of any
//! depth, never more than two open directories), without following symbolic links (every step
//! is relative to a directory descriptor), within a budget of entries and time, and never on an
//! async worker. A removal that fails or runs out of budget is logged and retried: by the next
//! removal in this process, and by the next backend that starts after this process is gone.

#![allow(unsafe_code)]

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How much one removal may do before it gives up (and leaves the rest for a retry).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Budget {
    /// Entries (files, links, directories) removed at most.
    pub(crate) entries: u64,
    /// Time spent at most.
    pub(crate) time: Duration,
}

impl Default for Budget {
    fn default() -> Self {
        Budget {
            entries: 5_000_000,
            time: Duration::from_secs(300),
        }
    }
}

/// Directories whose removal failed in this process, retried by the next removal.
static PENDING: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

fn pending() -> std::sync::MutexGuard<'static, Vec<PathBuf>> {
    PENDING.lock().unwrap_or_else(|p| p.into_inner())
}

/// Removes `dir` and retries earlier failures; failures are logged and remembered. Blocking:
/// call it from a blocking thread ([`remove_in_background`]).
pub(crate) fn remove_logged(dir: &Path) {
    let retries: Vec<PathBuf> = std::mem::take(&mut *pending());
    for path in std::iter::once(dir.to_owned()).chain(retries) {
        if let Err(e) = remove_tree(&path, Budget::default()) {
            tracing::warn!(dir = %path.display(), error = %e, "cannot remove a sandbox directory; will retry later");
            pending().push(path);
        }
    }
}

/// Runs a removal `job` on a blocking thread: tokio's blocking pool inside a runtime, else a
/// thread of its own (if neither can be had, the next backend's sweep removes what is left).
pub(crate) fn in_background(job: impl FnOnce() + Send + 'static) {
    if let Ok(handle) = tokio::runtime::Handle::try_current() {
        drop(handle.spawn_blocking(job));
    } else {
        let spawned = std::thread::Builder::new().name("msbw-local-cleanup".into()).spawn(job);
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot start a thread to remove a sandbox directory");
        }
    }
}

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 { Err(io::Error::last_os_error()) } else { Ok(r) }
}

/// Opens the directory `name` in `dir` (or `dir` itself for `"."`/`".."`) without following a
/// link.
fn open_dir_at(dir: RawFd, name: &CStr) -> io::Result<OwnedFd> {
    // SAFETY: openat with a valid C string.
    let fd = cvt(unsafe {
        libc::openat(
            dir,
            name.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    })?;
    // SAFETY: openat just returned this descriptor to us.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Up to `max` names in the directory `dir` (without `.` and `..`), from its start, with
/// whether they are directories (`None`: the filesystem does not say).
fn names(dir: &OwnedFd, max: usize) -> io::Result<Vec<(CString, Option<bool>)>> {
    // fdopendir takes over the descriptor: give it a copy, positioned at the start.
    let copy = open_dir_at(dir.as_raw_fd(), c".")?;
    // SAFETY: a descriptor we own, handed over to the DIR stream (closed by closedir).
    let stream = unsafe { libc::fdopendir(copy.as_raw_fd()) };
    if stream.is_null() {
        return Err(io::Error::last_os_error());
    }
    std::mem::forget(copy);
    let mut out = Vec::new();
    while out.len() < max {
        // SAFETY: a valid DIR stream; the entry is read before the next readdir call.
        let entry = unsafe { libc::readdir64(stream) };
        if entry.is_null() {
            break;
        }
        // SAFETY: d_name is a NUL-terminated string inside the entry.
        let name = unsafe { CStr::from_ptr((*entry).d_name.as_ptr()) };
        if name != c"." && name != c".." {
            // SAFETY: as above.
            let kind = unsafe { (*entry).d_type };
            let is_dir = match kind {
                libc::DT_UNKNOWN => None,
                kind => Some(kind == libc::DT_DIR),
            };
            out.push((name.to_owned(), is_dir));
        }
    }
    // SAFETY: closing the stream we opened (and its descriptor).
    unsafe { libc::closedir(stream) };
    Ok(out)
}

/// Removes the directory tree `dir` (not following links, staying on the tree). Gives up with
/// `TimedOut` when `budget` is spent; the part not yet removed stays.
pub(crate) fn remove_tree(dir: &Path, budget: Budget) -> io::Result<()> {
    let start = Instant::now();
    let top = match open_dir_at(libc::AT_FDCWD, &crate::sys::cstring(dir)?) {
        Ok(top) => top,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let mut current = open_dir_at(top.as_raw_fd(), c".")?;
    let mut depth: u64 = 0;
    // The names from `top` down to `current` (no descriptors are kept for them).
    let mut path: Vec<CString> = Vec::new();
    let mut removed: u64 = 0;
    'walk: loop {
        if removed >= budget.entries || start.elapsed() >= budget.time {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("gave up after removing {removed} entries in {:?}", start.elapsed()),
            ));
        }
        let batch = names(&current, 1024)?;
        if batch.is_empty() {
            if depth == 0 {
                break;
            }
            // Back up one level and remove the now empty directory.
            current = open_dir_at(current.as_raw_fd(), c"..")?;
            depth -= 1;
            if let Some(name) = path.pop() {
                // SAFETY: unlinkat with a valid C string.
                cvt(unsafe { libc::unlinkat(current.as_raw_fd(), name.as_ptr(), libc::AT_REMOVEDIR) })?;
                removed += 1;
            }
            continue;
        }
        for (name, is_dir) in &batch {
            // Descend into directories first: some kernels' security hooks make each unlink and
            // rmdir cost as much as the tree is deep, so each entry gets exactly one of them.
            if *is_dir == Some(true) {
                current = enter(current.as_raw_fd(), name)?;
                path.push(name.clone());
                depth += 1;
                continue 'walk;
            }
            match remove_entry(current.as_raw_fd(), name)? {
                Removed::Yes => removed += 1,
                Removed::NotEmpty => {
                    current = enter(current.as_raw_fd(), name)?;
                    path.push(name.clone());
                    depth += 1;
                    continue 'walk;
                }
            }
        }
    }
    drop(current);
    drop(top);
    std::fs::remove_dir(dir).or_else(|e| {
        if e.kind() == io::ErrorKind::NotFound {
            Ok(())
        } else {
            Err(e)
        }
    })
}

enum Removed {
    Yes,
    NotEmpty,
}

/// Removes `name` in `dir`: a file or link, or an empty directory.
fn remove_entry(dir: RawFd, name: &CStr) -> io::Result<Removed> {
    let unlink = |flags| {
        // SAFETY: unlinkat with a valid C string.
        cvt(unsafe { libc::unlinkat(dir, name.as_ptr(), flags) })
    };
    let mut unlocked = false;
    loop {
        let err = match unlink(0) {
            Ok(_) => return Ok(Removed::Yes),
            Err(e) if e.raw_os_error() == Some(libc::EISDIR) => match unlink(libc::AT_REMOVEDIR) {
                Ok(_) => return Ok(Removed::Yes),
                Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTEMPTY | libc::EEXIST)) => {
                    return Ok(Removed::NotEmpty);
                }
                Err(e) => e,
            },
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(Removed::Yes),
            Err(e) => e,
        };
        // A sandbox may have taken the write permission off its own directories.
        if err.raw_os_error() == Some(libc::EACCES) && !unlocked {
            unlocked = true;
            // SAFETY: fchmod on a descriptor.
            cvt(unsafe { libc::fchmod(dir, 0o700) })?;
            continue;
        }
        return Err(err);
    }
}

/// Opens the subdirectory `name` of `dir`, first making it readable, searchable and writable
/// (a sandbox may have locked it).
fn enter(dir: RawFd, name: &CStr) -> io::Result<OwnedFd> {
    let sub = open_dir_at(dir, name).or_else(|_| {
        // Not readable: unlock it by name. `name` is a directory (rmdir said it is not empty),
        // and nothing runs in the sandbox any more to swap it for a link.
        // SAFETY: fchmodat with a valid C string.
        cvt(unsafe { libc::fchmodat(dir, name.as_ptr(), 0o700, 0) })?;
        open_dir_at(dir, name)
    })?;
    // SAFETY: fchmod on a descriptor we own; failure shows up at the next step.
    unsafe { libc::fchmod(sub.as_raw_fd(), 0o700) };
    Ok(sub)
}

/// Removes the sandbox directories in `base` that backends of processes that died left behind
/// (on the calling thread: call it from a thread of its own).
pub(crate) fn remove_stale_dirs(base: &Path) {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    for entry in entries.flatten() {
        let ours = entry
            .metadata()
            .is_ok_and(|m| m.is_dir() && m.uid() == crate::sys::euid());
        let stale = entry.file_name().to_str().is_some_and(crate::cgroup::is_stale);
        if ours
            && stale
            && let Err(e) = remove_tree(&entry.path(), Budget::default())
        {
            tracing::warn!(dir = %entry.path().display(), error = %e, "cannot remove a stale sandbox directory");
        }
    }
}

/// Starts [`remove_stale_dirs`] on a thread of its own.
pub(crate) fn sweep_in_background(base: PathBuf) {
    in_background(move || remove_stale_dirs(&base));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A chain of `depth` directories below `top`, built with descriptors (the path would be far
    /// longer than `PATH_MAX`).
    fn deep_tree(top: &Path, depth: usize) {
        let mut dir = open_dir_at(libc::AT_FDCWD, &crate::sys::cstring(top).unwrap()).unwrap();
        for i in 0..depth {
            // SAFETY: mkdirat with a valid C string.
            assert_eq!(unsafe { libc::mkdirat(dir.as_raw_fd(), c"d".as_ptr(), 0o755) }, 0);
            if i % 1000 == 0 {
                // SAFETY: openat with a valid C string; the file is closed right away.
                let fd = unsafe { libc::openat(dir.as_raw_fd(), c"f".as_ptr(), libc::O_CREAT | libc::O_WRONLY, 0o644) };
                assert!(fd >= 0);
                // SAFETY: closing the descriptor we just opened.
                unsafe { libc::close(fd) };
            }
            dir = open_dir_at(dir.as_raw_fd(), c"d").unwrap();
        }
    }

    #[test]
    fn a_deep_tree_is_removed_on_a_small_stack() {
        let base = tempfile::tempdir().unwrap();
        let top = base.path().join("sandbox");
        std::fs::create_dir(&top).unwrap();
        // (The full 20,000 levels of the issue are in the attack suite: tests/attacks/deep_tree.rs.)
        deep_tree(&top, 3_000);
        // A 64 KiB stack: any recursion over the depth would overflow it.
        let path = top.clone();
        std::thread::Builder::new()
            .stack_size(64 << 10)
            .spawn(move || remove_tree(&path, Budget::default()))
            .unwrap()
            .join()
            .unwrap()
            .unwrap();
        assert!(!top.exists());
    }

    #[test]
    fn links_are_removed_not_followed_and_locked_dirs_are_unlocked() {
        use std::os::unix::fs::PermissionsExt;
        let base = tempfile::tempdir().unwrap();
        let outside = base.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("keep"), "x").unwrap();
        let top = base.path().join("sandbox");
        std::fs::create_dir_all(top.join("a/b")).unwrap();
        std::os::unix::fs::symlink(&outside, top.join("a/link")).unwrap();
        std::fs::write(top.join("a/b/file"), "x").unwrap();
        std::fs::set_permissions(top.join("a/b"), std::fs::Permissions::from_mode(0o000)).unwrap();
        std::fs::set_permissions(top.join("a"), std::fs::Permissions::from_mode(0o500)).unwrap();
        remove_tree(&top, Budget::default()).unwrap();
        assert!(!top.exists());
        assert!(outside.join("keep").exists(), "the link's target was touched");
    }

    #[test]
    fn the_budget_bounds_a_removal_and_a_retry_finishes_it() {
        let base = tempfile::tempdir().unwrap();
        let top = base.path().join("sandbox");
        std::fs::create_dir(&top).unwrap();
        for i in 0..50 {
            std::fs::write(top.join(i.to_string()), "x").unwrap();
        }
        let small = Budget {
            entries: 10,
            time: Duration::from_secs(60),
        };
        let err = remove_tree(&top, small).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut, "{err}");
        assert!(top.exists());
        remove_logged(&top);
        assert!(!top.exists());
        assert!(pending().iter().all(|p| p != &top));
    }

    #[test]
    fn a_missing_directory_is_not_an_error() {
        let base = tempfile::tempdir().unwrap();
        remove_tree(&base.path().join("gone"), Budget::default()).unwrap();
    }
}
