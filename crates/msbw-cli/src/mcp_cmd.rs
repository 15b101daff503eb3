//! `msbw mcp`: parses nothing more than flags and handles signals; the server is msbw-mcp's.

use std::net::SocketAddr;

use microsandbox_wrapper::WrapperConfig;
use msbw_mcp::{BoundServer, HttpOptions, HttpServeError};

use crate::cli::McpArgs;
use crate::{exit, print_error};

/// Runs the MCP server until the client goes (stdio), Ctrl-C or SIGTERM; then every sandbox is
/// stopped. stdout is the protocol: everything else goes to stderr.
pub(crate) async fn run(config: WrapperConfig, args: McpArgs) -> u8 {
    let addr = if args.http {
        match crate::front::host_ip(&args.host) {
            Ok(ip) => Some(SocketAddr::new(ip, args.port)),
            Err(status) => return status,
        }
    } else {
        None
    };
    let token = std::env::var("MSB_MCP_TOKEN").ok().filter(|t| !t.trim().is_empty());
    if let Some(addr) = addr
        && token.is_none()
        && !addr.ip().is_loopback()
    {
        eprintln!("msbw mcp: {}", HttpServeError::TokenRequired { addr });
        return exit::USAGE;
    }
    let wrapper = match crate::front::open(config).await {
        Ok(w) => w,
        Err(status) => return status,
    };
    let backend = wrapper.backend_selection().backend.clone();
    let report = match addr {
        None => {
            tracing::info!(%backend, "msbw mcp: serving on stdio");
            match msbw_mcp::serve_stdio(wrapper, crate::shutdown::signal()).await {
                Ok(report) => report,
                Err(e) => {
                    print_error(&e, false);
                    return exit::for_error(&e);
                }
            }
        }
        Some(addr) => {
            let server = match BoundServer::bind(
                wrapper,
                HttpOptions {
                    addr,
                    token: token.clone(),
                },
            )
            .await
            {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("msbw mcp: {e}");
                    return exit::USAGE;
                }
            };
            let shown = server
                .local_addr()
                .map(|a| a.to_string())
                .unwrap_or_else(|_| addr.to_string());
            eprintln!(
                "msbw mcp: listening on http://{shown}/mcp ({backend} backend, {})",
                if token.is_some() {
                    "bearer token required"
                } else {
                    "no token: loopback only"
                }
            );
            match server.run(crate::shutdown::signal()).await {
                Ok(report) => report,
                Err(HttpServeError::Wrapper(e)) => {
                    print_error(&e, false);
                    return exit::for_error(&e);
                }
                Err(e) => {
                    eprintln!("msbw mcp: {e}");
                    return exit::INTERNAL;
                }
            }
        }
    };
    crate::shutdown::finish("mcp", &report)
}
