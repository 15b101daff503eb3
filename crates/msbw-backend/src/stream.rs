//! Output as it happens: the events of one execution ([`ExecEvent`]) as a stream
//! ([`ExecStream`]), and the helpers backends build streams with.
//!
//! A stream yields any number of [`ExecEvent::Stdout`] / [`ExecEvent::Stderr`] chunks, in the
//! order the program wrote them per stream, then exactly one [`ExecEvent::Finished`] with the
//! whole result (the same [`ExecOutput`] the buffered call returns), then ends. The chunks of a
//! stream, concatenated, are that result's text of the stream (conformance check
//! `streamed_output_matches_buffered`): a backend that caps output sends no more than the cap, and
//! the note saying what was dropped is a chunk too. An error ends the stream.
//!
//! Dropping a stream before it ends cancels the execution. A native streamer
//! ([`Capabilities::streaming`](crate::Capabilities::streaming)) stops it, like a timeout does,
//! and keeps the sandbox usable; a buffered backend gives up waiting as a dropped future does.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

pub use bytes::Bytes;
use futures_util::Stream;
use tokio::sync::mpsc;

use crate::{BackendError, ErrorKind, ExecOutput, Operation};

/// One event of an execution.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ExecEvent {
    /// Bytes the program wrote to stdout, as written (not split into lines, not decoded).
    Stdout(Bytes),
    /// Bytes the program wrote to stderr.
    Stderr(Bytes),
    /// The execution ended: the whole result, as the buffered call returns it. Always last.
    Finished(ExecOutput),
}

/// The events of one execution: chunks as they are written, then [`ExecEvent::Finished`].
pub type ExecStream = Pin<Box<dyn Stream<Item = Result<ExecEvent, BackendError>> + Send + 'static>>;

/// The stream of a finished execution: its stdout and stderr as one chunk each (none for an
/// empty stream), then `Finished`. What a backend that does not stream natively sends.
pub fn buffered(output: ExecOutput) -> ExecStream {
    let mut events = Vec::with_capacity(3);
    if !output.stdout.is_empty() {
        events.push(Ok(ExecEvent::Stdout(Bytes::from(output.stdout.clone()))));
    }
    if !output.stderr.is_empty() {
        events.push(Ok(ExecEvent::Stderr(Bytes::from(output.stderr.clone()))));
    }
    events.push(Ok(ExecEvent::Finished(output)));
    Box::pin(futures_util::stream::iter(events))
}

/// Drains a stream and returns its final result, ignoring the chunks (a buffered call made of
/// a streamed one). A stream that ends without `Finished` is a [`ErrorKind::Protocol`] error.
pub async fn collect(mut stream: ExecStream, operation: Operation) -> Result<ExecOutput, BackendError> {
    use futures_util::StreamExt;
    while let Some(event) = stream.next().await {
        if let ExecEvent::Finished(output) = event? {
            return Ok(output);
        }
    }
    Err(BackendError::new(
        ErrorKind::Protocol,
        operation,
        "the execution's event stream ended without a result",
    ))
}

/// Where a native streamer puts chunks while its execution runs (see [`driven`]). Sending
/// never blocks: the backend bounds what it sends (its output cap).
#[derive(Debug, Clone)]
pub struct ChunkSink(mpsc::UnboundedSender<ExecEvent>);

impl ChunkSink {
    /// Sends bytes written to stdout (nothing for an empty slice).
    pub fn stdout(&self, bytes: &[u8]) {
        if !bytes.is_empty() {
            let _ = self.0.send(ExecEvent::Stdout(Bytes::copy_from_slice(bytes)));
        }
    }

    /// Sends bytes written to stderr (nothing for an empty slice).
    pub fn stderr(&self, bytes: &[u8]) {
        if !bytes.is_empty() {
            let _ = self.0.send(ExecEvent::Stderr(Bytes::copy_from_slice(bytes)));
        }
    }

    /// Whether the stream was dropped (nobody reads what is sent).
    pub fn is_closed(&self) -> bool {
        self.0.is_closed()
    }
}

/// A stream driven by `run`: the chunks it puts into its [`ChunkSink`] are yielded as they come,
/// then its result as `Finished` (or its error). The future runs only while the stream is
/// polled, and dropping the stream drops the future: the execution is cancelled the way
/// dropping the buffered call's future cancels it.
pub fn driven<F, Fut>(run: F) -> ExecStream
where
    F: FnOnce(ChunkSink) -> Fut,
    Fut: Future<Output = Result<ExecOutput, BackendError>> + Send + 'static,
{
    let (tx, rx) = mpsc::unbounded_channel();
    Box::pin(Driven {
        run: Some(Box::pin(run(ChunkSink(tx)))),
        rx,
        done: None,
    })
}

type RunFuture = Pin<Box<dyn Future<Output = Result<ExecOutput, BackendError>> + Send>>;

struct Driven {
    run: Option<RunFuture>,
    rx: mpsc::UnboundedReceiver<ExecEvent>,
    /// The result, once the future returned: yielded after the last chunk.
    done: Option<Result<ExecOutput, BackendError>>,
}

impl Stream for Driven {
    type Item = Result<ExecEvent, BackendError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if let Some(run) = this.run.as_mut()
            && let Poll::Ready(result) = run.as_mut().poll(cx)
        {
            this.run = None;
            this.done = Some(result);
        }
        // Chunks first (they were written before the result), then the result.
        match this.rx.poll_recv(cx) {
            Poll::Ready(Some(event)) => return Poll::Ready(Some(Ok(event))),
            Poll::Ready(None) => {}
            Poll::Pending if this.run.is_some() => return Poll::Pending,
            Poll::Pending => {}
        }
        if this.run.is_some() {
            return Poll::Pending;
        }
        match this.done.take() {
            Some(Ok(output)) => {
                // The future (and its sink) is gone: what is left in the channel came first.
                if let Ok(event) = this.rx.try_recv() {
                    this.done = Some(Ok(output));
                    return Poll::Ready(Some(Ok(event)));
                }
                Poll::Ready(Some(Ok(ExecEvent::Finished(output))))
            }
            Some(Err(e)) => Poll::Ready(Some(Err(e))),
            None => Poll::Ready(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;

    async fn events(stream: ExecStream) -> Vec<Result<ExecEvent, BackendError>> {
        stream.collect().await
    }

    #[tokio::test]
    async fn buffered_is_one_chunk_per_stream_then_finished() {
        let out = ExecOutput::completed("a\nb\n", "e\n", None);
        let got = events(buffered(out.clone())).await;
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].as_ref().unwrap(), &ExecEvent::Stdout(Bytes::from("a\nb\n")));
        assert_eq!(got[1].as_ref().unwrap(), &ExecEvent::Stderr(Bytes::from("e\n")));
        assert_eq!(got[2].as_ref().unwrap(), &ExecEvent::Finished(out.clone()));
        assert_eq!(collect(buffered(out.clone()), Operation::RunCode).await.unwrap(), out);
        // Empty streams send no chunk.
        assert_eq!(events(buffered(ExecOutput::completed("", "", None))).await.len(), 1);
    }

    #[tokio::test]
    async fn driven_yields_chunks_as_sent_and_finished_last() {
        let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
        let mut stream = driven(|sink| async move {
            sink.stdout(b"a");
            let _ = go_rx.await;
            sink.stderr(b"\xff\x00");
            sink.stdout(b"b");
            Ok(ExecOutput::completed("ab", "\u{fffd}\0", None))
        });
        // `a` arrives while the execution is still going.
        assert_eq!(
            stream.next().await.unwrap().unwrap(),
            ExecEvent::Stdout(Bytes::from("a"))
        );
        go_tx.send(()).unwrap();
        assert_eq!(
            stream.next().await.unwrap().unwrap(),
            ExecEvent::Stderr(Bytes::from_static(b"\xff\x00"))
        );
        assert_eq!(
            stream.next().await.unwrap().unwrap(),
            ExecEvent::Stdout(Bytes::from("b"))
        );
        assert!(matches!(stream.next().await.unwrap().unwrap(), ExecEvent::Finished(_)));
        assert!(stream.next().await.is_none());
    }

    #[tokio::test]
    async fn an_error_ends_the_stream_and_a_stream_without_result_is_a_protocol_error() {
        let stream = driven(|sink| async move {
            sink.stdout(b"x");
            Err(BackendError::new(ErrorKind::NotFound, Operation::RunCode, "gone"))
        });
        let got = events(stream).await;
        assert_eq!(got.len(), 2);
        assert_eq!(got[1].as_ref().unwrap_err().kind(), ErrorKind::NotFound);
        let empty: ExecStream = Box::pin(futures_util::stream::iter(Vec::new()));
        let err = collect(empty, Operation::RunCommand).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Protocol);
    }

    #[tokio::test]
    async fn dropping_a_driven_stream_drops_its_execution() {
        let (dropped_tx, dropped_rx) = tokio::sync::oneshot::channel::<()>();
        struct OnDrop(Option<tokio::sync::oneshot::Sender<()>>);
        impl Drop for OnDrop {
            fn drop(&mut self) {
                if let Some(tx) = self.0.take() {
                    let _ = tx.send(());
                }
            }
        }
        let mut stream = driven(|sink| async move {
            let _guard = OnDrop(Some(dropped_tx));
            sink.stdout(b"started");
            std::future::pending::<()>().await;
            Ok(ExecOutput::completed("", "", None))
        });
        assert!(matches!(stream.next().await.unwrap().unwrap(), ExecEvent::Stdout(_)));
        drop(stream);
        dropped_rx
            .await
            .expect("the execution's future was dropped with the stream");
    }
}
