//! Starting a session's sandbox: the spec (flavor, volumes, environment, start timeout), the one
//! seam where sandboxes come from ([`Inner::acquire_sandbox`], where a warm pool will plug in),
//! and undoing a start that failed so that no reservation outlives its sandbox.

use std::time::Duration;

use msbw_backend::{ErrorKind, SandboxBackendExt, SandboxId, SandboxSpec};

use crate::error::{StartTimedOut, within};
use crate::execute::Acquired;
use crate::lifecycle::Inner;
use crate::retire::stop_many;
use crate::session::SessionStatus;
use crate::{ManagerError, Phase};

/// How much longer than the start timeout the manager waits for the backend's start before it
/// gives up on it (the backend enforces the start timeout itself; this guards against one that
/// does not, without cutting short one that does).
pub(crate) const START_GRACE: Duration = Duration::from_secs(10);

/// Why a sandbox could not be had, and whether it may exist all the same (then it is stopped).
#[derive(Debug)]
pub(crate) struct StartFailure {
    pub(crate) error: ManagerError,
    pub(crate) may_exist: bool,
}

impl Inner {
    /// The spec of the acquired session's sandbox.
    fn spec_for(&self, acquired: &Acquired) -> SandboxSpec {
        let mut spec = SandboxSpec::new(acquired.sandbox().clone(), acquired.template());
        spec.memory_mb = acquired.flavor().memory_mb();
        spec.cpus = acquired.flavor().cpus();
        let extras = self
            .lock()
            .session(acquired.session_id())
            .map(|e| e.extras())
            .unwrap_or_default();
        spec.volumes = self.config().shared_volume_mappings.clone();
        spec.volumes.extend(extras.volumes.iter().cloned());
        spec.env = extras.env.clone();
        spec.start_timeout = self.config().sandbox_start_timeout;
        spec
    }

    /// Where a session's sandbox comes from: the one seam a warm pool plugs into. Today a fresh
    /// start on the backend, checked against its capabilities first, under the bound on
    /// concurrent starts and the start deadline. Returns the sandbox that now serves the spec.
    pub(crate) async fn acquire_sandbox(
        &self,
        spec: &SandboxSpec,
        session_id: &str,
    ) -> Result<SandboxId, StartFailure> {
        let refused = |error| StartFailure {
            error,
            may_exist: false,
        };
        if let Err(e) = self.backend().check_supported(spec).await {
            return Err(refused(ManagerError::backend(Phase::Starting, session_id, e)));
        }
        let permit = self
            .starts()
            .acquire()
            .await
            .map_err(|_| refused(ManagerError::ShuttingDown))?;
        let started = within(
            Phase::Starting,
            spec.start_timeout + START_GRACE,
            self.backend().start(spec),
        )
        .await;
        drop(permit);
        match started {
            Ok(Ok(())) => Ok(spec.id.clone()),
            Ok(Err(e)) => {
                // Nothing was created for these kinds; for the others the sandbox may exist.
                let created_nothing = matches!(
                    e.kind(),
                    ErrorKind::InvalidInput
                        | ErrorKind::Unsupported
                        | ErrorKind::AlreadyExists
                        | ErrorKind::Unauthorized
                );
                Err(StartFailure {
                    error: ManagerError::backend(Phase::Starting, session_id, e),
                    may_exist: !created_nothing,
                })
            }
            Err(_) => Err(StartFailure {
                error: ManagerError::StartTimeout(StartTimedOut {
                    session_id: session_id.to_owned(),
                    sandbox: spec.id.clone(),
                    timeout: spec.start_timeout,
                }),
                may_exist: true,
            }),
        }
    }

    /// Starts the acquired session's sandbox (stopping the sandbox it replaces first). On failure
    /// the session is removed (a new session) or left in error (a replacement), and every
    /// reservation that no longer has a sandbox behind it is given back.
    pub(crate) async fn start_sandbox(&self, acquired: &mut Acquired) -> Result<(), ManagerError> {
        let session_id = acquired.session_id().to_owned();
        if let Some(old) = acquired.take_replaced()
            && let Some((old, Err(e))) = stop_many(self.backend(), vec![old]).await.pop()
        {
            self.set_status(&session_id, acquired.token(), SessionStatus::Error, Some(old));
            return Err(ManagerError::backend(Phase::Stopping, &session_id, e));
        }
        let spec = self.spec_for(acquired);
        match self.acquire_sandbox(&spec, &session_id).await {
            Ok(sandbox) => {
                tracing::info!(sandbox = %sandbox, "sandbox started");
                let retired = {
                    let mut reg = self.lock();
                    match reg.incarnation(&session_id, acquired.token()) {
                        Some(entry) => {
                            entry.status = SessionStatus::Ready;
                            entry.sandbox = sandbox.clone();
                            false
                        }
                        None => reg.start_ended(&sandbox),
                    }
                };
                acquired.set_sandbox(sandbox);
                if retired {
                    // The session was stopped while its sandbox started: stop the sandbox now.
                    self.stop_retiring().await;
                    return Err(ManagerError::SessionNotFound { session_id });
                }
                Ok(())
            }
            Err(failure) => {
                self.abandon_start(acquired, failure.may_exist).await;
                Err(failure.error)
            }
        }
    }

    /// Undoes a failed start. With `may_exist`, the sandbox is stopped first; for a new session
    /// it goes on the retiring list (keeping its reservation) until that works.
    async fn abandon_start(&self, acquired: &Acquired, may_exist: bool) {
        /// What to do once the lock is released.
        enum Then {
            Nothing,
            Freed,
            StopRetiring,
            StopSandbox,
        }
        let session_id = acquired.session_id();
        let then = {
            let mut reg = self.lock();
            let live = reg.incarnation(session_id, acquired.token()).is_some();
            // Retired while it started: its stop may go ahead now.
            let retired = !live && reg.start_ended(acquired.sandbox());
            match reg.incarnation(session_id, acquired.token()) {
                None if retired => Then::StopRetiring,
                None => Then::Nothing,
                Some(entry) if acquired.created() && may_exist => {
                    entry.status = SessionStatus::Error;
                    reg.retire(session_id);
                    Then::StopRetiring
                }
                Some(_) if acquired.created() => {
                    reg.forget(session_id);
                    Then::Freed
                }
                // A replacement that failed: the session stays, in error, and tries again next time.
                Some(entry) => {
                    entry.status = SessionStatus::Error;
                    if may_exist { Then::StopSandbox } else { Then::Nothing }
                }
            }
        };
        match then {
            Then::Nothing => {}
            Then::Freed => self.freed(),
            Then::StopRetiring => {
                self.stop_retiring().await;
            }
            Then::StopSandbox => {
                for (sandbox, result) in stop_many(self.backend(), vec![acquired.sandbox().clone()]).await {
                    if let Err(e) = result {
                        tracing::warn!(sandbox = %sandbox, error = %e, "could not stop a sandbox whose start failed");
                    }
                }
            }
        }
    }

    /// Sets a session's status (and sandbox), if it is still incarnation `token`.
    pub(crate) fn set_status(&self, session_id: &str, token: u64, status: SessionStatus, sandbox: Option<SandboxId>) {
        if let Some(entry) = self.lock().incarnation(session_id, token) {
            entry.status = status;
            if let Some(sandbox) = sandbox {
                entry.sandbox = sandbox;
            }
        }
    }
}
