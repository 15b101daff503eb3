//! `POST /api/v1/rpc`: the body read within its time and size limits, decoded as the real
//! server's framework does (415, 413, 400, 422 in plain text), the envelope checked (-32600,
//! -32601), and the method called.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use msbw_protocol::{RequestError, codes, decode_request, method};

use crate::auth::Caller;
use crate::reply::{envelope_error, framework_error};
use crate::server::AppState;
use crate::{MAX_BODY_BYTES, methods};

/// `application/json`, or any `application/*+json`, parameters ignored.
fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let mime = value.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
}

fn too_large() -> Response {
    framework_error(
        StatusCode::PAYLOAD_TOO_LARGE,
        "Failed to buffer the request body: length limit exceeded".into(),
        true,
    )
}

/// The handler.
pub(crate) async fn rpc(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if !is_json(&headers) {
        return framework_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Expected request with `Content-Type: application/json`".into(),
            false,
        );
    }
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return too_large();
    }
    let limit = state.options.limits.body_read_timeout;
    let bytes = match tokio::time::timeout(limit, Limited::new(body, MAX_BODY_BYTES).collect()).await {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => return too_large(),
        Ok(Err(e)) => {
            return framework_error(
                StatusCode::BAD_REQUEST,
                format!("Failed to buffer the request body: {e}"),
                true,
            );
        }
        Err(_) => {
            tracing::debug!("a request body did not arrive within {limit:?}");
            return framework_error(
                StatusCode::REQUEST_TIMEOUT,
                format!("the request body did not arrive within {} s", limit.as_secs_f64()),
                true,
            );
        }
    };
    let request = match decode_request(&bytes) {
        Ok(request) => request,
        Err(e @ RequestError::Syntax(_)) => return framework_error(StatusCode::BAD_REQUEST, e.to_string(), false),
        Err(e) => return framework_error(StatusCode::UNPROCESSABLE_ENTITY, e.to_string(), false),
    };
    drop(bytes);
    let id = request.id.as_deref();
    if request.jsonrpc != "2.0" {
        return envelope_error(
            StatusCode::BAD_REQUEST,
            codes::INVALID_REQUEST,
            format!("Invalid Request: jsonrpc must be \"2.0\", not {:?}", request.jsonrpc),
            id,
        );
    }
    let answer = match request.method.as_str() {
        method::START => methods::start(&state, &caller, &request).await,
        method::STOP => methods::stop(&state, &caller, &request).await,
        method::METRICS => methods::metrics(&state, &caller, &request).await,
        method::REPL_RUN => methods::repl(&state, &caller, &request).await,
        method::COMMAND_RUN => methods::command(&state, &caller, &request).await,
        // The file extension (announced in the health answer; see `files`).
        method::FS_WRITE => crate::files::write(&state, &caller, &request).await,
        method::FS_READ => crate::files::read(&state, &caller, &request).await,
        method::FS_LIST => crate::files::list(&state, &caller, &request).await,
        method::FS_REMOVE => crate::files::remove(&state, &caller, &request).await,
        other => {
            return envelope_error(
                StatusCode::NOT_FOUND,
                codes::METHOD_NOT_FOUND,
                format!("Method not found: {other}"),
                id,
            );
        }
    };
    answer.unwrap_or_else(IntoResponse::into_response)
}
