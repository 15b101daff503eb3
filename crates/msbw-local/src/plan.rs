//! From a sandbox spec to the holder's mount steps: which host directories are visible, where
//! the private writable directories and the volumes go, and the checks that refuse volumes the
//! backend cannot mount before anything is created.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use msbw_backend::VolumeMapping;

use crate::child::MountStep;
use crate::config::LocalConfig;
use crate::error::LocalError;
use crate::sys::{MOUNT_ATTR_NODEV, MOUNT_ATTR_NOSUID, MOUNT_ATTR_RDONLY};

/// The host's system directories that every sandbox sees read-only (or as the same symlinks).
pub(crate) const SYSTEM_DIRS: [&str; 8] = ["usr", "etc", "bin", "sbin", "lib", "lib32", "lib64", "libx32"];

/// Device files bound into the sandbox's `/dev`.
const DEVICES: [&str; 5] = ["null", "zero", "full", "random", "urandom"];

/// Whether `path` (absolute, on the host) is visible inside sandboxes.
pub(crate) fn visible_in_sandbox(path: &Path, config: &LocalConfig) -> bool {
    path.is_absolute()
        && (SYSTEM_DIRS.iter().any(|d| path.starts_with(Path::new("/").join(d)))
            || config.read_only_paths.iter().any(|p| path.starts_with(p)))
}

/// The per-sandbox host directory and its parts.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    /// The mount point of the sandbox's root (a tmpfs in the holder's mount namespace).
    pub(crate) root: PathBuf,
    /// Backs the sandbox's `/tmp`.
    pub(crate) tmp: PathBuf,
    /// Backs the sandbox's work directory.
    pub(crate) work: PathBuf,
}

impl Layout {
    /// The layout below `base`.
    pub(crate) fn new(base: &Path) -> Self {
        Layout {
            root: base.join("root"),
            tmp: base.join("tmp"),
            work: base.join("work"),
        }
    }

    /// Creates the directories; `owner` is the sandbox's host uid and gid when it differs from
    /// ours (root host), so that the sandbox owns its `/tmp` and work directory.
    pub(crate) fn create(&self, owner: Option<(u32, u32)>) -> io::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir(&self.root)?;
        std::fs::create_dir(&self.tmp)?;
        std::fs::create_dir(&self.work)?;
        std::fs::set_permissions(&self.tmp, std::fs::Permissions::from_mode(0o1777))?;
        std::fs::set_permissions(&self.work, std::fs::Permissions::from_mode(0o755))?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(&self.tmp, Some(uid), Some(gid))?;
            std::os::unix::fs::chown(&self.work, Some(uid), Some(gid))?;
        }
        Ok(())
    }
}

/// A volume that passed the checks.
#[derive(Debug)]
pub(crate) struct Volume {
    /// The mapping.
    pub(crate) mapping: VolumeMapping,
    /// Whether the host path is a directory (else a file).
    pub(crate) is_dir: bool,
    /// An id-mapped detached mount of the host path, if one could be made (root hosts).
    pub(crate) tree: Option<OwnedFd>,
}

fn invalid(message: String) -> LocalError {
    LocalError::InvalidInput(message)
}

/// Checks the volumes against what the backend can mount; the result is sorted so that a
/// volume comes after any volume that contains it.
pub(crate) fn check_volumes(volumes: &[VolumeMapping], config: &LocalConfig) -> Result<Vec<Volume>, LocalError> {
    let mut out: Vec<Volume> = Vec::new();
    for v in volumes {
        let target = Path::new(&v.container_path);
        if target == Path::new("/") || target.starts_with("/proc") || target.starts_with("/dev") {
            return Err(invalid(format!(
                "volume {v}: {} is reserved inside the sandbox",
                v.container_path
            )));
        }
        if out.iter().any(|o| o.mapping.container_path == v.container_path) {
            return Err(invalid(format!(
                "two volumes are mounted at {} inside the sandbox",
                v.container_path
            )));
        }
        let meta = std::fs::metadata(&v.host_path)
            .map_err(|e| invalid(format!("volume {v}: the host path {} cannot be used: {e}", v.host_path)))?;
        if !meta.is_dir() && !meta.is_file() {
            return Err(invalid(format!(
                "volume {v}: {} is neither a directory nor a regular file",
                v.host_path
            )));
        }
        if visible_in_sandbox(target, config) {
            // Mount points cannot be created in the read-only system directories.
            let existing = std::fs::symlink_metadata(target).ok();
            let through_symlink = ancestors(target).iter().any(|a| {
                std::fs::symlink_metadata(a)
                    .map(|m| m.file_type().is_symlink())
                    .unwrap_or(false)
            });
            let same_kind = existing.as_ref().is_some_and(|m| m.is_dir() == meta.is_dir());
            if through_symlink || !same_kind {
                return Err(invalid(format!(
                    "volume {v}: {} lies in a read-only system directory of the sandbox, so it must already \
                     exist on the host as a {} (and not through a symbolic link); choose another place, e.g. /data",
                    v.container_path,
                    if meta.is_dir() { "directory" } else { "file" }
                )));
            }
        }
        out.push(Volume {
            mapping: v.clone(),
            is_dir: meta.is_dir(),
            tree: None,
        });
    }
    out.sort_by(|a, b| {
        let depth = |v: &Volume| Path::new(&v.mapping.container_path).components().count();
        depth(a)
            .cmp(&depth(b))
            .then_with(|| a.mapping.container_path.cmp(&b.mapping.container_path))
    });
    Ok(out)
}

/// The proper ancestors of an absolute path, outermost first, without `/`.
fn ancestors(path: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = path.ancestors().skip(1).map(Path::to_owned).collect();
    out.retain(|p| p != Path::new("/") && !p.as_os_str().is_empty());
    out.reverse();
    out
}

/// The mount steps and, for each, what it does (for error messages).
#[derive(Debug, Default)]
pub(crate) struct MountPlan {
    /// The steps, in order.
    pub(crate) steps: Vec<MountStep>,
    /// A description per step.
    pub(crate) descriptions: Vec<String>,
}

impl MountPlan {
    fn push(&mut self, step: MountStep, description: impl Into<String>) {
        self.steps.push(step);
        self.descriptions.push(description.into());
    }
}

/// Builds the holder's mount steps. `volumes` must come from [`check_volumes`].
pub(crate) fn mount_plan(
    layout: &Layout,
    volumes: &[Volume],
    config: &LocalConfig,
    shm_mb: u32,
) -> Result<MountPlan, LocalError> {
    let c = |p: &Path| crate::sys::cstring(p).map_err(|e| LocalError::io(format!("path {}", p.display()), e));
    let inside = |p: &Path| -> Result<CString, LocalError> {
        let relative: PathBuf = p.components().filter(|c| matches!(c, Component::Normal(_))).collect();
        c(&layout.root.join(relative))
    };
    let mut plan = MountPlan::default();
    let system = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;
    let private = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;

    for name in SYSTEM_DIRS {
        let host = Path::new("/").join(name);
        let Ok(meta) = std::fs::symlink_metadata(&host) else {
            continue;
        };
        if meta.file_type().is_symlink() {
            let target =
                std::fs::read_link(&host).map_err(|e| LocalError::io(format!("reading {}", host.display()), e))?;
            plan.push(
                MountStep::Symlink {
                    target: c(&target)?,
                    path: inside(&host)?,
                },
                format!("linking {} to {}", host.display(), target.display()),
            );
        } else if meta.is_dir() {
            plan.push(
                MountStep::Dir { path: inside(&host)? },
                format!("creating {}", host.display()),
            );
            plan.push(
                MountStep::Bind {
                    source: c(&host)?,
                    target: inside(&host)?,
                    attrs: system,
                },
                format!("mounting {} read-only", host.display()),
            );
        }
    }
    for extra in &config.read_only_paths {
        if !extra.is_absolute() || SYSTEM_DIRS.iter().any(|d| extra.starts_with(Path::new("/").join(d))) {
            continue;
        }
        if !extra.is_dir() {
            return Err(invalid(format!(
                "the read-only path {} is not a directory on this host",
                extra.display()
            )));
        }
        for dir in ancestors(extra).iter().chain(std::iter::once(extra)) {
            plan.push(
                MountStep::Dir { path: inside(dir)? },
                format!("creating {}", dir.display()),
            );
        }
        plan.push(
            MountStep::Bind {
                source: c(extra)?,
                target: inside(extra)?,
                attrs: system,
            },
            format!("mounting {} read-only", extra.display()),
        );
    }

    let tmp = Path::new("/tmp");
    plan.push(MountStep::Dir { path: inside(tmp)? }, "creating /tmp");
    plan.push(
        MountStep::Bind {
            source: c(&layout.tmp)?,
            target: inside(tmp)?,
            attrs: private,
        },
        "mounting the private /tmp",
    );
    let work = Path::new(&config.work_dir);
    for dir in ancestors(work).iter().chain(std::iter::once(&work.to_owned())) {
        plan.push(
            MountStep::Dir { path: inside(dir)? },
            format!("creating {}", dir.display()),
        );
    }
    plan.push(
        MountStep::Bind {
            source: c(&layout.work)?,
            target: inside(work)?,
            attrs: private,
        },
        format!("mounting the work directory {}", work.display()),
    );

    let dev = Path::new("/dev");
    plan.push(MountStep::Dir { path: inside(dev)? }, "creating /dev");
    plan.push(
        MountStep::Tmpfs {
            target: inside(dev)?,
            data: c(Path::new("mode=0755,size=64k,nr_inodes=64"))?,
        },
        "mounting /dev",
    );
    for name in DEVICES {
        let host = dev.join(name);
        plan.push(
            MountStep::File { path: inside(&host)? },
            format!("creating {}", host.display()),
        );
        plan.push(
            MountStep::Bind {
                source: c(&host)?,
                target: inside(&host)?,
                attrs: MOUNT_ATTR_NOSUID,
            },
            format!("mounting {}", host.display()),
        );
    }
    for (link, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        plan.push(
            MountStep::Symlink {
                target: c(Path::new(target))?,
                path: inside(&dev.join(link))?,
            },
            format!("linking /dev/{link}"),
        );
    }
    let shm = dev.join("shm");
    plan.push(MountStep::Dir { path: inside(&shm)? }, "creating /dev/shm");
    plan.push(
        MountStep::Tmpfs {
            target: inside(&shm)?,
            data: c(Path::new(&format!("mode=1777,size={shm_mb}m")))?,
        },
        "mounting /dev/shm",
    );
    plan.push(
        MountStep::SetAttrs {
            target: inside(dev)?,
            attrs: MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID,
        },
        "making /dev read-only",
    );
    let proc_ = Path::new("/proc");
    plan.push(MountStep::Dir { path: inside(proc_)? }, "creating /proc");
    plan.push(MountStep::Proc { target: inside(proc_)? }, "mounting /proc");
    let var = Path::new("/var");
    if !volumes
        .iter()
        .any(|v| Path::new(&v.mapping.container_path).starts_with(var))
    {
        plan.push(MountStep::Dir { path: inside(var)? }, "creating /var");
        plan.push(
            MountStep::Symlink {
                target: c(tmp)?,
                path: inside(&var.join("tmp"))?,
            },
            "linking /var/tmp to /tmp",
        );
    }

    for volume in volumes {
        let target = Path::new(&volume.mapping.container_path);
        let what = format!("volume {}", volume.mapping);
        for dir in ancestors(target) {
            plan.push(
                MountStep::Dir { path: inside(&dir)? },
                format!("creating {} for {what}", dir.display()),
            );
        }
        let point = if volume.is_dir {
            MountStep::Dir { path: inside(target)? }
        } else {
            MountStep::File { path: inside(target)? }
        };
        plan.push(point, format!("creating the mount point of {what}"));
        match &volume.tree {
            Some(tree) => plan.push(
                MountStep::Attach {
                    fd: tree.as_raw_fd(),
                    target: inside(target)?,
                },
                format!("mounting {what} (id-mapped)"),
            ),
            None => plan.push(
                MountStep::Bind {
                    source: c(Path::new(&volume.mapping.host_path))?,
                    target: inside(target)?,
                    attrs: if volume.mapping.read_only {
                        private | MOUNT_ATTR_RDONLY
                    } else {
                        private
                    },
                },
                format!("mounting {what}"),
            ),
        }
    }
    Ok(plan)
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
        let checked = check_volumes(
            &[volume(&format!("{h}:/data/inner")), volume(&format!("{h}:/data:ro"))],
            &config,
        )
        .unwrap();
        assert_eq!(checked[0].mapping.container_path, "/data");
        assert!(checked[0].is_dir);

        for (bad, why) in [
            (format!("{h}:/proc/x"), "reserved"),
            (format!("{h}:/dev"), "reserved"),
            ("/nonexistent-msbw:/data".to_owned(), "cannot be used"),
            (format!("{h}:/usr/msbw-does-not-exist"), "read-only system directory"),
            (format!("{h}:/bin/x"), "read-only system directory"),
        ] {
            let err = check_volumes(&[volume(&bad)], &config).unwrap_err();
            assert!(matches!(err, LocalError::InvalidInput(_)), "{bad}");
            assert!(err.to_string().contains(why), "{bad}: {err}");
        }
        let err = check_volumes(&[volume(&format!("{h}:/d")), volume(&format!("{h}:/d:ro"))], &config).unwrap_err();
        assert!(err.to_string().contains("two volumes"), "{err}");
    }

    #[test]
    fn the_plan_mounts_system_dirs_read_only_and_private_dirs_writable() {
        let base = tempfile::tempdir().unwrap();
        let layout = Layout::new(base.path());
        let host = tempfile::tempdir().unwrap();
        let volumes = check_volumes(
            &[volume(&format!("{}:/workspace/in:ro", host.path().display()))],
            &LocalConfig::default(),
        )
        .unwrap();
        let plan = mount_plan(&layout, &volumes, &LocalConfig::default(), 64).unwrap();
        assert_eq!(plan.steps.len(), plan.descriptions.len());
        let root = layout.root.display().to_string();
        let bind = |target: &str| {
            plan.steps.iter().find_map(|s| match s {
                MountStep::Bind { target: t, attrs, .. } if t.to_str() == Ok(&format!("{root}{target}")) => {
                    Some(*attrs)
                }
                _ => None,
            })
        };
        assert_eq!(bind("/usr").unwrap() & MOUNT_ATTR_RDONLY, MOUNT_ATTR_RDONLY);
        assert_eq!(bind("/tmp").unwrap() & MOUNT_ATTR_RDONLY, 0);
        assert_eq!(bind("/workspace").unwrap() & MOUNT_ATTR_RDONLY, 0);
        assert_eq!(bind("/workspace/in").unwrap() & MOUNT_ATTR_RDONLY, MOUNT_ATTR_RDONLY);
        assert!(plan.descriptions.iter().any(|d| d == "mounting /proc"));
        let workspace_mount = plan
            .descriptions
            .iter()
            .position(|d| d.contains("work directory"))
            .unwrap();
        let volume_mount = plan
            .descriptions
            .iter()
            .position(|d| d.starts_with("mounting volume"))
            .unwrap();
        assert!(
            workspace_mount < volume_mount,
            "the volume goes on top of the work directory"
        );
    }

    #[test]
    fn ancestors_are_listed_outermost_first() {
        assert_eq!(
            ancestors(Path::new("/a/b/c")),
            vec![PathBuf::from("/a"), PathBuf::from("/a/b")]
        );
        assert!(ancestors(Path::new("/a")).is_empty());
    }
}
