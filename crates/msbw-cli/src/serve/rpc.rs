//! The JSON-RPC endpoint: envelopes, the three error shapes of the real server, and the five
//! methods.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use microsandbox_wrapper::{
    CodeCall, CommandCall, ConfigKey, ExecStatus, SandboxFlavor, SandboxId, SessionOptions, SessionSpec, Template,
    VolumeMapping, WrapperError,
};
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::auth::{self, AuthError, Claims};

/// A JSON-RPC request as the real server reads it (a missing `jsonrpc` or `method` is a 422 from
/// the framework, before any of our code runs).
#[derive(Debug, Deserialize)]
pub(crate) struct RpcRequest {
    jsonrpc: String,
    method: String,
    #[serde(default)]
    params: Value,
    #[serde(default)]
    id: Option<Value>,
}

/// A REST-style error: `{"error": message, "code": n}`.
struct RestError {
    status: StatusCode,
    code: u16,
    message: String,
}

impl RestError {
    fn validation(message: impl Into<String>) -> Self {
        RestError {
            status: StatusCode::BAD_REQUEST,
            code: 2001,
            message: message.into(),
        }
    }

    fn internal(message: impl Into<String>) -> Self {
        RestError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: 5002,
            message: message.into(),
        }
    }

    fn from_auth(e: AuthError) -> Self {
        match e {
            AuthError::InvalidCredentials => RestError {
                status: StatusCode::UNAUTHORIZED,
                code: 1001,
                message: "Invalid credentials".into(),
            },
            AuthError::InvalidOrExpired => RestError {
                status: StatusCode::UNAUTHORIZED,
                code: 1004,
                message: "Invalid or expired token".into(),
            },
            AuthError::AccessDenied => RestError {
                status: StatusCode::FORBIDDEN,
                code: 3001,
                message: "Access denied".into(),
            },
        }
    }

    /// A wrapper error: input problems are validation errors; everything else is a 500 that,
    /// unlike the real server's, says why.
    fn from_wrapper(e: &WrapperError) -> Self {
        match e {
            WrapperError::InvalidInput { .. } | WrapperError::SessionMismatch { .. } => Self::validation(e.to_string()),
            _ => Self::internal(e.to_string()),
        }
    }
}

impl IntoResponse for RestError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({"error": self.message, "code": self.code}))).into_response()
    }
}

/// A JSON-RPC error envelope (used only for a wrong version and an unknown method).
fn envelope_error(status: StatusCode, code: i64, message: String, id: Option<Value>) -> Response {
    let mut body = json!({"jsonrpc": "2.0", "error": {"code": code, "message": message}});
    if let Some(id) = id.filter(|v| !v.is_null()) {
        body["id"] = id;
    }
    (status, Json(body)).into_response()
}

fn success(result: Value, id: Option<Value>) -> Response {
    let mut body = json!({"jsonrpc": "2.0", "result": result});
    if let Some(id) = id.filter(|v| !v.is_null()) {
        body["id"] = id;
    }
    (StatusCode::OK, Json(body)).into_response()
}

/// `GET /api/v1/health`: never authenticated; announces our extra abilities.
pub(crate) async fn health(State(state): State<Arc<AppState>>) -> Response {
    Json(json!({
        "message": "Service is healthy",
        "server": "msbw",
        "version": env!("CARGO_PKG_VERSION"),
        "capabilities": {"read_only_volumes": state.read_only_volumes},
    }))
    .into_response()
}

/// `POST /api/v1/rpc`.
pub(crate) async fn rpc(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Json<RpcRequest>, JsonRejection>,
) -> Response {
    // Authentication comes first, as on the real server; Proxy-Authorization wins.
    let claims = match &state.options.key {
        None => None,
        Some(key) => {
            let header = headers
                .get("proxy-authorization")
                .or_else(|| headers.get("authorization"))
                .and_then(|v| v.to_str().ok());
            match auth::verify(key, header) {
                Ok(claims) => Some(claims),
                Err(e) => return RestError::from_auth(e).into_response(),
            }
        }
    };
    let Json(request) = match body {
        Ok(body) => body,
        Err(rejection) => return rejection.into_response(),
    };
    if request.jsonrpc != "2.0" {
        return envelope_error(
            StatusCode::BAD_REQUEST,
            -32600,
            format!("Invalid Request: jsonrpc must be \"2.0\", not {:?}", request.jsonrpc),
            request.id,
        );
    }
    let id = request.id.clone();
    let result = match request.method.as_str() {
        "sandbox.start" => start(&state, claims.as_ref(), request.params).await,
        "sandbox.stop" => stop(&state, claims.as_ref(), request.params).await,
        "sandbox.metrics.get" => metrics(&state, claims.as_ref(), request.params).await,
        "sandbox.repl.run" => repl(&state, claims.as_ref(), request.params).await,
        "sandbox.command.run" => command(&state, claims.as_ref(), request.params).await,
        other => {
            return envelope_error(StatusCode::NOT_FOUND, -32601, format!("Method not found: {other}"), id);
        }
    };
    match result {
        Ok(value) => success(value, id),
        Err(e) => e.into_response(),
    }
}

fn params<T: for<'de> Deserialize<'de>>(value: Value) -> Result<T, RestError> {
    let value = if value.is_null() { json!({}) } else { value };
    serde_json::from_value(value).map_err(|e| RestError::validation(e.to_string()))
}

fn check_name(what: &str, name: &str) -> Result<(), RestError> {
    if name.is_empty() || name.len() > 63 {
        return Err(RestError::validation(format!(
            "{what} name must be 1 to 63 characters long"
        )));
    }
    if !microsandbox_wrapper::backend::is_valid_name(name) {
        return Err(RestError::validation(format!(
            "{what} name can only contain alphanumeric characters, hyphens, or underscores"
        )));
    }
    Ok(())
}

/// Checks a call's sandbox and namespace names and the key's access to the namespace.
fn check_target(claims: Option<&Claims>, namespace: &str, sandbox: &str) -> Result<(), RestError> {
    check_name("Sandbox", sandbox)?;
    check_name("Namespace", namespace)?;
    check_access(claims, namespace)
}

/// The options of a call on a client's running sandbox: its session as it is, never created.
fn existing_session(session: &microsandbox_wrapper::SessionInfo, timeout: Option<f64>) -> SessionOptions {
    SessionOptions {
        session_id: Some(session.session_id.clone()),
        flavor: Some(session.flavor),
        timeout: timeout_of(timeout),
        must_exist: true,
    }
}

fn check_access(claims: Option<&Claims>, namespace: &str) -> Result<(), RestError> {
    match claims {
        Some(c) if !auth::allows(c, namespace) => Err(RestError::from_auth(AuthError::AccessDenied)),
        _ => Ok(()),
    }
}

fn session_id(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
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

#[derive(Debug, Deserialize)]
struct StartParams {
    sandbox: String,
    namespace: String,
    #[serde(default)]
    config: Option<StartConfig>,
}

#[derive(Debug, Default, Deserialize)]
struct StartConfig {
    image: Option<String>,
    memory: Option<u32>,
    cpus: Option<u8>,
    #[serde(default)]
    volumes: Vec<String>,
    #[serde(default)]
    ports: Vec<String>,
    #[serde(default)]
    envs: Vec<String>,
}

async fn start(state: &AppState, claims: Option<&Claims>, params_value: Value) -> Result<Value, RestError> {
    let p: StartParams = params(params_value)?;
    check_target(claims, &p.namespace, &p.sandbox)?;
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
        let mapping: VolumeMapping = entry
            .parse()
            .map_err(|e: microsandbox_wrapper::config::VolumeError| RestError::validation(e.to_string()))?;
        if !under_a_root(&mapping.host_path, &state.options.volume_roots) {
            return Err(RestError::validation(format!(
                "volume {entry:?}: host paths must lie under a folder allowed with `msbw serve --volume-root`"
            )));
        }
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
        return Ok(json!(format!("Sandbox {} started successfully", p.sandbox)));
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
    lock(&state.known).insert((p.namespace, p.sandbox.clone()));
    Ok(json!(format!("Sandbox {} started successfully", p.sandbox)))
}

/// Whether `host_path` lies under one of `roots` (after resolving symbolic links).
fn under_a_root(host_path: &str, roots: &[std::path::PathBuf]) -> bool {
    let Ok(resolved) = Path::new(host_path).canonicalize() else {
        return false;
    };
    roots
        .iter()
        .filter_map(|r| r.canonicalize().ok())
        .any(|root| resolved.starts_with(root))
}

#[derive(Debug, Deserialize)]
struct StopParams {
    sandbox: String,
    namespace: String,
}

async fn stop(state: &AppState, claims: Option<&Claims>, params_value: Value) -> Result<Value, RestError> {
    let p: StopParams = params(params_value)?;
    check_target(claims, &p.namespace, &p.sandbox)?;
    let stopped = state
        .wrapper
        .stop_session(&session_id(&p.namespace, &p.sandbox))
        .await
        .map_err(|e| RestError::from_wrapper(&e))?;
    let known = lock(&state.known).contains(&(p.namespace.clone(), p.sandbox.clone()));
    if stopped || known {
        Ok(json!(format!("Sandbox {} stopped successfully", p.sandbox)))
    } else {
        Err(RestError::internal(format!(
            "sandbox {} not found in namespace {}",
            p.sandbox, p.namespace
        )))
    }
}

#[derive(Debug, Deserialize)]
struct MetricsParams {
    namespace: String,
    #[serde(default)]
    sandbox: Option<String>,
}

async fn metrics(state: &AppState, claims: Option<&Claims>, params_value: Value) -> Result<Value, RestError> {
    let p: MetricsParams = params(params_value)?;
    if p.namespace != "*" {
        check_name("Namespace", &p.namespace)?;
    }
    check_access(claims, &p.namespace)?;
    let sessions = state
        .wrapper
        .get_sessions(None)
        .map_err(|e| RestError::from_wrapper(&e))?;
    let listed = state.wrapper.list_sandboxes().await.unwrap_or_default();
    let wanted = |ns: &str, name: &str| {
        (p.namespace == "*" || p.namespace == ns) && p.sandbox.as_deref().is_none_or(|s| s == name)
    };
    let mut rows = std::collections::BTreeMap::new();
    for (ns, name) in lock(&state.known).iter() {
        if wanted(ns, name) {
            rows.insert(
                (ns.clone(), name.clone()),
                json!({
                    "namespace": ns, "name": name, "running": false,
                    "cpu_usage": null, "memory_usage": null, "disk_usage": null,
                }),
            );
        }
    }
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
            json!({
                "namespace": ns,
                "name": name,
                "running": true,
                "cpu_usage": info.and_then(|i| i.cpu_percent),
                "memory_usage": info.and_then(|i| i.memory_mb),
                "disk_usage": info.and_then(|i| i.disk_bytes),
            }),
        );
    }
    Ok(json!({"sandboxes": rows.into_values().collect::<Vec<_>>()}))
}

#[derive(Debug, Deserialize)]
struct ReplParams {
    sandbox: String,
    namespace: String,
    language: String,
    code: String,
    #[serde(default)]
    timeout: Option<f64>,
}

/// The session behind a client's sandbox, or the real server's "not found" (a 500).
fn session_of(state: &AppState, namespace: &str, name: &str) -> Result<microsandbox_wrapper::SessionInfo, RestError> {
    let id = session_id(namespace, name);
    state
        .wrapper
        .get_sessions(Some(&id))
        .map_err(|e| RestError::from_wrapper(&e))?
        .into_iter()
        .next()
        .ok_or_else(|| RestError::internal(format!("sandbox {name} is not running in namespace {namespace}")))
}

fn timeout_of(seconds: Option<f64>) -> Option<Duration> {
    seconds
        .filter(|s| s.is_finite() && *s > 0.0)
        .map(|s| Duration::from_secs_f64(s.min(microsandbox_wrapper::MicrosandboxWrapper::MAX_TIMEOUT.as_secs_f64())))
}

fn lines(stream: &str, text: &str) -> impl Iterator<Item = Value> {
    let stream = stream.to_owned();
    text.lines()
        .map(move |line| json!({"stream": stream, "text": line}))
        .collect::<Vec<_>>()
        .into_iter()
}

async fn repl(state: &AppState, claims: Option<&Claims>, params_value: Value) -> Result<Value, RestError> {
    let p: ReplParams = params(params_value)?;
    check_target(claims, &p.namespace, &p.sandbox)?;
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
    let r = state
        .wrapper
        .execute_code(call)
        .await
        .map_err(|e| RestError::from_wrapper(&e))?;
    let mut output: Vec<Value> = lines("stdout", &r.stdout).chain(lines("stderr", &r.stderr)).collect();
    if let ExecStatus::TimedOut { after, .. } = r.status {
        output.push(json!({"stream": "stderr", "text": format!("Error: Execution timed out after {} seconds", after.as_secs())}));
    }
    Ok(json!({"status": "success", "language": language.repl_language(), "output": output}))
}

#[derive(Debug, Deserialize)]
struct CommandParams {
    sandbox: String,
    namespace: String,
    #[serde(default)]
    command: Option<String>,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    timeout: Option<f64>,
}

async fn command(state: &AppState, claims: Option<&Claims>, params_value: Value) -> Result<Value, RestError> {
    let p: CommandParams = params(params_value)?;
    check_target(claims, &p.namespace, &p.sandbox)?;
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
    let r = state
        .wrapper
        .execute_command(call)
        .await
        .map_err(|e| RestError::from_wrapper(&e))?;
    if let ExecStatus::TimedOut { after, .. } = r.status {
        return Err(RestError::internal(format!(
            "command {program:?} timed out after {} seconds",
            after.as_secs()
        )));
    }
    let output: Vec<Value> = lines("stdout", &r.stdout).chain(lines("stderr", &r.stderr)).collect();
    Ok(json!({
        "command": program,
        "args": p.args,
        "exit_code": r.exit_code.unwrap_or(-1),
        "success": r.success,
        "output": output,
    }))
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
