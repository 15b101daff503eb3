//! The wrapper's errors as JSON-RPC errors: a limit reached is -32600, bad arguments or an
//! unknown session -32602, anything else -32603; `data` carries the wrapper's code, category,
//! context and suggestions.

use microsandbox_wrapper::{ErrorCategory, WrapperError};
use rmcp::ErrorData;
use rmcp::model::ErrorCode;
use serde_json::json;

/// The JSON-RPC code for a wrapper error.
pub fn rpc_code(e: &WrapperError) -> ErrorCode {
    match e.category() {
        ErrorCategory::Resource => ErrorCode::INVALID_REQUEST,
        ErrorCategory::Input | ErrorCategory::Session => ErrorCode::INVALID_PARAMS,
        _ => ErrorCode::INTERNAL_ERROR,
    }
}

/// A wrapper error as the client sees it; `unscope` turns the server's session ids back into the
/// client's own.
pub(crate) fn to_rpc(e: &WrapperError, unscope: impl Fn(&str) -> String) -> ErrorData {
    let context: serde_json::Map<String, serde_json::Value> = e
        .context()
        .into_iter()
        .map(|(k, v)| {
            let v = if k == "session_id" { unscope(&v) } else { v };
            (k.to_owned(), v.into())
        })
        .collect();
    let message = unscope(&e.to_string());
    ErrorData::new(
        rpc_code(e),
        message.clone(),
        Some(json!({
            "code": e.code(),
            "category": e.category().as_str(),
            "message": message,
            "retryable": e.is_retryable(),
            "context": context,
            "suggestions": e.suggestions(),
        })),
    )
}

/// The error for a call the client cancelled.
pub(crate) fn cancelled(session_id: &str) -> ErrorData {
    ErrorData::new(
        ErrorCode::INTERNAL_ERROR,
        format!("cancelled: the run in session {session_id:?} was ended"),
        Some(json!({
            "code": "CANCELLED",
            "category": "execution",
            "suggestions": ["The session stays usable: pass the same session_id to run more (state the run built may be lost)"],
        })),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_follow_the_reference() {
        let e = WrapperError::SessionNotFound {
            session_id: "mcp-abc.x".into(),
        };
        let r = to_rpc(&e, |s| s.replace("mcp-abc.", ""));
        assert_eq!(r.code, ErrorCode::INVALID_PARAMS);
        let data = r.data.unwrap_or_default();
        assert_eq!(data["code"], "SESSION_NOT_FOUND_ERROR");
        assert_eq!(data["context"]["session_id"], "x");
        assert!(!r.message.contains("mcp-abc"), "{}", r.message);
        assert!(data["suggestions"].as_array().is_some_and(|s| !s.is_empty()));
        let e = WrapperError::InvalidInput {
            what: "timeout".into(),
            message: "too long".into(),
        };
        assert_eq!(rpc_code(&e), ErrorCode::INVALID_PARAMS);
        assert_eq!(rpc_code(&WrapperError::ShuttingDown), ErrorCode::INTERNAL_ERROR);
    }
}
