//! Output as it happens, over the streaming extension of `msbw serve`
//! (`msbw_protocol::stream`), when the server announces it; otherwise the buffered default.
//!
//! The call is sent once with the header `x-msbw-stream: ndjson`; the body is read as it comes
//! and cut into lines. Bounds: a line in progress may grow to `max_response_bytes` (the final
//! line holds the whole answer, as a buffered body does), a chunk line to
//! [`MAX_LINE_BYTES`](msbw_protocol::stream::MAX_LINE_BYTES) (checked by `decode_line`), and
//! the whole body to twice `max_response_bytes` (the chunks, then the final answer repeating
//! them). The final line is read exactly as a buffered answer is ([`finish_code`],
//! [`finish_command`]). A malformed or oversized line, a body that ends without the final
//! line, or lines after it are [`ErrorKind::Protocol`] errors; no final line within the timeout
//! plus the grace period is a [`ExecStatus::TimedOut`](msbw_backend::ExecStatus) result with
//! [`Aftermath::Unusable`], as for a buffered call.
//!
//! Python code is sent without the end marker of [`crate::end_marker`]: a streaming server is
//! ours, and its answer holds all the output. A masked failure in the final line is not
//! decided with the listing (the stream holds nothing of the backend): it is `Internal`.
//! Dropping the stream drops the connection, which cancels the execution on the server.

use std::sync::Arc;
use std::time::Duration;

use msbw_backend::stream::{self, ChunkSink};
use msbw_backend::{Aftermath, BackendError, CodeRequest, CommandRequest, ErrorKind, ExecStream, Operation, SandboxId};
use msbw_protocol::method;
use msbw_protocol::stream::{ChunkStream, StreamLine, decode_line};
use tokio::time::Instant;

use crate::HttpBackend;
use crate::client::{Client, RawResult, Streamed};
use crate::errors::{CallError, Context};
use crate::exec::{finish_code, finish_command, timed_out};

/// What the stream needs of the backend, owned (the stream outlives the call).
struct Call {
    client: Arc<Client>,
    id: SandboxId,
    operation: Operation,
    method: &'static str,
    url: String,
    key_sent: bool,
    /// The execution's timeout plus the grace period.
    limit: Duration,
}

impl Call {
    fn cx(&self) -> Context<'_> {
        Context {
            operation: self.operation,
            sandbox: Some(&self.id),
            namespace: None,
            method: self.method,
            url: &self.url,
            key_sent: self.key_sent,
        }
    }

    fn protocol(&self, what: impl Into<String>) -> BackendError {
        self.cx().error(ErrorKind::Protocol, what)
    }

    /// Sends the call, yields its chunks into `sink`, and returns the final answer's `result`;
    /// `None` when no final answer came within the limit.
    async fn run<P: serde::Serialize>(&self, params: &P, sink: &ChunkSink) -> Result<Option<RawResult>, BackendError> {
        let deadline = Instant::now() + self.limit;
        let mut response = match self.client.rpc_stream(self.method, params, self.limit).await {
            Ok(Streamed::Whole(value)) => return Ok(Some(value)),
            Ok(Streamed::Lines(response)) => response,
            Err(CallError::Timeout { .. }) => return Ok(None),
            Err(error) => return Err(error.into_backend(&self.cx())),
        };
        let line_limit = self.client.max_response_bytes();
        let total_limit = line_limit.saturating_mul(2);
        let mut total = 0usize;
        let mut pending: Vec<u8> = Vec::new();
        let mut last: Option<Vec<u8>> = None;
        loop {
            let chunk = match tokio::time::timeout_at(deadline, response.chunk()).await {
                Err(_) => return Ok(None),
                Ok(Err(source)) => return Err(CallError::Transport { source }.into_backend(&self.cx())),
                Ok(Ok(None)) => break,
                Ok(Ok(Some(chunk))) => chunk,
            };
            total += chunk.len();
            if total > total_limit {
                return Err(self.protocol(format!("a streamed answer larger than {total_limit} bytes")));
            }
            let mut rest = &chunk[..];
            while let Some(end) = rest.iter().position(|&b| b == b'\n') {
                pending.extend_from_slice(&rest[..end]);
                rest = &rest[end + 1..];
                let line = std::mem::take(&mut pending);
                self.line(line, &mut last, sink)?;
            }
            pending.extend_from_slice(rest);
            if pending.len() > line_limit {
                return Err(self.protocol(format!("a streamed line longer than {line_limit} bytes")));
            }
        }
        if !pending.iter().all(u8::is_ascii_whitespace) {
            self.line(pending, &mut last, sink)?;
        }
        let Some(last) = last else {
            return Err(self.protocol("the streamed answer ended without its final JSON-RPC response"));
        };
        self.client
            .read_rpc(200, Some("application/json"), &last)
            .map(Some)
            .map_err(|e| e.into_backend(&self.cx()))
    }

    /// One line: a chunk goes to `sink`; the final response is kept; anything after it, or
    /// anything malformed, is an error.
    fn line(&self, line: Vec<u8>, last: &mut Option<Vec<u8>>, sink: &ChunkSink) -> Result<(), BackendError> {
        if line.iter().all(u8::is_ascii_whitespace) {
            return Ok(());
        }
        if last.is_some() {
            return Err(self.protocol("the streamed answer goes on after its final JSON-RPC response"));
        }
        match decode_line(&line) {
            Ok(StreamLine::Chunk(ChunkStream::Stdout, bytes)) => sink.stdout(&bytes),
            Ok(StreamLine::Chunk(ChunkStream::Stderr, bytes)) => sink.stderr(&bytes),
            Ok(StreamLine::Response(response)) => *last = Some(response),
            Err(e) => return Err(self.protocol(self.client.scrub(&e.to_string()))),
        }
        Ok(())
    }
}

impl HttpBackend {
    fn stream_call(&self, id: &SandboxId, operation: Operation, method: &'static str, seconds: u64) -> Call {
        Call {
            client: Arc::clone(&self.client),
            id: id.clone(),
            operation,
            method,
            url: self.client.display_url().to_owned(),
            key_sent: self.client.key_sent(),
            limit: Duration::from_secs(seconds) + self.config.exec_grace,
        }
    }

    /// `run_code_stream` on a server that announces streaming.
    pub(crate) fn stream_code(&self, id: &SandboxId, request: &CodeRequest) -> Result<ExecStream, BackendError> {
        let cx = self.cx(Operation::RunCode, Some(id), method::REPL_RUN);
        let (params, _, seconds) = self.code_params(id, request, &cx, false)?;
        let call = self.stream_call(id, Operation::RunCode, method::REPL_RUN, seconds);
        let request = request.clone();
        Ok(stream::driven(move |sink| async move {
            match call.run(&params, &sink).await? {
                Some(value) => finish_code(&call.client, &call.cx(), &request, &value, None),
                None => Ok(timed_out(request.timeout, Aftermath::Unusable)),
            }
        }))
    }

    /// `run_command_stream` on a server that announces streaming.
    pub(crate) fn stream_command(&self, id: &SandboxId, request: &CommandRequest) -> Result<ExecStream, BackendError> {
        let cx = self.cx(Operation::RunCommand, Some(id), method::COMMAND_RUN);
        let (params, seconds) = self.command_params(id, request, &cx)?;
        let call = self.stream_call(id, Operation::RunCommand, method::COMMAND_RUN, seconds);
        let timeout = request.timeout;
        Ok(stream::driven(move |sink| async move {
            match call.run(&params, &sink).await? {
                Some(value) => finish_command(&call.cx(), &value),
                None => Ok(timed_out(timeout, Aftermath::Unusable)),
            }
        }))
    }
}
