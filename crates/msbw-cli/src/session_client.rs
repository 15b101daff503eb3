//! Sessions that outlive one `msbw` command: `msbw exec --session`, `msbw run --session`,
//! `msbw session` and `msbw cp` talk to a server that owns the sessions.
//!
//! The server is the one the configuration names (`MSB_BACKEND=microsandbox`, or a server URL
//! other than the default: a `msbw serve` or a microsandbox server), else the per-user session
//! server ([`crate::session_server`]), started on demand. Either way the CLI speaks the
//! microsandbox protocol through the HTTP backend, to a sandbox named after the session (in
//! `MSB_NAMESPACE`): the server keeps it, and its REPL state, between commands, and applies
//! the limits (`MSB_MAX_SESSIONS`, ...) to every `msbw` of the user.

use std::time::{Duration, Instant};

use microsandbox_wrapper::backend::{ExecEvent, ExecOutput, ExecStream, SandboxSpec};
use microsandbox_wrapper::{
    BackendConfig, BackendError, BackendKind, Call, ConfigKey, ErrorKind, HttpBackend, HttpBackendConfig, ListFilter,
    SandboxBackend, SandboxFlavor, SandboxId, SandboxInfo, SessionOptions, Template, WrapperConfig, WrapperError,
};
use msbw_protocol::stream::ChunkStream;

use crate::cli::Global;
use crate::exec::{Ended, signalled};
use crate::session_server;

/// A connection to the server that owns the sessions.
pub(crate) struct Remote {
    backend: HttpBackend,
    namespace: String,
    /// The server's URL for error messages (`None` for the per-user server).
    url: Option<String>,
    config: WrapperConfig,
}

/// Whether the configuration names a server of its own rather than the per-user one.
fn names_a_server(config: &WrapperConfig, global: &Global) -> bool {
    match config.backend {
        BackendKind::Microsandbox => true,
        BackendKind::Local => false,
        _ => global.server_url.is_some() || config.server_url != ConfigKey::ServerUrl.default_value(),
    }
}

impl Remote {
    /// Connects to the configured server, or to the per-user one (starting it if none runs and
    /// `start`; else `None` when none runs: it has no sessions).
    pub(crate) async fn connect(
        config: WrapperConfig,
        global: &Global,
        start: bool,
    ) -> Result<Option<Remote>, WrapperError> {
        let invalid = |e: microsandbox_wrapper::ConfigError| WrapperError::Configuration { key: None, source: e };
        let mut http = HttpBackendConfig::from_wrapper(&config).map_err(invalid)?;
        let url = if names_a_server(&config, global) {
            Some(microsandbox_wrapper::config::redact_url(&config.server_url))
        } else {
            let owned = global.clone();
            let timeout = config.session_timeout;
            let socket = tokio::task::spawn_blocking(move || session_server::ensure(&owned, timeout, start))
                .await
                .map_err(|e| WrapperError::Internal {
                    message: format!("finding the session server failed: {e}"),
                    source: None,
                })??;
            let Some(socket) = socket else {
                return Ok(None);
            };
            http.server_url = "http://localhost".into();
            http.unix_socket = Some(socket);
            http.api_key = None;
            None
        };
        let backend = HttpBackend::new(http).map_err(|e| WrapperError::from_backend_call(e, false, "", None, None))?;
        Ok(Some(Remote {
            backend,
            namespace: config.namespace.clone(),
            url,
            config,
        }))
    }

    fn error(&self, e: BackendError, starting: bool, session: &str, command: Option<&str>) -> WrapperError {
        WrapperError::from_backend_call(e, starting, session, command, self.url.as_deref())
    }

    /// The sandbox of a session; the id must be a valid sandbox name.
    pub(crate) fn sandbox(&self, session: &str) -> Result<SandboxId, WrapperError> {
        if !microsandbox_wrapper::backend::is_valid_name(session) {
            return Err(WrapperError::InvalidInput {
                what: "session id".into(),
                message: format!(
                    "{session:?}: a persistent session's id is its sandbox's name: letters, digits, '-' and '_'"
                ),
            });
        }
        Ok(SandboxId {
            namespace: self.namespace.clone(),
            name: session.to_owned(),
        })
    }

    /// The running sessions (sandboxes of the namespace), with their metrics.
    pub(crate) async fn list(&self) -> Result<Vec<SandboxInfo>, WrapperError> {
        self.backend
            .list(&ListFilter::namespace(self.namespace.clone()))
            .await
            .map_err(|e| self.error(e, false, "", None))
    }

    /// Whether the session is running.
    async fn running(&self, id: &SandboxId) -> Result<bool, WrapperError> {
        Ok(self.list().await?.iter().any(|s| s.id == *id))
    }

    /// Starts the session's sandbox unless it runs; says whether this call started it.
    async fn ensure_started(
        &self,
        id: &SandboxId,
        template: Template,
        flavor: Option<SandboxFlavor>,
    ) -> Result<bool, WrapperError> {
        if self.running(id).await? {
            return Ok(false);
        }
        let flavor = flavor.unwrap_or(self.config.default_flavor);
        let mut spec = SandboxSpec::new(id.clone(), template);
        spec.memory_mb = flavor.memory_mb();
        spec.cpus = flavor.cpus();
        spec.start_timeout = self.config.sandbox_start_timeout;
        match self.backend.start(&spec).await {
            Ok(()) => Ok(true),
            // Another msbw started it in the meantime.
            Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(self.error(e, true, &id.name, None)),
        }
    }

    /// Stops a session; `false` if it was not running.
    pub(crate) async fn stop(&self, session: &str) -> Result<bool, WrapperError> {
        let id = self.sandbox(session)?;
        if !self.running(&id).await? {
            return Ok(false);
        }
        match self.backend.stop(&id).await {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
            Err(e) => Err(self.error(e, false, session, None)),
        }
    }

    /// The running sandbox of an existing session (never starts one).
    async fn existing(&self, session: &str) -> Result<SandboxId, WrapperError> {
        let id = self.sandbox(session)?;
        if !self.running(&id).await? {
            return Err(WrapperError::SessionNotFound {
                session_id: session.to_owned(),
            });
        }
        Ok(id)
    }

    /// A file call's error: the file's own failures as [`WrapperError::File`].
    fn file_error(&self, e: BackendError, session: &str, path: &str, operation: &str) -> WrapperError {
        match e.file_kind() {
            Some(kind) => WrapperError::File {
                session_id: session.to_owned(),
                path: path.to_owned(),
                kind,
                source: Box::new(e),
            },
            None => self.error(e, false, session, Some(operation)),
        }
    }

    /// Writes a file in an existing session.
    pub(crate) async fn write_file(&self, session: &str, path: &str, data: &[u8]) -> Result<(), WrapperError> {
        let id = self.existing(session).await?;
        self.backend
            .write_file(&id, path, data)
            .await
            .map_err(|e| self.file_error(e, session, path, "write_file"))
    }

    /// Reads a file of an existing session, at most `max_bytes`.
    pub(crate) async fn read_file(&self, session: &str, path: &str, max_bytes: u64) -> Result<Vec<u8>, WrapperError> {
        let id = self.existing(session).await?;
        self.backend
            .read_file(&id, path, max_bytes)
            .await
            .map_err(|e| self.file_error(e, session, path, "read_file"))
    }

    /// Drains an execution's stream, handing each chunk to `on_chunk` as it comes (the server
    /// streams when it announces it; otherwise the chunks come at the end), and returns its
    /// result.
    async fn follow(
        &self,
        mut stream: ExecStream,
        on_chunk: &mut (dyn FnMut(ChunkStream, &[u8]) + Send),
    ) -> Result<ExecOutput, BackendError> {
        use futures_util::StreamExt;
        while let Some(event) = stream.next().await {
            match event? {
                ExecEvent::Stdout(b) => on_chunk(ChunkStream::Stdout, &b),
                ExecEvent::Stderr(b) => on_chunk(ChunkStream::Stderr, &b),
                ExecEvent::Finished(out) => return Ok(out),
                _ => {}
            }
        }
        Err(BackendError::new(
            ErrorKind::Protocol,
            microsandbox_wrapper::backend::Operation::RunCode,
            "the execution's event stream ended without a result",
        ))
    }

    fn timeout(&self, asked: Option<Duration>) -> Duration {
        asked.unwrap_or(self.config.default_execution_timeout)
    }
}

/// Runs `f` on a connection (`None` when no per-user server runs and `start` is false); a signal
/// abandons the call (the session keeps running).
async fn connected<T>(
    config: WrapperConfig,
    global: &Global,
    start: bool,
    f: impl AsyncFnOnce(Option<&Remote>) -> Result<T, WrapperError>,
) -> Ended<T> {
    let signal = signalled();
    tokio::pin!(signal);
    tokio::select! {
        r = async {
            let remote = Remote::connect(config, global, start).await?;
            f(remote.as_ref()).await
        } => Ended::Done(r),
        code = &mut signal => {
            if !global.quiet {
                crate::out::errln!("msbw: interrupted (the session keeps running; `msbw session stop ID` ends it)");
            }
            Ended::Signalled(code)
        }
    }
}

/// A call's session, its sandbox started if it was not running.
struct Opened {
    session: String,
    id: SandboxId,
    began: Instant,
    created: bool,
}

impl Opened {
    async fn new(remote: &Remote, options: &SessionOptions, template: Template) -> Result<Opened, WrapperError> {
        let session = options.session_id.clone().unwrap_or_default();
        let id = remote.sandbox(&session)?;
        let began = Instant::now();
        let created = remote.ensure_started(&id, template, options.flavor).await?;
        Ok(Opened {
            session,
            id,
            began,
            created,
        })
    }
}

/// `msbw exec --session ID` and `msbw run --session ID`: the call runs in the server's session,
/// created if needed; its output goes to `on_chunk` as it comes.
pub(crate) async fn execute<C: Call>(
    config: WrapperConfig,
    global: &Global,
    call: C,
    on_chunk: &mut (dyn FnMut(ChunkStream, &[u8]) + Send),
) -> Ended<C::Result> {
    connected(config, global, true, async |remote| {
        let remote = remote.ok_or_else(not_started)?;
        let work = call
            .work(remote.timeout(call.options().timeout))
            .map_err(WrapperError::from)?;
        let opened = Opened::new(remote, call.options(), call.template()).await?;
        let out = async {
            let stream = work.stream(&remote.backend, &opened.id).await?;
            remote.follow(stream, on_chunk).await
        }
        .await
        .map_err(|e| remote.error(e, false, &opened.session, call.program()))?;
        let mut ran = microsandbox_wrapper::manager::Ran::new(out, opened.session, opened.id);
        ran.created = opened.created;
        ran.elapsed = opened.began.elapsed();
        Ok(call.result(ran))
    })
    .await
}

fn not_started() -> WrapperError {
    WrapperError::Internal {
        message: "the session server is not running".into(),
        source: None,
    }
}

/// Runs `f` on a connection for `msbw session` and `msbw cp`: `None` when no per-user server
/// runs (none is started for these: it would have no sessions).
pub(crate) async fn with_remote<T>(
    config: WrapperConfig,
    global: &Global,
    f: impl AsyncFnOnce(Option<&Remote>) -> Result<T, WrapperError>,
) -> Ended<T> {
    connected(config, global, false, f).await
}
