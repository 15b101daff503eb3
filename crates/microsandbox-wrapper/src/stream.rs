//! Streamed calls through the facade: [`EventStream`] yields [`CallEvent`]s with errors as
//! [`WrapperError`]s.

use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::Stream;
pub use msbw_manager::stream::Bytes;
use msbw_manager::{CallEvent, CallStream};

use crate::WrapperError;

/// The events of one streamed call: stdout and stderr chunks as the code writes them, then
/// [`CallEvent::Finished`] with the result the buffered call returns (or an error), then the end.
///
/// The session is held (busy, never cleaned up, counted against the limits) until the stream
/// ends. Dropping it first cancels the execution as a timeout does, and the session says so
/// ([`SessionInfo::last_execution_cancelled`](crate::SessionInfo)).
pub struct EventStream<T> {
    inner: CallStream<T>,
    command: Option<String>,
    url: Option<String>,
}

impl<T> std::fmt::Debug for EventStream<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventStream")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<T: Send + 'static> EventStream<T> {
    pub(crate) fn new(inner: CallStream<T>, command: Option<String>, url: Option<String>) -> Self {
        EventStream { inner, command, url }
    }

    fn err(&self, e: msbw_manager::ManagerError) -> WrapperError {
        WrapperError::from_manager(e, self.command.as_deref(), self.url.as_deref())
    }

    /// Drains the stream and returns the result, ignoring the chunks.
    pub async fn finish(self) -> Result<T, WrapperError> {
        let EventStream { inner, command, url } = self;
        inner
            .finish()
            .await
            .map_err(|e| WrapperError::from_manager(e, command.as_deref(), url.as_deref()))
    }
}

impl<T: Send + 'static> Stream for EventStream<T> {
    type Item = Result<CallEvent<T>, WrapperError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match Pin::new(&mut self.inner).poll_next(cx) {
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(self.err(e)))),
            Poll::Ready(Some(Ok(event))) => Poll::Ready(Some(Ok(event))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}
