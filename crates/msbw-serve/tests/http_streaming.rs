//! `HttpBackend` against `msbw serve` over the local backend: the server announces streaming,
//! so the backend's streams carry the output as it happens.

#![allow(clippy::unwrap_used)] // test helpers may unwrap

mod support;

use std::time::Duration;

use futures_util::StreamExt;
use msbw_backend::{
    CodeRequest, CommandRequest, ExecEvent, ExecStatus, SandboxBackend, SandboxId, SandboxSpec, Template,
};
use msbw_http::{HttpBackend, HttpBackendConfig};
use msbw_serve::ServeOptions;
use support::Served;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_backend_streams_chunks_while_the_code_still_runs() {
    let served = Served::start(support::local_wrapper(), ServeOptions::default()).await;
    let url = served.url();

    let backend = HttpBackend::new(HttpBackendConfig::new(url)).unwrap();
    assert!(backend.capabilities().await.streaming, "msbw serve announces streaming");
    let id = SandboxId::new("default", "hs").unwrap();
    backend
        .start(&SandboxSpec::new(id.clone(), Template::Python))
        .await
        .unwrap();

    let request = CodeRequest {
        language: Template::Python,
        code: "print('a', flush=True); import time; time.sleep(3); print('b')".into(),
        timeout: Duration::from_secs(30),
    };
    let mut stream = backend.run_code_stream(&id, &request).await.unwrap();
    let mut events = Vec::new();
    while let Some(event) = stream.next().await {
        events.push(event.unwrap());
    }
    let first_a = events
        .iter()
        .position(|e| matches!(e, ExecEvent::Stdout(b) if b.contains(&b'a')))
        .expect("a chunk with `a`");
    let first_b = events
        .iter()
        .position(|e| matches!(e, ExecEvent::Stdout(b) if b.contains(&b'b')))
        .expect("a chunk with `b`");
    // `a` came in its own chunk, before `b` was printed: it was streamed, not buffered.
    assert!(first_a < first_b, "{events:?}");
    assert!(
        !matches!(&events[first_a], ExecEvent::Stdout(b) if b.contains(&b'b')),
        "{events:?}"
    );
    let Some(ExecEvent::Finished(out)) = events.last() else {
        panic!("{events:?}")
    };
    assert_eq!(out.stdout, "a\nb\n");
    assert_eq!(out.status, ExecStatus::Completed);
    let streamed: Vec<u8> = events
        .iter()
        .filter_map(|e| match e {
            ExecEvent::Stdout(b) => Some(b.to_vec()),
            _ => None,
        })
        .flatten()
        .collect();
    assert_eq!(streamed, b"a\nb\n", "the chunks are the result's stdout");

    // Commands stream too, and their exit code is in the result.
    let command = CommandRequest {
        command: "sh".into(),
        args: vec!["-c".into(), "echo out; echo err >&2; exit 3".into()],
        timeout: Duration::from_secs(30),
    };
    let mut stream = backend.run_command_stream(&id, &command).await.unwrap();
    let mut events = Vec::new();
    while let Some(event) = stream.next().await {
        events.push(event.unwrap());
    }
    assert!(events.contains(&ExecEvent::Stderr("err\n".into())), "{events:?}");
    let Some(ExecEvent::Finished(out)) = events.last() else {
        panic!("{events:?}")
    };
    assert_eq!(out.exit_code, Some(3));
    assert_eq!(out.stdout, "out\n");

    backend.stop(&id).await.unwrap();
    served.stop().await;
}
