//! The bare client: one JSON-RPC call by hand with reqwest, as the reference side of the
//! HTTP and serve rows.

use msbw_protocol::params::{ReplParams, Seconds};
use msbw_protocol::{Answer, Call, decode_answer, method};
use serde::Serialize;
use serde_json::value::RawValue;

/// Serializes the call, POSTs it to `rpc_url`, reads the answer and returns its raw `result`.
pub(crate) async fn rpc<P: Serialize>(
    client: &reqwest::Client,
    rpc_url: &str,
    method: &str,
    params: &P,
    id: u64,
) -> Result<Box<RawValue>, String> {
    let body = serde_json::to_vec(&Call::new(method, params, id)).map_err(|e| e.to_string())?;
    let answer = client
        .post(rpc_url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .map_err(|e| e.to_string())?
        .bytes()
        .await
        .map_err(|e| e.to_string())?;
    match decode_answer(&answer).map_err(|e| e.to_string())? {
        Answer::Result(raw) => Ok(raw),
        other => Err(format!("{method}: unexpected answer {other:?}")),
    }
}

/// `sandbox.repl.run` of Python `pass` in `sandbox` (namespace `default`).
pub(crate) async fn repl_pass(
    client: &reqwest::Client,
    rpc_url: &str,
    sandbox: &str,
    id: u64,
) -> Result<Box<RawValue>, String> {
    let params = ReplParams {
        sandbox: sandbox.to_owned(),
        namespace: "default".into(),
        language: "python".into(),
        code: "pass".into(),
        timeout: Some(Seconds::whole(30)),
    };
    rpc(client, rpc_url, method::REPL_RUN, &params, id).await
}
