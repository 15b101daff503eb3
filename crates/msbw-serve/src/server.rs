//! The server: its shared state, its routes, and binding and running it.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use microsandbox_wrapper::{MicrosandboxWrapper, ShutdownReport, WrapperError};
use msbw_protocol::results::{Capabilities, Health};
use msbw_protocol::{HEALTH_PATH, RPC_PATH};
use tokio::net::{TcpListener, UnixListener};

use crate::listen::{Activity, Listener};
use crate::options::ServeOptions;
use crate::registry::Known;
use crate::{listen, rpc};

/// What every request handler shares.
#[derive(Debug)]
pub(crate) struct AppState {
    pub(crate) wrapper: MicrosandboxWrapper,
    pub(crate) options: ServeOptions,
    /// The volume roots, resolved once at start-up.
    pub(crate) volume_roots: Vec<PathBuf>,
    /// Whether the backend can mount read-only volumes (announced in the health answer).
    pub(crate) read_only_volumes: bool,
    /// Sandboxes clients have started; the real server keeps listing stopped ones.
    known: Mutex<Known>,
    /// File transfers in progress (the `msbw.fs.*` extension).
    pub(crate) transfers: crate::files::Transfers,
}

impl AppState {
    fn known(&self) -> MutexGuard<'_, Known> {
        self.known.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Remembers a sandbox a client started.
    pub(crate) fn remember(&self, namespace: &str, name: &str) {
        self.known().insert((namespace.to_owned(), name.to_owned()));
    }

    /// Whether a client started this sandbox (and it is still remembered).
    pub(crate) fn knows(&self, namespace: &str, name: &str) -> bool {
        self.known().contains(&(namespace.to_owned(), name.to_owned()))
    }

    /// Calls `f` with each remembered (namespace, name).
    pub(crate) fn for_each_known(&self, mut f: impl FnMut(&str, &str)) {
        for (ns, name) in self.known().iter() {
            f(ns, name);
        }
    }
}

/// A bound server, ready to run.
#[derive(Debug)]
pub struct Server {
    listener: Listener,
    state: Arc<AppState>,
    activity: Activity,
}

impl Server {
    /// Binds `addr` (port 0 picks a free port) and starts the wrapper. Volume roots that do not
    /// exist are left out, with a warning.
    pub async fn bind(
        addr: SocketAddr,
        wrapper: MicrosandboxWrapper,
        options: ServeOptions,
    ) -> Result<Server, WrapperError> {
        let listener = TcpListener::bind(addr).await.map_err(|e| WrapperError::InvalidInput {
            what: "address".into(),
            message: format!("cannot listen on {addr}: {e}"),
        })?;
        Server::with_listener(Listener::Tcp(listener), wrapper, options).await
    }

    /// Binds a Unix socket at `path`, mode 0600 (only its owner may connect: the directory
    /// holding it should be private too), and starts the wrapper. A stale socket file (nothing
    /// answers on it) is replaced; a live one is an error: another server is there.
    pub async fn bind_unix(
        path: &Path,
        wrapper: MicrosandboxWrapper,
        options: ServeOptions,
    ) -> Result<Server, WrapperError> {
        use std::os::unix::fs::{FileTypeExt, PermissionsExt};
        let cannot = |why: String| WrapperError::InvalidInput {
            what: "socket".into(),
            message: format!("cannot listen on {}: {why}", path.display()),
        };
        if let Ok(meta) = std::fs::symlink_metadata(path) {
            if !meta.file_type().is_socket() {
                return Err(cannot("it exists and is not a socket".into()));
            }
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(cannot("another server answers on it".into()));
            }
            std::fs::remove_file(path).map_err(|e| cannot(format!("cannot remove the stale socket: {e}")))?;
        }
        let listener = UnixListener::bind(path).map_err(|e| cannot(e.to_string()))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(|e| cannot(e.to_string()))?;
        Server::with_listener(Listener::Unix(listener), wrapper, options).await
    }

    async fn with_listener(
        listener: Listener,
        wrapper: MicrosandboxWrapper,
        options: ServeOptions,
    ) -> Result<Server, WrapperError> {
        let volume_roots = options
            .volume_roots
            .iter()
            .filter_map(|root| match root.canonicalize() {
                Ok(resolved) => Some(resolved),
                Err(e) => {
                    tracing::warn!("--volume-root {}: {e}; ignored", root.display());
                    None
                }
            })
            .collect();
        wrapper.start().await?;
        let read_only_volumes = wrapper.capabilities().await.read_only_volumes;
        let known = Mutex::new(Known::new(options.limits.max_known_sandboxes));
        let state = Arc::new(AppState {
            wrapper,
            options,
            volume_roots,
            read_only_volumes,
            known,
            transfers: crate::files::Transfers::default(),
        });
        Ok(Server {
            listener,
            state,
            activity: Activity::default(),
        })
    }

    /// The TCP address the server listens on (an error for a Unix socket).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        match &self.listener {
            Listener::Tcp(l) => l.local_addr(),
            Listener::Unix(_) => Err(std::io::Error::other("the server listens on a Unix socket")),
        }
    }

    /// The count of open connections, to watch while the server runs (an idle exit waits for
    /// none to be open).
    pub fn activity(&self) -> Activity {
        self.activity.clone()
    }

    /// Serves until `shutdown` completes; then stops accepting, closes idle connections at
    /// once, gives requests in progress [`Limits::shutdown_grace`](crate::Limits) to finish,
    /// and stops every sandbox it started.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> ShutdownReport {
        let wrapper = self.state.wrapper.clone();
        let limits = self.state.options.limits.clone();
        let app = router(self.state);
        listen::serve(self.listener, app, &limits, &self.activity, shutdown).await;
        wrapper.stop().await
    }
}

/// `GET /api/v1/health`: never authenticated; announces our extra abilities.
async fn health(State(state): State<Arc<AppState>>) -> Response {
    Json(Health {
        message: "Service is healthy",
        server: "msbw",
        version: env!("CARGO_PKG_VERSION"),
        capabilities: Capabilities {
            read_only_volumes: state.read_only_volumes,
            files: true,
            streaming: true,
        },
    })
    .into_response()
}

fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route(HEALTH_PATH, get(health))
        .route(RPC_PATH, post(rpc::rpc))
        .with_state(state)
}
