//! Calls whose output arrives as it happens: [`CallStream`] yields [`CallEvent`]s (chunks of
//! stdout and stderr as the backend delivers them, then the call's result).
//!
//! The call runs in a task of its own, like a buffered call, which holds the session (busy,
//! never reaped or evicted, counted against the limits) until the execution has ended. The
//! task forwards chunks through a bounded channel; dropping the stream closes it, and the task
//! then drops the backend's stream, which cancels the execution as a timeout does (see
//! `Inner::execute`). Buffered calls are these streams collected.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::Stream;
pub use msbw_backend::stream::Bytes;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::ManagerError;

/// One event of a streamed call.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CallEvent<T> {
    /// Bytes the program wrote to stdout, as written (not split into lines, not decoded).
    Stdout(Bytes),
    /// Bytes the program wrote to stderr.
    Stderr(Bytes),
    /// The call's result, the same the buffered call returns. Always last.
    Finished(T),
}

/// A chunk of output on its way from the execution task to the stream.
#[derive(Debug)]
pub(crate) enum Chunk {
    Out(Bytes),
    Err(Bytes),
}

/// How many chunks may wait for a slow reader before the execution waits for it.
pub(crate) const CHANNEL: usize = 64;

/// The chunk channel's sending side, as the execution task holds it.
pub(crate) type Sink = mpsc::Sender<Chunk>;

/// The events of one call: chunks as they arrive, then [`CallEvent::Finished`] (or an error),
/// then the end. Dropping it before the end cancels the execution.
pub struct CallStream<T> {
    chunks: mpsc::Receiver<Chunk>,
    result: Option<JoinHandle<Result<T, ManagerError>>>,
}

impl<T> std::fmt::Debug for CallStream<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallStream")
            .field("finished", &self.result.is_none())
            .finish()
    }
}

impl<T: Send + 'static> CallStream<T> {
    /// Spawns `run` with the sink of a new stream.
    pub(crate) fn spawn<F, Fut>(run: F) -> Self
    where
        F: FnOnce(Sink) -> Fut,
        Fut: Future<Output = Result<T, ManagerError>> + Send + 'static,
    {
        let (tx, rx) = mpsc::channel(CHANNEL);
        let task = tokio::spawn(run(tx));
        CallStream {
            chunks: rx,
            result: Some(task),
        }
    }

    /// Drains the stream and returns the result, ignoring the chunks.
    pub async fn finish(mut self) -> Result<T, ManagerError> {
        // Nobody reads chunks: closing the channel would cancel, so drain it instead.
        while self.chunks.recv().await.is_some() {}
        match self.result.take() {
            Some(task) => joined(task.await),
            None => Err(ManagerError::Internal("the call's stream was already finished".into())),
        }
    }
}

fn joined<T>(r: Result<Result<T, ManagerError>, tokio::task::JoinError>) -> Result<T, ManagerError> {
    r.map_err(|e| ManagerError::Internal(format!("execution task failed: {e}")))?
}

impl<T: Send + 'static> Stream for CallStream<T> {
    type Item = Result<CallEvent<T>, ManagerError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        let Some(task) = this.result.as_mut() else {
            return Poll::Ready(None);
        };
        // The task drops its sink before it returns: the channel ends first, then the result.
        match this.chunks.poll_recv(cx) {
            Poll::Ready(Some(Chunk::Out(b))) => return Poll::Ready(Some(Ok(CallEvent::Stdout(b)))),
            Poll::Ready(Some(Chunk::Err(b))) => return Poll::Ready(Some(Ok(CallEvent::Stderr(b)))),
            Poll::Ready(None) => {}
            Poll::Pending => return Poll::Pending,
        }
        match Pin::new(task).poll(cx) {
            Poll::Ready(r) => {
                this.result = None;
                Poll::Ready(Some(joined(r).map(CallEvent::Finished)))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}
