//! What went wrong with one call to the server ([`CallError`], private), and how it becomes the
//! shared [`BackendError`] with a kind, the operation, the sandbox and a message a person can
//! act on. Nothing printable here contains the API key: messages quote the server only after
//! [`Scrubber::scrub`], URLs only through [`redact_url`](msbw_config::redact_url), and reqwest
//! errors are kept without their URL.

use std::fmt;
use std::time::Duration;

use msbw_backend::{BackendError, ErrorKind, Operation, SandboxId};
use msbw_config::{ApiKey, MASK};

/// The backend name errors carry.
pub(crate) const BACKEND: &str = "microsandbox";

/// The longest piece of a server answer quoted in a message.
const QUOTE_LIMIT: usize = 300;

/// The outcome of one failed exchange with the server, before it is put in context.
#[derive(Debug)]
pub(crate) enum CallError {
    /// The connection could not be established: the request was certainly not sent.
    Connect { source: reqwest::Error },
    /// The exchange broke after the request may have reached the server.
    Transport { source: reqwest::Error },
    /// No complete answer within the client-side limit.
    Timeout { after: Duration },
    /// The request is larger than the server accepts; it was not sent.
    TooLarge { bytes: usize },
    /// A gateway status (502, 503, 504): whatever is in front of the server cannot reach it.
    Unavailable { status: u16, detail: String },
    /// A REST-style error `{"error": .., "code": ..}`, or a plain-text error body.
    Server {
        status: u16,
        code: Option<i64>,
        message: String,
    },
    /// A JSON-RPC error object.
    Rpc { status: u16, code: i64, message: String },
    /// An answer that does not follow the protocol (not JSON, HTML, empty, wrong shape).
    Protocol { status: u16, what: String },
}

impl CallError {
    /// Whether the request certainly did not reach the server, so that sending it again cannot
    /// run anything twice.
    pub(crate) fn not_sent(&self) -> bool {
        matches!(self, CallError::Connect { .. })
    }

    /// Whether repeating an idempotent call may help: connection trouble, timeouts, gateways.
    pub(crate) fn transient(&self) -> bool {
        matches!(
            self,
            CallError::Connect { .. }
                | CallError::Transport { .. }
                | CallError::Timeout { .. }
                | CallError::Unavailable { .. }
        )
    }

    /// Whether this is the server's masked internal error (500 / 5002, or JSON-RPC -32603):
    /// the reason is only in the server's log, so the client decides with its own knowledge
    /// (defence 9).
    pub(crate) fn is_masked(&self) -> bool {
        match self {
            CallError::Server { status, code, .. } => {
                *status == 500 && *code != Some(i64::from(msbw_protocol::codes::LIMIT_REACHED))
            }
            CallError::Rpc { code, .. } => *code == -32603,
            _ => false,
        }
    }

    /// Whether the server said the namespace has no folder yet (nothing was ever started in
    /// it): 400 / 2001 `Namespace directory 'x' does not exist`. After our own validation of
    /// every name this is the only validation failure a listing can get.
    pub(crate) fn is_unknown_namespace(&self) -> bool {
        matches!(self, CallError::Server { status: 400, code: Some(2001), message }
            if message.contains("Namespace directory") && message.contains("does not exist"))
    }

    /// Whether the server refused the credentials before looking at the request.
    pub(crate) fn is_auth(&self) -> bool {
        matches!(self, CallError::Server { status: 401 | 403, .. })
    }

    /// Whether the answer says this URL is not a microsandbox server at all.
    pub(crate) fn is_foreign_server(&self) -> bool {
        match self {
            CallError::Rpc { code, .. } => *code == -32601,
            CallError::Protocol { status, .. } => matches!(status, 404 | 405),
            _ => false,
        }
    }
}

/// Replaces the API key wherever it occurs in text that came from outside (a proxy or a
/// strange server could echo request headers).
#[derive(Clone, Default)]
pub(crate) struct Scrubber {
    key: Option<ApiKey>,
}

impl Scrubber {
    pub(crate) fn new(key: Option<ApiKey>) -> Self {
        Scrubber {
            key: key.filter(|k| !k.expose().is_empty()),
        }
    }

    /// The text without the key, cut to a quotable length, on one line.
    pub(crate) fn scrub(&self, text: &str) -> String {
        let mut text = match &self.key {
            Some(key) => text.replace(key.expose(), MASK),
            None => text.to_owned(),
        };
        text = text.split_whitespace().collect::<Vec<_>>().join(" ");
        if text.len() > QUOTE_LIMIT {
            let mut cut = QUOTE_LIMIT;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
            text.push_str("...");
        }
        text
    }
}

impl fmt::Debug for Scrubber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scrubber").finish_non_exhaustive()
    }
}

/// What a call was about, for the message.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Context<'a> {
    pub(crate) operation: Operation,
    pub(crate) sandbox: Option<&'a SandboxId>,
    /// The namespace the call was for (for a listing without sandbox).
    pub(crate) namespace: Option<&'a str>,
    /// The JSON-RPC method, or the route for health.
    pub(crate) method: &'a str,
    /// The server URL, credentials redacted.
    pub(crate) url: &'a str,
    /// Whether an API key was sent.
    pub(crate) key_sent: bool,
}

impl<'a> Context<'a> {
    /// The same context, about a namespace (for calls that name no sandbox).
    pub(crate) fn in_namespace(mut self, namespace: Option<&'a str>) -> Self {
        self.namespace = namespace;
        self
    }

    /// The same context for another method (a listing made on behalf of a start, ...).
    pub(crate) fn with_method(mut self, method: &'a str) -> Self {
        self.method = method;
        self
    }

    /// A new error of this context.
    pub(crate) fn error(&self, kind: ErrorKind, message: impl Into<String>) -> BackendError {
        let error = BackendError::new(kind, self.operation, message).with_backend(BACKEND);
        match self.sandbox {
            Some(id) => error.with_sandbox(id),
            None => error,
        }
    }

    fn namespace(&self) -> &str {
        self.sandbox
            .map(|id| id.namespace.as_str())
            .or(self.namespace)
            .unwrap_or("*")
    }

    /// Whether the call may have started code or a command that must not be repeated.
    fn runs_something(&self) -> bool {
        matches!(
            self.operation,
            Operation::RunCode | Operation::RunCommand | Operation::Start
        )
    }
}

impl CallError {
    /// Puts the error in context. The caller has already decided everything that needs more
    /// knowledge (masked errors, timeouts of executions); this is the plain mapping.
    pub(crate) fn into_backend(self, cx: &Context<'_>) -> BackendError {
        let url = cx.url;
        match self {
            CallError::Connect { source } => cx
                .error(
                    ErrorKind::Connect,
                    format!(
                        "cannot connect to the microsandbox server at {url}: {}; check that it is running \
                         (msb server start) and that MSB_SERVER_URL points at it",
                        cause(&source)
                    ),
                )
                .with_source(source.without_url()),
            CallError::Transport { source } => {
                let maybe_ran = if cx.runs_something() {
                    "; the request may have reached the server, so it was not repeated"
                } else {
                    ""
                };
                cx.error(
                    ErrorKind::Connect,
                    format!(
                        "the connection to the microsandbox server at {url} failed during {}: {}{maybe_ran}",
                        cx.method,
                        cause(&source)
                    ),
                )
                .with_retryable(cx.operation.is_idempotent())
                .with_source(source.without_url())
            }
            CallError::Timeout { after } => cx
                .error(
                    ErrorKind::Timeout,
                    format!(
                        "the microsandbox server at {url} did not answer {} within {after:?}",
                        cx.method
                    ),
                )
                .with_retryable(cx.operation.is_idempotent()),
            CallError::TooLarge { bytes } => cx.error(
                ErrorKind::InvalidInput,
                format!(
                    "the request is {bytes} bytes, more than the 2 MiB the microsandbox server accepts; \
                     send less code or fewer arguments"
                ),
            ),
            // A gateway may answer 502 or 504 after it relayed the request, and nothing tells a
            // gateway's own 503 from a relayed one: a run may have happened, so only idempotent
            // calls are retryable.
            CallError::Unavailable { status, detail } => cx
                .error(
                    ErrorKind::Connect,
                    format!(
                        "the microsandbox server at {url} is unavailable (HTTP {status}{}); whatever is in front of \
                         it (a proxy or load balancer) cannot reach it{}",
                        quoted(&detail),
                        if cx.runs_something() {
                            "; it may have relayed the request, so it was not repeated"
                        } else {
                            ""
                        }
                    ),
                )
                .with_retryable(!cx.runs_something()),
            CallError::Server { status, code, message } => server_error(cx, status, code, &message),
            CallError::Rpc { status, code, message } => rpc_error(cx, status, code, &message),
            CallError::Protocol { status, what } => {
                let hint = if matches!(status, 404 | 405) {
                    format!(
                        "; {url} does not look like a microsandbox server (it has no {} route): check MSB_SERVER_URL",
                        if cx.operation == Operation::Health {
                            msbw_protocol::HEALTH_PATH
                        } else {
                            msbw_protocol::RPC_PATH
                        }
                    )
                } else {
                    String::new()
                };
                cx.error(
                    ErrorKind::Protocol,
                    format!(
                        "the server at {url} answered {} with HTTP {status} and {what}{hint}",
                        cx.method
                    ),
                )
            }
        }
    }
}

fn server_error(cx: &Context<'_>, status: u16, code: Option<i64>, message: &str) -> BackendError {
    let url = cx.url;
    let code_text = code.map(|c| format!(", code {c}")).unwrap_or_default();
    match (status, code) {
        (401, Some(1001)) if !cx.key_sent => cx.error(
            ErrorKind::Unauthorized,
            format!(
                "invalid credentials: the server at {url} requires an API key and none is configured; \
                 set MSB_API_KEY to a key from `msb server keygen` (keys start with msb_)"
            ),
        ),
        (401, Some(1001)) => cx.error(
            ErrorKind::Unauthorized,
            format!(
                "invalid credentials: the server at {url} refused the API key; check MSB_API_KEY \
                 (a key from `msb server keygen`, starting with msb_)"
            ),
        ),
        (401, Some(1004)) => cx.error(
            ErrorKind::Unauthorized,
            format!(
                "invalid or expired token: the server at {url} refused the API key because it has expired \
                 or was not signed with this server's key; mint a new one with `msb server keygen`"
            ),
        ),
        (403, _) => cx.error(
            ErrorKind::Unauthorized,
            format!(
                "access denied to namespace {:?}: the API key is limited to another namespace \
                 (server said {message:?}{code_text}); use a key for this namespace or for all (*)",
                cx.namespace()
            ),
        ),
        (401, _) => cx.error(
            ErrorKind::Unauthorized,
            format!("the server at {url} refused the credentials: {message}{code_text}"),
        ),
        (413, _) => cx.error(
            ErrorKind::Rejected,
            format!(
                "the request is larger than the server accepts (HTTP 413, at most 2 MiB): {message}; \
                 send less code or fewer arguments"
            ),
        ),
        (429, _) => cx
            .error(
                ErrorKind::Rejected,
                format!("the server is rate limiting (HTTP 429{code_text}): {message}"),
            )
            .with_retryable(true),
        (400..=499, _) => cx.error(
            ErrorKind::Rejected,
            format!(
                "the server rejected {} (HTTP {status}{code_text}): {message}",
                cx.method
            ),
        ),
        (500, Some(c)) if c == i64::from(msbw_protocol::codes::LIMIT_REACHED) => cx
            .error(
                ErrorKind::LimitReached,
                format!("the server at {url} refused: {message}"),
            )
            .with_retryable(true),
        (500, _) => cx.error(
            ErrorKind::Internal,
            format!(
                "the server failed {} with {message:?} (HTTP 500{code_text}); the microsandbox server hides \
                 the reason in its own log, so look there (msbserver's output)",
                cx.method
            ),
        ),
        _ => cx.error(
            ErrorKind::Internal,
            format!("the server failed {} (HTTP {status}{code_text}): {message}", cx.method),
        ),
    }
}

fn rpc_error(cx: &Context<'_>, status: u16, code: i64, message: &str) -> BackendError {
    let url = cx.url;
    match code {
        -32601 => cx.error(
            ErrorKind::Protocol,
            format!(
                "the server at {url} does not know the method {} (JSON-RPC -32601, HTTP {status}: {message}); \
                 it is not a microsandbox server, or one with another protocol version: check MSB_SERVER_URL",
                cx.method
            ),
        ),
        -32700 | -32600 => cx.error(
            ErrorKind::Protocol,
            format!(
                "the server at {url} could not read the {} request (JSON-RPC {code}, HTTP {status}: {message}); \
                 this client and the server disagree on the protocol",
                cx.method
            ),
        ),
        -32602 => cx.error(
            ErrorKind::Rejected,
            format!(
                "the server rejected the parameters of {} (JSON-RPC -32602): {message}",
                cx.method
            ),
        ),
        -32603 => cx.error(
            ErrorKind::Internal,
            format!(
                "the server failed {} (JSON-RPC -32603, HTTP {status}): {message}",
                cx.method
            ),
        ),
        _ => cx.error(
            ErrorKind::Internal,
            format!(
                "the server answered {} with JSON-RPC error {code} (HTTP {status}): {message}",
                cx.method
            ),
        ),
    }
}

/// The root cause of a reqwest error, without its URL.
fn cause(error: &reqwest::Error) -> String {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(error);
    let mut last = None;
    while let Some(s) = source {
        last = Some(s.to_string());
        source = s.source();
    }
    last.unwrap_or_else(|| {
        if error.is_connect() {
            "connection failed".into()
        } else if error.is_timeout() {
            "timed out".into()
        } else {
            "transport error".into()
        }
    })
}

fn quoted(detail: &str) -> String {
    if detail.is_empty() {
        String::new()
    } else {
        format!(": {detail}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cx(operation: Operation, key_sent: bool) -> Context<'static> {
        Context {
            operation,
            sandbox: None,
            namespace: Some("team-a"),
            method: "sandbox.metrics.get",
            url: "http://127.0.0.1:5555",
            key_sent,
        }
    }

    #[test]
    fn the_scrubber_removes_the_key_and_cuts_long_text() {
        let s = Scrubber::new(Some(ApiKey::new("msb_k3y")));
        assert_eq!(s.scrub("header was Bearer msb_k3y\n ok"), "header was Bearer *** ok");
        let long = "é".repeat(400);
        let cut = s.scrub(&long);
        assert!(cut.ends_with("...") && cut.len() <= QUOTE_LIMIT + 3);
        assert_eq!(Scrubber::new(Some(ApiKey::new(""))).scrub("a  b"), "a b");
    }

    #[test]
    fn auth_errors_say_which() {
        let e = |code, key| {
            CallError::Server {
                status: 401,
                code: Some(code),
                message: "x".into(),
            }
            .into_backend(&cx(Operation::List, key))
        };
        assert!(e(1001, false).to_string().contains("none is configured"));
        assert!(e(1001, true).to_string().contains("refused the API key"));
        assert!(e(1004, true).to_string().contains("invalid or expired token"));
        let forbidden = CallError::Server {
            status: 403,
            code: Some(3001),
            message: "Access denied".into(),
        }
        .into_backend(&cx(Operation::List, true));
        assert_eq!(forbidden.kind(), ErrorKind::Unauthorized);
        assert!(
            forbidden.to_string().contains("access denied to namespace \"team-a\""),
            "{forbidden}"
        );
    }

    #[test]
    fn a_servers_limit_refusal_is_typed_and_not_masked() {
        let limit = CallError::Server {
            status: 500,
            code: Some(i64::from(msbw_protocol::codes::LIMIT_REACHED)),
            message: "concurrent sessions limit reached: 2 in use, limit 2".into(),
        };
        assert!(!limit.is_masked(), "the reason is given, not hidden in a log");
        let e = limit.into_backend(&cx(Operation::Start, false));
        assert_eq!(e.kind(), ErrorKind::LimitReached);
        assert!(e.is_retryable() && e.to_string().contains("limit 2"), "{e}");
    }

    #[test]
    fn classification_helpers() {
        let masked = CallError::Server {
            status: 500,
            code: Some(5002),
            message: "Internal server error".into(),
        };
        assert!(masked.is_masked() && !masked.transient() && !masked.not_sent());
        assert!(
            !CallError::TooLarge { bytes: 1 }.not_sent(),
            "too large is final, never retried"
        );
        let missing = CallError::Server {
            status: 400,
            code: Some(2001),
            message: "Namespace directory 'x' does not exist".into(),
        };
        assert!(missing.is_unknown_namespace());
        assert!(
            CallError::Rpc {
                status: 404,
                code: -32601,
                message: String::new()
            }
            .is_foreign_server()
        );
        assert!(
            CallError::Unavailable {
                status: 503,
                detail: String::new()
            }
            .transient()
        );
    }

    #[test]
    fn timeouts_of_executions_are_not_retryable() {
        let e = CallError::Timeout {
            after: Duration::from_secs(1),
        };
        assert!(!e.into_backend(&cx(Operation::RunCode, false)).is_retryable());
        let e = CallError::Timeout {
            after: Duration::from_secs(1),
        };
        assert!(e.into_backend(&cx(Operation::List, false)).is_retryable());
    }
}
