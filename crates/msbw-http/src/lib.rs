//! [`HttpBackend`]: the [`SandboxBackend`] that speaks the JSON-RPC protocol of the microsandbox
//! server 0.2.6 (`shared/spec/microsandbox-server-protocol.md`), and defends against the real
//! server's quirks.
//!
//! ```no_run
//! # async fn demo() -> Result<(), msbw_backend::BackendError> {
//! use msbw_backend::{CodeRequest, SandboxBackend, SandboxId, SandboxSpec, Template};
//! use msbw_http::HttpBackend;
//!
//! let config = msbw_config::WrapperConfig::default();
//! let backend = HttpBackend::from_config(&config)?;
//! let id = SandboxId::new("default", "demo")?;
//! backend.start(&SandboxSpec::new(id.clone(), Template::Python)).await?;
//! let request = CodeRequest {
//!     language: Template::Python,
//!     code: "print(6 * 7)".into(),
//!     timeout: std::time::Duration::from_secs(10),
//! };
//! let out = backend.run_code(&id, &request).await?;
//! assert_eq!(out.stdout, "42\n"); // verbatim; the manager trims
//! backend.stop(&id).await
//! # }
//! ```
//!
//! # Errors
//! Every error carries the backend name `microsandbox`, the operation and the sandbox, and never
//! the API key (URL credentials are redacted). The server's answers map as follows:
//!
//! | The server's answer | [`ErrorKind`] |
//! |---|---|
//! | connection refused, DNS failure, reset before sending | `Connect` (retryable) |
//! | connection broken after sending | `Connect` (retryable only for idempotent calls) |
//! | 502 / 503 / 504 from a gateway | `Connect` (retryable only for idempotent calls: a gateway may have relayed the request) |
//! | no answer within the limit | `Timeout`; for code and commands a [`ExecStatus::TimedOut`] result |
//! | 401 / 1001 | `Unauthorized`: invalid credentials (no key, or not an `msb_` key) |
//! | 401 / 1004 | `Unauthorized`: invalid or expired token |
//! | 403 / 3001 | `Unauthorized`: access denied to the namespace |
//! | 404 JSON-RPC -32601, 404 / 405 without body | `Protocol`: not a microsandbox server |
//! | 400 / 2001 (validation) | `Rejected`, with the server's message |
//! | 413 | `Rejected` (the 2 MiB request limit; requests over it are refused before sending as `InvalidInput`) |
//! | 400 / 415 / 422 plain text, JSON-RPC -32600 / -32700 | `Protocol`: client and server disagree |
//! | 500 / 5002 (masked) | decided with the registry and the listing (see below): `NotFound`, a timeout, a retry, or `Internal` |
//! | malformed JSON, an HTML page, an empty body, a result of the wrong shape | `Protocol` |
//!
//! # Masked errors
//! The server answers almost every failure with `500 / 5002 Internal server error`, the reason
//! only in its log. This backend decides with what it knows: a stop or a forwarded call on a
//! sandbox the listing does not show running is `NotFound`; a command that failed after its
//! timeout had passed timed out; a quick failure right after this backend started the sandbox
//! is an agent not up yet, and is retried; anything else is `Internal`, with a message that
//! says the reason is in the server's log, and the likely causes.
//!
//! # Retries
//! Only where safe: any call whose connection could not be established (it was not sent), and
//! the idempotent calls (health, listing, stop) after timeouts, broken connections and gateway
//! statuses. Exponential backoff with jitter, bounded attempts ([`RetryPolicy`]). Code, commands
//! and starts are never sent twice once they may have reached the server.
//!
//! # Read-only volumes
//! The server 0.2.6 cannot mount read-only. A server may announce that it can in its health
//! answer, `{"message": ..., "capabilities": {"read_only_volumes": true}}` (our `msbw serve`
//! does); then read-only mappings are sent as `host:guest:ro`. Otherwise
//! [`capabilities`](SandboxBackend::capabilities) says `read_only_volumes: false` and a start
//! with a read-only mapping fails with [`ErrorKind::Unsupported`]: it is never sent writable.
//! The announcement is cached, and refreshed by every [`health`](SandboxBackend::health).
//!
//! # Output
//! The REPL's `status` is always `success`, so how code ended is read from its output: the
//! agent's `Error: Execution timed out after N seconds` line is a timeout (the sandbox is left
//! [`Aftermath::Unusable`], since the agent does not interrupt the interpreter); a Python
//! traceback or final exception line (`NameError: ...`) on stderr, or Node's `Uncaught ...`
//! report (on stdout, where Node's REPL writes it) or an error line with a stack on stderr, is
//! [`ExecStatus::Raised`]; anything else, warnings on stderr included, completed. The full
//! rule is in the docs of the private module `output`.
//!
//! # Streaming
//! A server that announces the streaming extension (`capabilities.streaming`, as `msbw serve`
//! does) gets code and commands with the header `x-msbw-stream: ndjson`, and
//! [`run_code_stream`](SandboxBackend::run_code_stream) yields its chunk lines as they come
//! (see the private module `streaming` for the bounds). Otherwise the streams are the buffered
//! default: one chunk per stream after the end.
//!
//! # Starting
//! A start validates everything first, refuses a sandbox that is already running
//! ([`ErrorKind::AlreadyExists`]), runs one start per namespace at a time, confirms uncertain
//! answers with the listing, waits until the sandbox's agent answers, and stops the sandbox
//! again if any of that fails (the private module `start` lists the nine defences).

mod client;
mod config;
mod end_marker;
mod errors;
mod exec;
mod files;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod listing;
mod output;
mod registry;
mod retry;
mod start;
mod streaming;

use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use msbw_backend::stream::buffered;
#[cfg(doc)]
use msbw_backend::{Aftermath, ExecStatus};
use msbw_backend::{
    BackendError, Capabilities, CodeRequest, CommandRequest, ErrorKind, ExecOutput, ExecStream, Health, ListFilter,
    Operation, SandboxBackend, SandboxId, SandboxInfo, SandboxSpec,
};
use msbw_config::WrapperConfig;

pub use config::HttpBackendConfig;
pub use msbw_config::BackendConfig;
pub use retry::RetryPolicy;

use client::Client;
use errors::{BACKEND, Context};
use msbw_protocol::results::HealthAnswer;
use registry::Registry;
use start::NamespaceLocks;

/// The microsandbox server backend. One reqwest client per backend; clone-free, share it in an
/// `Arc`. `Debug` shows neither the API key nor URL credentials.
pub struct HttpBackend {
    config: HttpBackendConfig,
    client: Arc<Client>,
    registry: Registry,
    starts: NamespaceLocks,
    health: RwLock<Option<HealthAnswer>>,
}

impl HttpBackend {
    /// A backend with these settings. Fails with [`ErrorKind::InvalidInput`] if the URL is not
    /// an `http(s)://` URL or the key cannot be sent in a header.
    pub fn new(config: HttpBackendConfig) -> Result<Self, BackendError> {
        let client = Client::new(&config).map_err(|message| {
            BackendError::new(ErrorKind::InvalidInput, Operation::Health, message).with_backend(BACKEND)
        })?;
        Ok(HttpBackend {
            starts: NamespaceLocks::new(&config.server_url),
            config,
            client: Arc::new(client),
            registry: Registry::default(),
            health: RwLock::new(None),
        })
    }

    /// A backend for the wrapper configuration: its server URL, API key, start timeout and
    /// images (see [`HttpBackendConfig::from_wrapper`]), and this crate's defaults for the rest.
    /// Invalid settings are `InvalidInput`, naming the variable.
    pub fn from_config(config: &WrapperConfig) -> Result<Self, BackendError> {
        let config = HttpBackendConfig::from_wrapper(config).map_err(|e| {
            BackendError::new(ErrorKind::InvalidInput, Operation::Health, e.to_string()).with_backend(BACKEND)
        })?;
        HttpBackend::new(config)
    }

    /// The settings in use.
    pub fn config(&self) -> &HttpBackendConfig {
        &self.config
    }

    fn cx<'a>(&'a self, operation: Operation, sandbox: Option<&'a SandboxId>, method: &'a str) -> Context<'a> {
        Context {
            operation,
            sandbox,
            namespace: None,
            method,
            url: self.client.display_url(),
            key_sent: self.client.key_sent(),
        }
    }

    /// Tags an error from shared validation with this backend and the sandbox.
    fn tag(&self, error: BackendError, sandbox: Option<&SandboxId>) -> BackendError {
        let error = error.with_backend(BACKEND);
        match sandbox {
            Some(id) if error.sandbox().is_none() => error.with_sandbox(id),
            _ => error,
        }
    }

    fn scrub(&self, text: &str) -> String {
        self.client.scrub(text)
    }

    /// The pause before poll `attempt + 1`.
    fn poll_pause(&self, attempt: u32) -> Duration {
        retry::backoff(self.config.poll_interval, self.config.max_poll_interval, attempt)
    }

    async fn fetch_health(&self) -> Result<HealthAnswer, BackendError> {
        let cx = self.cx(Operation::Health, None, "GET /api/v1/health");
        let answer = self
            .client
            .health(self.config.request_timeout)
            .await
            .map_err(|e| e.into_backend(&cx))?;
        *self.health.write().unwrap_or_else(PoisonError::into_inner) = Some(answer.clone());
        Ok(answer)
    }

    /// Whether the server announced read-only volumes (asked once, then cached).
    async fn read_only_supported(&self) -> bool {
        self.announced(|h| h.read_only_volumes).await
    }

    /// An ability of the server's health answer (asked once, then cached).
    async fn announced(&self, ability: impl Fn(&HealthAnswer) -> bool) -> bool {
        let cached = self
            .health
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map(&ability);
        match cached {
            Some(yes) => yes,
            None => self.fetch_health().await.is_ok_and(|h| ability(&h)),
        }
    }
}

impl fmt::Debug for HttpBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpBackend")
            .field("config", &self.config)
            .field("started_sandboxes", &self.registry.len())
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl SandboxBackend for HttpBackend {
    fn name(&self) -> &'static str {
        BACKEND
    }

    /// Both templates, concurrent commands and metrics; no network isolation; streaming,
    /// native files and read-only volumes only if the server announces them (see the crate docs).
    async fn capabilities(&self) -> Capabilities {
        Capabilities::basic()
            .with_concurrent_commands(true)
            .with_metrics(true)
            .with_read_only_volumes(self.read_only_supported().await)
            .with_native_files(self.announced(|h| h.files).await)
            .with_streaming(self.announced(|h| h.streaming).await)
    }

    async fn health(&self) -> Result<Health, BackendError> {
        let answer = self.fetch_health().await?;
        Ok(Health {
            message: answer
                .message
                .map(|m| self.scrub(&m))
                .unwrap_or_else(|| "healthy (the server sent no message)".into()),
        })
    }

    async fn start(&self, spec: &SandboxSpec) -> Result<(), BackendError> {
        self.start_sandbox(spec).await
    }

    async fn stop(&self, id: &SandboxId) -> Result<(), BackendError> {
        self.stop_sandbox(id).await
    }

    async fn run_code(&self, id: &SandboxId, request: &CodeRequest) -> Result<ExecOutput, BackendError> {
        self.run_code_in(id, request).await
    }

    async fn run_command(&self, id: &SandboxId, request: &CommandRequest) -> Result<ExecOutput, BackendError> {
        self.run_command_in(id, request).await
    }

    // Streamed when the server announces streaming, else the buffered default.
    async fn run_code_stream(&self, id: &SandboxId, request: &CodeRequest) -> Result<ExecStream, BackendError> {
        if !self.announced(|h| h.streaming).await {
            return Ok(buffered(self.run_code_in(id, request).await?));
        }
        self.stream_code(id, request)
    }

    async fn run_command_stream(&self, id: &SandboxId, request: &CommandRequest) -> Result<ExecStream, BackendError> {
        if !self.announced(|h| h.streaming).await {
            return Ok(buffered(self.run_command_in(id, request).await?));
        }
        self.stream_command(id, request)
    }

    async fn list(&self, filter: &ListFilter) -> Result<Vec<SandboxInfo>, BackendError> {
        self.list_sandboxes(filter).await
    }

    // ---- Files: the server's `msbw.fs.*` extension when announced, else commands ----

    async fn write_file(&self, id: &SandboxId, path: &str, data: &[u8]) -> Result<(), BackendError> {
        self.write_file_in(id, path, data).await
    }

    async fn read_file(&self, id: &SandboxId, path: &str, max_bytes: u64) -> Result<Vec<u8>, BackendError> {
        self.read_file_in(id, path, max_bytes).await
    }

    async fn list_files(&self, id: &SandboxId, path: &str) -> Result<Vec<msbw_backend::FileEntry>, BackendError> {
        self.list_files_in(id, path).await
    }

    async fn remove_file(&self, id: &SandboxId, path: &str) -> Result<(), BackendError> {
        self.remove_file_in(id, path).await
    }
}
