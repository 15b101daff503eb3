//! `msbw mcp`: the wrapper's sandbox sessions as Model Context Protocol tools for AI agents,
//! over stdio or streamable HTTP, with the official Rust SDK (`rmcp`).
//!
//! A front over the facade only: one [`MicrosandboxWrapper`] lives as long as the server, its
//! sessions persist across tool calls, and every sandbox is stopped when the server ends.

mod errors;
mod http;
mod server;
mod types;

use std::future::Future;

use microsandbox_wrapper::{MicrosandboxWrapper, ShutdownReport, WrapperError};
use rmcp::ServiceExt;

pub use errors::rpc_code;
pub use http::{BoundServer, HttpOptions, HttpServeError};
pub use server::McpServer;

/// Serves MCP on stdin/stdout until stdin closes or `shutdown` completes, then stops the wrapper
/// (every sandbox). The wrapper is started here.
pub async fn serve_stdio(
    wrapper: MicrosandboxWrapper,
    shutdown: impl Future<Output = ()>,
) -> Result<ShutdownReport, WrapperError> {
    wrapper.start().await?;
    let server = McpServer::new(wrapper.clone(), server::Scoping::None);
    let served = async {
        match server.serve(rmcp::transport::stdio()).await {
            Ok(running) => {
                if let Err(e) = running.waiting().await {
                    tracing::warn!(error = %e, "the MCP session ended with an error");
                }
            }
            Err(e) => tracing::error!(error = %e, "the MCP client did not initialize"),
        }
    };
    tokio::select! {
        () = served => tracing::info!("stdin closed: stopping every sandbox"),
        () = shutdown => tracing::info!("signalled: stopping every sandbox"),
    }
    Ok(wrapper.stop().await)
}
