//! The streaming extension over the local backend: asked for with `x-msbw-stream: ndjson`, a
//! REPL run's flushed line arrives as a chunk line before the code ends; the last line is the
//! ordinary JSON-RPC answer; without the header nothing changes.

#![allow(clippy::unwrap_used)] // test helpers may unwrap

mod support;

use msbw_protocol::stream::{ChunkStream, NDJSON_CONTENT_TYPE, STREAM_HEADER, STREAM_NDJSON, StreamLine, decode_line};
use msbw_serve::ServeOptions;
use serde_json::{Value, json};
use support::Served;

fn rpc(method: &str, params: Value) -> Value {
    json!({"jsonrpc": "2.0", "method": method, "params": params, "id": 1})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_repl_run_sends_chunks_as_they_happen_then_the_answer() {
    let served = Served::start(support::local_wrapper(), ServeOptions::default()).await;
    let base = format!("{}/api/v1", served.url());
    let client = reqwest::Client::new();
    let health: Value = client
        .get(format!("{base}/health"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["capabilities"]["streaming"], true);
    let start = rpc(
        "sandbox.start",
        json!({"sandbox": "s", "namespace": "default", "config": {"image": "microsandbox/python", "memory": 512}}),
    );
    let resp = client.post(format!("{base}/rpc")).json(&start).send().await.unwrap();
    assert!(resp.status().is_success(), "{:?}", resp.text().await);

    let run = rpc(
        "sandbox.repl.run",
        json!({"sandbox": "s", "namespace": "default", "language": "python",
               "code": "import time\nprint('a', flush=True)\ntime.sleep(3)\nprint('b')"}),
    );
    let mut resp = client
        .post(format!("{base}/rpc"))
        .header(STREAM_HEADER, STREAM_NDJSON)
        .json(&run)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["content-type"], NDJSON_CONTENT_TYPE);
    let mut buf = Vec::new();
    let mut lines = Vec::new();
    while let Some(chunk) = resp.chunk().await.unwrap() {
        buf.extend_from_slice(&chunk);
        while let Some(end) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=end).collect();
            lines.push(decode_line(&line[..line.len() - 1]).unwrap());
        }
        if lines.len() == 1 {
            // The first line came alone: `a`, while `b` was not printed yet.
            assert_eq!(lines[0], StreamLine::Chunk(ChunkStream::Stdout, b"a\n".to_vec()));
        }
    }
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert_eq!(lines[1], StreamLine::Chunk(ChunkStream::Stdout, b"b\n".to_vec()));
    let StreamLine::Response(last) = &lines[2] else {
        panic!("{lines:?}")
    };
    let answer: Value = serde_json::from_slice(last).unwrap();
    assert_eq!(answer["id"], 1);
    assert_eq!(answer["result"]["output"][0]["text"], "a");
    assert_eq!(answer["result"]["output"][1]["text"], "b");

    // Without the header: the buffered answer, as upstream clients expect.
    let resp = client.post(format!("{base}/rpc")).json(&run).send().await.unwrap();
    assert_eq!(resp.headers()["content-type"], "application/json");
    let answer: Value = resp.json().await.unwrap();
    assert_eq!(answer["result"]["output"][1]["text"], "b");
    served.stop().await;
}
