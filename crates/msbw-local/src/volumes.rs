//! Volumes: each host path is opened exactly once, from a descriptor of `/`, without following
//! any symbolic link; that descriptor is what is checked (type, owner) and what is mounted.
//!
//! The identity rule (root hosts, see the local backend in `docs/backends.md`): the sandbox's
//! root is its own unprivileged host uid `U`. A volume is id-mapped so that its owner `O` appears
//! as the sandbox's root: what the sandbox creates there belongs to `O` on the host, never to
//! anyone more privileged. A **writable** volume owned by host root is refused (the sandbox would
//! write as host root); a read-only one may be root's, since nothing can be created through it.
//! Set-user-ID and set-group-ID bits are kept off everything the sandbox creates or changes by
//! [`crate::nosuid`], and every volume is mounted `nosuid,nodev`.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Component, Path};

use msbw_backend::VolumeMapping;

use crate::child::VolumeSource;
use crate::config::LocalConfig;
use crate::error::LocalError;
use crate::sys::{self, FileStat, MOUNT_ATTR_NODEV, MOUNT_ATTR_NOSUID, MOUNT_ATTR_RDONLY, Pid};
use crate::view::visible_in_sandbox;

/// The on-disk group of files a sandbox creates in a volume whose group is host root's.
const NO_GROUP: u32 = 65_534;

/// A volume that passed the checks, holding the descriptor its host path was opened as.
#[derive(Debug)]
pub(crate) struct Volume {
    /// The mapping.
    pub(crate) mapping: VolumeMapping,
    /// What the host path is (from the descriptor).
    stat: FileStat,
    /// The host path relative to `/`, for holders that must open it again in their own mount
    /// namespace (unprivileged hosts); they check that they find the same inode.
    relative_host: CString,
    /// What gets mounted.
    source: Source,
}

/// What a volume's mount is made from.
#[derive(Debug)]
pub(crate) enum Source {
    /// The opened host path (`O_PATH`).
    Opened(OwnedFd),
    /// A detached mount tree made from it (root hosts), id-mapped where possible.
    Tree(OwnedFd),
}

impl Volume {
    /// Whether the host path is a directory (else a regular file).
    pub(crate) fn is_dir(&self) -> bool {
        self.stat.is_dir()
    }

    /// The `MOUNT_ATTR_*` flags of the volume's mount.
    pub(crate) fn attrs(&self) -> u64 {
        let attrs = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;
        if self.mapping.read_only {
            attrs | MOUNT_ATTR_RDONLY
        } else {
            attrs
        }
    }

    /// What the holder mounts: the detached tree, or the host path that it opens again and
    /// checks to be the inode checked here.
    pub(crate) fn into_mount_source(self) -> VolumeSource {
        let attrs = self.attrs();
        match self.source {
            Source::Tree(tree) => VolumeSource::Tree(tree),
            Source::Opened(_) => VolumeSource::Host {
                path: self.relative_host,
                dev: self.stat.dev,
                ino: self.stat.ino,
                attrs,
            },
        }
    }
}

fn invalid(message: String) -> LocalError {
    LocalError::InvalidInput(message)
}

/// Whether `path` is absolute and has no `.` or `..` component.
fn is_plain_absolute(path: &Path) -> bool {
    path.is_absolute()
        && !path
            .components()
            .any(|c| matches!(c, Component::ParentDir | Component::CurDir))
}

/// Opens and checks the volumes; the result is sorted so that a volume comes after any volume
/// that contains it inside the sandbox.
pub(crate) fn open_volumes(volumes: &[VolumeMapping], config: &LocalConfig) -> Result<Vec<Volume>, LocalError> {
    let mut out: Vec<Volume> = Vec::new();
    for v in volumes {
        check_target(v, &out)?;
        let host = Path::new(&v.host_path);
        if !is_plain_absolute(host) {
            return Err(invalid(format!(
                "volume {v}: the host path must be absolute, without `.` or `..` components"
            )));
        }
        let fd = sys::open_no_symlinks(host).map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => invalid(format!(
                "volume {v}: the host path {} contains a symbolic link; volumes are opened without following \
                 links, so give the real path (as `realpath` prints it)",
                v.host_path
            )),
            Some(libc::ENOSYS) => LocalError::Unsupported(format!(
                "volume {v}: this kernel has no openat2 (Linux 5.6), which volumes need"
            )),
            _ => invalid(format!("volume {v}: the host path {} cannot be used: {e}", v.host_path)),
        })?;
        let stat = sys::stat_fd(&fd).map_err(|e| LocalError::io(format!("inspecting volume {v}"), e))?;
        if !stat.is_dir() && !stat.is_file() {
            return Err(invalid(format!(
                "volume {v}: {} is neither a directory nor a regular file",
                v.host_path
            )));
        }
        check_mount_point(v, &stat, config)?;
        let relative: &Path = host.strip_prefix("/").unwrap_or(host);
        let relative_host = sys::cstring(if relative.as_os_str().is_empty() {
            Path::new(".")
        } else {
            relative
        })
        .map_err(|e| LocalError::io(format!("volume {v}"), e))?;
        out.push(Volume {
            mapping: v.clone(),
            stat,
            relative_host,
            source: Source::Opened(fd),
        });
    }
    check_overlaps(&out)?;
    out.sort_by(|a, b| {
        let depth = |v: &Volume| Path::new(&v.mapping.container_path).components().count();
        depth(a)
            .cmp(&depth(b))
            .then_with(|| a.mapping.container_path.cmp(&b.mapping.container_path))
    });
    Ok(out)
}

/// The container path: not reserved, not taken twice.
fn check_target(v: &VolumeMapping, earlier: &[Volume]) -> Result<(), LocalError> {
    let target = Path::new(&v.container_path);
    if !is_plain_absolute(target) {
        return Err(invalid(format!(
            "volume {v}: the path inside the sandbox must be absolute, without `.` or `..` components"
        )));
    }
    if target == Path::new("/") || target.starts_with("/proc") || target.starts_with("/dev") {
        return Err(invalid(format!(
            "volume {v}: {} is reserved inside the sandbox",
            v.container_path
        )));
    }
    if earlier.iter().any(|o| Path::new(&o.mapping.container_path) == target) {
        return Err(invalid(format!(
            "two volumes are mounted at {} inside the sandbox",
            v.container_path
        )));
    }
    Ok(())
}

/// Mount points cannot be created in the read-only system directories: there the mount point
/// must already exist with the volume's type.
fn check_mount_point(v: &VolumeMapping, stat: &FileStat, config: &LocalConfig) -> Result<(), LocalError> {
    let target = Path::new(&v.container_path);
    if !visible_in_sandbox(target, config) {
        return Ok(());
    }
    let existing = std::fs::symlink_metadata(target).ok();
    let through_symlink = ancestors(target).iter().any(|a| {
        std::fs::symlink_metadata(a)
            .map(|m| m.file_type().is_symlink())
            .unwrap_or(false)
    });
    let same_kind = existing.as_ref().is_some_and(|m| m.is_dir() == stat.is_dir());
    if through_symlink || !same_kind {
        return Err(invalid(format!(
            "volume {v}: {} lies in a read-only system directory of the sandbox, so it must already \
             exist on the host as a {} (and not through a symbolic link); choose another place, e.g. /data",
            v.container_path,
            if stat.is_dir() { "directory" } else { "file" }
        )));
    }
    Ok(())
}

/// A read-only volume must not be reachable for writing through a writable one: refused when
/// its host path is the writable volume's or lies below it.
fn check_overlaps(volumes: &[Volume]) -> Result<(), LocalError> {
    for ro in volumes.iter().filter(|v| v.mapping.read_only) {
        for rw in volumes.iter().filter(|v| !v.mapping.read_only) {
            let same = ro.stat.dev == rw.stat.dev && ro.stat.ino == rw.stat.ino;
            if same || Path::new(&ro.mapping.host_path).starts_with(&rw.mapping.host_path) {
                return Err(invalid(format!(
                    "volume {} is read-only, but its host path lies inside the writable volume {}, through which \
                     the sandbox could change it; map them without overlapping",
                    ro.mapping, rw.mapping
                )));
            }
        }
    }
    Ok(())
}

/// The proper ancestors of an absolute path, outermost first, without `/`.
pub(crate) fn ancestors(path: &Path) -> Vec<std::path::PathBuf> {
    let mut out: Vec<std::path::PathBuf> = path.ancestors().skip(1).map(Path::to_owned).collect();
    out.retain(|p| p != Path::new("/") && !p.as_os_str().is_empty());
    out.reverse();
    out
}

/// As root, turns each opened volume into a detached mount tree for the sandbox whose root is
/// host `uid`/`gid`: id-mapped so that the volume's owner appears as the sandbox's root, or
/// plain where the filesystem cannot id-map (the sandbox's uid then needs permission of its own).
/// A writable volume owned by host root is refused.
pub(crate) fn make_trees(volumes: &mut [Volume], uid: u32, gid: u32) -> Result<(), LocalError> {
    let mut namespaces: HashMap<(u32, u32), OwnedFd> = HashMap::new();
    for volume in volumes.iter_mut() {
        let Source::Opened(fd) = &volume.source else {
            continue;
        };
        if !volume.mapping.read_only && volume.stat.uid == 0 {
            return Err(invalid(format!(
                "volume {}: {} belongs to root on the host, and what a sandbox writes in a volume belongs to the \
                 volume's owner; give it to an unprivileged user (chown) or mount it read-only (`:ro`)",
                volume.mapping, volume.mapping.host_path
            )));
        }
        let disk_gid = if volume.stat.gid == 0 && !volume.mapping.read_only {
            NO_GROUP
        } else {
            volume.stat.gid
        };
        let owner = (volume.stat.uid, disk_gid);
        if let Entry::Vacant(entry) = namespaces.entry(owner) {
            let userns = user_namespace(|pid| {
                std::fs::write(format!("/proc/{pid}/uid_map"), format!("{} {uid} 1\n", owner.0))?;
                std::fs::write(format!("/proc/{pid}/setgroups"), "deny")?;
                std::fs::write(format!("/proc/{pid}/gid_map"), format!("{} {gid} 1\n", owner.1))
            });
            match userns {
                Ok(ns) => {
                    entry.insert(ns);
                }
                Err(e) => tracing::warn!(error = %e, "cannot create a user namespace for id-mapped volumes"),
            }
        }
        let attrs = volume.attrs();
        let mapped = namespaces.get(&owner).map(|ns| sys::idmapped_tree(fd, ns, attrs));
        let tree = match mapped {
            Some(Ok(tree)) => tree,
            other => {
                if let Some(Err(e)) = other {
                    tracing::warn!(
                        volume = %volume.mapping,
                        error = %e,
                        "cannot id-map the volume; the sandbox's uid needs its own permission to write to it"
                    );
                }
                sys::plain_tree(fd, attrs)
                    .map_err(|e| LocalError::io(format!("preparing volume {}", volume.mapping), e))?
            }
        };
        volume.source = Source::Tree(tree);
    }
    Ok(())
}

/// Starts a throwaway process in a new user namespace, lets `setup` write its id maps, and
/// returns the namespace (the process is gone when this returns). Used for id-mapped mounts.
fn user_namespace(setup: impl FnOnce(Pid) -> io::Result<()>) -> io::Result<OwnedFd> {
    let (read, write) = sys::pipe()?;
    let read_fd = read.as_raw_fd();
    let write_fd = write.as_raw_fd();
    // SAFETY: the child only calls close and read, which are async-signal-safe.
    #[allow(unsafe_code)]
    let pid = unsafe {
        crate::child::clone_with(libc::CLONE_NEWUSER, || {
            crate::child::close_fd(write_fd);
            crate::child::wait_for_eof(read_fd);
            0
        })
    }?;
    drop(read);
    let result = setup(pid).and_then(|()| sys::open_namespace(pid, "user"));
    drop(write);
    sys::kill(pid, libc::SIGKILL);
    let _ = sys::wait_blocking(pid);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn volume(s: &str) -> VolumeMapping {
        s.parse().unwrap()
    }

    #[test]
    fn volumes_are_checked_and_sorted() {
        let host = tempfile::tempdir().unwrap();
        let h = host.path().display();
        let config = LocalConfig::default();
        let checked = open_volumes(
            &[volume(&format!("{h}:/data/inner")), volume(&format!("{h}:/data"))],
            &config,
        )
        .unwrap();
        assert_eq!(checked[0].mapping.container_path, "/data");
        assert!(checked[0].is_dir());

        for (bad, why) in [
            (format!("{h}:/proc/x"), "reserved"),
            (format!("{h}:/dev"), "reserved"),
            ("/nonexistent-msbw:/data".to_owned(), "cannot be used"),
            (format!("{h}:/usr/msbw-does-not-exist"), "read-only system directory"),
            (format!("{h}:/bin/x"), "read-only system directory"),
        ] {
            let err = open_volumes(&[volume(&bad)], &config).unwrap_err();
            assert!(matches!(err, LocalError::InvalidInput(_)), "{bad}");
            assert!(err.to_string().contains(why), "{bad}: {err}");
        }
        let err = open_volumes(&[volume(&format!("{h}:/d")), volume(&format!("{h}:/e:ro"))], &config).unwrap_err();
        assert!(err.to_string().contains("lies inside the writable volume"), "{err}");
        let err = open_volumes(&[volume(&format!("{h}:/d")), volume(&format!("{h}:/d"))], &config).unwrap_err();
        assert!(err.to_string().contains("two volumes"), "{err}");
    }

    #[test]
    fn a_symbolic_link_anywhere_in_the_host_path_is_refused() {
        let host = tempfile::tempdir().unwrap();
        std::fs::create_dir(host.path().join("real")).unwrap();
        std::fs::create_dir(host.path().join("real/sub")).unwrap();
        std::os::unix::fs::symlink("real", host.path().join("link")).unwrap();
        let config = LocalConfig::default();
        for path in ["link", "link/sub"] {
            let mapping = volume(&format!("{}/{path}:/data", host.path().display()));
            let err = open_volumes(&[mapping], &config).unwrap_err();
            assert!(err.to_string().contains("symbolic link"), "{path}: {err}");
        }
        let ok = volume(&format!("{}/real/sub:/data", host.path().display()));
        assert!(open_volumes(&[ok], &config).is_ok());
    }

    #[test]
    fn ancestors_are_listed_outermost_first() {
        assert_eq!(
            ancestors(Path::new("/a/b/c")),
            vec![std::path::PathBuf::from("/a"), std::path::PathBuf::from("/a/b")]
        );
        assert!(ancestors(Path::new("/a")).is_empty());
    }
}
