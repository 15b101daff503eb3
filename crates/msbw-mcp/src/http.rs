//! The streamable HTTP transport at `/mcp`: a bearer token (required off loopback), the Origin
//! check the MCP specification asks for, and a session namespace per MCP session.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use microsandbox_wrapper::{MicrosandboxWrapper, ShutdownReport, WrapperError};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use sha2::{Digest, Sha256};

use crate::server::{McpServer, Scoping};

/// How to serve over HTTP.
#[derive(Clone)]
pub struct HttpOptions {
    /// The address to listen on.
    pub addr: SocketAddr,
    /// The bearer token clients must send (`MSB_MCP_TOKEN`); required off loopback.
    pub token: Option<String>,
}

impl std::fmt::Debug for HttpOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpOptions")
            .field("addr", &self.addr)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// Why the HTTP server could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HttpServeError {
    /// A non-loopback address without a token.
    #[error("listening on {addr} (not a loopback address) needs a bearer token: set MSB_MCP_TOKEN")]
    TokenRequired {
        /// The address asked for.
        addr: SocketAddr,
    },
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The wrapper could not start.
    #[error("{0}")]
    Wrapper(#[from] WrapperError),
    /// The server failed while running.
    #[error("the HTTP server failed: {0}")]
    Serve(#[source] std::io::Error),
}

/// A bound server, ready to [`run`](BoundServer::run).
#[derive(Debug)]
pub struct BoundServer {
    listener: tokio::net::TcpListener,
    wrapper: MicrosandboxWrapper,
    token: Option<[u8; 32]>,
}

struct Guard {
    token: Option<[u8; 32]>,
}

/// Whether an Origin header names this machine (`http(s)://localhost|127.0.0.1|[::1][:port]`).
fn local_origin(origin: &str) -> bool {
    let Some(rest) = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
    else {
        return false;
    };
    let host = if let Some(v6) = rest.strip_prefix('[') {
        match v6.split_once(']') {
            Some((h, port)) if port.is_empty() || is_port(port) => h,
            _ => return false,
        }
    } else {
        match rest.split_once(':') {
            Some((h, port)) if is_port(port) => h,
            Some(_) => return false,
            None => rest,
        }
    };
    host.eq_ignore_ascii_case("localhost") || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn is_port(s: &str) -> bool {
    s.strip_prefix(':').unwrap_or(s).parse::<u16>().is_ok()
}

fn bearer_ok(headers: &HeaderMap, expected: &[u8; 32]) -> bool {
    let Some(value) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let Some(given) = value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("bearer ")) else {
        return false;
    };
    // Compared as digests, so the time taken says nothing about the token.
    let given: [u8; 32] = Sha256::digest(given.trim().as_bytes()).into();
    given == *expected
}

async fn guard(State(g): State<Arc<Guard>>, request: Request, next: Next) -> Response {
    if let Some(origin) = request.headers().get(header::ORIGIN) {
        let ok = origin.to_str().is_ok_and(local_origin);
        if !ok {
            tracing::warn!("refused a request from a non-local Origin");
            return (StatusCode::FORBIDDEN, "Origin not allowed").into_response();
        }
    }
    if let Some(expected) = &g.token
        && !bearer_ok(request.headers(), expected)
    {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "a bearer token is required (MSB_MCP_TOKEN)",
        )
            .into_response();
    }
    next.run(request).await
}

impl BoundServer {
    /// Binds `options.addr`; refuses a non-loopback address without a token.
    pub async fn bind(wrapper: MicrosandboxWrapper, options: HttpOptions) -> Result<Self, HttpServeError> {
        let token = options.token.filter(|t| !t.trim().is_empty());
        if token.is_none() && !options.addr.ip().is_loopback() {
            return Err(HttpServeError::TokenRequired { addr: options.addr });
        }
        let listener = tokio::net::TcpListener::bind(options.addr)
            .await
            .map_err(|source| HttpServeError::Bind {
                addr: options.addr,
                source,
            })?;
        Ok(BoundServer {
            listener,
            wrapper,
            token: token.map(|t| Sha256::digest(t.trim().as_bytes()).into()),
        })
    }

    /// The address listened on.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Starts the wrapper and serves until `shutdown` completes; then stops every sandbox.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<ShutdownReport, HttpServeError> {
        let BoundServer {
            listener,
            wrapper,
            token,
        } = self;
        wrapper.start().await?;
        let loopback = listener.local_addr().map(|a| a.ip().is_loopback()).unwrap_or(false);
        let mut config = StreamableHttpServerConfig::default();
        if !loopback {
            // Off loopback the Host can be any name the machine has; the token guards instead.
            config = config.disable_allowed_hosts();
        }
        let stop_sessions = config.cancellation_token.clone();
        let server = McpServer::new(wrapper.clone(), Scoping::PerMcpSession);
        let service = StreamableHttpService::new(
            move || Ok(server.clone()),
            Arc::new(LocalSessionManager::default()),
            config,
        );
        let app = axum::Router::new()
            .nest_service("/mcp", service)
            .layer(middleware::from_fn_with_state(Arc::new(Guard { token }), guard));
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                shutdown.await;
                tracing::info!("signalled: closing MCP sessions and stopping every sandbox");
                stop_sessions.cancel();
            })
            .await;
        let report = wrapper.stop().await;
        served.map_err(HttpServeError::Serve)?;
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_origins_pass() {
        for ok in [
            "http://localhost",
            "http://localhost:6274",
            "https://127.0.0.1:8775",
            "http://[::1]:3000",
            "http://LOCALHOST",
        ] {
            assert!(local_origin(ok), "{ok}");
        }
        for bad in [
            "http://evil.example",
            "http://localhost.evil.example",
            "http://127.0.0.1.evil.example:80",
            "null",
            "file://",
            "http://localhost:99999",
            "http://localhost@evil.example",
            "http://[::1]evil",
            "ws://localhost",
        ] {
            assert!(!local_origin(bad), "{bad}");
        }
    }

    #[test]
    fn bearer_must_match() {
        let expected: [u8; 32] = Sha256::digest(b"s3cret").into();
        let mut h = HeaderMap::new();
        assert!(!bearer_ok(&h, &expected));
        h.insert(
            header::AUTHORIZATION,
            "Bearer wrong".parse().unwrap_or_else(|_| unreachable!()),
        );
        assert!(!bearer_ok(&h, &expected));
        h.insert(
            header::AUTHORIZATION,
            "Bearer s3cret".parse().unwrap_or_else(|_| unreachable!()),
        );
        assert!(bearer_ok(&h, &expected));
        h.insert(
            header::AUTHORIZATION,
            "Basic s3cret".parse().unwrap_or_else(|_| unreachable!()),
        );
        assert!(!bearer_ok(&h, &expected));
    }

    #[test]
    fn the_token_is_not_in_debug_output() {
        let o = HttpOptions {
            addr: SocketAddr::from(([127, 0, 0, 1], 1)),
            token: Some("s3cret".into()),
        };
        assert!(!format!("{o:?}").contains("s3cret"));
    }
}
