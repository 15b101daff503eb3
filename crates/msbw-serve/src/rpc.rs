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
use msbw_protocol::stream::{NDJSON_CONTENT_TYPE, STREAM_HEADER, STREAM_NDJSON};
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

/// Whether the client asked for the streaming extension (upstream clients never do).
fn wants_stream(headers: &HeaderMap) -> bool {
    headers
        .get(STREAM_HEADER)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case(STREAM_NDJSON))
}

/// The longest final line of a streamed answer: the buffered answer's body.
const MAX_FINAL_LINE: usize = 256 << 20;

/// A streamed answer (see `msbw_protocol::stream`): chunk lines as the output happens, then the
/// buffered answer's body as the last line. The call runs in a task of its own that sends the
/// lines; a client that goes away closes the channel, which ends the call and so cancels the
/// execution.
fn streamed(state: Arc<AppState>, caller: Caller, request: msbw_protocol::Request) -> Response {
    let (tx, rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(16);
    tokio::spawn(async move {
        let answer = if request.method == method::REPL_RUN {
            methods::repl(&state, &caller, &request, Some(&tx)).await
        } else {
            methods::command(&state, &caller, &request, Some(&tx)).await
        };
        let response = answer.unwrap_or_else(IntoResponse::into_response);
        let mut last = axum::body::to_bytes(response.into_body(), MAX_FINAL_LINE)
            .await
            .map(|b| b.to_vec())
            .unwrap_or_default();
        if !last.ends_with(b"\n") {
            last.push(b'\n');
        }
        let _ = tx.send(bytes::Bytes::from(last)).await;
    });
    let lines = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|line| (Ok::<_, std::convert::Infallible>(line), rx))
    });
    let mut response = Response::new(Body::from_stream(lines));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, axum::http::HeaderValue::from_static(NDJSON_CONTENT_TYPE));
    response
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
        method::REPL_RUN | method::COMMAND_RUN if wants_stream(&headers) => return streamed(state, caller, request),
        method::REPL_RUN => methods::repl(&state, &caller, &request, None).await,
        method::COMMAND_RUN => methods::command(&state, &caller, &request, None).await,
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
