//! How the server runs: its key, the volume roots, and the limits that keep it up under load.

use std::path::PathBuf;
use std::time::Duration;

use microsandbox_wrapper::ApiKey;

/// How `msbw serve` runs.
#[derive(Debug, Clone, Default)]
pub struct ServeOptions {
    /// The server key: `None` for dev mode (no authentication). Masked in every printed form.
    pub key: Option<ApiKey>,
    /// Host folders under which clients may map volumes; none means clients may not map any.
    pub volume_roots: Vec<PathBuf>,
    /// Timeouts and bounds.
    pub limits: Limits,
}

/// The bounds that keep the server answering whatever clients do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Open connections at most; at the limit new connections wait in the listen backlog (and
    /// a warning is logged) until one closes.
    pub max_connections: usize,
    /// A request's headers must arrive within this time of the connection opening or of the
    /// previous answer; this also closes idle keep-alive connections.
    pub header_read_timeout: Duration,
    /// A request's body must arrive within this time of its headers (else 408 and the
    /// connection is closed).
    pub body_read_timeout: Duration,
    /// On shutdown, how long requests in progress may finish before their connections are cut.
    pub shutdown_grace: Duration,
    /// How many sandboxes `sandbox.metrics.get` remembers (stopped ones keep being listed, as
    /// on the real server); the oldest are forgotten first.
    pub max_known_sandboxes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 4096,
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(10),
            max_known_sandboxes: 4096,
        }
    }
}
