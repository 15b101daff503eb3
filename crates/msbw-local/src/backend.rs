//! [`LocalBackend`]: the [`SandboxBackend`] of isolated local process trees.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use async_trait::async_trait;
use msbw_backend::stream::ChunkSink;
use msbw_backend::{
    BackendError, Capabilities, CodeRequest, CommandRequest, ExecOutput, ExecStream, Health, ListFilter, Operation,
    SandboxBackend, SandboxId, SandboxInfo, SandboxSpec, Template, stream,
};
use msbw_config::WrapperConfig;

use crate::config::LocalConfig;
use crate::error::{BACKEND, LocalError};
use crate::metrics::ProcTable;
use crate::probe::{Host, HostSupport};
use crate::sandbox::{Sandbox, StartContext};
use crate::spawner::Spawner;

/// The local backend: each sandbox is a tree of processes on this machine, isolated with Linux
/// namespaces (user, mount, pid, ipc, uts, network), a read-only view of the host's system
/// directories, rlimits, cgroups and Landlock where available. It needs no server and no KVM,
/// but it shares the host's kernel: it is not a virtual machine (see `docs/backends.md`).
///
/// Dropping the backend kills every sandbox it started; so does the death of this process.
pub struct LocalBackend {
    inner: Arc<Inner>,
}

enum Slot {
    /// Being started (by the start call with this generation).
    Starting(u64),
    /// Running.
    Running(Arc<Sandbox>),
}

struct Inner {
    config: LocalConfig,
    host: OnceLock<Host>,
    spawner: Spawner,
    sandboxes: Mutex<HashMap<SandboxId, Slot>>,
    generation: AtomicU64,
}

impl Inner {
    fn sandboxes(&self) -> std::sync::MutexGuard<'_, HashMap<SandboxId, Slot>> {
        self.sandboxes.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn host(&self) -> &Host {
        self.host.get_or_init(|| {
            let base = self.config.temp_dir.clone().unwrap_or_else(std::env::temp_dir);
            crate::cleanup::sweep_in_background(base);
            crate::probe::probe(&self.config)
        })
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        let slots: Vec<Slot> = self.sandboxes().drain().map(|(_, s)| s).collect();
        for slot in slots {
            if let Slot::Running(sandbox) = slot {
                sandbox.kill_now();
            }
        }
    }
}

impl fmt::Debug for LocalBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalBackend")
            .field("config", &self.inner.config)
            .field("sandboxes", &self.inner.sandboxes().len())
            .finish()
    }
}

/// Removes a `Starting` slot if the start fails or its future is dropped.
struct Reservation<'a> {
    inner: &'a Inner,
    id: SandboxId,
    generation: u64,
    armed: bool,
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if self.armed {
            let mut map = self.inner.sandboxes();
            if matches!(map.get(&self.id), Some(Slot::Starting(g)) if *g == self.generation) {
                map.remove(&self.id);
            }
        }
    }
}

impl LocalBackend {
    /// A backend with these settings. Nothing is started until the first sandbox.
    pub fn new(config: LocalConfig) -> Self {
        LocalBackend {
            inner: Arc::new(Inner {
                config,
                host: OnceLock::new(),
                spawner: Spawner::default(),
                sandboxes: Mutex::new(HashMap::new()),
                generation: AtomicU64::new(0),
            }),
        }
    }

    /// A backend configured from the wrapper's configuration (`MSB_LOCAL_NETWORK`); an invalid
    /// setting is refused (see [`LocalConfig::from_config`]).
    pub fn from_config(config: &WrapperConfig) -> Result<Self, msbw_config::ConfigError> {
        LocalConfig::from_config(config).map(LocalBackend::new)
    }

    /// The backend's settings.
    pub fn config(&self) -> &LocalConfig {
        &self.inner.config
    }

    /// Finds out, by trying, what isolation this host offers with `config`: namespaces,
    /// Landlock, cgroups, the process limit, the interpreters (for `msbw doctor`).
    pub fn probe(config: &LocalConfig) -> HostSupport {
        crate::probe::probe(config).support
    }

    /// What this backend found when it first needed to know (see [`LocalBackend::probe`]).
    pub fn host_support(&self) -> &HostSupport {
        &self.inner.host().support
    }

    /// The running sandbox an execution goes to. One that is not running here was sent nothing:
    /// the manager may replace it and send the work to the replacement (it never re-sends what
    /// may have reached a sandbox).
    fn running(&self, id: &SandboxId, operation: Operation) -> Result<Arc<Sandbox>, BackendError> {
        self.get(id).map_err(|e| e.into_backend(operation, Some(id)).unsent())
    }

    /// The running sandbox `id`.
    pub(crate) fn sandbox(&self, id: &SandboxId) -> Result<Arc<Sandbox>, LocalError> {
        self.get(id)
    }

    fn get(&self, id: &SandboxId) -> Result<Arc<Sandbox>, LocalError> {
        match self.inner.sandboxes().get(id) {
            Some(Slot::Running(sandbox)) => Ok(Arc::clone(sandbox)),
            Some(Slot::Starting(_)) => Err(LocalError::NotFound(format!("sandbox {id} is still starting"))),
            None => Err(LocalError::NotFound(format!("no sandbox {id} is running"))),
        }
    }

    /// Runs `request` in the running sandbox `id`.
    async fn execute<R: Execution>(&self, id: &SandboxId, request: &R) -> Result<ExecOutput, BackendError> {
        let sandbox = self.running(id, R::OPERATION)?;
        request
            .run_in(&sandbox, None)
            .await
            .map_err(|e| e.into_backend(R::OPERATION, Some(id)))
    }

    /// Native streaming: the pipes are read as the program writes, and each read is a chunk.
    /// Dropping the stream drops the execution: the interpreter (or the command) is killed with
    /// everything it started, and the sandbox stays usable.
    fn execute_stream<R: Execution>(&self, id: &SandboxId, request: &R) -> Result<ExecStream, BackendError> {
        let sandbox = self.running(id, R::OPERATION)?;
        let (id, request) = (id.clone(), request.clone());
        Ok(stream::driven(move |sink| async move {
            request
                .run_in(&sandbox, Some(sink))
                .await
                .map_err(|e| e.into_backend(R::OPERATION, Some(&id)))
        }))
    }

    async fn start_sandbox(&self, spec: &SandboxSpec) -> Result<(), LocalError> {
        if let Some(problem) = self.inner.config.problems() {
            return Err(LocalError::Unsupported(format!(
                "invalid local backend settings: {problem}"
            )));
        }
        let generation = self.inner.generation.fetch_add(1, Ordering::Relaxed);
        {
            let mut map = self.inner.sandboxes();
            if map.contains_key(&spec.id) {
                return Err(LocalError::AlreadyExists);
            }
            map.insert(spec.id.clone(), Slot::Starting(generation));
        }
        let mut reservation = Reservation {
            inner: &self.inner,
            id: spec.id.clone(),
            generation,
            armed: true,
        };
        let ctx = StartContext {
            config: &self.inner.config,
            host: self.inner.host(),
            spawner: &self.inner.spawner,
        };
        let sandbox = Arc::new(Sandbox::start(ctx, spec).await?);
        let replaced = {
            let mut map = self.inner.sandboxes();
            match map.get(&spec.id) {
                Some(Slot::Starting(g)) if *g == generation => {
                    map.insert(spec.id.clone(), Slot::Running(Arc::clone(&sandbox)));
                    true
                }
                _ => false,
            }
        };
        reservation.armed = false;
        if replaced {
            Ok(())
        } else {
            sandbox.stop().await;
            Err(LocalError::NotFound(format!(
                "sandbox {} was stopped while it was starting",
                spec.id
            )))
        }
    }
}

/// What an execution runs: code in the sandbox's interpreter, or a command.
trait Execution: Clone + Send + Sync + 'static {
    /// The operation its errors are reported as.
    const OPERATION: Operation;

    /// Runs it in `sandbox`; with a sink, its output is also sent there as it arrives.
    fn run_in(
        &self,
        sandbox: &Sandbox,
        sink: Option<ChunkSink>,
    ) -> impl Future<Output = Result<ExecOutput, LocalError>> + Send;
}

impl Execution for CodeRequest {
    const OPERATION: Operation = Operation::RunCode;

    async fn run_in(&self, sandbox: &Sandbox, sink: Option<ChunkSink>) -> Result<ExecOutput, LocalError> {
        sandbox.run_code(self, sink).await
    }
}

impl Execution for CommandRequest {
    const OPERATION: Operation = Operation::RunCommand;

    async fn run_in(&self, sandbox: &Sandbox, sink: Option<ChunkSink>) -> Result<ExecOutput, LocalError> {
        sandbox.run_command(self, sink).await
    }
}

#[async_trait]
impl SandboxBackend for LocalBackend {
    fn name(&self) -> &'static str {
        BACKEND
    }

    /// The templates whose interpreter this host has, read-only volumes, streaming, concurrent
    /// commands, metrics and native files; network isolation unless the settings allow network.
    async fn capabilities(&self) -> Capabilities {
        let support = self.host_support();
        Capabilities::basic()
            .with_templates(
                Template::ALL
                    .into_iter()
                    .filter(|&t| support.interpreter(t).is_some())
                    .collect(),
            )
            .with_read_only_volumes(true)
            .with_streaming(true)
            .with_concurrent_commands(true)
            .with_metrics(true)
            .with_network_isolated(!self.inner.config.network)
            .with_native_files(true)
    }

    async fn health(&self) -> Result<Health, BackendError> {
        let support = self.host_support();
        match &support.namespaces {
            Ok(()) => Ok(Health {
                message: format!(
                    "local backend: {} sandbox(es) running; landlock {}, cgroups {}",
                    self.inner.sandboxes().len(),
                    support
                        .landlock_abi
                        .map_or("unavailable".to_owned(), |abi| format!("ABI {abi}")),
                    support.cgroup_version.map_or("unavailable".to_owned(), |v| format!(
                        "v{v} ({})",
                        support.cgroup_controllers.join(", ")
                    )),
                ),
            }),
            Err(why) => Err(
                LocalError::Unsupported(format!("this host cannot isolate sandboxes: {why}"))
                    .into_backend(Operation::Health, None),
            ),
        }
    }

    async fn start(&self, spec: &SandboxSpec) -> Result<(), BackendError> {
        spec.validate().map_err(|e| e.with_backend(BACKEND))?;
        self.start_sandbox(spec)
            .await
            .map_err(|e| e.into_backend(Operation::Start, Some(&spec.id)))
    }

    async fn stop(&self, id: &SandboxId) -> Result<(), BackendError> {
        let slot = self.inner.sandboxes().remove(id);
        if let Some(Slot::Running(sandbox)) = slot {
            sandbox.stop().await;
        }
        Ok(())
    }

    async fn run_code(&self, id: &SandboxId, request: &CodeRequest) -> Result<ExecOutput, BackendError> {
        self.execute(id, request).await
    }

    async fn run_command(&self, id: &SandboxId, request: &CommandRequest) -> Result<ExecOutput, BackendError> {
        self.execute(id, request).await
    }

    async fn run_code_stream(&self, id: &SandboxId, request: &CodeRequest) -> Result<ExecStream, BackendError> {
        self.execute_stream(id, request)
    }

    async fn run_command_stream(&self, id: &SandboxId, request: &CommandRequest) -> Result<ExecStream, BackendError> {
        self.execute_stream(id, request)
    }

    async fn list(&self, filter: &ListFilter) -> Result<Vec<SandboxInfo>, BackendError> {
        let running: Vec<Arc<Sandbox>> = self
            .inner
            .sandboxes()
            .iter()
            .filter(|(id, _)| filter.matches(id))
            .filter_map(|(_, slot)| match slot {
                Slot::Running(s) => Some(Arc::clone(s)),
                Slot::Starting(_) => None,
            })
            .collect();
        if running.is_empty() {
            return Ok(Vec::new());
        }
        tokio::task::spawn_blocking(move || {
            let table = ProcTable::read();
            let mut infos: Vec<SandboxInfo> = running
                .iter()
                .map(|sandbox| {
                    let (cpu, memory, disk) = sandbox.usage(&table);
                    SandboxInfo {
                        id: sandbox.id().clone(),
                        cpu_percent: Some(cpu),
                        memory_mb: Some(memory),
                        disk_bytes: disk,
                    }
                })
                .collect();
            infos.sort_by(|a, b| a.id.cmp(&b.id));
            infos
        })
        .await
        .map_err(|e| {
            LocalError::io("listing sandboxes", std::io::Error::other(e.to_string()))
                .into_backend(Operation::List, None)
        })
    }

    // ---- Files: done by the sandbox itself, bytes over pipes (see `files.rs`) ----

    async fn write_file(&self, id: &SandboxId, path: &str, data: &[u8]) -> Result<(), BackendError> {
        self.write_in(id, path, data).await
    }

    async fn read_file(&self, id: &SandboxId, path: &str, max_bytes: u64) -> Result<Vec<u8>, BackendError> {
        self.read_in(id, path, max_bytes).await
    }
}
