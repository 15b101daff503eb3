//! The JSON-RPC 2.0 envelope: outgoing calls, incoming requests, and answers in the server's
//! three shapes (a JSON-RPC success or error, a REST-style error body, or plain text).
//!
//! Params, ids and results stay raw JSON text ([`RawValue`]) until a typed shape reads them,
//! so decoding costs about the size of the bytes, whatever they hold.

use serde::de::{DeserializeOwned, IgnoredAny};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::value::RawValue;

/// An outgoing call (client side).
#[derive(Debug, Serialize)]
pub struct Call<'a, P> {
    /// Always `2.0`.
    pub jsonrpc: &'static str,
    /// The method, one of [`crate::method`].
    pub method: &'a str,
    /// Its params.
    pub params: &'a P,
    /// The request id.
    pub id: u64,
}

impl<'a, P> Call<'a, P> {
    /// A call of `method` with `params`.
    pub fn new(method: &'a str, params: &'a P, id: u64) -> Self {
        Call {
            jsonrpc: "2.0",
            method,
            params,
            id,
        }
    }
}

/// An incoming request (server side), read as the real server reads it: `jsonrpc` and `method`
/// are required; `params` and `id` may be missing or `null`.
#[derive(Debug, Deserialize)]
pub struct Request {
    /// Must be `2.0` (the server checks it and answers -32600 otherwise).
    pub jsonrpc: String,
    /// The method name.
    pub method: String,
    /// The params, raw; read them with [`Request::params`].
    #[serde(default)]
    pub params: Option<Box<RawValue>>,
    /// The id, raw (echoed back as sent); `None` when missing or `null`.
    #[serde(default)]
    pub id: Option<Box<RawValue>>,
}

/// Why a request body is not a request; the server answers in plain text like the real
/// server's HTTP framework does.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// Not JSON at all (HTTP 400).
    #[error("Failed to parse the request body as JSON: {0}")]
    Syntax(String),
    /// JSON, but not one request object: a batch, a missing `jsonrpc` or `method`, a field of
    /// the wrong type (HTTP 422).
    #[error("Failed to deserialize the JSON body into the target type: {0}")]
    Shape(String),
}

/// Invalid params of a known method; the message is serde's, without a position.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParamsError(pub String);

/// The first byte that is not JSON white space.
fn first_byte(body: &[u8]) -> Option<u8> {
    body.iter()
        .copied()
        .find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
}

/// Whether `body` is well-formed JSON (read without building anything).
fn is_json(body: &[u8]) -> Result<(), serde_json::Error> {
    serde_json::from_slice::<IgnoredAny>(body).map(|_| ())
}

/// serde's message without the ` at line L column C` suffix.
fn message_of(e: &serde_json::Error) -> String {
    let text = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    text.strip_suffix(&suffix).unwrap_or(&text).to_owned()
}

/// Decodes an RPC request body. Pure and bounded: never panics, whatever the bytes.
pub fn decode_request(body: &[u8]) -> Result<Request, RequestError> {
    if first_byte(body) != Some(b'{') {
        return match is_json(body) {
            Ok(()) => Err(RequestError::Shape(
                "expected one JSON-RPC request object (batches are not supported)".into(),
            )),
            Err(e) => Err(RequestError::Syntax(e.to_string())),
        };
    }
    serde_json::from_slice(body).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => RequestError::Shape(e.to_string()),
        _ => RequestError::Syntax(e.to_string()),
    })
}

impl Request {
    /// Reads the params as `T`; missing or `null` params read as `{}`.
    pub fn params<T: DeserializeOwned>(&self) -> Result<T, ParamsError> {
        let text = self.params.as_deref().map_or("{}", RawValue::get);
        let text = if text == "null" { "{}" } else { text };
        serde_json::from_str(text).map_err(|e| ParamsError(message_of(&e)))
    }
}

#[derive(Serialize)]
struct Success<'a, R> {
    jsonrpc: &'static str,
    result: &'a R,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a RawValue>,
}

/// A JSON-RPC success answer; a request without an id (or with `null`) is answered without one.
pub fn encode_success<R: Serialize>(result: &R, id: Option<&RawValue>) -> Result<Vec<u8>, serde_json::Error> {
    serde_json::to_vec(&Success {
        jsonrpc: "2.0",
        result,
        id,
    })
}

#[derive(Serialize)]
struct ErrorEnvelope<'a> {
    jsonrpc: &'static str,
    error: crate::codes::RpcErrorObject,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a RawValue>,
}

/// A JSON-RPC error envelope (the server uses it only for a wrong version and an unknown method).
pub fn encode_rpc_error(code: i64, message: String, id: Option<&RawValue>) -> Result<Vec<u8>, serde_json::Error> {
    serde_json::to_vec(&ErrorEnvelope {
        jsonrpc: "2.0",
        error: crate::codes::RpcErrorObject { code, message },
        id,
    })
}

/// What an answer body says (client side), before its HTTP status is taken into account.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Answer {
    /// A JSON-RPC success: its `result`, raw (read it with [`decode_result`]).
    Result(Box<RawValue>),
    /// A JSON-RPC error envelope.
    RpcError {
        /// Its code (0 when missing or not an integer).
        code: i64,
        /// Its message (empty when missing or not a string).
        message: String,
    },
    /// A REST-style error `{"error": "...", "code": n}`.
    RestError {
        /// Its code, when it is an integer.
        code: Option<i64>,
        /// Its message.
        message: String,
    },
    /// An `error` of no known shape, raw.
    OddError(Box<RawValue>),
    /// A JSON object with neither `result` nor `error`.
    Neither,
}

/// Why an answer body cannot be read as an answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AnswerError {
    /// Not JSON (an HTML page, a framework's plain text, garbage, truncated JSON).
    #[error("not JSON: {0}")]
    NotJson(String),
    /// JSON, but not an object.
    #[error("JSON that is not an object")]
    NotObject,
}

/// Deserializes a present field, `null` included, as `Some(raw)`.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Box<RawValue>>, D::Error> {
    Box::<RawValue>::deserialize(d).map(Some)
}

#[derive(Deserialize)]
struct RawAnswer {
    #[serde(default, deserialize_with = "present")]
    result: Option<Box<RawValue>>,
    #[serde(default, deserialize_with = "present")]
    error: Option<Box<RawValue>>,
    #[serde(default, deserialize_with = "present")]
    code: Option<Box<RawValue>>,
}

/// A JSON-RPC error object; a `null` member counts as a missing one.
#[derive(Deserialize)]
struct RawErrorObject {
    code: Option<Box<RawValue>>,
    message: Option<Box<RawValue>>,
}

fn integer(raw: Option<&RawValue>) -> Option<i64> {
    raw.and_then(|r| r.get().parse().ok())
}

fn string(raw: Option<&RawValue>) -> Option<String> {
    raw.and_then(|r| serde_json::from_str(r.get()).ok())
}

/// Reads a JSON object's text (an answer body, a health body) without building a tree.
pub(crate) fn object<T: DeserializeOwned>(body: &[u8]) -> Result<T, AnswerError> {
    if first_byte(body) != Some(b'{') {
        return match is_json(body) {
            Ok(()) => Err(AnswerError::NotObject),
            Err(e) => Err(AnswerError::NotJson(e.to_string())),
        };
    }
    serde_json::from_slice(body).map_err(|e| AnswerError::NotJson(e.to_string()))
}

/// Decodes an answer body (client side). Pure and bounded: never panics, whatever the bytes.
/// An `error` wins over a `result`.
pub fn decode_answer(body: &[u8]) -> Result<Answer, AnswerError> {
    let raw: RawAnswer = object(body)?;
    if let Some(error) = raw.error {
        return Ok(match first_byte(error.get().as_bytes()) {
            Some(b'{') => match serde_json::from_str::<RawErrorObject>(error.get()) {
                Ok(object) => Answer::RpcError {
                    code: integer(object.code.as_deref()).unwrap_or(0),
                    message: string(object.message.as_deref()).unwrap_or_default(),
                },
                Err(_) => Answer::OddError(error),
            },
            Some(b'"') => match string(Some(&error)) {
                Some(message) => Answer::RestError {
                    code: integer(raw.code.as_deref()),
                    message,
                },
                None => Answer::OddError(error),
            },
            _ => Answer::OddError(error),
        });
    }
    Ok(match raw.result {
        Some(result) => Answer::Result(result),
        None => Answer::Neither,
    })
}

/// Reads a raw `result` as `T`; the error is serde's message.
pub fn decode_result<T: DeserializeOwned>(result: &RawValue) -> Result<T, serde_json::Error> {
    serde_json::from_str(result.get())
}
