//! The five methods, over the wrapper: each checks its params and the caller's access, then
//! answers in the real server's shapes.

use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::response::Response;
use microsandbox_wrapper::SessionSpec;
use microsandbox_wrapper::{
    Call, CallEvent, CodeCall, CommandCall, ConfigKey, ExecStatus, MicrosandboxWrapper, SandboxFlavor, SandboxId,
    SessionInfo, SessionOptions, Template, VolumeMapping,
};
use msbw_protocol::envelope::Request;
use msbw_protocol::params::{CommandParams, MetricsParams, ReplParams, Seconds, StartParams, StopParams};
use msbw_protocol::results::{
    CommandResult, MetricsResult, ReplResult, SandboxStatus, started_message, stopped_message,
};
use msbw_protocol::stream::{ChunkLine, ChunkStream, MAX_CHUNK_BYTES};
use msbw_protocol::{MAX_NAME_LEN, Output, Stream};
use serde::de::DeserializeOwned;
use serde_json::Number;

use crate::auth::Caller;
use crate::reply::{RestError, success, success_with_output};
use crate::server::AppState;

type Answer = Result<Response, RestError>;

/// Where a streamed answer's lines go (see `msbw_protocol::stream`).
pub(crate) type Lines = tokio::sync::mpsc::Sender<bytes::Bytes>;

/// Runs a call and returns its result. With `lines`, the call streams: each chunk goes there as a
/// line (split to fit a line), and a client that went away ends it, which cancels the execution.
async fn executed<C: Call>(
    wrapper: &MicrosandboxWrapper,
    call: C,
    lines: Option<&Lines>,
) -> Result<C::Result, RestError> {
    use futures_util::StreamExt;
    let Some(lines) = lines else {
        return wrapper.execute(call).await.map_err(|e| RestError::from_wrapper(&e));
    };
    let mut stream = wrapper.execute_stream(call).map_err(|e| RestError::from_wrapper(&e))?;
    while let Some(event) = stream.next().await {
        let (which, bytes) = match event.map_err(|e| RestError::from_wrapper(&e))? {
            CallEvent::Stdout(b) => (ChunkStream::Stdout, b),
            CallEvent::Stderr(b) => (ChunkStream::Stderr, b),
            CallEvent::Finished(r) => return Ok(r),
            _ => continue,
        };
        for piece in bytes.chunks(MAX_CHUNK_BYTES) {
            let line = bytes::Bytes::from(ChunkLine::new(which, piece).encode());
            if lines.send(line).await.is_err() {
                return Err(RestError::internal("the client went away"));
            }
        }
    }
    Err(RestError::internal("the output stream ended without a result"))
}

pub(crate) fn params<T: DeserializeOwned>(request: &Request) -> Result<T, RestError> {
    request.params().map_err(|e| RestError::validation(e.to_string()))
}

fn check_name(what: &str, name: &str) -> Result<(), RestError> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(RestError::validation(format!(
            "{what} name must be 1 to {MAX_NAME_LEN} characters long"
        )));
    }
    if !microsandbox_wrapper::backend::is_valid_name(name) {
        return Err(RestError::validation(format!(
            "{what} name can only contain alphanumeric characters, hyphens, or underscores"
        )));
    }
    Ok(())
}

/// Checks a call's sandbox and namespace names and the caller's access to the namespace.
pub(crate) fn check_target(caller: &Caller, namespace: &str, sandbox: &str) -> Result<(), RestError> {
    check_name("Sandbox", sandbox)?;
    check_name("Namespace", namespace)?;
    caller.check_access(namespace)
}

fn session_id(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}

/// The options of a call on a client's running sandbox: its session as it is, never created.
fn existing_session(session: &SessionInfo, timeout: Option<Seconds>) -> SessionOptions {
    SessionOptions {
        session_id: Some(session.session_id.clone()),
        flavor: Some(session.flavor),
        timeout: timeout_of(timeout),
        must_exist: true,
    }
}

fn timeout_of(seconds: Option<Seconds>) -> Option<Duration> {
    seconds
        .map(|s| s.0)
        .filter(|s| s.is_finite() && *s > 0.0)
        .map(|s| Duration::from_secs_f64(s.min(MicrosandboxWrapper::MAX_TIMEOUT.as_secs_f64())))
}

/// The template an image stands for: `microsandbox/python` or `microsandbox/node`, any tag or
/// registry, or the images configured for the templates.
fn template_of(state: &AppState, image: &str) -> Option<Template> {
    let settings = &state.wrapper.config().backend_settings;
    if image == settings.text(ConfigKey::PythonImage) {
        return Some(Template::Python);
    }
    if image == settings.text(ConfigKey::NodeImage) {
        return Some(Template::Node);
    }
    let without_digest = image.split('@').next().unwrap_or(image);
    let last = without_digest.rsplit('/').next().unwrap_or(without_digest);
    let repo_name = last.split(':').next().unwrap_or(last);
    let owner = without_digest.rsplit('/').nth(1);
    match (owner, repo_name) {
        (Some("microsandbox"), "python") => Some(Template::Python),
        (Some("microsandbox"), "node") => Some(Template::Node),
        _ => None,
    }
}

/// The smallest flavor with at least this memory and these CPUs.
fn flavor_for(memory: Option<u32>, cpus: Option<u8>, default: SandboxFlavor) -> Result<SandboxFlavor, RestError> {
    if memory.is_none() && cpus.is_none() {
        return Ok(default);
    }
    let memory = memory.unwrap_or(0);
    let cpus = cpus.unwrap_or(0);
    SandboxFlavor::ALL
        .iter()
        .copied()
        .find(|f| f.memory_mb() >= memory && f.cpus() >= cpus)
        .ok_or_else(|| {
            RestError::validation(format!(
                "memory {memory} MiB and {cpus} CPUs exceed the largest flavor (large = 4096 MiB, 4 CPUs)"
            ))
        })
}

/// The canonical form of `host_path` if it lies under one of the (canonical) `roots`. The
/// canonical path is what is mounted, so a symbolic link swapped in after this check cannot
/// redirect the mount (the local backend also refuses symbolic links at mount time).
fn resolve_under_a_root(host_path: &str, roots: &[PathBuf]) -> Option<String> {
    let resolved = Path::new(host_path).canonicalize().ok()?;
    if !roots.iter().any(|root| resolved.starts_with(root)) {
        return None;
    }
    resolved.to_str().map(str::to_owned)
}

/// `sandbox.start`.
pub(crate) async fn start(state: &AppState, caller: &Caller, request: &Request) -> Answer {
    let p: StartParams = params(request)?;
    check_target(caller, &p.namespace, &p.sandbox)?;
    let config = p.config.unwrap_or_default();
    let id = session_id(&p.namespace, &p.sandbox);
    let existing = state
        .wrapper
        .get_sessions(Some(&id))
        .map_err(|e| RestError::from_wrapper(&e))?;

    let template = match &config.image {
        Some(image) => template_of(state, image).ok_or_else(|| {
            RestError::validation(format!(
                "image {image:?} is not supported by msbw serve; use microsandbox/python or microsandbox/node (any tag)"
            ))
        })?,
        None => match existing.first() {
            Some(s) => s.template,
            None => {
                return Err(RestError::validation(format!(
                    "config.image is required to start sandbox {} (microsandbox/python or microsandbox/node)",
                    p.sandbox
                )));
            }
        },
    };
    let flavor = flavor_for(config.memory, config.cpus, state.wrapper.config().default_flavor)?;
    if !config.ports.is_empty() {
        return Err(RestError::validation("port mappings are not supported by msbw serve"));
    }
    let mut volumes = Vec::new();
    for entry in &config.volumes {
        let mut mapping: VolumeMapping = entry
            .parse()
            .map_err(|e: microsandbox_wrapper::config::VolumeError| RestError::validation(e.to_string()))?;
        mapping.host_path = resolve_under_a_root(&mapping.host_path, &state.volume_roots).ok_or_else(|| {
            RestError::validation(format!(
                "volume {entry:?}: host paths must lie under a folder allowed with `msbw serve --volume-root`"
            ))
        })?;
        if mapping.read_only && !state.read_only_volumes {
            return Err(RestError::validation(format!(
                "volume {entry:?}: this backend cannot mount read-only"
            )));
        }
        volumes.push(mapping);
    }
    let mut env = Vec::new();
    for entry in &config.envs {
        let (k, v) = entry
            .split_once('=')
            .filter(|(k, _)| !k.is_empty())
            .ok_or_else(|| RestError::validation(format!("environment entry {entry:?} is not K=V")))?;
        env.push((k.to_owned(), v.to_owned()));
    }

    if let Some(s) = existing.first() {
        // Starting a running sandbox is harmless here (the real server would break it).
        if s.template != template {
            return Err(RestError::validation(format!(
                "sandbox {} is already running as a {} sandbox; stop it before starting it with another image",
                p.sandbox, s.template
            )));
        }
        return Ok(success(&started_message(&p.sandbox), request.id.as_deref()));
    }
    let spec = SessionSpec {
        session_id: id,
        template,
        flavor,
        extra_volumes: volumes,
        env,
    };
    state
        .wrapper
        .open_session(spec)
        .await
        .map_err(|e| RestError::from_wrapper(&e))?;
    state.remember(&p.namespace, &p.sandbox);
    Ok(success(&started_message(&p.sandbox), request.id.as_deref()))
}

/// `sandbox.stop`: returns once the sandbox is gone; idempotent for known sandboxes.
pub(crate) async fn stop(state: &AppState, caller: &Caller, request: &Request) -> Answer {
    let p: StopParams = params(request)?;
    check_target(caller, &p.namespace, &p.sandbox)?;
    let stopped = state
        .wrapper
        .stop_session(&session_id(&p.namespace, &p.sandbox))
        .await
        .map_err(|e| RestError::from_wrapper(&e))?;
    if stopped || state.knows(&p.namespace, &p.sandbox) {
        Ok(success(&stopped_message(&p.sandbox), request.id.as_deref()))
    } else {
        Err(RestError::internal(format!(
            "sandbox {} not found in namespace {}",
            p.sandbox, p.namespace
        )))
    }
}

/// `sandbox.metrics.get`: running sandboxes with their usage, and the stopped ones this server
/// remembers.
pub(crate) async fn metrics(state: &AppState, caller: &Caller, request: &Request) -> Answer {
    let p: MetricsParams = params(request)?;
    if p.namespace != "*" {
        check_name("Namespace", &p.namespace)?;
    }
    caller.check_access(&p.namespace)?;
    let sessions = state
        .wrapper
        .get_sessions(None)
        .map_err(|e| RestError::from_wrapper(&e))?;
    let listed = state.wrapper.list_sandboxes().await.unwrap_or_default();
    let wanted = |ns: &str, name: &str| {
        (p.namespace == "*" || p.namespace == ns) && p.sandbox.as_deref().is_none_or(|s| s == name)
    };
    let mut rows = std::collections::BTreeMap::new();
    state.for_each_known(|ns, name| {
        if wanted(ns, name) {
            rows.insert((ns.to_owned(), name.to_owned()), SandboxStatus::stopped(ns, name));
        }
    });
    for s in &sessions {
        let Some((ns, name)) = s.session_id.split_once('/') else {
            continue;
        };
        if !wanted(ns, name) {
            continue;
        }
        let sandbox = SandboxId {
            namespace: s.namespace.clone(),
            name: s.sandbox_name.clone(),
        };
        let info = listed.iter().find(|i| i.id == sandbox);
        rows.insert(
            (ns.to_owned(), name.to_owned()),
            SandboxStatus {
                namespace: Some(ns.to_owned()),
                name: name.to_owned(),
                running: true,
                cpu_usage: info
                    .and_then(|i| i.cpu_percent)
                    .and_then(|c| Number::from_f64(f64::from(c))),
                memory_usage: info.and_then(|i| i.memory_mb).map(Number::from),
                disk_usage: info.and_then(|i| i.disk_bytes).map(Number::from),
            },
        );
    }
    let result = MetricsResult {
        sandboxes: rows.into_values().collect(),
    };
    Ok(success(&result, request.id.as_deref()))
}

/// The session behind a client's sandbox, or the real server's "not found" (a 500).
pub(crate) fn session_of(state: &AppState, namespace: &str, name: &str) -> Result<SessionInfo, RestError> {
    let id = session_id(namespace, name);
    state
        .wrapper
        .get_sessions(Some(&id))
        .map_err(|e| RestError::from_wrapper(&e))?
        .into_iter()
        .next()
        .ok_or_else(|| RestError::internal(format!("sandbox {name} is not running in namespace {namespace}")))
}

/// `sandbox.repl.run`: `status` is always `success`; an exception is stderr lines, a timeout
/// the stderr line `Error: Execution timed out after N seconds`. With `lines`, the output is
/// streamed there as it happens (the streaming extension).
pub(crate) async fn repl(state: &AppState, caller: &Caller, request: &Request, lines: Option<&Lines>) -> Answer {
    let p: ReplParams = params(request)?;
    check_target(caller, &p.namespace, &p.sandbox)?;
    let language: Template = p
        .language
        .parse()
        .map_err(|_| RestError::internal(format!("unsupported language {:?}; use python or nodejs", p.language)))?;
    let session = session_of(state, &p.namespace, &p.sandbox)?;
    if session.template != language {
        return Err(RestError::internal(format!(
            "sandbox {} runs {}; it cannot run {} code",
            p.sandbox,
            session.template,
            language.repl_language()
        )));
    }
    let call = CodeCall {
        code: p.code,
        template: session.template,
        options: existing_session(&session, p.timeout),
    };
    let r = executed(&state.wrapper, call, lines).await?;
    let mut output = Output::new(r.stdout, r.stderr);
    if let ExecStatus::TimedOut { after, .. } = r.status {
        output.push_line(
            Stream::Stderr,
            &format!("Error: Execution timed out after {} seconds", after.as_secs()),
        );
    }
    let language = language.repl_language();
    Ok(success_with_output(output, request.id.as_deref(), |output| {
        ReplResult {
            status: Some("success".into()),
            language: Some(language.to_owned()),
            output,
        }
    }))
}

/// `sandbox.command.run`: a non-zero exit is a result; a timeout is a 500, as on the real server.
/// With `lines`, the output is streamed there as it happens.
pub(crate) async fn command(state: &AppState, caller: &Caller, request: &Request, lines: Option<&Lines>) -> Answer {
    let p: CommandParams = params(request)?;
    check_target(caller, &p.namespace, &p.sandbox)?;
    let Some(program) = p.command else {
        // The real server answers a missing command with a 500 too.
        return Err(RestError::internal("missing field `command`"));
    };
    let session = session_of(state, &p.namespace, &p.sandbox)?;
    let call = CommandCall {
        command: program.clone(),
        args: p.args.clone(),
        template: session.template,
        options: existing_session(&session, p.timeout),
    };
    let r = executed(&state.wrapper, call, lines).await?;
    if let ExecStatus::TimedOut { after, .. } = r.status {
        return Err(RestError::internal(format!(
            "command {program:?} timed out after {} seconds",
            after.as_secs()
        )));
    }
    let (exit_code, success) = (r.exit_code.unwrap_or(-1), r.success);
    Ok(success_with_output(
        Output::new(r.stdout, r.stderr),
        request.id.as_deref(),
        |output| CommandResult {
            command: program.clone(),
            args: p.args.clone(),
            exit_code,
            success,
            output,
        },
    ))
}
