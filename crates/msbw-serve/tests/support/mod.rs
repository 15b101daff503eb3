//! What the serve tests share: `msbw serve` on a loopback port, running until it is stopped.

use std::net::SocketAddr;
use std::sync::Arc;

use microsandbox_wrapper::{LocalBackend, MicrosandboxWrapper, ShutdownReport, WrapperConfig};
use msbw_serve::{ServeOptions, Server};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A server bound to a free loopback port and running in a task.
pub(crate) struct Served {
    /// Where it listens.
    pub(crate) addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<ShutdownReport>,
}

impl Served {
    /// Binds `msbw serve` over `wrapper` to a free loopback port and runs it.
    pub(crate) async fn start(wrapper: MicrosandboxWrapper, options: ServeOptions) -> Served {
        let server = Server::bind("127.0.0.1:0".parse().unwrap(), wrapper, options)
            .await
            .unwrap();
        let addr = server.local_addr().unwrap();
        let (stop, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async move {
            let _ = rx.await;
        }));
        Served { addr, stop, task }
    }

    /// Its base URL, `http://ADDR`.
    #[allow(dead_code, reason = "not every test file asks for the URL")]
    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Tells it to stop (at once) and returns the wait for its shutdown.
    pub(crate) fn stop(self) -> impl Future<Output = ShutdownReport> {
        let _ = self.stop.send(());
        async move { self.task.await.unwrap() }
    }
}

/// A wrapper over the local backend with the default configuration.
#[allow(dead_code, reason = "not every test file runs the local backend")]
pub(crate) fn local_wrapper() -> MicrosandboxWrapper {
    let config = WrapperConfig::default();
    let local = LocalBackend::from_config(&config).unwrap();
    MicrosandboxWrapper::with_backend(config, Arc::new(local)).unwrap()
}
