//! Which backend a configuration gets (`MSB_BACKEND`), and why; building it; and the validation
//! of every backend's own settings.
//!
//! The backends are cargo features of this crate: `http` (the microsandbox server, through
//! `msbw-http`) and `local` (isolated local processes, through `msbw-local`), both on by default.
//! A build without one still parses `MSB_BACKEND` and knows the other backend's variables, but
//! refuses to select a backend it does not contain.

use std::sync::Arc;
#[cfg(feature = "http")]
use std::time::Duration;

use msbw_backend::SandboxBackend;
use msbw_config::{BackendConfig, BackendKind, ConfigError, ConfigProblem, WrapperConfig, redact_url};
use serde::Serialize;

use crate::WrapperError;

/// How long `auto` waits for a microsandbox server at the default URL before it takes the local
/// backend.
#[cfg(feature = "http")]
pub const AUTO_PROBE_TIMEOUT: Duration = Duration::from_millis(300);

/// The backend chosen and the reason, for people (`msbw doctor`) and logs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BackendSelection {
    /// The backend's name (`microsandbox`, `local`, or a custom backend's name).
    pub backend: String,
    /// What `MSB_BACKEND` said.
    pub requested: String,
    /// Why this backend.
    pub reason: String,
    /// The built-in backend chosen (never `Auto`); `None` for a backend given in code.
    #[serde(skip)]
    pub kind: Option<BackendKind>,
}

/// The built-in backends this build contains (cargo features `http` and `local`).
pub fn available_backends() -> Vec<BackendKind> {
    let mut kinds = Vec::new();
    if cfg!(feature = "http") {
        kinds.push(BackendKind::Microsandbox);
    }
    if cfg!(feature = "local") {
        kinds.push(BackendKind::Local);
    }
    kinds
}

/// Every problem with the settings the backends own (`MSB_PYTHON_IMAGE`, `MSB_LOCAL_NETWORK`,
/// ...), as each backend of this build validates its own; settings of backends not in this build
/// are not checked.
pub fn backend_problems(config: &WrapperConfig) -> Vec<ConfigProblem> {
    let checks: &[fn(&msbw_config::BackendSettings) -> Vec<ConfigProblem>] = &[
        #[cfg(feature = "http")]
        msbw_http::HttpBackendConfig::settings_problems,
        #[cfg(feature = "local")]
        msbw_local::LocalConfig::settings_problems,
    ];
    checks
        .iter()
        .flat_map(|check| check(&config.backend_settings))
        .collect()
}

/// Validates the whole configuration: the wrapper's settings and every backend's own, all
/// problems at once.
pub fn validate_config(config: &WrapperConfig) -> Result<(), ConfigError> {
    let mut problems = config
        .validate()
        .err()
        .map(|e| e.problems().to_vec())
        .unwrap_or_default();
    problems.extend(backend_problems(config));
    ConfigError::check(problems)
}

/// Decides the backend without building it: `auto` probes the default URL when no server is
/// configured (and only when this build has both backends).
pub async fn choose_backend(config: &WrapperConfig) -> BackendSelection {
    let requested = config.backend.to_string();
    let (kind, reason) = match config.backend {
        BackendKind::Microsandbox => (
            BackendKind::Microsandbox,
            format!(
                "MSB_BACKEND=microsandbox: the server at {}",
                redact_url(&config.server_url)
            ),
        ),
        BackendKind::Local => (BackendKind::Local, "MSB_BACKEND=local".to_owned()),
        BackendKind::Auto => auto(config).await,
    };
    BackendSelection {
        backend: kind.to_string(),
        requested,
        reason,
        kind: Some(kind),
    }
}

async fn auto(config: &WrapperConfig) -> (BackendKind, String) {
    if !cfg!(feature = "http") {
        return (
            BackendKind::Local,
            "MSB_BACKEND=auto and this build has only the local backend".to_owned(),
        );
    }
    if config.server_is_configured() {
        return (
            BackendKind::Microsandbox,
            format!(
                "MSB_BACKEND=auto and a server is configured (MSB_SERVER_URL={}{})",
                redact_url(&config.server_url),
                if config.api_key.is_some() {
                    ", MSB_API_KEY set"
                } else {
                    ""
                }
            ),
        );
    }
    if !cfg!(feature = "local") {
        return (
            BackendKind::Microsandbox,
            "MSB_BACKEND=auto and this build has only the microsandbox backend".to_owned(),
        );
    }
    probe_default_server().await
}

#[cfg(feature = "http")]
async fn probe_default_server() -> (BackendKind, String) {
    use msbw_config::DEFAULT_SERVER_URL;
    use msbw_http::{HttpBackend, HttpBackendConfig, RetryPolicy};
    let probe = HttpBackendConfig {
        request_timeout: AUTO_PROBE_TIMEOUT,
        connect_timeout: AUTO_PROBE_TIMEOUT,
        retry: RetryPolicy::none(),
        ..HttpBackendConfig::new(DEFAULT_SERVER_URL)
    };
    let answers = match HttpBackend::new(probe) {
        Ok(backend) => tokio::time::timeout(AUTO_PROBE_TIMEOUT * 2, backend.health())
            .await
            .is_ok_and(|r| r.is_ok()),
        Err(_) => false,
    };
    if answers {
        (
            BackendKind::Microsandbox,
            format!("MSB_BACKEND=auto and a microsandbox server answers at {DEFAULT_SERVER_URL}"),
        )
    } else {
        (
            BackendKind::Local,
            format!(
                "MSB_BACKEND=auto, no server configured, and none answered at {DEFAULT_SERVER_URL} within {} ms",
                AUTO_PROBE_TIMEOUT.as_millis()
            ),
        )
    }
}

#[cfg(not(feature = "http"))]
async fn probe_default_server() -> (BackendKind, String) {
    (BackendKind::Local, "MSB_BACKEND=auto".to_owned())
}

/// Builds the backend a selection names. A backend this build does not contain, or invalid
/// settings of the chosen backend, are [`WrapperError::Configuration`].
pub fn build_backend(
    config: &WrapperConfig,
    selection: &BackendSelection,
) -> Result<Arc<dyn SandboxBackend>, WrapperError> {
    match selection.kind {
        #[cfg(feature = "http")]
        Some(BackendKind::Microsandbox) => {
            let settings = msbw_http::HttpBackendConfig::from_wrapper(config)?;
            let backend = msbw_http::HttpBackend::new(settings).map_err(|e| WrapperError::Internal {
                message: format!("cannot create the microsandbox backend: {e}"),
                source: Some(Box::new(e)),
            })?;
            Ok(Arc::new(backend))
        }
        #[cfg(feature = "local")]
        Some(BackendKind::Local) => Ok(Arc::new(msbw_local::LocalBackend::from_config(config)?)),
        _ => {
            let _ = config;
            Err(missing_backend(selection))
        }
    }
}

/// The error for a backend this build does not contain.
fn missing_backend(selection: &BackendSelection) -> WrapperError {
    let feature = match selection.kind {
        Some(BackendKind::Microsandbox) => "http",
        Some(BackendKind::Local) => "local",
        _ => "http or local",
    };
    let available: Vec<String> = available_backends().iter().map(ToString::to_string).collect();
    WrapperError::InvalidInput {
        what: "MSB_BACKEND".into(),
        message: format!(
            "the {} backend is not in this build (cargo feature `{feature}` of microsandbox-wrapper); \
             available: {}",
            selection.backend,
            if available.is_empty() {
                "none (use MicrosandboxWrapper::with_backend)".to_owned()
            } else {
                available.join(", ")
            }
        ),
    }
}
