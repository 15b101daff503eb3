//! The transport: one reqwest client per backend (connection reuse, rustls), JSON-RPC framing,
//! the three error shapes of the server read into a [`CallError`], and retries where they are
//! safe.
//!
//! Retry rule: a call whose connection could not be established was certainly not sent, so it
//! is retried whatever it is ([`Retry::UnsentOnly`]); an idempotent call (health, listing, stop)
//! is also retried after a broken connection, a timeout or a gateway status
//! ([`Retry::Idempotent`]). Code, commands and starts are never sent twice.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use msbw_protocol::results::HealthAnswer;
use msbw_protocol::stream::{NDJSON_CONTENT_TYPE, STREAM_HEADER, STREAM_NDJSON};
use msbw_protocol::{Answer, AnswerError, Call, HEALTH_PATH, MAX_REQUEST_BYTES, RPC_PATH, decode_answer};
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use serde::Serialize;
use serde_json::value::RawValue;

use crate::RetryPolicy;
use crate::config::HttpBackendConfig;
use crate::errors::{CallError, Scrubber};

/// A `result` as the server sent it, raw JSON text: typed shapes read it directly, so an answer
/// costs about its own size in memory.
pub(crate) type RawResult = Box<RawValue>;

/// Which failures of a call may be retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Retry {
    /// Only when the connection could not be established (the request was not sent).
    UnsentOnly,
    /// Also after timeouts, broken connections and gateway statuses: the call is idempotent.
    Idempotent,
}

/// How a streamed call was answered.
pub(crate) enum Streamed {
    /// NDJSON lines, to be read as they come.
    Lines(reqwest::Response),
    /// A plain JSON-RPC answer (the server does not stream, or refused the call).
    Whole(RawResult),
}

fn send_error(e: reqwest::Error, timeout: Duration) -> CallError {
    if e.is_connect() {
        CallError::Connect { source: e }
    } else if e.is_timeout() {
        CallError::Timeout { after: timeout }
    } else {
        CallError::Transport { source: e }
    }
}

fn content_type(response: &reqwest::Response) -> Option<String> {
    response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// The HTTP side of a backend.
pub(crate) struct Client {
    http: reqwest::Client,
    rpc_url: String,
    health_url: String,
    display_url: String,
    authorization: Option<HeaderValue>,
    scrubber: Scrubber,
    retry: RetryPolicy,
    next_id: AtomicU64,
    max_response_bytes: usize,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("url", &self.display_url)
            .field("api_key", &self.authorization.as_ref().map(|_| msbw_config::MASK))
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client for the configured server; says what is wrong with the URL or the key.
    pub(crate) fn new(config: &HttpBackendConfig) -> Result<Client, String> {
        let display_url = match &config.unix_socket {
            Some(socket) => format!("unix:{}", socket.display()),
            None => msbw_config::redact_url(&config.server_url),
        };
        msbw_config::parse_server_url(&config.server_url)
            .map_err(|why| format!("the server URL {display_url} {why}"))?;
        let base = config.server_url.trim_end_matches('/');
        let rpc_url = format!("{base}{RPC_PATH}");
        reqwest::Url::parse(&rpc_url).map_err(|e| format!("the server URL {display_url} is invalid: {e}"))?;
        let authorization = match &config.api_key {
            Some(key) => {
                let mut value = HeaderValue::from_str(&format!("Bearer {}", key.expose()))
                    .map_err(|_| "the API key contains characters that cannot be sent in an HTTP header".to_owned())?;
                value.set_sensitive(true);
                Some(value)
            }
            None => None,
        };
        let mut http = reqwest::Client::builder();
        if let Some(socket) = &config.unix_socket {
            http = http.unix_socket(socket.as_path());
        }
        let http = http
            .connect_timeout(config.connect_timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            .user_agent(concat!("msbw-http/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot create the HTTP client: {e}"))?;
        Ok(Client {
            http,
            health_url: format!("{base}{HEALTH_PATH}"),
            rpc_url,
            display_url,
            authorization,
            scrubber: Scrubber::new(config.api_key.clone()),
            retry: config.retry.clone(),
            next_id: AtomicU64::new(1),
            max_response_bytes: config.max_response_bytes,
        })
    }

    /// The server URL, safe to print.
    pub(crate) fn display_url(&self) -> &str {
        &self.display_url
    }

    /// Text from outside, safe to quote (see [`Scrubber::scrub`]).
    pub(crate) fn scrub(&self, text: &str) -> String {
        self.scrubber.scrub(text)
    }

    /// Whether an API key is sent.
    pub(crate) fn key_sent(&self) -> bool {
        self.authorization.is_some()
    }

    /// The JSON-RPC request of `method` with `params` (a fresh id), encoded and within
    /// [`MAX_REQUEST_BYTES`].
    fn encode<P: Serialize>(&self, method: &str, params: &P) -> Result<bytes::Bytes, CallError> {
        let request = Call::new(method, params, self.next_id.fetch_add(1, Ordering::Relaxed));
        let body = serde_json::to_vec(&request).map_err(|e| CallError::Protocol {
            status: 0,
            what: format!("a request that cannot be encoded as JSON ({e})"),
        })?;
        if body.len() > MAX_REQUEST_BYTES {
            return Err(CallError::TooLarge { bytes: body.len() });
        }
        // Shared, not copied, by every attempt.
        Ok(bytes::Bytes::from(body))
    }

    /// A `POST` of `body` to the RPC endpoint, asking for a streamed answer or not, with the key
    /// when there is one.
    fn post_rpc(&self, body: &bytes::Bytes, streamed: bool) -> reqwest::RequestBuilder {
        let builder = self.http.post(&self.rpc_url).header(CONTENT_TYPE, "application/json");
        let builder = if streamed {
            builder
                .header(ACCEPT, NDJSON_CONTENT_TYPE)
                .header(STREAM_HEADER, STREAM_NDJSON)
        } else {
            builder.header(ACCEPT, "application/json")
        };
        let builder = builder.body(body.clone());
        match &self.authorization {
            Some(auth) => builder.header(AUTHORIZATION, auth.clone()),
            None => builder,
        }
    }

    /// Calls a JSON-RPC method and returns its `result`, retrying as `retry` allows. Each
    /// attempt may take `timeout`, answer included.
    pub(crate) async fn rpc<P: Serialize>(
        &self,
        method: &str,
        params: &P,
        timeout: Duration,
        retry: Retry,
    ) -> Result<RawResult, CallError> {
        let body = self.encode(method, params)?;
        tracing::debug!(method, bytes = body.len(), "microsandbox rpc");
        self.with_retries(method, retry, || async {
            let builder = self.post_rpc(&body, false);
            let (status, content_type, bytes) = self.exchange(builder, timeout).await?;
            self.read_rpc(status, content_type.as_deref(), &bytes)
        })
        .await
    }

    /// Sends a code or command call asking for a streamed answer (header
    /// [`STREAM_HEADER`]); sent once, again only if it certainly was not sent. The headers must
    /// come within `timeout`. A server that answers plain JSON (an error, or no streaming) is
    /// read as [`rpc`](Self::rpc) reads it.
    pub(crate) async fn rpc_stream<P: Serialize>(
        &self,
        method: &str,
        params: &P,
        timeout: Duration,
    ) -> Result<Streamed, CallError> {
        let body = self.encode(method, params)?;
        tracing::debug!(method, bytes = body.len(), "microsandbox rpc (streamed)");
        self.with_retries(method, Retry::UnsentOnly, || async {
            let builder = self.post_rpc(&body, true);
            let response = tokio::time::timeout(timeout, builder.send())
                .await
                .map_err(|_| CallError::Timeout { after: timeout })?
                .map_err(|e| send_error(e, timeout))?;
            let status = response.status().as_u16();
            let content_type = content_type(&response);
            let ndjson = content_type
                .as_deref()
                .is_some_and(|t| t.trim_start().starts_with(NDJSON_CONTENT_TYPE));
            if (200..300).contains(&status) && ndjson {
                return Ok(Streamed::Lines(response));
            }
            let bytes = tokio::time::timeout(timeout, self.read_body(response, status))
                .await
                .map_err(|_| CallError::Timeout { after: timeout })??;
            self.read_rpc(status, content_type.as_deref(), &bytes)
                .map(Streamed::Whole)
        })
        .await
    }

    /// The bound of a buffered answer (and of one streamed line).
    pub(crate) fn max_response_bytes(&self) -> usize {
        self.max_response_bytes
    }

    /// `GET /api/v1/health` (it needs no key, so none is sent), retried like any idempotent call.
    pub(crate) async fn health(&self, timeout: Duration) -> Result<HealthAnswer, CallError> {
        self.with_retries("health", Retry::Idempotent, || async {
            let builder = self.http.get(&self.health_url).header(ACCEPT, "application/json");
            let (status, content_type, bytes) = self.exchange(builder, timeout).await?;
            if (200..300).contains(&status) {
                return match HealthAnswer::decode(&bytes) {
                    Ok(answer) => Ok(answer),
                    Err(AnswerError::NotObject) => Err(CallError::Protocol {
                        status,
                        what: format!("JSON that is not an object ({})", self.snippet(&bytes)),
                    }),
                    Err(_) => Err(self.not_json(status, content_type.as_deref(), &bytes)),
                };
            }
            Err(match self.read_error(status, content_type.as_deref(), &bytes) {
                Ok(_) => CallError::Protocol {
                    status,
                    what: "an unexpected answer".into(),
                },
                Err(e) => e,
            })
        })
        .await
    }

    async fn with_retries<T, F, Fut>(&self, what: &str, retry: Retry, mut attempt: F) -> Result<T, CallError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, CallError>>,
    {
        let mut tries = 1;
        loop {
            match attempt().await {
                Ok(value) => return Ok(value),
                Err(error) => {
                    let allowed = match retry {
                        Retry::UnsentOnly => error.not_sent(),
                        Retry::Idempotent => error.transient(),
                    };
                    if !allowed || tries >= self.retry.max_attempts {
                        return Err(error);
                    }
                    let pause = self.retry.backoff(tries);
                    tracing::debug!(what, tries, ?pause, "retrying a failed microsandbox call");
                    tokio::time::sleep(pause).await;
                    tries += 1;
                }
            }
        }
    }

    /// Sends a request and reads the whole answer within `timeout`.
    async fn exchange(
        &self,
        builder: reqwest::RequestBuilder,
        timeout: Duration,
    ) -> Result<(u16, Option<String>, Vec<u8>), CallError> {
        let exchange = async {
            let response = builder.send().await.map_err(|e| send_error(e, timeout))?;
            let status = response.status().as_u16();
            let content_type = content_type(&response);
            let body = self.read_body(response, status).await?;
            Ok((status, content_type, body))
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| CallError::Timeout { after: timeout })?
    }

    /// Reads a whole body, at most `max_response_bytes`.
    async fn read_body(&self, mut response: reqwest::Response, status: u16) -> Result<Vec<u8>, CallError> {
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| CallError::Transport { source: e })? {
            if body.len() + chunk.len() > self.max_response_bytes {
                return Err(CallError::Protocol {
                    status,
                    what: format!("an answer larger than {} bytes", self.max_response_bytes),
                });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    /// Reads an RPC answer: the `result` of a JSON-RPC success, or the error in any of the
    /// server's three shapes.
    pub(crate) fn read_rpc(
        &self,
        status: u16,
        content_type: Option<&str>,
        body: &[u8],
    ) -> Result<RawResult, CallError> {
        let answer = self.read_error(status, content_type, body)?;
        if !(200..300).contains(&status) {
            return Err(CallError::Protocol {
                status,
                what: format!("an unexpected JSON body ({})", self.snippet(body)),
            });
        }
        match answer {
            Some(result) => Ok(result),
            None => Err(CallError::Protocol {
                status,
                what: format!("a JSON object without \"result\" or \"error\" ({})", self.snippet(body)),
            }),
        }
    }

    /// Returns the body's `result` (if any) when it is a JSON object carrying no error;
    /// otherwise the error it stands for. Nothing of the body is built as a JSON tree.
    fn read_error(&self, status: u16, content_type: Option<&str>, body: &[u8]) -> Result<Option<RawResult>, CallError> {
        let gateway = matches!(status, 502..=504);
        if body.iter().all(u8::is_ascii_whitespace) {
            return Err(match status {
                _ if gateway => CallError::Unavailable {
                    status,
                    detail: String::new(),
                },
                200..=299 | 404 | 405 => CallError::Protocol {
                    status,
                    what: "an empty body instead of a JSON-RPC answer".into(),
                },
                _ => CallError::Server {
                    status,
                    code: None,
                    message: "(the answer had no body)".into(),
                },
            });
        }
        let answer = match decode_answer(body) {
            Ok(answer) => answer,
            Err(AnswerError::NotObject) if gateway => {
                return Err(CallError::Unavailable {
                    status,
                    detail: self.snippet(body),
                });
            }
            Err(AnswerError::NotObject) => {
                return Err(CallError::Protocol {
                    status,
                    what: format!("JSON that is not a JSON-RPC answer ({})", self.snippet(body)),
                });
            }
            Err(_) => return Err(self.not_json(status, content_type, body)),
        };
        let result = match answer {
            Answer::RpcError { code, message } => {
                return Err(CallError::Rpc {
                    status,
                    code,
                    message: self.scrubber.scrub(&message),
                });
            }
            Answer::RestError { message, .. } if gateway => {
                return Err(CallError::Unavailable {
                    status,
                    detail: self.scrubber.scrub(&message),
                });
            }
            Answer::RestError { code, message } => {
                return Err(CallError::Server {
                    status,
                    code,
                    message: self.scrubber.scrub(&message),
                });
            }
            Answer::OddError(raw) => {
                return Err(CallError::Protocol {
                    status,
                    what: format!("an error of an unknown shape ({})", self.scrubber.scrub(raw.get())),
                });
            }
            Answer::Result(result) => Some(result),
            Answer::Neither => None,
            _ => None,
        };
        if gateway {
            return Err(CallError::Unavailable {
                status,
                detail: self.snippet(body),
            });
        }
        Ok(result)
    }

    /// The error of a body that is not JSON: an HTML page, a plain-text error of the HTTP
    /// framework, or garbage.
    fn not_json(&self, status: u16, content_type: Option<&str>, body: &[u8]) -> CallError {
        let text = String::from_utf8_lossy(body);
        let html =
            content_type.is_some_and(|c| c.to_ascii_lowercase().contains("html")) || text.trim_start().starts_with('<');
        if matches!(status, 502..=504) {
            return CallError::Unavailable {
                status,
                detail: if html {
                    "an HTML error page".into()
                } else {
                    self.scrubber.scrub(&text)
                },
            };
        }
        if html {
            return CallError::Protocol {
                status,
                what: format!(
                    "an HTML page instead of JSON ({}); is MSB_SERVER_URL pointing at a web server or proxy \
                     rather than the microsandbox server?",
                    self.snippet(body)
                ),
            };
        }
        match status {
            200..=299 => CallError::Protocol {
                status,
                what: format!("malformed JSON ({})", self.snippet(body)),
            },
            404 | 405 => CallError::Protocol {
                status,
                what: format!("the text {:?}", self.snippet(body)),
            },
            400 | 415 | 422 => CallError::Protocol {
                status,
                what: format!(
                    "a refusal of the request's framing ({:?}); this client and the server disagree on the protocol",
                    self.snippet(body)
                ),
            },
            _ => CallError::Server {
                status,
                code: None,
                message: self.scrubber.scrub(&text),
            },
        }
    }

    fn snippet(&self, body: &[u8]) -> String {
        self.scrubber.scrub(&String::from_utf8_lossy(body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn client() -> Client {
        Client::new(&HttpBackendConfig::new("http://127.0.0.1:1").with_api_key("msb_k")).expect("valid")
    }

    #[test]
    fn the_three_error_shapes_are_read() {
        let c = client();
        let rpc = json!({"jsonrpc": "2.0", "error": {"code": -32601, "message": "Method not found: x"}, "id": 1});
        assert!(matches!(
            c.read_rpc(404, Some("application/json"), rpc.to_string().as_bytes()),
            Err(CallError::Rpc {
                status: 404,
                code: -32601,
                ..
            })
        ));
        let rest = json!({"error": "Internal server error", "code": 5002});
        assert!(matches!(
            c.read_rpc(500, None, rest.to_string().as_bytes()),
            Err(CallError::Server {
                status: 500,
                code: Some(5002),
                ..
            })
        ));
        assert!(matches!(
            c.read_rpc(422, Some("text/plain"), b"Failed to deserialize"),
            Err(CallError::Protocol { status: 422, .. })
        ));
        assert!(matches!(
            c.read_rpc(413, Some("text/plain"), b"length limit exceeded"),
            Err(CallError::Server {
                status: 413,
                code: None,
                ..
            })
        ));
    }

    proptest! {
        #[test]
        fn any_answer_is_classified_without_panicking(status in 100u16..600, body in proptest::collection::vec(any::<u8>(), 0..200), html in any::<bool>()) {
            let c = client();
            let content_type = if html { Some("text/html") } else { None };
            let _ = c.read_rpc(status, content_type, &body);
        }

        #[test]
        fn every_json_result_comes_back_as_sent(value in any::<i64>(), text in any::<String>()) {
            let c = client();
            let result = json!({"n": value, "s": text});
            let body = json!({"jsonrpc": "2.0", "result": result, "id": 7});
            let raw = c.read_rpc(200, Some("application/json"), body.to_string().as_bytes()).unwrap();
            prop_assert_eq!(serde_json::from_str::<serde_json::Value>(raw.get()).unwrap(), result);
        }
    }
}
