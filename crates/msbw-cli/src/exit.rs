//! Exit statuses: one per outcome, stable, documented in `msbw --help` and docs/cli.md.

use microsandbox_wrapper::WrapperError;

/// Success.
pub(crate) const OK: u8 = 0;
/// The code raised an exception (or, for `doctor`, the backend is not healthy).
pub(crate) const FAILED: u8 = 1;
/// Bad usage or an invalid configuration.
pub(crate) const USAGE: u8 = 2;
/// A session does not match (another template or flavor) or does not exist.
pub(crate) const SESSION: u8 = 65;
/// A file in the sandbox is missing, too large, of the wrong type or not permitted (`cp`).
pub(crate) const FILE: u8 = 66;
/// The backend is unreachable.
pub(crate) const UNAVAILABLE: u8 = 69;
/// An internal error.
pub(crate) const INTERNAL: u8 = 70;
/// The sandbox could not be started.
pub(crate) const SANDBOX: u8 = 71;
/// The backend failed while running the code or command.
pub(crate) const EXECUTION: u8 = 74;
/// A limit (sessions, memory) was reached: try again later.
pub(crate) const LIMIT: u8 = 75;
/// The backend refused the credentials.
pub(crate) const UNAUTHORIZED: u8 = 77;
/// The backend cannot do what was asked.
pub(crate) const UNSUPPORTED: u8 = 78;
/// The execution timed out (as `timeout(1)` reports it).
pub(crate) const TIMED_OUT: u8 = 124;
/// Interrupted by SIGINT (Ctrl-C), after stopping what was started (128 + 2, as shells report it).
pub(crate) const INTERRUPTED: u8 = 130;
/// A command was killed without an exit code (other than by the timeout).
pub(crate) const KILLED: u8 = 137;
/// Ended by SIGTERM, after stopping what was started (128 + 15).
pub(crate) const TERMINATED: u8 = 143;

/// The table printed by `msbw --help`.
pub(crate) const TABLE: &str = "\
Exit status:
  0    success (`run`: the command's own exit code is passed through; `exec`: the
       code's own status when it exits with one, e.g. sys.exit(3) or process.exit(3))
  1    the code raised an exception; `doctor`: the backend is not healthy
  2    bad usage or invalid configuration
  65   session mismatch (another template or flavor) or unknown session
  66   `cp`: the file is missing, too large, of the wrong type or not permitted
  69   the backend is unreachable
  70   internal error
  71   the sandbox could not be started
  74   the backend failed while running the code or command
  75   a limit was reached (sessions, memory); try again later
  77   the backend refused the credentials (MSB_API_KEY)
  78   the backend cannot do what was asked (e.g. read-only volumes)
  124  the execution timed out
  130  interrupted (Ctrl-C); what msbw started was stopped first
  137  the command was killed
  143  terminated (SIGTERM); what msbw started was stopped first";

/// The exit status for a wrapper error.
pub(crate) fn for_error(e: &WrapperError) -> u8 {
    match e {
        WrapperError::Configuration { .. } | WrapperError::InvalidInput { .. } => USAGE,
        WrapperError::ResourceLimit { .. } | WrapperError::LimitReached { .. } => LIMIT,
        WrapperError::SessionNotFound { .. } | WrapperError::SessionMismatch { .. } => SESSION,
        WrapperError::SandboxCreation { .. } => SANDBOX,
        WrapperError::CodeExecution { .. } | WrapperError::CommandExecution { .. } | WrapperError::SandboxLost(..) => {
            EXECUTION
        }
        WrapperError::Connection { .. } => UNAVAILABLE,
        WrapperError::Unauthorized { .. } => UNAUTHORIZED,
        WrapperError::Unsupported { .. } => UNSUPPORTED,
        WrapperError::File { .. } => FILE,
        _ => INTERNAL,
    }
}
