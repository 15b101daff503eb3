//! One sandbox: its holder, namespaces, private directories, cgroups and interpreter, and how
//! code and commands are run in it.
//!
//! [`Sandbox::start`] is a sequence of named steps: find the interpreter, open the volumes
//! ([`crate::volumes`]), pick the sandbox's host identity ([`crate::ids`]), create its private
//! directories and cgroups, turn the volumes into mount trees (root hosts), plan the mounts
//! ([`crate::plan`]), start the holder ([`crate::holder`]), then build the [`Core`] that every
//! execution shares ([`crate::launch`]) and start the interpreter.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use msbw_backend::stream::ChunkSink;
use msbw_backend::{Aftermath, CodeRequest, CommandRequest, ExecOutput, ExecStatus, SandboxId, SandboxSpec, Template};
use tokio::net::unix::pipe::Receiver;
use tokio::time::Instant;

use crate::cgroup::{Limits, SandboxCgroups};
use crate::child::ExecPlan;
use crate::child::stage;
use crate::config::LocalConfig;
use crate::error::{Context, LocalError};
use crate::exec::{Capture, Chain, Ending, Registry, follow};
use crate::holder::{Holder, HolderIdentity};
use crate::ids::UidLease;
use crate::interpreter::{DRIVER_JS, DRIVER_PY, Interpreter, Outcome, describe_exit};
use crate::launch::{Core, PATH, Program};
use crate::launcher::Launcher;
use crate::metrics::{ProcTable, disk_usage};
use crate::plan::{Layout, mount_plan};
use crate::probe::{Host, HostSupport};
use crate::spawner::Spawner;
use crate::sys::{self, Pid};
use crate::volumes::{Volume, make_trees, open_volumes};

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

/// What is released when a sandbox stops: its launcher, directory, cgroups and uid.
#[derive(Debug)]
struct Resources {
    /// Ends before the cgroups it lives in are removed.
    launcher: Option<Launcher>,
    dir: Option<PathBuf>,
    cgroups: Option<SandboxCgroups>,
    _uid: Option<UidLease>,
}

impl Resources {
    /// Removes the cgroups and the directory now (blocking: call it on a blocking thread).
    fn release(&mut self) {
        drop(self.launcher.take());
        if let Some(mut cgroups) = self.cgroups.take() {
            cgroups.remove(Duration::from_secs(2));
        }
        if let Some(dir) = self.dir.take() {
            crate::cleanup::remove_logged(&dir);
        }
    }
}

impl Drop for Resources {
    fn drop(&mut self) {
        // Not released by `stop` (a drop): never block the dropping thread, which may be an
        // async worker; the removal is logged and retried if it fails.
        let (launcher, dir, cgroups) = (self.launcher.take(), self.dir.take(), self.cgroups.take());
        if launcher.is_some() || dir.is_some() || cgroups.is_some() {
            let mut rest = Resources {
                launcher,
                dir,
                cgroups,
                _uid: None,
            };
            crate::cleanup::in_background(move || rest.release());
        }
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
    /// Set when a caller gave up on an execution (dropped its stream or future): its interpreter
    /// was killed, and the next execution says that the REPL's state was lost.
    abandoned: AtomicBool,
}

/// The interpreter slot held by one execution. If the execution is dropped before it
/// finished (its caller dropped the stream), the busy interpreter is killed at once, with
/// everything the code started, as a timeout would kill it; a fresh one starts on next use.
struct Held<'a> {
    slot: tokio::sync::MutexGuard<'a, Option<Interpreter>>,
    abandoned: &'a AtomicBool,
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        if let Some(busy) = self.slot.take_if(|i| i.busy()) {
            // Dropping the chain kills it and reaps it in the background.
            drop(busy);
            self.abandoned.store(true, Ordering::SeqCst);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Who a sandbox's root is on the host: a leased unprivileged uid (root hosts), or ourselves.
#[derive(Debug)]
struct Identity {
    lease: Option<UidLease>,
    uid: u32,
    gid: u32,
}

impl Identity {
    fn pick(support: &HostSupport, config: &LocalConfig) -> Result<Identity, LocalError> {
        if support.root {
            let lease = crate::ids::lease(config.first_uid, config.uid_count)?;
            let uid = lease.uid();
            Ok(Identity {
                lease: Some(lease),
                uid,
                gid: uid,
            })
        } else {
            Ok(Identity {
                lease: None,
                uid: sys::euid(),
                gid: sys::egid(),
            })
        }
    }
}

/// The interpreter of `template` on this host, or why sandboxes cannot start here.
fn interpreter_for(support: &HostSupport, template: Template) -> Result<PathBuf, LocalError> {
    if let Err(why) = &support.namespaces {
        return Err(LocalError::Unsupported(format!(
            "this host cannot isolate sandboxes: {why}"
        )));
    }
    support.interpreter(template).map(Path::to_path_buf).ok_or_else(|| {
        LocalError::Unsupported(format!(
            "no {template} interpreter was found on this host (install {}), so {template} sandboxes are unavailable",
            match template {
                Template::Python => "python3",
                Template::Node => "nodejs",
            },
        ))
    })
}

/// Creates the sandbox's private host directory (removed when the returned guard is dropped,
/// unless kept) and its layout, owned by the sandbox where it differs from us.
fn create_dir(
    config: &LocalConfig,
    spec: &SandboxSpec,
    identity: &Identity,
) -> Result<(tempfile::TempDir, Layout), LocalError> {
    use std::os::unix::fs::PermissionsExt;
    let base = config.temp_dir.clone().unwrap_or_else(std::env::temp_dir);
    let dir = tempfile::Builder::new()
        .prefix(&format!("msbw-local-{}-{}-", std::process::id(), spec.id.name))
        .tempdir_in(&base)
        .context(|| format!("creating the sandbox directory in {}", base.display()))?;
    // The sandbox's own uid must be able to reach its directories (not list them).
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711))
        .context(|| "setting the sandbox directory's permissions".into())?;
    let layout = Layout::new(dir.path());
    layout
        .create(identity.lease.as_ref().map(|_| (identity.uid, identity.gid)))
        .context(|| format!("creating the sandbox directories in {}", dir.path().display()))?;
    Ok((dir, layout))
}

/// The sandbox's cgroups, where the host has them (problems are logged, not fatal).
fn create_cgroups(host: &Host, spec: &SandboxSpec, config: &LocalConfig) -> Option<SandboxCgroups> {
    let max_tasks = config.max_processes + crate::launcher::EXTRA_TASKS;
    let limits = Limits::new(spec.memory_mb, max_tasks, spec.cpus);
    let (cgroups, notes) = SandboxCgroups::create(&host.cgroups, limits);
    for note in notes {
        tracing::warn!(sandbox = %spec.id, "{note}");
    }
    cgroups
}

/// The environment of every program in the sandbox: a fixed base and the spec's variables.
fn environment(config: &LocalConfig, spec: &SandboxSpec) -> Vec<(String, String)> {
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
    env
}

/// The Landlock ruleset: writable are `/tmp`, the work directory, `/dev/shm` and the writable
/// volumes.
fn landlock_plan(
    support: &HostSupport,
    config: &LocalConfig,
    volumes: &[Volume],
) -> Option<crate::child::LandlockPlan> {
    let mut writable: Vec<PathBuf> = vec!["/tmp".into(), config.work_dir.clone().into(), "/dev/shm".into()];
    writable.extend(
        volumes
            .iter()
            .filter(|v| !v.mapping.read_only)
            .map(|v| PathBuf::from(&v.mapping.container_path)),
    );
    let writable_refs: Vec<&Path> = writable.iter().map(PathBuf::as_path).collect();
    support
        .landlock_abi
        .and_then(|abi| crate::landlock::plan(abi, &writable_refs, config.network))
}

impl Sandbox {
    /// Starts a sandbox for `spec` (already validated) and waits until its interpreter is ready.
    pub(crate) async fn start(ctx: StartContext<'_>, spec: &SandboxSpec) -> Result<Sandbox, LocalError> {
        let deadline = Instant::now() + spec.start_timeout;
        let StartContext { config, host, spawner } = ctx;
        let started_at = Instant::now();
        let support = &host.support;
        let interpreter = interpreter_for(support, spec.template)?;
        let mut volumes = open_volumes(&spec.volumes, config)?;
        let identity = Identity::pick(support, config)?;
        let (dir, layout) = create_dir(config, spec, &identity)?;
        let cgroups = create_cgroups(host, spec, config);
        if support.root {
            make_trees(&mut volumes, identity.uid, identity.gid)?;
        }
        let landlock = landlock_plan(support, config, &volumes);
        let mounts = mount_plan(&layout, volumes, config, spec.memory_mb.clamp(16, 512) / 4)?;
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
        let devnull = sys::dev_null().context(|| "opening /dev/null".into())?;
        let work_dir = sys::cstring(&config.work_dir).context(|| "the work directory".into())?;
        let holder_identity = HolderIdentity {
            uid: identity.uid,
            gid: identity.gid,
            share_network: config.network,
        };
        let Holder {
            pid: holder,
            namespaces,
            lifeline,
        } = crate::holder::start(
            spawner,
            &layout.root,
            mounts,
            holder_identity,
            deadline,
            spec.start_timeout,
        )
        .await?;
        // From here on the sandbox owns the holder: dropping it kills the holder.
        let sandbox = Sandbox {
            id: spec.id.clone(),
            core: Arc::new(Core {
                template: spec.template,
                interpreter,
                driver: match spec.template {
                    Template::Python => DRIVER_PY,
                    Template::Node => DRIVER_JS,
                },
                env: environment(config, spec),
                work_dir,
                namespaces,
                cgroup_procs,
                devnull,
                memory_mb: spec.memory_mb,
                max_processes: config.max_processes,
                process_limit: support.process_limit,
                host_uid: identity.uid,
                landlock,
                drop_groups: support.root,
                last_cap: sys::last_capability(),
            }),
            holder,
            lifeline: Mutex::new(Some(lifeline)),
            interpreter: tokio::sync::Mutex::new(None),
            registry: Registry::default(),
            resources: Mutex::new(Some(Resources {
                launcher: None,
                dir: Some(dir.keep()),
                cgroups,
                _uid: identity.lease,
            })),
            layout,
            stopped: AtomicBool::new(false),
            started: std::time::Instant::now(),
            cpu_sample: Mutex::new(None),
            start_timeout: spec.start_timeout,
            max_output: config.max_output_bytes,
            abandoned: AtomicBool::new(false),
        };
        let remaining = deadline.saturating_duration_since(Instant::now());
        // The launcher joins the cgroups while the interpreter starts (the two joins share one
        // RCU grace period on cgroup v1).
        let (interpreter, launcher) = tokio::join!(
            Interpreter::start(&sandbox.core, sandbox.registry.clone(), remaining),
            Launcher::start(spawner, &sandbox.core, deadline),
        );
        match launcher {
            Ok(launcher) => {
                if let Some(resources) = lock(&sandbox.resources).as_mut() {
                    resources.launcher = Some(launcher);
                }
            }
            Err(e) => tracing::warn!(sandbox = %spec.id, "commands start without a launcher: {e}"),
        }
        tracing::debug!(sandbox = %spec.id, took = ?started_at.elapsed(), "sandbox started");
        match interpreter {
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
            let mut resources = resources;
            let _ = tokio::task::spawn_blocking(move || {
                let _ = sys::wait_blocking(holder);
                resources.release();
            })
            .await;
        }
    }

    /// Runs code in the sandbox's interpreter; with a sink, its output is also sent there as it
    /// arrives.
    pub(crate) async fn run_code(
        &self,
        request: &CodeRequest,
        sink: Option<ChunkSink>,
    ) -> Result<ExecOutput, LocalError> {
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
        let mut held = Held {
            slot: self.interpreter.lock().await,
            abandoned: &self.abandoned,
        };
        let slot: &mut Option<Interpreter> = &mut held.slot;
        self.ensure_running()?;
        let mut capture = Capture::new(self.max_output).with_sink(sink);
        let mut abandoned = self.abandoned.swap(false, Ordering::SeqCst);
        if let Some(old) = slot.take_if(|i| i.busy()) {
            old.kill().await;
            abandoned = true;
        }
        if abandoned {
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

    /// Runs a command (no shell) in the sandbox; with a sink, its output is also sent there as
    /// it arrives. Dropping the future kills the command and everything it started.
    pub(crate) async fn run_command(
        &self,
        request: &CommandRequest,
        sink: Option<ChunkSink>,
    ) -> Result<ExecOutput, LocalError> {
        self.run_command_io(request, RawIo::default(), sink)
            .await
            .map(|(out, _)| out)
    }

    /// Runs a command with raw standard input and/or raw standard output (the file methods:
    /// bytes, not text, and more than the output cap). With `max_stdout`, stdout is read raw up
    /// to one byte more than the bound (so an overrun shows) and returned apart.
    pub(crate) async fn run_command_io(
        &self,
        request: &CommandRequest,
        mut raw: RawIo,
        sink: Option<ChunkSink>,
    ) -> Result<(ExecOutput, Option<Vec<u8>>), LocalError> {
        self.ensure_running()?;
        let deadline = Instant::now() + request.timeout;
        let pipe = || sys::pipe().context(|| "creating a pipe".into());
        let (out_read, out_write) = pipe()?;
        let (err_read, err_write) = pipe()?;
        let (report_read, report_write) = pipe()?;
        let stdin = raw.input.as_ref().map(|_| pipe()).transpose()?;
        let stdout = raw.max_stdout.map(|_| pipe()).transpose()?;
        let plan = self.core.exec_plan(
            Program::Command {
                program: &request.command,
                args: &request.args,
                timeout: request.timeout,
            },
            [
                stdin.as_ref().map_or(self.core.devnull(), |(r, _)| r.as_raw_fd()),
                stdout.as_ref().map_or(out_write.as_raw_fd(), |(_, w)| w.as_raw_fd()),
                err_write.as_raw_fd(),
            ],
            None,
            report_write.as_raw_fd(),
        )?;
        let (stdin_read, stdin_write) = stdin.unzip();
        let (stdout_read, stdout_write) = stdout.unzip();
        let mut chain = match self.ask_launcher(&plan)? {
            Some(go) => {
                // The launcher has its own copies of the descriptors now.
                drop((plan, out_write, err_write, report_write, stdin_read, stdout_write));
                Chain::launched(report_read, go, self.registry.clone()).await?
            }
            None => {
                let keep_alive = (
                    (Arc::clone(&self.core), out_write, err_write, report_write),
                    (stdin_read, stdout_write),
                );
                Chain::spawn(plan, report_read, self.registry.clone(), keep_alive).await?
            }
        };
        let writer = stdin_write.zip(raw.input.take()).map(|(fd, data)| {
            tokio::task::spawn_blocking(move || {
                // The command may stop reading (a refused path): a broken pipe is its answer.
                let _ = std::io::Write::write_all(&mut std::fs::File::from(fd), &data);
            })
        });
        let reader = stdout_read.zip(raw.max_stdout).map(|(fd, max)| {
            tokio::task::spawn_blocking(move || {
                let mut buf = Vec::new();
                let limit = u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1);
                let _ = std::io::Read::read_to_end(&mut std::io::Read::take(std::fs::File::from(fd), limit), &mut buf);
                buf
            })
        });
        let out = Receiver::from_owned_fd(out_read).context(|| "watching stdout".into())?;
        let err = Receiver::from_owned_fd(err_read).context(|| "watching stderr".into())?;
        let mut capture = Capture::new(self.max_output).with_sink(sink);
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
        if let Some(writer) = writer {
            let _ = writer.await;
        }
        let raw_stdout = match reader {
            Some(reader) => Some(
                reader
                    .await
                    .map_err(|e| LocalError::io("reading stdout", io::Error::other(e.to_string())))?,
            ),
            None => None,
        };
        Ok((output, raw_stdout))
    }

    /// Sends the command `plan` describes to the sandbox's launcher; the write end of its
    /// go-ahead pipe, or `None` when the command takes the direct path (no launcher, a command
    /// too big for a request, a full socket, a launcher that died).
    fn ask_launcher(&self, plan: &ExecPlan) -> Result<Option<OwnedFd>, LocalError> {
        let Some(request) = crate::launcher::encode(plan) else {
            return Ok(None);
        };
        let (go_read, go_write) = sys::pipe().context(|| "creating a pipe".into())?;
        let [stdin, stdout, stderr] = plan.stdio;
        let fds = [plan.report_fd, go_read.as_raw_fd(), stdin, stdout, stderr];
        let mut resources = lock(&self.resources);
        let Some(launcher) = resources.as_mut().and_then(|r| r.launcher.as_ref()) else {
            return Ok(None);
        };
        match launcher.send(&request, fds) {
            Ok(()) => Ok(Some(go_write)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => {
                tracing::warn!(sandbox = %self.id, "the launcher is gone ({e}); commands start directly");
                let gone = resources.as_mut().and_then(|r| r.launcher.take());
                drop(resources);
                crate::cleanup::in_background(move || drop(gone));
                Ok(None)
            }
        }
    }

    /// CPU (percent of one CPU since the last call, or since the start), memory (MiB) and disk
    /// (bytes) in use.
    pub(crate) fn usage(&self, table: &ProcTable) -> (f32, u64, Option<u64>) {
        let chains: Vec<Pid> = crate::exec::lock_registry(&self.registry).iter().copied().collect();
        let launcher = lock(&self.resources)
            .as_ref()
            .and_then(|r| r.launcher.as_ref())
            .map(Launcher::pid);
        let (ticks, pages) = table.usage(self.holder, &chains, launcher);
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

/// Raw standard streams of a command (see [`Sandbox::run_command_io`]).
#[derive(Debug, Default)]
pub(crate) struct RawIo {
    /// Bytes for its standard input (otherwise `/dev/null`).
    pub(crate) input: Option<Vec<u8>>,
    /// Read its standard output raw, up to this many bytes (plus one).
    pub(crate) max_stdout: Option<usize>,
}
