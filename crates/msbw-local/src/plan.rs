//! From a sandbox spec to the holder's mount steps: which host directories are visible, and
//! where the private writable directories and the volumes ([`crate::volumes`]) go.

use std::ffi::CString;
use std::io;
use std::path::{Component, Path, PathBuf};

use crate::child::{Beneath, MountStep};
use crate::config::LocalConfig;
use crate::error::LocalError;
use crate::sys::{MOUNT_ATTR_NODEV, MOUNT_ATTR_NOSUID, MOUNT_ATTR_RDONLY};
use crate::volumes::{Volume, ancestors};

pub(crate) use crate::view::{SYSTEM_DIRS, visible_in_sandbox};

/// Device files bound into the sandbox's `/dev`.
const DEVICES: [&str; 5] = ["null", "zero", "full", "random", "urandom"];

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

    /// A step that bind-mounts `source` (recursively) at `target`, then sets `attrs` on it.
    fn bind(&mut self, source: CString, target: CString, attrs: u64, description: impl Into<String>) {
        self.push(MountStep::Bind { source, target, attrs }, description);
    }
}

/// Builds the holder's mount steps; the volumes (from [`crate::volumes::open_volumes`]) move
/// into them.
pub(crate) fn mount_plan(
    layout: &Layout,
    volumes: Vec<Volume>,
    config: &LocalConfig,
    shm_mb: u32,
) -> Result<MountPlan, LocalError> {
    let c = |p: &Path| crate::sys::cstring(p).map_err(|e| LocalError::io(format!("path {}", p.display()), e));
    let inside = |p: &Path| -> Result<CString, LocalError> {
        let relative: PathBuf = p.components().filter(|c| matches!(c, Component::Normal(_))).collect();
        c(&layout.root.join(relative))
    };
    // Bind-mounts the host's `host` at the same path inside, on a new mount point made by `point`
    // (`MountStep::Dir` or `MountStep::File`).
    let mirror =
        |plan: &mut MountPlan, host: &Path, point: fn(CString) -> MountStep, attrs: u64, description: String| {
            plan.push(point(inside(host)?), format!("creating {}", host.display()));
            plan.bind(c(host)?, inside(host)?, attrs, description);
            Ok::<(), LocalError>(())
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
            let description = format!("mounting {} read-only", host.display());
            mirror(&mut plan, &host, |path| MountStep::Dir { path }, system, description)?;
        }
    }
    for extra in &config.read_only_paths {
        if !extra.is_absolute() || SYSTEM_DIRS.iter().any(|d| extra.starts_with(Path::new("/").join(d))) {
            continue;
        }
        if !extra.is_dir() {
            return Err(LocalError::InvalidInput(format!(
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
        plan.bind(
            c(extra)?,
            inside(extra)?,
            system,
            format!("mounting {} read-only", extra.display()),
        );
    }

    let tmp = Path::new("/tmp");
    plan.push(MountStep::Dir { path: inside(tmp)? }, "creating /tmp");
    plan.bind(c(&layout.tmp)?, inside(tmp)?, private, "mounting the private /tmp");
    let work = Path::new(&config.work_dir);
    for dir in ancestors(work).iter().chain(std::iter::once(&work.to_owned())) {
        plan.push(
            MountStep::Dir { path: inside(dir)? },
            format!("creating {}", dir.display()),
        );
    }
    plan.bind(
        c(&layout.work)?,
        inside(work)?,
        private,
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
        let description = format!("mounting {}", host.display());
        mirror(
            &mut plan,
            &host,
            |path| MountStep::File { path },
            MOUNT_ATTR_NOSUID,
            description,
        )?;
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
        let what = format!("volume {}", volume.mapping);
        let target = Path::new(&volume.mapping.container_path);
        let at = beneath(target).map_err(|e| LocalError::io(format!("path of {what}"), e))?;
        let is_dir = volume.is_dir();
        let source = volume.into_mount_source();
        plan.push(
            MountStep::Volume { at, is_dir, source },
            format!(
                "mounting {what} (its host path and its mount point are resolved without following symbolic \
                 links, and the host path must still be the one that was checked)"
            ),
        );
    }
    Ok(plan)
}

/// Where a volume goes, relative to the sandbox's root: the directories to create on the way and
/// the mount point.
fn beneath(target: &Path) -> io::Result<Beneath> {
    let names: Vec<&std::ffi::OsStr> = target
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n),
            _ => None,
        })
        .collect();
    let mut steps = Vec::new();
    let mut parent = PathBuf::from(".");
    for name in &names {
        steps.push((crate::sys::cstring(&parent)?, crate::sys::cstring(name)?));
        parent.push(name);
    }
    let relative: PathBuf = names.iter().collect();
    Ok(Beneath {
        steps,
        target: crate::sys::cstring(&relative)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::child::VolumeSource;
    use crate::volumes::open_volumes;

    #[test]
    fn the_plan_mounts_system_dirs_read_only_and_private_dirs_writable() {
        let base = tempfile::tempdir().unwrap();
        let layout = Layout::new(base.path());
        let host = tempfile::tempdir().unwrap();
        let volumes = open_volumes(
            &[format!("{}:/workspace/in:ro", host.path().display()).parse().unwrap()],
            &LocalConfig::default(),
        )
        .unwrap();
        let plan = mount_plan(&layout, volumes, &LocalConfig::default(), 64).unwrap();
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
        let volume = plan.steps.iter().find_map(|s| match s {
            MountStep::Volume { at, source, .. } => Some((at, source)),
            _ => None,
        });
        let (at, source) = volume.expect("a volume step");
        assert_eq!(at.target.to_str(), Ok("workspace/in"));
        assert_eq!(at.steps.len(), 2);
        match source {
            VolumeSource::Host { attrs, .. } => {
                assert_eq!(
                    attrs & (MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID),
                    MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID
                )
            }
            VolumeSource::Tree(_) => panic!("trees are only made by make_trees"),
        }
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
}
