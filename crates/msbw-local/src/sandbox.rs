//! One sandbox: its holder, namespaces, private directories, cgroups and interpreter, and how
//! code and commands are run in it.

use std::collections::HashMap;
use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use msbw_backend::{Aftermath, CodeRequest, CommandRequest, ExecOutput, ExecStatus, SandboxId, SandboxSpec, Template};
use tokio::net::unix::pipe::Receiver;
use tokio::time::Instant;

use crate::cgroup::{Limits, SandboxCgroups};
use crate::child::{self, ExecPlan, HolderPlan, LandlockPlan, Record, stage};
use crate::config::LocalConfig;
use crate::error::{Context, LocalError};
use crate::exec::{Capture, Chain, Ending, Registry, follow};
use crate::ids::UidLease;
use crate::interpreter::{DRIVER_JS, DRIVER_PY, Interpreter, Outcome, describe_exit};
use crate::metrics::{ProcTable, disk_usage};
use crate::plan::{Layout, Volume, check_volumes, mount_plan};
use crate::probe::{Host, ProcessLimit};
use crate::spawner::Spawner;
use crate::sys::{self, MOUNT_ATTR_NODEV, MOUNT_ATTR_NOSUID, MOUNT_ATTR_RDONLY, Pid};

/// The `PATH` of every process in a sandbox (unless the spec sets another).
const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

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
}

/// What every execution in a sandbox needs; shared by running executions, so that the
/// descriptors stay valid until the last of them has started.
#[derive(Debug)]
pub(crate) struct Core {
    template: Template,
    interpreter: PathBuf,
    namespaces: Vec<OwnedFd>,
    cgroup_procs: Vec<OwnedFd>,
    devnull: OwnedFd,
    drop_groups: bool,
    landlock: Option<LandlockPlan>,
    env: Vec<(String, String)>,
    work_dir: CString,
    memory_mb: u32,
    max_processes: u32,
    process_limit: ProcessLimit,
    host_uid: u32,
    last_cap: u32,
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
                    Template::Python => vec![c(&interpreter)?, c("-c")?, c(DRIVER_PY)?],
                    Template::Node => vec![
                        c(&interpreter)?,
                        c(&format!("--max-old-space-size={}", (self.memory_mb * 3 / 4).max(32)))?,
                        c("--expose-internals")?,
                        c("-e")?,
                        c(DRIVER_JS)?,
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
            seccomp: crate::seccomp::active(),
            programs,
            argv,
            envp,
            argv_area: sys::argv_area(),
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

/// What [`Sandbox::start`] needs from the backend.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StartContext<'a> {
    /// The backend's settings.
    pub(crate) config: &'a LocalConfig,
    /// What the host offers.
    pub(crate) host: &'a Host,
    /// The thread that creates holders.
    pub(crate) spawner: &'a Spawner,
}

/// What is released when a sandbox stops.
#[derive(Debug)]
struct Resources {
    dir: PathBuf,
    cgroups: Option<SandboxCgroups>,
    _uid: Option<UidLease>,
}

impl Drop for Resources {
    fn drop(&mut self) {
        if let Some(mut cgroups) = self.cgroups.take() {
            cgroups.remove(Duration::from_secs(2));
        }
        remove_tree(&self.dir);
    }
}

/// Removes the sandbox directories in `base` that backends of processes that died left behind.
pub(crate) fn remove_stale_dirs(base: &Path) {
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    for entry in entries.flatten() {
        let ours = entry.metadata().is_ok_and(|m| m.is_dir() && m.uid() == sys::euid());
        if ours && entry.file_name().to_str().is_some_and(crate::cgroup::is_stale) {
            remove_tree(&entry.path());
        }
    }
}

/// Removes a directory tree, making directories writable first if the sandbox locked them.
fn remove_tree(dir: &Path) {
    if std::fs::remove_dir_all(dir).is_ok() || !dir.exists() {
        return;
    }
    fn unlock(dir: &Path) {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
        if let Ok(entries) = std::fs::read_dir(dir) {
            for entry in entries.flatten() {
                if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                    unlock(&entry.path());
                }
            }
        }
    }
    unlock(dir);
    if let Err(e) = std::fs::remove_dir_all(dir) {
        tracing::warn!(dir = %dir.display(), error = %e, "cannot remove a sandbox directory");
    }
}

/// A running sandbox.
#[derive(Debug)]
pub(crate) struct Sandbox {
    id: SandboxId,
    core: Arc<Core>,
    holder: Pid,
    lifeline: Mutex<Option<OwnedFd>>,
    interpreter: tokio::sync::Mutex<Option<Interpreter>>,
    registry: Registry,
    resources: Mutex<Option<Resources>>,
    layout: Layout,
    stopped: AtomicBool,
    started: std::time::Instant,
    cpu_sample: Mutex<Option<(std::time::Instant, u64)>>,
    start_timeout: Duration,
    max_output: usize,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Removes a half-built sandbox's holder if the start fails or is abandoned.
#[derive(Debug)]
struct HolderGuard(Option<Pid>);

impl HolderGuard {
    fn pid(&self) -> Pid {
        self.0.unwrap_or(0)
    }
}

impl Drop for HolderGuard {
    fn drop(&mut self) {
        if let Some(pid) = self.0.take() {
            sys::kill(pid, libc::SIGKILL);
            let _ = sys::wait_blocking(pid);
        }
    }
}

impl Sandbox {
    /// Starts a sandbox for `spec` (already validated) and waits until its interpreter is ready.
    pub(crate) async fn start(ctx: StartContext<'_>, spec: &SandboxSpec) -> Result<Sandbox, LocalError> {
        let deadline = Instant::now() + spec.start_timeout;
        let StartContext { config, host, spawner } = ctx;
        let support = &host.support;
        if let Err(why) = &support.namespaces {
            return Err(LocalError::Unsupported(format!(
                "this host cannot isolate sandboxes: {why}"
            )));
        }
        let interpreter = match spec.template {
            Template::Python => support.python.clone(),
            Template::Node => support.node.clone(),
        }
        .ok_or_else(|| {
            LocalError::Unsupported(format!(
                "no {} interpreter was found on this host (install {}), so {} sandboxes are unavailable",
                spec.template,
                match spec.template {
                    Template::Python => "python3",
                    Template::Node => "nodejs",
                },
                spec.template
            ))
        })?;
        let mut volumes = check_volumes(&spec.volumes, config)?;

        let lease = if support.root {
            Some(crate::ids::lease(config.first_uid, config.uid_count)?)
        } else {
            None
        };
        let (uid, gid) = match &lease {
            Some(l) => (l.uid(), l.uid()),
            None => (sys::euid(), sys::egid()),
        };

        // The private directories.
        let base = config.temp_dir.clone().unwrap_or_else(std::env::temp_dir);
        let dir = tempfile::Builder::new()
            .prefix(&format!("msbw-local-{}-{}-", std::process::id(), spec.id.name))
            .tempdir_in(&base)
            .context(|| format!("creating the sandbox directory in {}", base.display()))?;
        {
            use std::os::unix::fs::PermissionsExt;
            // The sandbox's own uid must be able to reach its directories (not list them).
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711))
                .context(|| "setting the sandbox directory's permissions".into())?;
        }
        let layout = Layout::new(dir.path());
        layout
            .create(lease.as_ref().map(|_| (uid, gid)))
            .context(|| format!("creating the sandbox directories in {}", dir.path().display()))?;

        let limits = Limits {
            memory_bytes: u64::from(spec.memory_mb) << 20,
            max_tasks: config.max_processes,
            cpus: spec.cpus,
        };
        let (cgroups, notes) = SandboxCgroups::create(&host.cgroups, limits);
        for note in notes {
            tracing::warn!(sandbox = %spec.id, "{note}");
        }
        if support.root {
            prepare_trees(&mut volumes, uid, gid)?;
        }
        let mounts = mount_plan(&layout, &volumes, config, spec.memory_mb.clamp(16, 512) / 4)?;

        // The holder.
        let (report_read, report_write) = sys::pipe().context(|| "creating a pipe".into())?;
        let (go_read, go_write) = sys::pipe().context(|| "creating a pipe".into())?;
        let (life_read, life_write) = sys::pipe().context(|| "creating a pipe".into())?;
        let devnull = sys::dev_null().context(|| "opening /dev/null".into())?;
        let holder_devnull = sys::dev_null().context(|| "opening /dev/null".into())?;
        let mut keep = vec![
            report_write.as_raw_fd(),
            go_read.as_raw_fd(),
            life_read.as_raw_fd(),
            holder_devnull.as_raw_fd(),
        ];
        keep.extend(volumes.iter().filter_map(|v| v.tree.as_ref().map(AsRawFd::as_raw_fd)));
        keep.sort_unstable();
        let holder_plan = HolderPlan {
            report_fd: report_write.as_raw_fd(),
            go_fd: go_read.as_raw_fd(),
            lifeline_fd: life_read.as_raw_fd(),
            devnull_fd: holder_devnull.as_raw_fd(),
            keep,
            new_root: sys::cstring(&layout.root).context(|| "the sandbox root path".into())?,
            root_data: c"mode=0755,size=1m,nr_inodes=4096".to_owned(),
            steps: mounts.steps,
            hostname: c"sandbox".to_owned(),
            loopback: !config.network,
            argv_area: sys::argv_area(),
        };
        let share_network = config.network;
        // Everything the plan names moves into the job and is dropped after the clone, even if
        // this future is dropped first; so does the holder, which is then killed.
        let held = (
            report_write,
            go_read,
            life_read,
            holder_devnull,
            volumes_trees(&mut volumes),
        );
        let (mut guard, namespaces) = spawner
            .run(move || {
                let result = clone_holder(&holder_plan, go_write, uid, gid, share_network);
                drop((holder_plan, held));
                result
            })
            .await
            .context(|| "asking the spawner thread".into())?
            .context(|| "creating the sandbox's namespaces".into())?;
        let holder = guard.pid();

        let mut report = Receiver::from_owned_fd(report_read).context(|| "watching the report pipe".into())?;
        let ready = tokio::time::timeout_at(deadline, read_record(&mut report)).await;
        match ready {
            Ok(Ok(Some(Record::Ready))) => {}
            Ok(Ok(Some(Record::Failed { stage: s, errno }))) => {
                let what = match s.checked_sub(stage::STEP_BASE) {
                    Some(i) => mounts
                        .descriptions
                        .get(i as usize)
                        .cloned()
                        .unwrap_or_else(|| "a mount step".into()),
                    None => stage::describe(s).to_owned(),
                };
                return Err(LocalError::io(
                    format!("setting up the sandbox failed while {what}"),
                    io::Error::from_raw_os_error(errno),
                ));
            }
            Ok(_) => {
                return Err(LocalError::io(
                    "setting up the sandbox",
                    io::Error::other("the sandbox's holder exited during setup"),
                ));
            }
            Err(_) => {
                return Err(LocalError::Timeout(format!(
                    "the sandbox was not set up within {:?}",
                    spec.start_timeout
                )));
            }
        }

        let mut writable: Vec<PathBuf> = vec!["/tmp".into(), config.work_dir.clone().into(), "/dev/shm".into()];
        writable.extend(
            spec.volumes
                .iter()
                .filter(|v| !v.read_only)
                .map(|v| PathBuf::from(&v.container_path)),
        );
        let writable_refs: Vec<&Path> = writable.iter().map(PathBuf::as_path).collect();
        let landlock = support
            .landlock_abi
            .and_then(|abi| crate::landlock::plan(abi, &writable_refs, config.network));

        let mut env: Vec<(String, String)> = vec![
            ("PATH".into(), PATH.into()),
            ("HOME".into(), config.work_dir.clone()),
            ("USER".into(), "root".into()),
            ("LOGNAME".into(), "root".into()),
            ("LANG".into(), "C.UTF-8".into()),
            ("TMPDIR".into(), "/tmp".into()),
            ("HOSTNAME".into(), "sandbox".into()),
        ];
        for (k, v) in &spec.env {
            env.retain(|(name, _)| name != k);
            env.push((k.clone(), v.clone()));
        }
        let cgroup_procs = match &cgroups {
            // The core keeps its own copies, valid while any execution may still use them.
            Some(c) => c
                .procs()
                .iter()
                .map(|fd| fd.try_clone())
                .collect::<io::Result<Vec<_>>>()
                .context(|| "duplicating cgroup descriptors".into())?,
            None => Vec::new(),
        };
        let core = Arc::new(Core {
            template: spec.template,
            interpreter,
            namespaces: namespaces.into_fds(),
            cgroup_procs,
            devnull,
            drop_groups: support.root,
            landlock,
            env,
            work_dir: sys::cstring(&config.work_dir).context(|| "the work directory".into())?,
            memory_mb: spec.memory_mb,
            max_processes: config.max_processes,
            process_limit: support.process_limit,
            host_uid: uid,
            last_cap: sys::last_capability(),
        });
        guard.0 = None;
        let sandbox = Sandbox {
            id: spec.id.clone(),
            core,
            holder,
            lifeline: Mutex::new(Some(life_write)),
            interpreter: tokio::sync::Mutex::new(None),
            registry: Registry::default(),
            resources: Mutex::new(Some(Resources {
                dir: dir.keep(),
                cgroups,
                _uid: lease,
            })),
            layout,
            stopped: AtomicBool::new(false),
            started: std::time::Instant::now(),
            cpu_sample: Mutex::new(None),
            start_timeout: spec.start_timeout,
            max_output: config.max_output_bytes,
        };
        let remaining = deadline.saturating_duration_since(Instant::now());
        match Interpreter::start(&sandbox.core, sandbox.registry.clone(), remaining).await {
            Ok(interp) => {
                *sandbox.interpreter.lock().await = Some(interp);
                Ok(sandbox)
            }
            Err(e) => {
                sandbox.stop().await;
                Err(e)
            }
        }
    }

    /// The sandbox's id.
    pub(crate) fn id(&self) -> &SandboxId {
        &self.id
    }

    fn ensure_running(&self) -> Result<(), LocalError> {
        if self.stopped.load(Ordering::SeqCst) {
            Err(LocalError::NotFound(format!("sandbox {} was stopped", self.id)))
        } else {
            Ok(())
        }
    }

    /// Kills every process of the sandbox now and releases its resources (directories,
    /// cgroups, uid). Idempotent; does not wait for the holder to be reaped.
    fn kill_everything(&self) -> Option<Resources> {
        if self.stopped.swap(true, Ordering::SeqCst) {
            return None;
        }
        lock(&self.lifeline).take();
        // Killing the holder kills every process in the sandbox's pid namespace (so every
        // execution's processes). The executions' first processes, outside the namespace, stay
        // alive to reap theirs, which lets the namespace go away at once.
        sys::kill(self.holder, libc::SIGKILL);
        lock(&self.resources).take()
    }

    /// Kills everything in the sandbox and releases its resources, synchronously (for drops).
    pub(crate) fn kill_now(&self) {
        if let Some(resources) = self.kill_everything() {
            let _ = sys::wait_blocking(self.holder);
            drop(resources);
        }
    }

    /// Stops the sandbox: kills everything in it, reaps the holder and removes its directory
    /// and cgroups. Stopping twice is harmless.
    pub(crate) async fn stop(&self) {
        if let Some(resources) = self.kill_everything() {
            let holder = self.holder;
            let _ = tokio::task::spawn_blocking(move || {
                let _ = sys::wait_blocking(holder);
                drop(resources);
            })
            .await;
        }
    }

    /// Runs code in the sandbox's interpreter.
    pub(crate) async fn run_code(&self, request: &CodeRequest) -> Result<ExecOutput, LocalError> {
        if request.language != self.core.template {
            return Err(LocalError::InvalidInput(format!(
                "sandbox {} runs {}, not {}",
                self.id, self.core.template, request.language
            )));
        }
        if request.code.len() > crate::protocol::MAX_FRAME - 4096 {
            return Err(LocalError::InvalidInput(format!(
                "the code is {} bytes long; the limit is {} bytes",
                request.code.len(),
                crate::protocol::MAX_FRAME - 4096
            )));
        }
        let mut slot = self.interpreter.lock().await;
        self.ensure_running()?;
        let mut capture = Capture::new(self.max_output);
        if let Some(old) = slot.take_if(|i| i.busy()) {
            old.kill().await;
            capture.note(
                "the previous execution was abandoned before it finished, so the interpreter was restarted \
                 and its state was lost",
            );
        }
        let interp = match slot.as_mut() {
            Some(i) => i,
            None => slot.insert(self.start_interpreter().await?),
        };
        let outcome = interp.run(&request.code, request.timeout, &mut capture).await;
        let status = match outcome {
            Outcome::Finished { raised } => {
                if raised {
                    ExecStatus::Raised
                } else {
                    ExecStatus::Completed
                }
            }
            Outcome::TimedOut => {
                if let Some(old) = slot.take() {
                    old.kill().await;
                }
                self.ensure_running()?;
                let aftermath = match self.start_interpreter().await {
                    Ok(fresh) => {
                        *slot = Some(fresh);
                        Aftermath::StateLost
                    }
                    Err(e) => {
                        capture.note(format!("the interpreter could not be restarted: {e}"));
                        Aftermath::Unusable
                    }
                };
                ExecStatus::TimedOut {
                    after: request.timeout,
                    aftermath,
                }
            }
            Outcome::Died { status } => {
                if let Some(old) = slot.take() {
                    old.kill().await;
                }
                self.ensure_running()?;
                let restart = self.start_interpreter().await;
                capture.note(format!(
                    "the {} interpreter {}; its state was lost{}",
                    self.core.template,
                    describe_exit(status),
                    match &restart {
                        Ok(_) => " and it was restarted".to_owned(),
                        Err(e) => format!(" and it could not be restarted: {e}"),
                    }
                ));
                *slot = restart.ok();
                ExecStatus::Raised
            }
            Outcome::Broken(why) => {
                if let Some(old) = slot.take() {
                    old.kill().await;
                }
                self.ensure_running()?;
                *slot = self.start_interpreter().await.ok();
                return Err(LocalError::Protocol(format!(
                    "the interpreter's driver broke the protocol ({why}); it was restarted"
                )));
            }
        };
        let (stdout, stderr) = capture.finish();
        Ok(ExecOutput {
            stdout,
            stderr,
            status,
            exit_code: None,
        })
    }

    async fn start_interpreter(&self) -> Result<Interpreter, LocalError> {
        Interpreter::start(&self.core, self.registry.clone(), self.start_timeout).await
    }

    /// Runs a command (no shell) in the sandbox.
    pub(crate) async fn run_command(&self, request: &CommandRequest) -> Result<ExecOutput, LocalError> {
        self.ensure_running()?;
        let deadline = Instant::now() + request.timeout;
        let (out_read, out_write) = sys::pipe().context(|| "creating a pipe".into())?;
        let (err_read, err_write) = sys::pipe().context(|| "creating a pipe".into())?;
        let (report_read, report_write) = sys::pipe().context(|| "creating a pipe".into())?;
        let plan = self.core.exec_plan(
            Program::Command {
                program: &request.command,
                args: &request.args,
                timeout: request.timeout,
            },
            [self.core.devnull(), out_write.as_raw_fd(), err_write.as_raw_fd()],
            None,
            report_write.as_raw_fd(),
        )?;
        let keep_alive = (Arc::clone(&self.core), out_write, err_write, report_write);
        let mut chain = Chain::spawn(plan, report_read, self.registry.clone(), keep_alive).await?;
        let out = Receiver::from_owned_fd(out_read).context(|| "watching stdout".into())?;
        let err = Receiver::from_owned_fd(err_read).context(|| "watching stderr".into())?;
        let mut capture = Capture::new(self.max_output);
        let ending = follow(&mut chain, &out, &err, &mut capture, deadline)
            .await
            .context(|| "reading the command's output".into())?;
        let output = match ending {
            Ending::TimedOut => {
                chain.kill();
                // Collect what is still in the pipes while the chain dies.
                let grace = Instant::now() + Duration::from_secs(2);
                let _ = follow(&mut chain, &out, &err, &mut capture, grace).await;
                chain.reap().await;
                self.ensure_running()?;
                let (stdout, stderr) = capture.finish();
                ExecOutput {
                    stdout,
                    stderr,
                    status: ExecStatus::TimedOut {
                        after: request.timeout,
                        aftermath: Aftermath::Intact,
                    },
                    exit_code: None,
                }
            }
            Ending::Finished { failed, status } => {
                chain.reap().await;
                self.ensure_running()?;
                let exit_code = match (failed, status) {
                    (Some((stage::EXEC, errno)), _) => {
                        capture.note(format!(
                            "cannot run {:?}: {}",
                            request.command,
                            io::Error::from_raw_os_error(errno)
                        ));
                        Some(if errno == libc::ENOENT { 127 } else { 126 })
                    }
                    (Some((s, errno)), _) => {
                        return Err(LocalError::io(
                            format!("starting the command failed while {}", stage::describe(s)),
                            io::Error::from_raw_os_error(errno),
                        ));
                    }
                    (None, Some(s)) if libc::WIFEXITED(s) => Some(libc::WEXITSTATUS(s)),
                    (None, Some(_)) => None,
                    (None, None) => {
                        return Err(LocalError::io(
                            "running the command",
                            io::Error::other("its processes went away without a report"),
                        ));
                    }
                };
                let (stdout, stderr) = capture.finish();
                ExecOutput {
                    stdout,
                    stderr,
                    status: ExecStatus::Completed,
                    exit_code,
                }
            }
        };
        Ok(output)
    }

    /// CPU (percent of one CPU since the last call, or since the start), memory (MiB) and disk
    /// (bytes) in use.
    pub(crate) fn usage(&self, table: &ProcTable) -> (f32, u64, Option<u64>) {
        let chains: Vec<Pid> = crate::exec::lock_registry(&self.registry).iter().copied().collect();
        let (ticks, pages) = table.usage(self.holder, &chains);
        let now = std::time::Instant::now();
        let hz = sys::clock_ticks() as f64;
        let mut sample = lock(&self.cpu_sample);
        let (since, before) = sample.unwrap_or((self.started, 0));
        *sample = Some((now, ticks));
        let elapsed = now.duration_since(since).as_secs_f64().max(1e-3);
        let percent = (ticks.saturating_sub(before) as f64 / hz / elapsed * 100.0) as f32;
        let memory_mb = pages * sys::page_size() / (1 << 20);
        let disk = disk_usage(&[&self.layout.tmp, &self.layout.work], 100_000);
        (percent, memory_mb, disk)
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.kill_now();
    }
}

/// Reads one record from a report pipe.
async fn read_record(report: &mut Receiver) -> io::Result<Option<Record>> {
    let mut bytes = [0u8; child::RECORD_LEN];
    let mut have = 0;
    while have < bytes.len() {
        report.readable().await?;
        match report.try_read(&mut bytes[have..]) {
            Ok(0) => return Ok(None),
            Ok(n) => have += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(Record::decode(&bytes))
}

/// Takes the detached mount trees out of the volumes (they are only needed until the holder
/// has attached them).
fn volumes_trees(volumes: &mut [Volume]) -> Vec<OwnedFd> {
    volumes.iter_mut().filter_map(|v| v.tree.take()).collect()
}

/// As root, prepares each volume as a detached mount tree, id-mapped so that the volume's owner
/// appears as the sandbox's root (who can then write where the owner can); falls back to a
/// plain tree (the sandbox's uid then needs permission of its own) where the filesystem cannot
/// id-map.
fn prepare_trees(volumes: &mut [Volume], uid: u32, gid: u32) -> Result<(), LocalError> {
    let mut namespaces: HashMap<(u32, u32), OwnedFd> = HashMap::new();
    for volume in volumes.iter_mut() {
        let host = PathBuf::from(&volume.mapping.host_path);
        let meta = std::fs::metadata(&host).context(|| format!("inspecting {}", host.display()))?;
        let owner = (meta.uid(), meta.gid());
        let mut attrs = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;
        if volume.mapping.read_only {
            attrs |= MOUNT_ATTR_RDONLY;
        }
        if let std::collections::hash_map::Entry::Vacant(entry) = namespaces.entry(owner) {
            let userns = sys::user_namespace(|pid| {
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
        let mapped = namespaces.get(&owner).map(|ns| sys::idmapped_tree(&host, ns, attrs));
        volume.tree = Some(match mapped {
            Some(Ok(tree)) => tree,
            other => {
                if let Some(Err(e)) = other {
                    tracing::warn!(
                        volume = %volume.mapping,
                        error = %e,
                        "cannot id-map the volume; the sandbox's uid needs its own permission to write to it"
                    );
                }
                sys::plain_tree(&host, attrs).context(|| format!("preparing volume {}", volume.mapping))?
            }
        });
    }
    Ok(())
}

/// The sandbox's namespaces, opened right after the holder was created.
#[derive(Debug)]
struct Namespaces(Vec<OwnedFd>);

impl Namespaces {
    /// Opens the holder's namespaces in the order `setns` needs them (user first).
    fn open(pid: Pid, share_network: bool) -> io::Result<Namespaces> {
        let mut kinds = vec!["user", "mnt"];
        if !share_network {
            kinds.push("net");
        }
        kinds.extend(["ipc", "uts", "pid"]);
        kinds
            .into_iter()
            .map(|k| sys::open_namespace(pid, k))
            .collect::<io::Result<Vec<_>>>()
            .map(Namespaces)
    }

    fn into_fds(self) -> Vec<OwnedFd> {
        self.0
    }
}

/// Creates the holder (on the spawner thread), opens its namespaces, writes its id maps and
/// lets it go on. The holder is killed if the returned guard is dropped before it is disarmed.
fn clone_holder(
    plan: &HolderPlan,
    go: OwnedFd,
    uid: u32,
    gid: u32,
    share_network: bool,
) -> io::Result<(HolderGuard, Namespaces)> {
    let mut flags =
        libc::CLONE_NEWUSER | libc::CLONE_NEWNS | libc::CLONE_NEWPID | libc::CLONE_NEWIPC | libc::CLONE_NEWUTS;
    if !share_network {
        flags |= libc::CLONE_NEWNET;
    }
    let guard = HolderGuard(Some(child::spawn_holder(flags, plan)?));
    let pid = guard.pid();
    let namespaces = Namespaces::open(pid, share_network)?;
    std::fs::write(format!("/proc/{pid}/uid_map"), format!("0 {uid} 1\n"))?;
    std::fs::write(format!("/proc/{pid}/setgroups"), "deny")?;
    std::fs::write(format!("/proc/{pid}/gid_map"), format!("0 {gid} 1\n"))?;
    let mut go = std::fs::File::from(go);
    io::Write::write_all(&mut go, b"g")?;
    Ok((guard, namespaces))
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
