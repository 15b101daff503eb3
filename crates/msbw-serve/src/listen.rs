//! The accept loop, over hyper-util rather than `axum::serve`, which has none of the knobs
//! needed here: no header read timeout (it sets no timer), no bound on connections, and a
//! graceful shutdown that waits for every connection however long a client holds it.
//!
//! - At most [`Limits::max_connections`] connections are open (a semaphore permit each); at
//!   the limit the loop stops accepting (new connections wait in the kernel's backlog) and
//!   says so once in the log.
//! - hyper's `header_read_timeout` closes a connection whose request headers do not arrive in
//!   time, and an idle keep-alive connection (the timer runs while it waits for the next
//!   request).
//! - Shutdown: the listener is closed; idle connections are closed at once; requests in
//!   progress get [`Limits::shutdown_grace`], then their connections are cut.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::options::Limits;

/// How long to pause accepting after an accept error such as "too many open files".
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// What the server listens on: a TCP address or a Unix socket, the same protocol on both.
#[derive(Debug)]
pub(crate) enum Listener {
    /// TCP (`msbw serve --host --port`).
    Tcp(TcpListener),
    /// A Unix socket (`msbw serve --unix PATH`).
    Unix(UnixListener),
}

/// An accepted connection of either kind.
trait Connection: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Connection for T {}

impl Listener {
    async fn accept(&self) -> std::io::Result<Box<dyn Connection>> {
        match self {
            Listener::Tcp(l) => {
                let (stream, _) = l.accept().await?;
                let _ = stream.set_nodelay(true);
                Ok(Box::new(stream))
            }
            Listener::Unix(l) => Ok(Box::new(l.accept().await?.0)),
        }
    }
}

/// How many connections are open: what an idle exit waits to reach zero.
#[derive(Debug, Clone, Default)]
pub struct Activity(Arc<AtomicUsize>);

impl Activity {
    /// The number of open connections.
    pub fn open_connections(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

/// Counts one open connection while it lives.
struct Open(Activity);

impl Open {
    fn new(activity: &Activity) -> Open {
        activity.0.fetch_add(1, Ordering::SeqCst);
        Open(activity.clone())
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Serves `app` on `listener` until `shutdown` completes, then shuts down as described above.
pub(crate) async fn serve(
    listener: Listener,
    app: Router,
    limits: &Limits,
    activity: &Activity,
    shutdown: impl Future<Output = ()>,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let mut connections = JoinSet::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true);
    tokio::pin!(shutdown);
    let mut saturated = false;
    'accept: loop {
        while connections.try_join_next().is_some() {}
        let permit = match permits.clone().try_acquire_owned() {
            Ok(permit) => {
                if saturated {
                    tracing::info!("below the connection limit again");
                    saturated = false;
                }
                permit
            }
            Err(_) => {
                if !saturated {
                    saturated = true;
                    tracing::warn!(
                        "connection limit reached: {} connections are open; new connections wait until one closes \
                     (raise it with --max-connections)",
                        limits.max_connections
                    );
                }
                tokio::select! {
                    permit = permits.clone().acquire_owned() => match permit {
                        Ok(permit) => permit,
                        Err(_) => break 'accept,
                    },
                    () = &mut shutdown => break 'accept,
                }
            }
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(stream) => stream,
                Err(e) => {
                    tracing::warn!("accept error: {e}");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    continue;
                }
            },
            () = &mut shutdown => break 'accept,
        };
        let open = Open::new(activity);
        let connection = http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app.clone()));
        let connection = graceful.watch(connection);
        connections.spawn(async move {
            let _permit = permit;
            let _open = open;
            if let Err(e) = connection.await {
                tracing::debug!("connection ended: {e}");
            }
        });
    }
    drop(listener);
    let open = connections.len();
    if tokio::time::timeout(limits.shutdown_grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            "shutdown: requests still in progress after {:?}; closing their connections",
            limits.shutdown_grace
        );
    }
    connections.abort_all();
    while connections.join_next().await.is_some() {}
    tracing::debug!("shutdown: {open} connections closed");
}
