//! Answers: the REST-style error body, JSON-RPC envelopes, plain-text framework errors, and
//! successes whose output lines are written in chunks.

use std::convert::Infallible;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::http::header::{CONNECTION, CONTENT_TYPE};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use microsandbox_wrapper::WrapperError;
use msbw_protocol::codes::{self, RestErrorBody};
use msbw_protocol::key::AuthError;
use msbw_protocol::{Output, encode_success};
use serde::Serialize;
use serde_json::value::RawValue;

/// Output this large or smaller is written in one piece; larger output is streamed.
const WHOLE_BELOW: usize = 64 * 1024;
/// The size of a streamed piece of output.
const CHUNK_BYTES: usize = 64 * 1024;

/// A REST-style error: `{"error": message, "code": n}`.
#[derive(Debug)]
pub(crate) struct RestError {
    status: StatusCode,
    code: u16,
    message: String,
}

impl RestError {
    /// 400 / 2001.
    pub(crate) fn validation(message: impl Into<String>) -> Self {
        RestError {
            status: StatusCode::BAD_REQUEST,
            code: codes::VALIDATION,
            message: message.into(),
        }
    }

    /// 500 / 5002, with the reason (the real server hides it).
    pub(crate) fn internal(message: impl Into<String>) -> Self {
        RestError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: codes::INTERNAL,
            message: message.into(),
        }
    }

    /// 401 / 1001, 401 / 1004 or 403 / 3001.
    pub(crate) fn from_auth(e: AuthError) -> Self {
        RestError {
            status: StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::UNAUTHORIZED),
            code: e.code(),
            message: e.to_string(),
        }
    }

    /// A wrapper error: input problems are validation errors; everything else is a 500 that,
    /// unlike the real server's, says why.
    pub(crate) fn from_wrapper(e: &WrapperError) -> Self {
        match e {
            WrapperError::InvalidInput { .. } | WrapperError::SessionMismatch { .. } => Self::validation(e.to_string()),
            WrapperError::ResourceLimit(_) | WrapperError::LimitReached { .. } => RestError {
                code: msbw_protocol::codes::LIMIT_REACHED,
                ..Self::internal(e.to_string())
            },
            _ => Self::internal(e.to_string()),
        }
    }
}

impl IntoResponse for RestError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(RestErrorBody {
                error: self.message,
                code: self.code,
            }),
        )
            .into_response()
    }
}

fn json_response(status: StatusCode, body: Vec<u8>) -> Response {
    let mut response = (status, body).into_response();
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// A JSON-RPC error envelope (used only for a wrong version and an unknown method).
pub(crate) fn envelope_error(status: StatusCode, code: i64, message: String, id: Option<&RawValue>) -> Response {
    match msbw_protocol::envelope::encode_rpc_error(code, message, id) {
        Ok(body) => json_response(status, body),
        Err(e) => RestError::internal(format!("cannot encode the answer: {e}")).into_response(),
    }
}

/// A plain-text answer as the real server's HTTP framework gives (400, 408, 413, 415, 422).
pub(crate) fn framework_error(status: StatusCode, text: String, close: bool) -> Response {
    let mut response = (status, text).into_response();
    if close {
        response
            .headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// A JSON-RPC success.
pub(crate) fn success<R: Serialize>(result: &R, id: Option<&RawValue>) -> Response {
    match encode_success(result, id) {
        Ok(body) => json_response(StatusCode::OK, body),
        Err(e) => RestError::internal(format!("cannot encode the answer: {e}")).into_response(),
    }
}

/// A JSON-RPC success whose result, made by `make`, has an `output` field. Large output is
/// written in pieces as the connection takes them, so the answer costs about the output's own
/// size however many lines it has.
pub(crate) fn success_with_output<R: Serialize>(
    output: Output,
    id: Option<&RawValue>,
    make: impl Fn(Output) -> R,
) -> Response {
    if output.stdout.len() + output.stderr.len() <= WHOLE_BELOW {
        return success(&make(output), id);
    }
    let body = match encode_success(&make(Output::default()), id) {
        Ok(body) => body,
        Err(e) => return RestError::internal(format!("cannot encode the answer: {e}")).into_response(),
    };
    // In the serialized result, `"output":[]` can only be the key: inside a JSON string every
    // `"` is escaped. The result's fields come before the envelope's `id`.
    const MARK: &[u8] = b"\"output\":[]";
    let Some(at) = body.windows(MARK.len()).position(|w| w == MARK) else {
        return RestError::internal("the answer has no output field").into_response();
    };
    let split = at + MARK.len() - 2;
    let head = body[..split].to_vec();
    let tail = body[split + 2..].to_vec();
    let pieces = std::iter::once(head)
        .chain(output.into_json_chunks(CHUNK_BYTES))
        .chain(std::iter::once(tail))
        .map(|piece| Ok::<Bytes, Infallible>(Bytes::from(piece)));
    let mut response = Response::new(Body::from_stream(futures_util::stream::iter(pieces)));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}
