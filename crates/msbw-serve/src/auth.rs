//! Authentication as an axum extractor: it runs before the body is read, as the real server's
//! middleware does, and refuses with the real server's 401 answers. The namespace check (403)
//! needs the params, so the methods make it with [`Caller::check_access`].

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use msbw_protocol::key::{self, AuthError, Claims};

use crate::reply::RestError;
use crate::server::AppState;

/// Who is calling: `None` claims in dev mode (no key configured).
#[derive(Debug)]
pub(crate) struct Caller(Option<Claims>);

impl Caller {
    /// Whether the caller may act on `namespace`: 403 / 3001 if not.
    pub(crate) fn check_access(&self, namespace: &str) -> Result<(), RestError> {
        match &self.0 {
            Some(claims) if !key::allows(claims, namespace) => Err(RestError::from_auth(AuthError::AccessDenied)),
            _ => Ok(()),
        }
    }
}

impl FromRequestParts<Arc<AppState>> for Caller {
    type Rejection = RestError;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<AppState>) -> Result<Self, Self::Rejection> {
        let Some(server_key) = &state.options.key else {
            return Ok(Caller(None));
        };
        // Proxy-Authorization is read first and wins, as on the real server.
        let header = parts
            .headers
            .get("proxy-authorization")
            .or_else(|| parts.headers.get("authorization"))
            .and_then(|v| v.to_str().ok());
        key::verify(server_key.expose(), header)
            .map(|claims| Caller(Some(claims)))
            .map_err(RestError::from_auth)
    }
}
