//! Launching programs in a running sandbox: the [`Core`] every execution shares (namespace and
//! cgroup descriptors, environment, limits, Landlock ruleset) and the [`ExecPlan`] it makes for
//! each program (the interpreter with its driver, or a command).

use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use msbw_backend::Template;

use crate::child::{ExecPlan, LandlockPlan};
use crate::error::LocalError;
use crate::probe::ProcessLimit;
use crate::sys;

/// The `PATH` of every process in a sandbox (unless the spec sets another).
pub(crate) const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What a program started in a sandbox is.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Program<'a> {
    /// The template's interpreter with its driver.
    Interpreter,
    /// A command.
    Command {
        /// The program, looked up on `PATH`.
        program: &'a str,
        /// Its arguments.
        args: &'a [String],
        /// Its timeout (bounds its CPU time too).
        timeout: Duration,
    },
    /// No program: the sandbox-wide part of every plan, for the sandbox's launcher
    /// ([`crate::launcher`]).
    Launcher,
}

/// What every execution in a sandbox needs; shared by running executions, so that the
/// descriptors stay valid until the last of them has started.
#[derive(Debug)]
pub(crate) struct Core {
    /// The sandbox's template.
    pub(crate) template: Template,
    /// The interpreter's path.
    pub(crate) interpreter: PathBuf,
    /// The driver script the interpreter runs (`crate::interpreter::DRIVER_PY` or `DRIVER_JS`).
    pub(crate) driver: &'static str,
    /// Every program's environment.
    pub(crate) env: Vec<(String, String)>,
    /// The work directory inside the sandbox.
    pub(crate) work_dir: CString,
    /// The sandbox's namespaces, in `setns` order (user first).
    pub(crate) namespaces: Vec<OwnedFd>,
    /// `cgroup.procs` of the sandbox's cgroups.
    pub(crate) cgroup_procs: Vec<OwnedFd>,
    /// `/dev/null`.
    pub(crate) devnull: OwnedFd,
    /// The flavor's memory.
    pub(crate) memory_mb: u32,
    /// The task limit.
    pub(crate) max_processes: u32,
    /// How the task limit is counted.
    pub(crate) process_limit: ProcessLimit,
    /// Host uid of the sandbox's root.
    pub(crate) host_uid: u32,
    /// The Landlock ruleset, when the kernel has Landlock.
    pub(crate) landlock: Option<LandlockPlan>,
    /// Whether to drop supplementary groups (root hosts).
    pub(crate) drop_groups: bool,
    /// The highest capability number.
    pub(crate) last_cap: u32,
}

impl Core {
    /// The sandbox's template.
    pub(crate) fn template(&self) -> Template {
        self.template
    }

    /// The interpreter's path.
    pub(crate) fn interpreter(&self) -> &Path {
        &self.interpreter
    }

    /// `/dev/null`.
    pub(crate) fn devnull(&self) -> RawFd {
        self.devnull.as_raw_fd()
    }

    /// The plan to start `program` in the sandbox with the given descriptors.
    pub(crate) fn exec_plan(
        &self,
        program: Program<'_>,
        stdio: [RawFd; 3],
        control: Option<RawFd>,
        report: RawFd,
    ) -> Result<ExecPlan, LocalError> {
        let c = |s: &str| CString::new(s).map_err(|_| LocalError::InvalidInput(format!("{s:?} contains a NUL byte")));
        let interpreter = self.interpreter.display().to_string();
        // Node needs about 0.75 GiB of address space just to start (V8 reserves its code range);
        // its heap is bounded by V8's own limit instead.
        let address_space_mb = match self.template {
            Template::Python => u64::from(self.memory_mb),
            Template::Node => u64::from(self.memory_mb.max(1024)),
        };
        let (argv, programs) = match program {
            Program::Interpreter => {
                let argv = match self.template {
                    Template::Python => vec![c(&interpreter)?, c("-c")?, c(self.driver)?],
                    Template::Node => vec![
                        c(&interpreter)?,
                        c(&format!("--max-old-space-size={}", (self.memory_mb * 3 / 4).max(32)))?,
                        c("--expose-internals")?,
                        c("-e")?,
                        c(self.driver)?,
                    ],
                };
                (argv, vec![c(&interpreter)?])
            }
            Program::Command { program, args, .. } => {
                if program.is_empty() {
                    return Err(LocalError::InvalidInput("the command is empty".into()));
                }
                let mut argv = vec![c(program)?];
                for arg in args {
                    argv.push(c(arg)?);
                }
                let path = self
                    .env
                    .iter()
                    .rev()
                    .find(|(k, _)| k == "PATH")
                    .map_or(PATH, |(_, v)| v.as_str());
                let programs = candidates(program, path)
                    .iter()
                    .map(|p| c(p))
                    .collect::<Result<Vec<_>, _>>()?;
                (argv, programs)
            }
            Program::Launcher => (Vec::new(), Vec::new()),
        };
        let envp = self
            .env
            .iter()
            .map(|(k, v)| c(&format!("{k}={v}")))
            .collect::<Result<Vec<_>, _>>()?;

        let mut rlimits = vec![
            (
                libc::RLIMIT_AS as libc::c_int,
                address_space_mb << 20,
                address_space_mb << 20,
            ),
            (libc::RLIMIT_CORE as libc::c_int, 0, 0),
            (
                libc::RLIMIT_NPROC as libc::c_int,
                self.nproc_limit(),
                self.nproc_limit(),
            ),
        ];
        let (_, hard_files) = sys::getrlimit(libc::RLIMIT_NOFILE);
        let files = hard_files.min(4096);
        rlimits.push((libc::RLIMIT_NOFILE as libc::c_int, files, files));
        if let Program::Command { timeout, .. } = program {
            // A backstop: the timeout kills the command long before, on the wall clock.
            let seconds = timeout.as_secs().saturating_add(1);
            rlimits.push((libc::RLIMIT_CPU as libc::c_int, seconds, seconds.saturating_add(1)));
        }

        let namespaces: Vec<RawFd> = self.namespaces.iter().map(AsRawFd::as_raw_fd).collect();
        let cgroup_procs: Vec<RawFd> = self.cgroup_procs.iter().map(AsRawFd::as_raw_fd).collect();
        let mut keep: Vec<RawFd> = vec![report, self.devnull()];
        keep.extend(&namespaces);
        keep.extend(&cgroup_procs);
        keep.extend(stdio);
        keep.extend(control);
        keep.sort_unstable();
        keep.dedup();
        Ok(ExecPlan {
            report_fd: report,
            devnull_fd: self.devnull(),
            keep,
            namespaces,
            drop_groups: self.drop_groups,
            cgroup_procs,
            rlimits,
            stdio,
            control,
            cwd: self.work_dir.clone(),
            last_cap: self.last_cap,
            landlock: self.landlock.clone(),
            programs,
            argv,
            envp,
            argv_area: sys::argv_area(),
            nosuid: crate::nosuid::filter(),
            seccomp: crate::seccomp::active(),
        })
    }

    /// `RLIMIT_NPROC` for a new program. Tasks are counted per sandbox (its own user namespace
    /// or uid), except on old kernels without root, where the user's current count is added.
    fn nproc_limit(&self) -> u64 {
        // The holder counts too.
        let own = u64::from(self.max_processes) + 1;
        if self.process_limit == ProcessLimit::SharedRlimit {
            own + tasks_of(self.host_uid)
        } else {
            own
        }
    }
}

/// The full paths to try for `program`, like `execvp` would.
fn candidates(program: &str, path: &str) -> Vec<String> {
    if program.contains('/') {
        return vec![program.to_owned()];
    }
    path.split(':')
        .map(|dir| {
            if dir.is_empty() {
                format!("./{program}")
            } else {
                format!("{}/{program}", dir.trim_end_matches('/'))
            }
        })
        .collect()
}

/// How many tasks (threads) the host uid `uid` runs.
fn tasks_of(uid: u32) -> u64 {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    entries
        .flatten()
        .filter(|e| e.metadata().map(|m| m.uid() == uid).unwrap_or(false))
        .filter_map(|e| std::fs::read_to_string(e.path().join("status")).ok())
        .filter_map(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Threads:"))
                .and_then(|n| n.trim().parse::<u64>().ok())
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn programs_are_looked_up_like_execvp() {
        assert_eq!(candidates("/bin/sh", PATH), vec!["/bin/sh"]);
        assert_eq!(candidates("./x", PATH), vec!["./x"]);
        assert_eq!(
            candidates("echo", "/usr/bin:/bin/::"),
            vec!["/usr/bin/echo", "/bin/echo", "./echo", "./echo"]
        );
    }
}
