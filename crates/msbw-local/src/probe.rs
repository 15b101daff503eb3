//! What isolation this host offers the local backend ([`HostSupport`]), found by trying.

use std::fmt;
use std::path::{Path, PathBuf};

use msbw_backend::Template;

use crate::cgroup::CgroupHost;
use crate::config::LocalConfig;

/// How a sandbox's number of tasks is limited on this host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProcessLimit {
    /// The sandbox's pids cgroup, and `RLIMIT_NPROC` counted per sandbox.
    Cgroup,
    /// `RLIMIT_NPROC`, counted per sandbox: each sandbox has its own user namespace (Linux 5.14
    /// and later count tasks per namespace) or, as root, its own uid.
    Rlimit,
    /// `RLIMIT_NPROC` counts every task of the host user (kernels before 5.14, not root): the
    /// limit is the user's task count at each start plus the sandbox's allowance, so other
    /// programs of the user make it tighter or looser.
    SharedRlimit,
}

/// What isolation this host offers, as found by [`crate::LocalBackend::probe`]: for
/// `msbw doctor`, health checks and error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HostSupport {
    /// `Ok` if new user, mount, pid, ipc, uts and network namespaces can be created and mounts
    /// made in them; the reason otherwise. Without them the backend cannot start sandboxes.
    pub namespaces: Result<(), String>,
    /// Whether sandboxes get their own network namespace (no network); `false` when the
    /// configuration shares the host's network.
    pub network_isolated: bool,
    /// Whether the backend runs as root. Sandboxes then run as their own unprivileged host uid,
    /// never as host root, and volumes are id-mapped so that the sandbox can write to them.
    pub root: bool,
    /// The kernel's Landlock ABI version, if Landlock is available and enabled in the config.
    pub landlock_abi: Option<u32>,
    /// The seccomp filter every program runs under, or why this host cannot have it.
    pub seccomp: Result<crate::seccomp::SeccompSummary, String>,
    /// The cgroup version in use (1 or 2), if any.
    pub cgroup_version: Option<u8>,
    /// The cgroup controllers in use (`memory`, `pids`, `cpu`).
    pub cgroup_controllers: Vec<&'static str>,
    /// How the number of tasks per sandbox is limited.
    pub process_limit: ProcessLimit,
    /// The Python interpreter of `python` sandboxes, if found.
    pub python: Option<PathBuf>,
    /// The Node.js interpreter of `node` sandboxes, if found.
    pub node: Option<PathBuf>,
    /// What is missing or degraded, in words.
    pub notes: Vec<String>,
}

impl HostSupport {
    /// Whether sandboxes can be started at all.
    pub fn usable(&self) -> bool {
        self.namespaces.is_ok()
    }

    /// The interpreter of `template` sandboxes, if found.
    pub(crate) fn interpreter(&self, template: Template) -> Option<&Path> {
        match template {
            Template::Python => self.python.as_deref(),
            Template::Node => self.node.as_deref(),
        }
    }
}

impl fmt::Display for HostSupport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespaces {
            Ok(()) => writeln!(
                f,
                "namespaces: user, mount, pid, ipc, uts{}",
                if self.network_isolated {
                    ", network"
                } else {
                    " (network shared with the host)"
                }
            )?,
            Err(why) => writeln!(f, "namespaces: unavailable ({why})")?,
        }
        writeln!(
            f,
            "sandbox user: {}",
            if self.root {
                "a dedicated unprivileged uid per sandbox (backend runs as root)"
            } else {
                "the backend's own uid, mapped to root inside"
            }
        )?;
        match self.landlock_abi {
            Some(abi) => writeln!(f, "landlock: ABI {abi}")?,
            None => writeln!(f, "landlock: unavailable")?,
        }
        match &self.seccomp {
            Ok(s) => writeln!(
                f,
                "seccomp: filter active ({} syscalls allowed, {} named ones denied and every other one too, {}; ENOSYS)",
                s.allowed, s.denied, s.arch
            )?,
            Err(why) => writeln!(f, "seccomp: unavailable ({why})")?,
        }
        match self.cgroup_version {
            Some(v) => writeln!(f, "cgroups: v{v} ({})", self.cgroup_controllers.join(", "))?,
            None => writeln!(f, "cgroups: unavailable")?,
        }
        writeln!(
            f,
            "process limit: {}",
            match self.process_limit {
                ProcessLimit::Cgroup => "pids cgroup and RLIMIT_NPROC",
                ProcessLimit::Rlimit => "RLIMIT_NPROC per sandbox",
                ProcessLimit::SharedRlimit => "RLIMIT_NPROC shared with the host user (approximate)",
            }
        )?;
        writeln!(f, "rlimits: address space, tasks, CPU time (commands), core dumps")?;
        let show = |p: &Option<PathBuf>| p.as_ref().map_or("not found".to_owned(), |p| p.display().to_string());
        writeln!(f, "python: {}", show(&self.python))?;
        write!(f, "node: {}", show(&self.node))?;
        for note in &self.notes {
            write!(f, "\nnote: {note}")?;
        }
        Ok(())
    }
}

/// The probe's findings plus what the backend needs internally.
#[derive(Debug, Clone)]
pub(crate) struct Host {
    /// The public summary.
    pub(crate) support: HostSupport,
    /// Where cgroups can be created.
    pub(crate) cgroups: CgroupHost,
}

/// Probes the host: tries to create the namespaces, asks for Landlock, looks at cgroups and
/// looks for the interpreters.
pub(crate) fn probe(config: &LocalConfig) -> Host {
    let mut notes = Vec::new();
    let namespaces = try_namespaces(config.network);
    let root = crate::sys::euid() == 0;
    let landlock_abi = if config.landlock {
        let abi = crate::sys::landlock_abi();
        if abi.is_none() {
            notes.push("Landlock is not available: the read-only mounts are the only write barrier".into());
        }
        abi
    } else {
        notes.push("Landlock is disabled in the configuration".into());
        None
    };
    let seccomp = crate::seccomp::probe();
    if let Err(why) = &seccomp {
        notes.push(format!(
            "no seccomp filter ({why}): the whole system call interface is reachable"
        ));
    }
    let cgroups = if config.cgroups {
        CgroupHost::detect()
    } else {
        CgroupHost::Unavailable("disabled in the configuration".into())
    };
    let (cgroup_version, cgroup_controllers) = match &cgroups {
        CgroupHost::V1(_) => (Some(1), cgroups.controllers()),
        CgroupHost::V2 { .. } => (Some(2), cgroups.controllers()),
        CgroupHost::Unavailable(why) => {
            notes.push(format!(
                "no cgroups ({why}): memory is limited per process (RLIMIT_AS), not per sandbox, and CPUs are not limited"
            ));
            (None, Vec::new())
        }
    };
    if cgroup_version.is_some() {
        for wanted in ["memory", "pids", "cpu"] {
            if !cgroup_controllers.contains(&wanted) {
                notes.push(format!("the {wanted} cgroup controller is not usable here"));
            }
        }
    }
    let per_namespace_nproc = kernel_at_least(5, 14);
    let process_limit = if cgroups.has("pids") {
        ProcessLimit::Cgroup
    } else if root || per_namespace_nproc {
        ProcessLimit::Rlimit
    } else {
        notes.push("this kernel counts RLIMIT_NPROC per host user: the process limit is approximate".into());
        ProcessLimit::SharedRlimit
    };
    if config.network {
        notes.push("sandboxes share the host network (MSB_LOCAL_NETWORK=true)".into());
    }
    let python = find_interpreter(config.python.as_deref(), &["python3"], config);
    let node = find_interpreter(config.node.as_deref(), &["node", "nodejs"], config);
    if python.is_none() {
        notes.push("python3 was not found: python sandboxes are unavailable (install python3)".into());
    }
    if node.is_none() {
        notes.push("node was not found: node sandboxes are unavailable (install nodejs)".into());
    }
    Host {
        support: HostSupport {
            namespaces,
            network_isolated: !config.network,
            root,
            landlock_abi,
            seccomp,
            cgroup_version,
            cgroup_controllers,
            process_limit,
            python,
            node,
            notes,
        },
        cgroups,
    }
}

/// Tries what a sandbox needs: a child in new namespaces that can make mounts.
fn try_namespaces(share_network: bool) -> Result<(), String> {
    let mut flags =
        libc::CLONE_NEWUSER | libc::CLONE_NEWNS | libc::CLONE_NEWPID | libc::CLONE_NEWIPC | libc::CLONE_NEWUTS;
    if !share_network {
        flags |= libc::CLONE_NEWNET;
    }
    let pid = crate::child::spawn_probe(flags).map_err(|e| {
        format!(
            "cannot create user namespaces ({e}); they may be disabled (sysctl user.max_user_namespaces, \
             kernel.unprivileged_userns_clone) or blocked by a container's seccomp profile"
        )
    })?;
    let status = crate::sys::wait_blocking(pid).map_err(|e| format!("cannot wait for the probe: {e}"))?;
    if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 {
        Ok(())
    } else {
        Err(
            "user namespaces can be created but mounting in them is refused (an LSM such as AppArmor's \
             restrict_unprivileged_userns may forbid it)"
                .into(),
        )
    }
}

/// Whether the running kernel is at least `major.minor`.
fn kernel_at_least(major: u32, minor: u32) -> bool {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    parse_release(&release) >= (major, minor)
}

fn parse_release(release: &str) -> (u32, u32) {
    let mut parts = release.trim().split(['.', '-']);
    let major = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    let minor = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    (major, minor)
}

/// The directories where interpreters are looked for (all visible inside sandboxes).
const INTERPRETER_DIRS: [&str; 3] = ["/usr/local/bin", "/usr/bin", "/bin"];

/// The interpreter to use: the configured path, or the first of `names` in the usual places.
/// A configured path must exist and be visible inside sandboxes.
fn find_interpreter(configured: Option<&Path>, names: &[&str], config: &LocalConfig) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let executable = |p: &Path| {
        std::fs::metadata(p)
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    };
    if let Some(path) = configured {
        return (executable(path) && crate::plan::visible_in_sandbox(path, config)).then(|| path.to_owned());
    }
    INTERPRETER_DIRS
        .iter()
        .flat_map(|dir| names.iter().map(move |n| Path::new(dir).join(n)))
        .find(|p| executable(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_releases_parse() {
        assert_eq!(parse_release("6.18.44-fc-v782\n"), (6, 18));
        assert_eq!(parse_release("5.4.0-150-generic"), (5, 4));
        assert_eq!(parse_release("garbage"), (0, 0));
        assert!(parse_release("5.14.0") >= (5, 14));
        assert!(parse_release("5.13.9") < (5, 14));
    }

    #[test]
    fn a_configured_interpreter_must_exist() {
        let config = LocalConfig {
            node: Some("/nonexistent/node".into()),
            ..LocalConfig::default()
        };
        assert_eq!(find_interpreter(config.node.as_deref(), &["node"], &config), None);
    }
}
