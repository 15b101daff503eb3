//! Futures that finish even when their caller gives up.
//!
//! A call is run in the caller's task (no hand-off to another worker), and only when the
//! caller drops it before the end is the rest of it spawned, so that a start or an execution is
//! never left half-done: its results are recorded whatever the caller does.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

type Boxed<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// Runs a future in place; if dropped before it is done, spawns the rest on the runtime.
pub(crate) struct FinishOnDrop<T: Send + 'static> {
    future: Option<Boxed<T>>,
}

impl<T: Send + 'static> FinishOnDrop<T> {
    pub(crate) fn new(future: impl Future<Output = T> + Send + 'static) -> Self {
        FinishOnDrop {
            future: Some(Box::pin(future)),
        }
    }
}

impl<T: Send + 'static> Future for FinishOnDrop<T> {
    type Output = T;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        let Some(future) = self.future.as_mut() else {
            return Poll::Pending; // polled after it returned: never again ready
        };
        let ready = future.as_mut().poll(cx);
        if ready.is_ready() {
            self.future = None;
        }
        ready
    }
}

impl<T: Send + 'static> Drop for FinishOnDrop<T> {
    fn drop(&mut self) {
        if let Some(future) = self.future.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            // Without a runtime (it is shutting down) the rest is dropped: the call's guard then
            // marks its session for replacement.
            runtime.spawn(future);
        }
    }
}
