//! Starting a sandbox, with the defences the real server 0.2.6 needs
//! (`shared/spec/microsandbox-server-protocol.md`, "Behaviour a client must defend against"):
//!
//! 1. After the server says "started", wait for the agent: poll the harmless forwarded call
//!    `sandbox.command.run {command: "true"}` with backoff until it answers (any exit code) or
//!    the start timeout passes. (The image must have a `true` program, as every image with a
//!    shell does.)
//! 2. "timed out waiting" and "couldn't verify" answers (anything but the exact success
//!    sentence) mean "unknown": poll the listing until it says `running: true`.
//! 3. Never start a running sandbox (the server would remap its agent's port and break it):
//!    the listing is checked first, and a running one is [`ErrorKind::AlreadyExists`].
//! 4. Starts in one namespace run one at a time within this backend (an async mutex per
//!    namespace), because the server rewrites the namespace's configuration file without a
//!    lock. The lock covers the check of defence 3 and the start call; the wait for the agent
//!    runs outside it.
//! 5. Every field is validated before anything is sent: [`SandboxSpec::validate`], the image,
//!    read-only volumes against the server's abilities, duplicate guest paths. An invalid
//!    field would be saved by the server before it is checked and break the namespace.
//! 6. A start with `image` replaces the sandbox's whole stored entry, so every start sends the
//!    complete configuration (image, memory, cpus, volumes, envs): there is nothing to merge.
//! 7. A start that failed, timed out or never became ready after it may have reached the
//!    server is followed by `sandbox.stop`, which releases the stored entry and the port.
//!
//! Defences 8 and 9 live in [`crate::registry`], [`crate::listing`] and [`crate::exec`].

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use msbw_backend::{BackendError, ErrorKind, Operation, SandboxId, SandboxSpec};
use tokio::time::Instant;

use crate::HttpBackend;
use crate::client::Retry;
use crate::errors::{CallError, Context};
use crate::listing::SandboxState;
use msbw_protocol::method;
use msbw_protocol::params::{CommandParams, Seconds, StartConfig, StartParams, StopParams};
use msbw_protocol::results::StartAnswer;

/// The timeout sent with each readiness probe, in seconds.
const PROBE_SECONDS: u64 = 5;
/// The listing is asked every this many failed probes whether the sandbox died meanwhile.
const PROBES_PER_LISTING: u32 = 5;

/// One async mutex per server and namespace (defence 4), shared by every backend of this
/// process: two wrappers with backends of their own that start sandboxes in one namespace of one
/// server are serialised too.
#[derive(Debug)]
pub(crate) struct NamespaceLocks {
    server: String,
}

/// A lock per (server, namespace).
type LockTable = HashMap<(String, String), Arc<tokio::sync::Mutex<()>>>;

/// The locks of every (server, namespace) this process has started sandboxes in.
static LOCKS: std::sync::OnceLock<Mutex<LockTable>> = std::sync::OnceLock::new();

impl NamespaceLocks {
    /// The locks of the server at `server_url`.
    pub(crate) fn new(server_url: &str) -> Self {
        NamespaceLocks {
            server: server_url.trim_end_matches('/').to_owned(),
        }
    }

    /// The lock of `namespace`, created on first use.
    pub(crate) fn of(&self, namespace: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = LOCKS
            .get_or_init(Mutex::default)
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        Arc::clone(locks.entry((self.server.clone(), namespace.to_owned())).or_default())
    }
}

/// Whether an image is a host directory rather than an OCI reference.
fn is_directory_image(image: &str) -> bool {
    image.starts_with('/') || image.starts_with('.')
}

impl HttpBackend {
    /// `start`, with defences 1 to 7.
    pub(crate) async fn start_sandbox(&self, spec: &SandboxSpec) -> Result<(), BackendError> {
        let id = &spec.id;
        let cx = self.cx(Operation::Start, Some(id), method::START);
        let params = self.prepare_start(spec, &cx).await?;
        let budget = spec.start_timeout.min(self.config.start_timeout);
        let deadline = Instant::now() + budget;

        let answer = {
            let lock = self.starts.of(&id.namespace);
            let Ok(_guard) = tokio::time::timeout_at(deadline, lock.lock()).await else {
                return Err(cx.error(
                    ErrorKind::Timeout,
                    format!(
                        "waited {budget:?} for other starts in namespace {:?} to finish (starts in one namespace \
                         run one at a time, because the server loses concurrent ones)",
                        id.namespace
                    ),
                ));
            };
            match self.sandbox_state(id).await {
                Ok(SandboxState::Running) => {
                    return Err(cx.error(
                        ErrorKind::AlreadyExists,
                        format!(
                            "sandbox {id} is already running; starting it again would break it (the server remaps \
                             its agent's port), so use it or stop it first"
                        ),
                    ));
                }
                Ok(_) => {}
                Err(e) => {
                    let e = e.into_backend(&cx.with_method(method::METRICS));
                    return Err(cx.error(
                        e.kind(),
                        format!("cannot check whether {id} is already running: {}", e.message()),
                    ));
                }
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            match self
                .client
                .rpc(method::START, &params, remaining, Retry::UnsentOnly)
                .await
            {
                Ok(raw) if raw.get().starts_with('"') => {
                    let text: String = serde_json::from_str(raw.get()).unwrap_or_default();
                    StartAnswer::parse(&id.name, &text)
                }
                Ok(other) => {
                    self.release(id).await;
                    return Err(cx.error(
                        ErrorKind::Protocol,
                        format!(
                            "the server answered sandbox.start with {} instead of a message; the sandbox was \
                             stopped again",
                            self.scrub(other.get())
                        ),
                    ));
                }
                Err(e) => {
                    return Err(self
                        .failed_start(
                            id,
                            &cx,
                            e,
                            budget,
                            params
                                .config
                                .as_ref()
                                .and_then(|c| c.image.as_deref())
                                .unwrap_or_default(),
                        )
                        .await);
                }
            }
        };

        if let StartAnswer::Uncertain(text) = &answer
            && let Err(e) = self.confirm_running(id, &cx, deadline, budget, text).await
        {
            self.release(id).await;
            return Err(e);
        }
        if let Err(e) = self.wait_for_agent(id, &cx, deadline, budget).await {
            self.release(id).await;
            return Err(e);
        }
        self.registry.record_ready(id);
        Ok(())
    }

    /// Defence 5: everything is checked, and the wire params built, before anything is sent.
    async fn prepare_start(&self, spec: &SandboxSpec, cx: &Context<'_>) -> Result<StartParams, BackendError> {
        spec.validate().map_err(|e| self.tag(e, Some(&spec.id)))?;
        let invalid = |message: String| Err(cx.error(ErrorKind::InvalidInput, message));
        let image = spec
            .image
            .clone()
            .unwrap_or_else(|| self.config.image(spec.template).to_owned());
        if let Some(why) = crate::config::image_problem(&image) {
            return invalid(format!(
                "invalid image {image:?} for the {} template: {why} (check MSB_PYTHON_IMAGE / MSB_NODE_IMAGE)",
                spec.template
            ));
        }
        let mut guests = HashSet::new();
        for v in &spec.volumes {
            if v.host_path.contains(':') || v.container_path.contains(':') {
                return invalid(format!(
                    "volume {v}: the server splits volumes at the first ':', so paths may not contain one"
                ));
            }
            if !guests.insert(v.container_path.as_str()) {
                return invalid(format!("two volumes are mapped to {} in the sandbox", v.container_path));
            }
        }
        let read_only = spec.volumes.iter().find(|v| v.read_only);
        if let Some(v) = read_only
            && !self.read_only_supported().await
        {
            return Err(cx.error(
                ErrorKind::Unsupported,
                format!(
                    "the microsandbox server at {} cannot mount {} read-only (0.2.6 has no read-only volumes, and \
                     its health answer announces none), and mounting it writable would break the promise; drop the \
                     :ro suffix or use a backend that supports read-only volumes (local, or msbw serve)",
                    self.client.display_url(),
                    v.host_path
                ),
            ));
        }
        let volumes = spec
            .volumes
            .iter()
            .map(|v| {
                if v.read_only {
                    format!("{}:ro", v.to_server_string())
                } else {
                    v.to_server_string()
                }
            })
            .collect();
        let envs = spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let shell = is_directory_image(&image).then(|| self.config.directory_image_shell.clone());
        Ok(StartParams {
            sandbox: spec.id.name.clone(),
            namespace: spec.id.namespace.clone(),
            config: Some(StartConfig {
                image: Some(image),
                memory: Some(spec.memory_mb),
                cpus: Some(spec.cpus),
                volumes,
                envs,
                shell,
                ..StartConfig::default()
            }),
        })
    }

    /// The error of a failed start call; if the call may have reached the server's start
    /// handler, the sandbox is stopped to release its entry and port (defence 7).
    async fn failed_start(
        &self,
        id: &SandboxId,
        cx: &Context<'_>,
        error: CallError,
        budget: Duration,
        image: &str,
    ) -> BackendError {
        let refused_before_handling = error.not_sent()
            || error.is_auth()
            || error.is_foreign_server()
            || matches!(
                error,
                CallError::TooLarge { .. } | CallError::Server { status: 400..=499, .. }
            );
        if refused_before_handling {
            return error.into_backend(cx);
        }
        self.release(id).await;
        match error {
            CallError::Timeout { .. } => cx.error(
                ErrorKind::Timeout,
                format!(
                    "the server did not finish starting {id} within {budget:?} (pulling an image can take long); \
                     the start was abandoned and the sandbox stopped again"
                ),
            ),
            e if e.is_masked() => cx.error(
                ErrorKind::Internal,
                format!(
                    "the server could not start {id} and keeps the reason in its own log (HTTP 500, code 5002); \
                     common causes: the image {image:?} cannot be pulled, or a host-directory image has no shell. \
                     Its entry and port were released"
                ),
            ),
            e => {
                let e = e.into_backend(cx);
                cx.error(e.kind(), format!("{}; the sandbox was stopped again", e.message()))
                    .with_retryable(false)
            }
        }
    }

    /// Defence 2: an uncertain start counts only once the listing says it is running.
    async fn confirm_running(
        &self,
        id: &SandboxId,
        cx: &Context<'_>,
        deadline: Instant,
        budget: Duration,
        answer: &str,
    ) -> Result<(), BackendError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            if let Ok(SandboxState::Running) = self.sandbox_state(id).await {
                return Ok(());
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(cx.error(
                    ErrorKind::Timeout,
                    format!(
                        "the server answered {:?}, and {id} was not listed as running within {budget:?}; it was \
                         stopped again",
                        self.scrub(answer)
                    ),
                ));
            }
            tokio::time::sleep(self.poll_pause(attempt).min(deadline - now)).await;
        }
    }

    /// Defence 1: the sandbox's process runs, but its agent may not answer yet.
    async fn wait_for_agent(
        &self,
        id: &SandboxId,
        cx: &Context<'_>,
        deadline: Instant,
        budget: Duration,
    ) -> Result<(), BackendError> {
        let probe = CommandParams {
            sandbox: id.name.clone(),
            namespace: id.namespace.clone(),
            command: Some("true".into()),
            args: Vec::new(),
            timeout: Some(Seconds::whole(PROBE_SECONDS)),
        };
        let probe_limit = Duration::from_secs(PROBE_SECONDS) + self.config.exec_grace;
        let mut last = String::from("no probe was sent");
        let mut attempt = 0;
        loop {
            attempt += 1;
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(cx.error(
                    ErrorKind::Timeout,
                    format!(
                        "sandbox {id} started, but its agent did not answer within {budget:?} ({} probes, the last: \
                         {last}); it was stopped again",
                        attempt - 1
                    ),
                ));
            }
            match self
                .client
                .rpc(
                    method::COMMAND_RUN,
                    &probe,
                    remaining.min(probe_limit),
                    Retry::UnsentOnly,
                )
                .await
            {
                Ok(_) => return Ok(()),
                Err(e) if e.is_auth() || e.is_foreign_server() => {
                    return Err(e.into_backend(&cx.with_method(method::COMMAND_RUN)));
                }
                Err(e) if e.is_masked() => last = "HTTP 500, the server could not reach the agent".into(),
                Err(e) => {
                    last = e
                        .into_backend(&cx.with_method(method::COMMAND_RUN))
                        .message()
                        .to_owned()
                }
            }
            if attempt % PROBES_PER_LISTING == 0
                && let Ok(state @ (SandboxState::Stopped | SandboxState::Unknown)) = self.sandbox_state(id).await
            {
                let what = if state == SandboxState::Stopped {
                    "stopped"
                } else {
                    "vanished from the listing"
                };
                return Err(cx.error(
                    ErrorKind::Internal,
                    format!(
                        "sandbox {id} {what} before its agent answered; the reason is in the server's log and in \
                         the sandbox's log (NAMESPACE/.menv/log on the server)"
                    ),
                ));
            }
            let pause = self.poll_pause(attempt);
            tokio::time::sleep(pause.min(deadline.saturating_duration_since(Instant::now()))).await;
        }
    }

    /// Defence 7: stops a sandbox whose start failed, to release its stored entry and port.
    /// Its own failure is only logged: the start's error is what the caller needs.
    async fn release(&self, id: &SandboxId) {
        self.registry.forget(id);
        let params = StopParams {
            sandbox: id.name.clone(),
            namespace: id.namespace.clone(),
        };
        if let Err(e) = self
            .client
            .rpc(method::STOP, &params, self.config.request_timeout, Retry::Idempotent)
            .await
        {
            let e = e.into_backend(&self.cx(Operation::Stop, Some(id), method::STOP));
            tracing::debug!(sandbox = %id, error = %e, "releasing a failed start failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directory_images_are_recognised() {
        assert!(is_directory_image("/srv/rootfs"));
        assert!(is_directory_image("./rootfs"));
        assert!(!is_directory_image("microsandbox/python"));
        assert!(!is_directory_image("ghcr.io/x/y:1"));
    }

    #[tokio::test]
    async fn namespace_locks_are_shared_per_namespace_and_server_across_backends() {
        let locks = NamespaceLocks::new("http://locks-test:1");
        let a = locks.of("a");
        let _held = a.lock().await;
        assert!(locks.of("a").try_lock().is_err(), "the same namespace shares one lock");
        assert!(locks.of("b").try_lock().is_ok(), "another namespace is not blocked");
        let other_backend = NamespaceLocks::new("http://locks-test:1/");
        assert!(
            other_backend.of("a").try_lock().is_err(),
            "another backend of the same server shares it"
        );
        let other_server = NamespaceLocks::new("http://locks-test:2");
        assert!(other_server.of("a").try_lock().is_ok(), "another server is not blocked");
    }
}
