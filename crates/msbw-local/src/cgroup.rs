//! Per-sandbox cgroups (memory, pids, cpu) on cgroup v1 or v2, when this process may create
//! them. Everything here degrades: a controller that cannot be used is left out with a note,
//! and the sandbox relies on rlimits instead.

use std::fs;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The controllers the backend uses.
const CONTROLLERS: [&str; 3] = ["memory", "pids", "cpu"];

/// Where this process may create cgroups, found once by [`CgroupHost::detect`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CgroupHost {
    /// cgroup v1: for each usable controller, the directory new cgroups are created in (this
    /// process's own cgroup of that hierarchy).
    V1(Vec<(&'static str, PathBuf)>),
    /// cgroup v2: the directory new cgroups are created in, and its enabled controllers.
    V2 {
        /// The parent of the sandboxes' cgroups.
        parent: PathBuf,
        /// The controllers enabled for its children.
        controllers: Vec<&'static str>,
    },
    /// No usable cgroups, and why.
    Unavailable(String),
}

impl CgroupHost {
    /// Finds the hierarchies and checks that this process may create cgroups in them.
    pub(crate) fn detect() -> CgroupHost {
        let mountinfo = match fs::read_to_string("/proc/self/mountinfo") {
            Ok(m) => m,
            Err(e) => return CgroupHost::Unavailable(format!("cannot read /proc/self/mountinfo: {e}")),
        };
        let own = fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
        let mounts = parse_mounts(&mountinfo);

        let mut v1 = Vec::new();
        let mut v1_mounted = false;
        for controller in CONTROLLERS {
            let Some((mount, _)) = mounts
                .iter()
                .find(|(_, m)| m.version == 1 && m.options.iter().any(|o| o == controller))
            else {
                continue;
            };
            v1_mounted = true;
            let Some(path) = own_path(&own, Some(controller)) else {
                continue;
            };
            let dir = join(mount, &path);
            if writable_dir(&dir) {
                remove_stale(&dir);
                v1.push((controller, dir));
            }
        }
        if !v1.is_empty() {
            return CgroupHost::V1(v1);
        }
        if v1_mounted {
            return CgroupHost::Unavailable(
                "this user may not create cgroups in the cgroup v1 hierarchies (run as root to use them)".into(),
            );
        }
        let Some((mount, _)) = mounts.iter().find(|(_, m)| m.version == 2) else {
            return CgroupHost::Unavailable("no cgroup hierarchy with memory, pids or cpu is mounted".into());
        };
        if crate::sys::euid() != 0 {
            return CgroupHost::Unavailable(
                "cgroup v2 needs root here: the backend does not move itself into a delegated cgroup".into(),
            );
        }
        match prepare_v2(mount) {
            Ok((parent, controllers)) if !controllers.is_empty() => {
                remove_stale(&parent);
                CgroupHost::V2 { parent, controllers }
            }
            Ok(_) => CgroupHost::Unavailable("cgroup v2 offers none of memory, pids, cpu".into()),
            Err(e) => CgroupHost::Unavailable(format!("cannot prepare {}/msbw-local: {e}", mount.display())),
        }
    }

    /// The controllers in use, for messages.
    pub(crate) fn controllers(&self) -> Vec<&'static str> {
        match self {
            CgroupHost::V1(list) => list.iter().map(|(c, _)| *c).collect(),
            CgroupHost::V2 { controllers, .. } => controllers.clone(),
            CgroupHost::Unavailable(_) => Vec::new(),
        }
    }

    /// Whether the pids controller is in use.
    pub(crate) fn has(&self, controller: &str) -> bool {
        self.controllers().contains(&controller)
    }
}

/// Whether a name made by this backend (`msbw-local-<pid>-...`) belongs to a process that is
/// gone (and so will never clean it up).
pub(crate) fn is_stale(name: &str) -> bool {
    let Some(pid) = name
        .strip_prefix("msbw-local-")
        .and_then(|rest| rest.split('-').next())
        .and_then(|pid| pid.parse::<u32>().ok())
    else {
        return false;
    };
    pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists()
}

/// Removes the empty cgroups that backends of processes that died left in `parent`.
fn remove_stale(parent: &Path) {
    let Ok(entries) = fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_name().to_str().is_some_and(is_stale) {
            let _ = fs::remove_dir(entry.path());
        }
    }
}

struct Mount {
    version: u8,
    options: Vec<String>,
}

/// `(mount point, mount)` of every cgroup hierarchy in a mountinfo text.
fn parse_mounts(mountinfo: &str) -> Vec<(PathBuf, Mount)> {
    let mut out = Vec::new();
    for line in mountinfo.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let mount_point = left.split(' ').nth(4).unwrap_or_default();
        let mut right = right.split(' ');
        let fstype = right.next().unwrap_or_default();
        let _source = right.next();
        let options: Vec<String> = right.next().unwrap_or_default().split(',').map(str::to_owned).collect();
        let version = match fstype {
            "cgroup" => 1,
            "cgroup2" => 2,
            _ => continue,
        };
        out.push((PathBuf::from(unescape(mount_point)), Mount { version, options }));
    }
    out
}

/// Undoes mountinfo's octal escapes (`\040` for a space).
fn unescape(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|b| (b'0'..=b'7').contains(b)));
        if bytes[i] == b'\\'
            && let Some(digits) = octal
        {
            let value = digits.iter().fold(0u32, |v, d| v * 8 + u32::from(d - b'0'));
            out.push(value as u8);
            i += 4;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// This process's path in the hierarchy of `controller` (v1), or in the unified hierarchy.
fn own_path(proc_cgroup: &str, controller: Option<&str>) -> Option<String> {
    proc_cgroup.lines().find_map(|line| {
        let mut parts = line.splitn(3, ':');
        let _id = parts.next()?;
        let controllers = parts.next()?;
        let path = parts.next()?;
        let matches = match controller {
            Some(c) => controllers.split(',').any(|x| x == c),
            None => controllers.is_empty(),
        };
        matches.then(|| path.to_owned())
    })
}

fn join(mount: &Path, path: &str) -> PathBuf {
    mount.join(path.trim_start_matches('/'))
}

fn writable_dir(dir: &Path) -> bool {
    crate::sys::writable(dir) && dir.join("cgroup.procs").exists()
}

/// Creates `<root>/msbw-local` with the controllers enabled for its children (root only).
fn prepare_v2(mount: &Path) -> io::Result<(PathBuf, Vec<&'static str>)> {
    let available = fs::read_to_string(mount.join("cgroup.controllers"))?;
    let wanted: Vec<&'static str> = CONTROLLERS
        .into_iter()
        .filter(|c| available.split_whitespace().any(|a| a == *c))
        .collect();
    let enable = |dir: &Path| {
        let line: Vec<String> = wanted.iter().map(|c| format!("+{c}")).collect();
        fs::write(dir.join("cgroup.subtree_control"), line.join(" "))
    };
    enable(mount)?;
    let parent = mount.join("msbw-local");
    match fs::create_dir(&parent) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    enable(&parent)?;
    let enabled = fs::read_to_string(parent.join("cgroup.subtree_control"))?;
    let controllers = wanted
        .into_iter()
        .filter(|c| enabled.split_whitespace().any(|e| e == *c))
        .collect();
    Ok((parent, controllers))
}

/// The limits a sandbox's cgroups enforce.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Memory in bytes (swap included where the kernel accounts it).
    memory_bytes: u64,
    /// Tasks.
    max_tasks: u32,
    /// CPUs (a CFS quota of this many periods per period).
    cpus: u8,
}

impl Limits {
    /// `memory_mb` MiB of memory, `max_tasks` tasks, `cpus` CPUs.
    pub(crate) fn new(memory_mb: u32, max_tasks: u32, cpus: u8) -> Limits {
        Limits {
            memory_bytes: u64::from(memory_mb) << 20,
            max_tasks,
            cpus,
        }
    }
}

/// One sandbox's cgroups: created with [`SandboxCgroups::create`], removed on drop.
#[derive(Debug)]
pub(crate) struct SandboxCgroups {
    dirs: Vec<(&'static str, PathBuf)>,
    procs: Vec<OwnedFd>,
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

impl SandboxCgroups {
    /// Creates the cgroups and sets the limits. Controllers that fail are skipped and named in
    /// the returned notes; `None` when no controller could be used.
    pub(crate) fn create(host: &CgroupHost, limits: Limits) -> (Option<SandboxCgroups>, Vec<String>) {
        let name = format!(
            "msbw-local-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let mut notes = Vec::new();
        let mut cgroups = SandboxCgroups {
            dirs: Vec::new(),
            procs: Vec::new(),
        };
        match host {
            CgroupHost::Unavailable(_) => return (None, notes),
            CgroupHost::V1(list) => {
                for (controller, parent) in list {
                    let dir = parent.join(&name);
                    match create_v1(controller, &dir, limits) {
                        Ok(fd) => {
                            cgroups.dirs.push((controller, dir));
                            cgroups.procs.push(fd);
                        }
                        Err(e) => {
                            let _ = fs::remove_dir(&dir);
                            notes.push(format!("cgroup {controller}: {e}"));
                        }
                    }
                }
            }
            CgroupHost::V2 { parent, controllers } => {
                let dir = parent.join(&name);
                match create_v2(controllers, &dir, limits) {
                    Ok(fd) => {
                        cgroups.dirs.push(("unified", dir));
                        cgroups.procs.push(fd);
                    }
                    Err(e) => {
                        let _ = fs::remove_dir(&dir);
                        notes.push(format!("cgroup v2: {e}"));
                    }
                }
            }
        }
        if cgroups.dirs.is_empty() {
            (None, notes)
        } else {
            (Some(cgroups), notes)
        }
    }

    /// The `cgroup.procs` descriptors a new process writes itself into.
    pub(crate) fn procs(&self) -> &[OwnedFd] {
        &self.procs
    }

    /// Removes the cgroups, waiting up to `patience` for their last tasks to be gone.
    pub(crate) fn remove(&mut self, patience: Duration) {
        let deadline = Instant::now() + patience;
        self.procs.clear();
        for (_, dir) in std::mem::take(&mut self.dirs) {
            loop {
                match fs::remove_dir(&dir) {
                    Ok(()) => break,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                    Err(e) => {
                        if Instant::now() >= deadline {
                            tracing::warn!(cgroup = %dir.display(), error = %e, "cannot remove a sandbox cgroup");
                            break;
                        }
                        std::thread::sleep(Duration::from_millis(10));
                    }
                }
            }
        }
    }
}

impl Drop for SandboxCgroups {
    fn drop(&mut self) {
        self.remove(Duration::from_secs(2));
    }
}

fn open_procs(dir: &Path) -> io::Result<OwnedFd> {
    let file = fs::OpenOptions::new().write(true).open(dir.join("cgroup.procs"))?;
    Ok(OwnedFd::from(file))
}

fn create_v1(controller: &str, dir: &Path, limits: Limits) -> io::Result<OwnedFd> {
    fs::create_dir(dir)?;
    match controller {
        "memory" => {
            let bytes = limits.memory_bytes.to_string();
            fs::write(dir.join("memory.limit_in_bytes"), &bytes)?;
            // Swap accounting is optional; without it the limit covers memory only.
            let _ = fs::write(dir.join("memory.memsw.limit_in_bytes"), &bytes);
            let _ = fs::write(dir.join("memory.swappiness"), "0");
        }
        "pids" => fs::write(dir.join("pids.max"), limits.max_tasks.to_string())?,
        "cpu" => {
            fs::write(dir.join("cpu.cfs_period_us"), "100000")?;
            fs::write(
                dir.join("cpu.cfs_quota_us"),
                (u64::from(limits.cpus) * 100_000).to_string(),
            )?;
        }
        _ => {}
    }
    open_procs(dir)
}

fn create_v2(controllers: &[&str], dir: &Path, limits: Limits) -> io::Result<OwnedFd> {
    fs::create_dir(dir)?;
    for controller in controllers {
        match *controller {
            "memory" => {
                fs::write(dir.join("memory.max"), limits.memory_bytes.to_string())?;
                let _ = fs::write(dir.join("memory.swap.max"), "0");
            }
            "pids" => fs::write(dir.join("pids.max"), limits.max_tasks.to_string())?,
            "cpu" => fs::write(
                dir.join("cpu.max"),
                format!("{} 100000", u64::from(limits.cpus) * 100_000),
            )?,
            _ => {}
        }
    }
    open_procs(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
25 30 0:22 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755
31 25 0:27 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
32 25 0:28 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
33 25 0:29 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
34 25 0:30 / /mnt/with\\040space rw - ext4 /dev/sda rw";

    #[test]
    fn finds_hierarchies_and_own_paths() {
        let mounts = parse_mounts(MOUNTINFO);
        assert_eq!(mounts.len(), 3);
        assert_eq!(mounts[0].0, PathBuf::from("/sys/fs/cgroup/memory"));
        assert_eq!(mounts[0].1.version, 1);
        assert!(mounts[1].1.options.iter().any(|o| o == "cpu"));
        assert_eq!(mounts[2].1.version, 2);

        let own = "12:pids:/user.slice\n4:memory:/a/b\n3:cpu,cpuacct:/\n0::/user.slice/x.scope\n";
        assert_eq!(own_path(own, Some("memory")).as_deref(), Some("/a/b"));
        assert_eq!(own_path(own, Some("cpu")).as_deref(), Some("/"));
        assert_eq!(own_path(own, None).as_deref(), Some("/user.slice/x.scope"));
        assert_eq!(own_path(own, Some("blkio")), None);
        assert_eq!(
            join(Path::new("/sys/fs/cgroup/memory"), "/a/b"),
            PathBuf::from("/sys/fs/cgroup/memory/a/b")
        );
        assert_eq!(unescape("/mnt/with\\040space"), "/mnt/with space");
    }

    #[test]
    fn only_names_of_dead_processes_are_stale() {
        assert!(!is_stale(&format!("msbw-local-{}-3", std::process::id())));
        assert!(!is_stale("msbw-local-1-0"), "pid 1 is alive");
        assert!(!is_stale("something-else-99999999"));
        assert!(is_stale("msbw-local-4294967295-0"));
    }
}
