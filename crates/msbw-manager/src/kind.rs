//! [`Call`]: code and command calls behind one trait. Each kind says how it is checked, what it
//! asks of the backend ([`Work`]) and what result it makes of the backend's output ([`Ran`]);
//! the manager runs both through one path, and a front that runs calls itself (the CLI's
//! session client) makes the same results from the same rules.

use std::time::Duration;

use msbw_backend::{
    BackendError, CodeRequest, CommandRequest, ExecOutput, ExecStatus, ExecStream, SandboxBackend, SandboxId, Template,
};

use crate::calls::{MAX_INPUT_BYTES, SessionOptions};
use crate::{CodeCall, CommandCall, CommandResult, ExecutionResult, ManagerError};

mod sealed {
    pub trait Sealed {}
    impl Sealed for crate::CodeCall {}
    impl Sealed for crate::CommandCall {}
}

/// A call a session runs: [`CodeCall`] (its result an [`ExecutionResult`]) or [`CommandCall`]
/// (a [`CommandResult`]). Sealed: the set of kinds is the manager's.
pub trait Call: sealed::Sealed + Clone + Send + Sync + 'static {
    /// What the call returns.
    type Result: Send + 'static;

    /// The session, flavor and timeout the call asks for.
    fn options(&self) -> &SessionOptions;

    /// The session's template.
    fn template(&self) -> Template;

    /// The program a command runs (`None` for code): errors and logs name it.
    fn program(&self) -> Option<&str>;

    /// What the call asks of the backend, with its time limit; refuses input the backend must
    /// never see (too large, a NUL byte in a command, an empty command).
    fn work(&self, timeout: Duration) -> Result<Work, ManagerError>;

    /// The call's result: the backend's output, normalised (trailing white space trimmed,
    /// `success` from the kind's rule), with where and how it ran.
    fn result(self, ran: Ran) -> Self::Result;
}

/// What one execution asks of the backend.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Work {
    /// Code for the REPL.
    Code(CodeRequest),
    /// A command.
    Command(CommandRequest),
}

impl Work {
    /// Its time limit.
    pub fn timeout(&self) -> Duration {
        match self {
            Work::Code(r) => r.timeout,
            Work::Command(r) => r.timeout,
        }
    }

    /// Runs it in the sandbox `id`, its output streamed.
    pub async fn stream(&self, backend: &dyn SandboxBackend, id: &SandboxId) -> Result<ExecStream, BackendError> {
        match self {
            Work::Code(r) => backend.run_code_stream(id, r).await,
            Work::Command(r) => backend.run_command_stream(id, r).await,
        }
    }
}

/// How a call ran: the backend's output, verbatim, and where and how long.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Ran {
    /// The backend's output.
    pub out: ExecOutput,
    /// The session.
    pub session_id: String,
    /// Its sandbox.
    pub sandbox: SandboxId,
    /// Whether the call created the session.
    pub created: bool,
    /// Whether the call had to replace the session's sandbox.
    pub replaced: bool,
    /// From the call to its output.
    pub elapsed: Duration,
}

impl Ran {
    /// The output of a call that ran in an existing sandbox `sandbox` of session `session_id`;
    /// `created`, `replaced` and `elapsed` are for the caller to set.
    pub fn new(out: ExecOutput, session_id: impl Into<String>, sandbox: SandboxId) -> Self {
        Ran {
            out,
            session_id: session_id.into(),
            sandbox,
            created: false,
            replaced: false,
            elapsed: Duration::ZERO,
        }
    }
}

impl Call for CodeCall {
    type Result = ExecutionResult;

    fn program(&self) -> Option<&str> {
        None
    }

    fn options(&self) -> &SessionOptions {
        &self.options
    }

    fn template(&self) -> Template {
        self.template
    }

    fn work(&self, timeout: Duration) -> Result<Work, ManagerError> {
        if self.code.len() > MAX_INPUT_BYTES {
            return Err(ManagerError::invalid(
                "code",
                format!("is larger than {MAX_INPUT_BYTES} bytes"),
            ));
        }
        Ok(Work::Code(CodeRequest {
            language: self.template,
            code: self.code.clone(),
            timeout,
        }))
    }

    fn result(self, ran: Ran) -> ExecutionResult {
        ExecutionResult {
            success: ran.out.status == ExecStatus::Completed,
            stdout: trimmed(ran.out.stdout),
            stderr: trimmed(ran.out.stderr),
            status: ran.out.status,
            execution_time_ms: ms(ran.elapsed),
            session_created: ran.created,
            sandbox_replaced: ran.replaced,
            template: self.template,
            session_id: ran.session_id,
            sandbox: ran.sandbox,
        }
    }
}

impl Call for CommandCall {
    type Result = CommandResult;

    fn program(&self) -> Option<&str> {
        Some(&self.command)
    }

    fn options(&self) -> &SessionOptions {
        &self.options
    }

    fn template(&self) -> Template {
        self.template
    }

    fn work(&self, timeout: Duration) -> Result<Work, ManagerError> {
        if self.command.trim().is_empty() {
            return Err(ManagerError::invalid("command", "is empty"));
        }
        let size = self.command.len() + self.args.iter().map(String::len).sum::<usize>();
        if size > MAX_INPUT_BYTES {
            return Err(ManagerError::invalid(
                "command",
                format!("and its arguments are larger than {MAX_INPUT_BYTES} bytes"),
            ));
        }
        if self.command.contains('\0') || self.args.iter().any(|a| a.contains('\0')) {
            return Err(ManagerError::invalid("command", "contains a NUL byte"));
        }
        Ok(Work::Command(CommandRequest {
            command: self.command.clone(),
            args: self.args.clone(),
            timeout,
        }))
    }

    fn result(self, ran: Ran) -> CommandResult {
        CommandResult {
            success: ran.out.success(),
            stdout: trimmed(ran.out.stdout),
            stderr: trimmed(ran.out.stderr),
            exit_code: ran.out.exit_code,
            status: ran.out.status,
            execution_time_ms: ms(ran.elapsed),
            session_created: ran.created,
            sandbox_replaced: ran.replaced,
            command: self.command,
            args: self.args,
            session_id: ran.session_id,
            sandbox: ran.sandbox,
        }
    }
}

/// The text without its trailing white space, in place.
fn trimmed(mut text: String) -> String {
    text.truncate(text.trim_end().len());
    text
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
