//! Listing sandboxes (`sandbox.metrics.get`), asking the server about one sandbox, and stopping
//! one: the idempotent calls, retried on transient failures.

use msbw_backend::{BackendError, ErrorKind, ListFilter, Operation, SandboxId, SandboxInfo, is_valid_name};
use msbw_protocol::method;
use msbw_protocol::params::{MetricsParams, StopParams};
use msbw_protocol::results::{MetricsResult, SandboxStatus};
use serde::de::DeserializeOwned;
use serde_json::Number;
use serde_json::value::RawValue;
use tokio::time::Instant;

use crate::HttpBackend;
use crate::client::Retry;
use crate::errors::CallError;

/// What the server's listing says about one sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SandboxState {
    /// Listed as running.
    Running,
    /// Listed, not running (stopped, crashed or failed to start).
    Stopped,
    /// Not listed: the server has no such sandbox.
    Unknown,
}

/// Decodes a `result` into its expected shape; a mismatch is a protocol violation.
pub(crate) fn decode<T: DeserializeOwned>(result: &RawValue, method: &str) -> Result<T, CallError> {
    msbw_protocol::envelope::decode_result(result).map_err(|e| CallError::Protocol {
        status: 200,
        what: format!("a result of the wrong shape for {method} ({e})"),
    })
}

/// How many times a namespace listing answered with a masked 500 is asked again.
const MASKED_LISTING_RETRIES: u32 = 4;

impl HttpBackend {
    /// `list`: the running sandboxes that pass the filter.
    pub(crate) async fn list_sandboxes(&self, filter: &ListFilter) -> Result<Vec<SandboxInfo>, BackendError> {
        let namespace = filter.namespace.as_deref().filter(|ns| *ns != "*");
        let cx = self.cx(Operation::List, None, method::METRICS).in_namespace(namespace);
        for (what, value) in [("namespace", namespace), ("sandbox name", filter.name.as_deref())] {
            if let Some(value) = value
                && !is_valid_name(value)
            {
                return Err(cx.error(
                    ErrorKind::InvalidInput,
                    format!("invalid {what} {value:?} in the filter: use 1 to 63 letters, digits, '-' or '_'"),
                ));
            }
        }
        let statuses = self
            .statuses(namespace, filter.name.as_deref())
            .await
            .map_err(|e| e.into_backend(&cx))?;
        Ok(statuses
            .into_iter()
            .filter(|s| s.running)
            .filter_map(|s| {
                let id = SandboxId {
                    namespace: s.namespace.clone()?,
                    name: s.name.clone(),
                };
                filter.matches(&id).then(|| SandboxInfo {
                    id,
                    cpu_percent: s
                        .cpu_usage
                        .as_ref()
                        .and_then(Number::as_f64)
                        .filter(|v| v.is_finite())
                        .map(|v| v as f32),
                    memory_mb: whole(s.memory_usage.as_ref()),
                    disk_bytes: whole(s.disk_usage.as_ref()),
                })
            })
            .collect())
    }

    /// The server's statuses of a namespace (`None`: all), or of one sandbox in it.
    ///
    /// Two quirks of 0.2.6 are absorbed here: a namespace with no folder yet (nothing was ever
    /// started in it) is a 400, which means an empty list; and asking for a sandbox name the
    /// namespace does not know is a masked 500, so the whole namespace is asked for instead and
    /// searched (defence 9).
    pub(crate) async fn statuses(
        &self,
        namespace: Option<&str>,
        name: Option<&str>,
    ) -> Result<Vec<SandboxStatus>, CallError> {
        match (self.metrics(namespace, name).await, namespace, name) {
            (Ok(list), _, _) => Ok(list),
            (Err(e), Some(_), _) if e.is_unknown_namespace() => Ok(Vec::new()),
            (Err(e), Some(_), Some(name)) if e.is_masked() => match self.metrics(namespace, None).await {
                Ok(list) => Ok(list.into_iter().filter(|s| s.name == name).collect()),
                Err(again) if again.is_unknown_namespace() => Ok(Vec::new()),
                Err(_) => Err(e),
            },
            (Err(e), _, _) => Err(e),
        }
    }

    async fn metrics(&self, namespace: Option<&str>, name: Option<&str>) -> Result<Vec<SandboxStatus>, CallError> {
        let params = MetricsParams {
            namespace: namespace.unwrap_or("*").to_owned(),
            sandbox: name.map(str::to_owned),
        };
        // While a namespace's first sandbox is being created, the server briefly answers a
        // listing of the namespace with a masked 500 (its config file is not written yet): ask
        // again a few times, quickly. (A masked 500 for a named sandbox means an unknown name,
        // which `statuses` handles, so it is not retried.)
        let mut attempt = 0u32;
        let value = loop {
            match self
                .client
                .rpc(method::METRICS, &params, self.config.request_timeout, Retry::Idempotent)
                .await
            {
                Err(e) if e.is_masked() && name.is_none() && attempt < MASKED_LISTING_RETRIES => {
                    tokio::time::sleep(self.poll_pause(attempt)).await;
                    attempt += 1;
                }
                other => break other?,
            }
        };
        let mut result: MetricsResult = decode(&value, method::METRICS)?;
        if let Some(ns) = namespace {
            for status in &mut result.sandboxes {
                status.namespace.get_or_insert_with(|| ns.to_owned());
            }
        }
        Ok(result.sandboxes)
    }

    /// What the server's listing says about `id` now. Nothing is cached: sandboxes outlive
    /// restarts of the server and of this process (defence 8).
    pub(crate) async fn sandbox_state(&self, id: &SandboxId) -> Result<SandboxState, CallError> {
        let statuses = self.statuses(Some(&id.namespace), Some(&id.name)).await?;
        let mine = statuses
            .iter()
            .filter(|s| s.name == id.name && s.namespace.as_deref().is_none_or(|ns| ns == id.namespace));
        let mut state = SandboxState::Unknown;
        for status in mine {
            if status.running {
                return Ok(SandboxState::Running);
            }
            state = SandboxState::Stopped;
        }
        Ok(state)
    }

    /// `stop`: asks the server to stop `id`, then waits until it is no longer listed as running
    /// (the server only sends SIGTERM and returns).
    pub(crate) async fn stop_sandbox(&self, id: &SandboxId) -> Result<(), BackendError> {
        let cx = self.cx(Operation::Stop, Some(id), method::STOP);
        id.validate(Operation::Stop).map_err(|e| self.tag(e, Some(id)))?;
        let params = StopParams {
            sandbox: id.name.clone(),
            namespace: id.namespace.clone(),
        };
        match self
            .client
            .rpc(method::STOP, &params, self.config.request_timeout, Retry::Idempotent)
            .await
        {
            Ok(_) => {}
            // An unknown sandbox is a masked 500, an unknown namespace a 400: ask the listing.
            Err(e @ (CallError::Server { status: 400, .. } | CallError::Server { status: 500, .. })) => {
                return match self.sandbox_state(id).await {
                    Ok(SandboxState::Unknown) => {
                        self.registry.forget(id);
                        Err(cx.error(
                            ErrorKind::NotFound,
                            format!("the server at {} has no sandbox {id}", self.client.display_url()),
                        ))
                    }
                    Ok(SandboxState::Stopped) => {
                        self.registry.forget(id);
                        Ok(())
                    }
                    Ok(SandboxState::Running) | Err(_) => Err(e.into_backend(&cx)),
                };
            }
            Err(e) => return Err(e.into_backend(&cx)),
        }
        self.registry.forget(id);
        self.wait_until_stopped(id).await
    }

    async fn wait_until_stopped(&self, id: &SandboxId) -> Result<(), BackendError> {
        let deadline = Instant::now() + self.config.stop_wait;
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.sandbox_state(id).await {
                Ok(SandboxState::Running) => {}
                Ok(_) => return Ok(()),
                Err(e) => {
                    // The server accepted the stop; only the confirmation failed.
                    let e = e.into_backend(&self.cx(Operation::Stop, Some(id), method::METRICS));
                    tracing::debug!(sandbox = %id, error = %e, "cannot confirm a stop");
                    return Ok(());
                }
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(self.cx(Operation::Stop, Some(id), method::STOP).error(
                    ErrorKind::Timeout,
                    format!(
                        "the server accepted the stop, but still lists {id} as running after {:?}; stopping again is safe",
                        self.config.stop_wait
                    ),
                ));
            }
            tokio::time::sleep(self.poll_pause(attempt).min(deadline - now)).await;
        }
    }
}

/// A whole, non-negative number from a JSON number that may be a float.
fn whole(value: Option<&Number>) -> Option<u64> {
    value
        .and_then(Number::as_f64)
        .filter(|v| v.is_finite() && *v >= 0.0)
        .map(|v| v.round() as u64)
}
