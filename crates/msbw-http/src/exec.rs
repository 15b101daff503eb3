//! Running code and commands: the calls the server forwards to the sandbox's agent. They are
//! never sent twice once they may have reached the server, and a masked failure is decided
//! with this backend's own knowledge (defences 1 and 9).
//!
//! How a masked 500 / 5002 of a forwarded call is decided, in this order:
//! 1. A command whose failure came after at least its timeout ran into the agent's timeout
//!    (the agent kills it and the server masks the report): [`ExecStatus::TimedOut`] with
//!    [`Aftermath::Intact`], since commands share no state (processes the command started in
//!    the background may survive it).
//! 2. Within the readiness window after this backend started the sandbox, a failure that came
//!    back quickly is the server failing to reach an agent that is not up yet: nothing ran, so
//!    the call is sent again after a pause, until the window closes.
//! 3. Otherwise the listing decides: not listed, or listed as not running, is
//!    [`ErrorKind::NotFound`]; running is [`ErrorKind::Internal`] with the likely causes.
//!
//! No answer within the timeout plus the grace period is a [`ExecStatus::TimedOut`] result with
//! [`Aftermath::Unusable`]: the sandbox may still be running the code.

use std::time::Duration;

use msbw_backend::{
    Aftermath, BackendError, CodeRequest, CommandRequest, ErrorKind, ExecOutput, ExecStatus, Operation, SandboxId,
    Template,
};
use msbw_protocol::method;
use msbw_protocol::params::{CommandParams, ReplParams, Seconds};
use msbw_protocol::results::{CommandResult, ReplResult};
use serde::Serialize;
use tokio::time::Instant;

use crate::HttpBackend;
use crate::client::{Client, RawResult, Retry};
use crate::end_marker::EndMarker;
use crate::errors::{CallError, Context};
use crate::listing::{SandboxState, decode};
use crate::output::{ReplOutcome, command_output, repl_outcome};

/// A masked failure that came back faster than this cannot have run anything of note: the
/// server gives up on an unreachable agent after about 0.25 s.
const FAST_FAILURE: Duration = Duration::from_secs(2);

/// What a forwarded call came to.
enum Forwarded {
    /// The agent's result.
    Answer(RawResult),
    /// It ran out of time; the sandbox is left as said.
    TimedOut(Aftermath),
}

/// A timeout in whole seconds for the wire, rounded up; zero is refused.
fn whole_seconds(timeout: Duration, cx: &Context<'_>) -> Result<u64, BackendError> {
    if timeout.is_zero() {
        return Err(cx.error(ErrorKind::InvalidInput, "the timeout must be more than zero"));
    }
    Ok(timeout.as_secs() + u64::from(timeout.subsec_nanos() > 0))
}

/// Reads the agent's answer to `sandbox.repl.run`: cuts the end marker, then the output rule.
pub(crate) fn finish_code(
    client: &Client,
    cx: &Context<'_>,
    request: &CodeRequest,
    value: &RawResult,
    marker: Option<&EndMarker>,
) -> Result<ExecOutput, BackendError> {
    let mut result: ReplResult = decode(value, method::REPL_RUN).map_err(|e| e.into_backend(cx))?;
    if let Some(marker) = marker {
        let complete = marker.cut(&mut result.output);
        if !complete.stderr {
            tracing::debug!(
                method = cx.method,
                "the REPL's answer lacks the stderr end marker: its stderr may be incomplete"
            );
        }
    }
    match repl_outcome(request.language, result.output, request.timeout) {
        ReplOutcome::Output(output) => Ok(output),
        ReplOutcome::AgentFailure(report) => {
            let id = cx.sandbox.map(ToString::to_string).unwrap_or_default();
            Err(cx.error(
                ErrorKind::Internal,
                format!(
                    "the {} REPL in sandbox {id} failed ({}); the sandbox should be replaced",
                    request.language,
                    client.scrub(&report)
                ),
            ))
        }
    }
}

/// Reads the agent's answer to `sandbox.command.run`.
pub(crate) fn finish_command(cx: &Context<'_>, value: &RawResult) -> Result<ExecOutput, BackendError> {
    let result: CommandResult = decode(value, method::COMMAND_RUN).map_err(|e| e.into_backend(cx))?;
    Ok(command_output(result))
}

pub(crate) fn timed_out(after: Duration, aftermath: Aftermath) -> ExecOutput {
    ExecOutput {
        stdout: String::new(),
        stderr: String::new(),
        status: ExecStatus::TimedOut { after, aftermath },
        exit_code: None,
    }
}

impl HttpBackend {
    /// `run_code`: `sandbox.repl.run`, then the output rule of [`crate::output`].
    pub(crate) async fn run_code_in(&self, id: &SandboxId, request: &CodeRequest) -> Result<ExecOutput, BackendError> {
        let cx = self.cx(Operation::RunCode, Some(id), method::REPL_RUN);
        let (params, marker, seconds) = self.code_params(id, request, &cx, true)?;
        let value = match self.forward(id, &cx, &params, seconds).await? {
            Forwarded::Answer(value) => value,
            Forwarded::TimedOut(aftermath) => return Ok(timed_out(request.timeout, aftermath)),
        };
        finish_code(&self.client, &cx, request, &value, marker.as_ref())
    }

    /// Validates a code request and builds its parameters (with the end marker when
    /// `with_marker` and the language wants one); also the timeout in whole seconds.
    pub(crate) fn code_params(
        &self,
        id: &SandboxId,
        request: &CodeRequest,
        cx: &Context<'_>,
        with_marker: bool,
    ) -> Result<(ReplParams, Option<EndMarker>, u64), BackendError> {
        id.validate(Operation::RunCode).map_err(|e| self.tag(e, Some(id)))?;
        let seconds = whole_seconds(request.timeout, cx)?;
        let (code, marker) = if with_marker {
            self.code_to_send(request)
        } else {
            (std::borrow::Cow::Borrowed(request.code.as_str()), None)
        };
        let params = ReplParams {
            sandbox: id.name.clone(),
            namespace: id.namespace.clone(),
            language: request.language.repl_language().to_owned(),
            code: code.into_owned(),
            timeout: Some(Seconds::whole(seconds)),
        };
        Ok((params, marker, seconds))
    }

    /// The code as sent, and the end marker to cut from its output: Python code gets the
    /// end-of-output statement of [`crate::end_marker`] (unless
    /// [`HttpBackendConfig::python_stderr_settle`](crate::HttpBackendConfig) is zero).
    fn code_to_send<'a>(&self, request: &'a CodeRequest) -> (std::borrow::Cow<'a, str>, Option<EndMarker>) {
        let settle = self.config.python_stderr_settle;
        if request.language != Template::Python || settle.is_zero() {
            return (std::borrow::Cow::Borrowed(&request.code), None);
        }
        let marker = EndMarker::new();
        (
            std::borrow::Cow::Owned(marker.append_to(&request.code, settle)),
            Some(marker),
        )
    }

    /// `run_command`: `sandbox.command.run`; a non-zero exit code is a result.
    pub(crate) async fn run_command_in(
        &self,
        id: &SandboxId,
        request: &CommandRequest,
    ) -> Result<ExecOutput, BackendError> {
        let cx = self.cx(Operation::RunCommand, Some(id), method::COMMAND_RUN);
        let (params, seconds) = self.command_params(id, request, &cx)?;
        let value = match self.forward(id, &cx, &params, seconds).await? {
            Forwarded::Answer(value) => value,
            Forwarded::TimedOut(aftermath) => return Ok(timed_out(request.timeout, aftermath)),
        };
        finish_command(&cx, &value)
    }

    /// Validates a command request and builds its parameters; also the timeout in whole
    /// seconds.
    pub(crate) fn command_params(
        &self,
        id: &SandboxId,
        request: &CommandRequest,
        cx: &Context<'_>,
    ) -> Result<(CommandParams, u64), BackendError> {
        id.validate(Operation::RunCommand).map_err(|e| self.tag(e, Some(id)))?;
        let seconds = whole_seconds(request.timeout, cx)?;
        if request.command.trim().is_empty() {
            return Err(cx.error(ErrorKind::InvalidInput, "the command is empty"));
        }
        if request.command.contains('\0') || request.args.iter().any(|a| a.contains('\0')) {
            return Err(cx.error(
                ErrorKind::InvalidInput,
                "the command or an argument contains a NUL byte, which no program can receive",
            ));
        }
        let params = CommandParams {
            sandbox: id.name.clone(),
            namespace: id.namespace.clone(),
            command: Some(request.command.clone()),
            args: request.args.clone(),
            timeout: Some(Seconds::whole(seconds)),
        };
        Ok((params, seconds))
    }

    /// Sends a forwarded call once (again only if it certainly did not arrive, or within the
    /// readiness window), and decides masked failures.
    async fn forward<P: Serialize>(
        &self,
        id: &SandboxId,
        cx: &Context<'_>,
        params: &P,
        seconds: u64,
    ) -> Result<Forwarded, BackendError> {
        let limit = Duration::from_secs(seconds);
        let client_timeout = limit + self.config.exec_grace;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let sent_at = Instant::now();
            let error = match self
                .client
                .rpc(cx.method, params, client_timeout, Retry::UnsentOnly)
                .await
            {
                Ok(value) => return Ok(Forwarded::Answer(value)),
                Err(CallError::Timeout { .. }) => return Ok(Forwarded::TimedOut(Aftermath::Unusable)),
                Err(error) if error.is_masked() => error,
                Err(error) => return Err(error.into_backend(cx)),
            };
            let took = sent_at.elapsed();
            if cx.operation == Operation::RunCommand && took >= limit {
                return Ok(Forwarded::TimedOut(Aftermath::Intact));
            }
            if took < FAST_FAILURE
                && let Some(window_end) = self.registry.readiness_window_end(id, self.config.readiness_window)
            {
                let pause = self.poll_pause(attempt);
                if Instant::now() + pause < window_end {
                    tracing::debug!(sandbox = %id, attempt, "masked failure right after start; retrying");
                    tokio::time::sleep(pause).await;
                    continue;
                }
            }
            return Err(self.decide_masked(id, cx, error).await);
        }
    }

    /// Defence 9: the server's masked 500 cannot tell an unknown sandbox from a dead agent, so
    /// the listing decides.
    async fn decide_masked(&self, id: &SandboxId, cx: &Context<'_>, error: CallError) -> BackendError {
        let started_here = self.registry.knows(id);
        match self.sandbox_state(id).await {
            Ok(SandboxState::Unknown) => {
                self.registry.forget(id);
                let known = if started_here {
                    " (this backend started it, but the server no longer knows it)"
                } else {
                    ""
                };
                cx.error(
                    ErrorKind::NotFound,
                    format!("the server at {} has no sandbox {id}{known}", self.client.display_url()),
                )
            }
            Ok(SandboxState::Stopped) => {
                self.registry.forget(id);
                cx.error(
                    ErrorKind::NotFound,
                    format!("sandbox {id} is not running (it was stopped or it crashed); start it again"),
                )
            }
            Ok(SandboxState::Running) => {
                let likely = if cx.operation == Operation::RunCommand {
                    "most likely the command does not exist in the sandbox (commands run without a shell: \
                     use sh -c for shell syntax), or the sandbox's agent is not answering"
                } else {
                    "so its agent is not answering, or the language is not available in its image"
                };
                cx.error(
                    ErrorKind::Internal,
                    format!(
                        "the server failed {} with a masked internal error (HTTP 500, code 5002) and keeps the \
                         reason in its own log; sandbox {id} is listed as running, {likely}",
                        cx.method
                    ),
                )
            }
            Err(listing) => {
                let base = error.into_backend(cx);
                let listing = listing.into_backend(&self.cx(cx.operation, Some(id), method::METRICS));
                cx.error(
                    ErrorKind::Internal,
                    format!(
                        "{}; checking whether the sandbox is running failed too: {}",
                        base.message(),
                        listing.message()
                    ),
                )
                .with_source(base)
            }
        }
    }
}
