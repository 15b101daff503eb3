//! What callers ask for (code or a command in a session) and what they get back.

use std::time::Duration;

use msbw_backend::{ExecStatus, SandboxId, Template};
use msbw_config::SandboxFlavor;
use serde::Serialize;

/// The largest code or command (with arguments) a call may send, in bytes. The microsandbox
/// server refuses request bodies over 2 MiB.
pub const MAX_INPUT_BYTES: usize = 1024 * 1024;

/// The longest timeout a call may ask for.
pub const MAX_CALL_TIMEOUT: Duration = Duration::from_secs(3600);

/// Which session a call runs in, and how.
///
/// - `session_id`: `None` creates a new session with a generated id; an id that does not exist
///   yet creates that session; an existing id reuses it.
/// - `flavor`: `None` means the configured default flavor (`MSB_DEFAULT_FLAVOR`).
/// - `timeout`: `None` means the configured default (`MSB_EXECUTION_TIMEOUT`); zero is refused
///   (there is no "no limit"); at most [`MAX_CALL_TIMEOUT`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SessionOptions {
    /// The session to run in.
    pub session_id: Option<String>,
    /// The sandbox's flavor when the session is created.
    pub flavor: Option<SandboxFlavor>,
    /// The execution's time limit.
    pub timeout: Option<Duration>,
    /// Fail with `SessionNotFound` instead of creating the session when it does not exist.
    pub must_exist: bool,
}

/// The setters of a call's template and session options, shared by code and command calls.
macro_rules! session_setters {
    ($call:ty) => {
        impl $call {
            /// Sets the template.
            pub fn template(mut self, template: Template) -> Self {
                self.template = template;
                self
            }

            /// Runs in this session (created if it does not exist).
            pub fn session(mut self, session_id: impl Into<String>) -> Self {
                self.options.session_id = Some(session_id.into());
                self
            }

            /// Sets the flavor.
            pub fn flavor(mut self, flavor: SandboxFlavor) -> Self {
                self.options.flavor = Some(flavor);
                self
            }

            /// Sets the timeout.
            pub fn timeout(mut self, timeout: Duration) -> Self {
                self.options.timeout = Some(timeout);
                self
            }
        }
    };
}

/// Code to run in a session's REPL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeCall {
    /// The source code.
    pub code: String,
    /// The session's template (its REPL language).
    pub template: Template,
    /// Session, flavor and timeout.
    pub options: SessionOptions,
}

impl CodeCall {
    /// Python code in a new session with the default flavor and timeout.
    pub fn new(code: impl Into<String>) -> Self {
        CodeCall {
            code: code.into(),
            template: Template::Python,
            options: SessionOptions::default(),
        }
    }
}

session_setters!(CodeCall);

/// A command to run in a session's sandbox (executed directly, not by a shell).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandCall {
    /// The program.
    pub command: String,
    /// Its arguments.
    pub args: Vec<String>,
    /// The session's template.
    pub template: Template,
    /// Session, flavor and timeout.
    pub options: SessionOptions,
}

impl CommandCall {
    /// A command in a new python session with the default flavor and timeout.
    pub fn new(command: impl Into<String>, args: impl IntoIterator<Item = impl Into<String>>) -> Self {
        CommandCall {
            command: command.into(),
            args: args.into_iter().map(Into::into).collect(),
            template: Template::Python,
            options: SessionOptions::default(),
        }
    }
}

session_setters!(CommandCall);

/// A session to open eagerly (see `SessionManager::open_session`): its sandbox starts now, not
/// on first use. Extra volumes and environment variables apply to this session's sandboxes only,
/// on top of the configured volumes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionSpec {
    /// The session's id.
    pub session_id: String,
    /// Its template.
    pub template: Template,
    /// Its flavor.
    pub flavor: SandboxFlavor,
    /// Volumes mapped into this session's sandboxes besides the configured ones.
    pub extra_volumes: Vec<msbw_backend::VolumeMapping>,
    /// Environment variables of this session's sandboxes.
    pub env: Vec<(String, String)>,
}

/// Declares a call's result: the fields code and command results share (session, output,
/// success, status, timing, session and sandbox changes), then the result's own.
macro_rules! call_result {
    ($(#[$meta:meta])* $name:ident { $($(#[$field_meta:meta])* $field:ident: $ty:ty,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Serialize)]
        pub struct $name {
            /// The session it ran in.
            pub session_id: String,
            /// What it printed on stdout (trailing white space trimmed).
            pub stdout: String,
            /// What it printed on stderr (trailing white space trimmed).
            pub stderr: String,
            /// Whether it succeeded (see the type's description).
            pub success: bool,
            /// How it ended.
            #[serde(flatten)]
            pub status: ExecStatus,
            /// How long it took, in milliseconds, from the call to the result (a start included).
            pub execution_time_ms: u64,
            /// Whether this call created the session.
            pub session_created: bool,
            /// Whether this call had to start a new sandbox for an existing session (its earlier
            /// state is gone).
            pub sandbox_replaced: bool,
            /// The session's sandbox.
            pub sandbox: SandboxId,
            $($(#[$field_meta])* pub $field: $ty,)*
        }
    };
}

call_result! {
    /// The result of running code.
    ///
    /// `success` is true when the code ran to the end without an uncaught exception; output on
    /// stderr alone (a warning) does not make it fail. After a timeout, `status` says what became of
    /// the session: `StateLost` (usable, REPL state reset), `Intact`, or `Unusable` (the session's
    /// sandbox is replaced on its next use).
    ExecutionResult {
        /// The session's template.
        template: Template,
    }
}

call_result! {
    /// The result of running a command. A non-zero exit code is a result, not an error;
    /// `success` is true when it completed with exit code 0.
    CommandResult {
        /// Its exit code (`None` when it was killed, e.g. on a timeout).
        exit_code: Option<i32>,
        /// The program.
        command: String,
        /// Its arguments.
        args: Vec<String>,
    }
}
