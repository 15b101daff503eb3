//! What the facade's tests over the real local backend share.

use std::time::Duration;

/// Polls `done` (real state, every 20 ms) until it holds or `limit` passes; whether it held.
pub(crate) async fn eventually(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    done()
}
