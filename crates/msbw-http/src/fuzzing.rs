//! Entry points for the fuzz targets in `fuzz/` (feature `fuzzing`; not a public API): the
//! decoding of everything a server sends back, without a network.

use std::sync::OnceLock;
use std::time::Duration;

use msbw_backend::Template;

use crate::HttpBackendConfig;
use crate::client::Client;
use crate::listing::decode;
use crate::output::{command_output, repl_outcome};
use msbw_protocol::method;
use msbw_protocol::results::{CommandResult, HealthAnswer, MetricsResult, ReplResult, StartAnswer};

/// Decodes one server answer as every call would: the HTTP status and content type from the
/// first three bytes, the body from the rest; then the `result` as each method's shape, and a
/// REPL's or a command's output through the output rule. Must never panic.
pub fn decode_answer(data: &[u8]) {
    let Some((head, body)) = data.split_first_chunk::<3>() else {
        return;
    };
    let status = 100 + u16::from_be_bytes([head[0], head[1]]) % 500;
    let content_type = match head[2] % 4 {
        0 => None,
        1 => Some("application/json"),
        2 => Some("text/html; charset=utf-8"),
        _ => Some("text/plain"),
    };
    // One client for every input: building one loads the TLS roots, which would dominate.
    static CLIENT: OnceLock<Option<Client>> = OnceLock::new();
    let Some(client) =
        CLIENT.get_or_init(|| Client::new(&HttpBackendConfig::new("http://127.0.0.1:1").with_api_key("msb_fuzz")).ok())
    else {
        return;
    };
    let _ = HealthAnswer::decode(body);
    let Ok(raw) = client.read_rpc(status, content_type, body) else {
        return;
    };
    if let Ok(text) = serde_json::from_str::<String>(raw.get()) {
        let _ = StartAnswer::parse("fuzz", &text);
    }
    let _ = decode::<MetricsResult>(&raw, method::METRICS);
    if let Ok(result) = decode::<CommandResult>(&raw, method::COMMAND_RUN) {
        let _ = command_output(result);
    }
    for language in [Template::Python, Template::Node] {
        if let Ok(result) = decode::<ReplResult>(&raw, method::REPL_RUN) {
            let _ = repl_outcome(language, result.output, Duration::from_secs(3));
        }
    }
}
