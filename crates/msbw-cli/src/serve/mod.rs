//! `msbw serve`: a microsandbox-compatible server over any backend.
//!
//! It answers `GET /api/v1/health` and `POST /api/v1/rpc` with the five methods of the
//! microsandbox server 0.2.6, their parameter and result shapes, HTTP statuses, error codes and
//! key format, so that clients written for the real server work unchanged. Every sandbox started
//! through it is a session of a [`MicrosandboxWrapper`], under the wrapper's limits.
//!
//! Where compatibility allows it does better than the real server: 500 answers carry the real
//! reason; concurrent starts are safe; starting a running sandbox is harmless; invalid configs
//! are refused before anything is stored; read-only volumes work (announced in the health
//! answer as `capabilities.read_only_volumes`); `sandbox.stop` returns once the sandbox is gone.

pub mod auth;
mod rpc;

use std::collections::BTreeSet;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use microsandbox_wrapper::{MicrosandboxWrapper, ShutdownReport};
use tokio::net::TcpListener;

/// The largest request body accepted, as on the real server.
pub const MAX_BODY_BYTES: usize = 2 * 1024 * 1024;

/// How `msbw serve` runs.
#[derive(Debug, Clone, Default)]
pub struct ServeOptions {
    /// The server key: `None` for dev mode (no authentication).
    pub key: Option<String>,
    /// Host folders under which clients may map volumes; none means clients may not map any.
    pub volume_roots: Vec<PathBuf>,
}

/// What every request handler shares.
#[derive(Debug)]
pub(crate) struct AppState {
    pub(crate) wrapper: MicrosandboxWrapper,
    pub(crate) options: ServeOptions,
    /// Whether the backend can mount read-only volumes (announced in the health answer).
    pub(crate) read_only_volumes: bool,
    /// Sandboxes clients have started, as (namespace, name); the real server keeps listing
    /// stopped ones.
    pub(crate) known: Mutex<BTreeSet<(String, String)>>,
}

/// A bound server, ready to run.
pub struct Server {
    listener: TcpListener,
    state: Arc<AppState>,
}

impl Server {
    /// Binds `addr` (port 0 picks a free port) and starts the wrapper.
    pub async fn bind(
        addr: SocketAddr,
        wrapper: MicrosandboxWrapper,
        options: ServeOptions,
    ) -> Result<Server, microsandbox_wrapper::WrapperError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| microsandbox_wrapper::WrapperError::InvalidInput {
                what: "address".into(),
                message: format!("cannot listen on {addr}: {e}"),
            })?;
        wrapper.start().await?;
        let read_only_volumes = wrapper.capabilities().await.read_only_volumes;
        let state = Arc::new(AppState {
            wrapper,
            options,
            read_only_volumes,
            known: Mutex::new(BTreeSet::new()),
        });
        Ok(Server { listener, state })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` completes, then stops every sandbox it started.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> std::io::Result<ShutdownReport> {
        let wrapper = self.state.wrapper.clone();
        let app = router(self.state);
        let served = axum::serve(self.listener, app).with_graceful_shutdown(shutdown).await;
        let report = wrapper.stop().await;
        served.map(|()| report)
    }
}

fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/api/v1/health", get(rpc::health))
        .route("/api/v1/rpc", post(rpc::rpc))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}
