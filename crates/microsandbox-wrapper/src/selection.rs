//! Which backend a configuration gets (`MSB_BACKEND`), and why.

use std::sync::Arc;
use std::time::Duration;

use msbw_backend::{BackendError, SandboxBackend};
use msbw_config::{BackendKind, DEFAULT_SERVER_URL, WrapperConfig, redact_url};
use msbw_http::{HttpBackend, HttpBackendConfig, RetryPolicy};
use msbw_local::LocalBackend;
use serde::Serialize;

use crate::WrapperError;

/// How long `auto` waits for a microsandbox server at the default URL before it takes the local
/// backend.
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
}

/// Decides the backend without building it: `auto` probes the default URL when no server is
/// configured.
pub async fn choose_backend(config: &WrapperConfig) -> BackendSelection {
    let requested = config.backend.to_string();
    let (backend, reason) = match config.backend {
        BackendKind::Microsandbox => (
            "microsandbox",
            format!(
                "MSB_BACKEND=microsandbox: the server at {}",
                redact_url(&config.server_url)
            ),
        ),
        BackendKind::Local => ("local", "MSB_BACKEND=local".to_owned()),
        BackendKind::Auto if config.server_is_configured() => (
            "microsandbox",
            format!(
                "MSB_BACKEND=auto and a server is configured (MSB_SERVER_URL={}{})",
                redact_url(&config.server_url),
                if config.api_key.is_some() {
                    ", MSB_API_KEY set"
                } else {
                    ""
                }
            ),
        ),
        BackendKind::Auto => {
            if probe_default_server().await {
                (
                    "microsandbox",
                    format!("MSB_BACKEND=auto and a microsandbox server answers at {DEFAULT_SERVER_URL}"),
                )
            } else {
                (
                    "local",
                    format!(
                        "MSB_BACKEND=auto, no server configured, and none answered at {DEFAULT_SERVER_URL} within {} ms",
                        AUTO_PROBE_TIMEOUT.as_millis()
                    ),
                )
            }
        }
    };
    BackendSelection {
        backend: backend.to_owned(),
        requested,
        reason,
    }
}

/// Builds the backend a selection names.
pub fn build_backend(
    config: &WrapperConfig,
    selection: &BackendSelection,
) -> Result<Arc<dyn SandboxBackend>, WrapperError> {
    let built: Result<Arc<dyn SandboxBackend>, BackendError> = match selection.backend.as_str() {
        "microsandbox" => HttpBackend::from_config(config).map(|b| Arc::new(b) as Arc<dyn SandboxBackend>),
        _ => Ok(Arc::new(LocalBackend::from_config(config)) as Arc<dyn SandboxBackend>),
    };
    built.map_err(|e| WrapperError::Internal {
        message: format!("cannot create the {} backend: {e}", selection.backend),
        source: Some(Box::new(e)),
    })
}

/// Whether a microsandbox server answers its health check at the default URL, quickly.
async fn probe_default_server() -> bool {
    let probe = HttpBackendConfig {
        request_timeout: AUTO_PROBE_TIMEOUT,
        connect_timeout: AUTO_PROBE_TIMEOUT,
        retry: RetryPolicy::none(),
        ..HttpBackendConfig::new(DEFAULT_SERVER_URL)
    };
    let Ok(backend) = HttpBackend::new(probe) else {
        return false;
    };
    tokio::time::timeout(AUTO_PROBE_TIMEOUT * 2, backend.health())
        .await
        .is_ok_and(|r| r.is_ok())
}
