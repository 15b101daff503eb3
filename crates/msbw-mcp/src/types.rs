//! The tools' arguments and structured results, with the JSON schemas a model reads.

use microsandbox_wrapper::{
    CommandResult, ExecStatus, ExecutionResult, ResourceStats, SandboxFlavor, SessionInfo, Template, VolumeMapping,
};
use rmcp::schemars::JsonSchema;
use serde::Deserialize;

/// Declares the argument structs of tools: deserialised with unknown fields refused, with the
/// JSON schema a model reads (from the doc comments); every field `pub(crate)`.
macro_rules! tool_args {
    ($($(#[$m:meta])* $name:ident { $($(#[$fm:meta])* $field:ident: $ty:ty),* $(,)? })*) => {$(
        $(#[$m])*
        #[derive(Debug, ::serde::Deserialize, ::rmcp::schemars::JsonSchema)]
        #[schemars(crate = "rmcp::schemars")]
        #[serde(deny_unknown_fields)]
        pub(crate) struct $name {
            $($(#[$fm])* pub(crate) $field: $ty,)*
        }
    )*};
}
pub(crate) use tool_args;

/// Declares the structured results of tools: serialised, with their JSON schema; every field
/// `pub(crate)`.
macro_rules! tool_outputs {
    ($($(#[$m:meta])* $name:ident { $($(#[$fm:meta])* $field:ident: $ty:ty),* $(,)? })*) => {$(
        $(#[$m])*
        #[derive(Debug, ::serde::Serialize, ::rmcp::schemars::JsonSchema)]
        #[schemars(crate = "rmcp::schemars")]
        pub(crate) struct $name {
            $($(#[$fm])* pub(crate) $field: $ty,)*
        }
    )*};
}
pub(crate) use tool_outputs;

/// Declares the arguments of an execution tool: its own fields, then `template` and
/// `session_id` (each documented by the tool), then the `flavor` and `timeout` every execution
/// takes.
macro_rules! run_args {
    (
        $(#[$m:meta])* $name:ident { $($own:tt)* }
        $(#[$template:meta])* template,
        $(#[$session:meta])* session_id $(,)?
    ) => {
        tool_args! {
            $(#[$m])*
            $name {
                $($own)*
                $(#[$template])*
                #[serde(default)]
                template: Option<TemplateArg>,
                $(#[$session])*
                #[serde(default)]
                session_id: Option<String>,
                /// The sandbox size for a new session: "small" (default), "medium" or "large".
                #[serde(default)]
                flavor: Option<FlavorArg>,
                /// The time limit in seconds (above 0, at most 3600; default: the server's MSB_EXECUTION_TIMEOUT).
                #[serde(default)]
                timeout: Option<f64>,
            }
        }
    };
}

/// The language a session runs.
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
#[serde(rename_all = "lowercase")]
pub(crate) enum TemplateArg {
    /// Python 3.
    Python,
    /// Node.js (JavaScript).
    Node,
}

impl From<TemplateArg> for Template {
    fn from(t: TemplateArg) -> Self {
        match t {
            TemplateArg::Python => Template::Python,
            TemplateArg::Node => Template::Node,
        }
    }
}

/// A sandbox size.
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
#[serde(rename_all = "lowercase")]
pub(crate) enum FlavorArg {
    /// 1 GB memory, 1 CPU.
    Small,
    /// 2 GB memory, 2 CPUs.
    Medium,
    /// 4 GB memory, 4 CPUs.
    Large,
}

impl From<FlavorArg> for SandboxFlavor {
    fn from(f: FlavorArg) -> Self {
        match f {
            FlavorArg::Small => SandboxFlavor::Small,
            FlavorArg::Medium => SandboxFlavor::Medium,
            FlavorArg::Large => SandboxFlavor::Large,
        }
    }
}

run_args! {
    /// Arguments of `execute_code`.
    ExecuteCodeArgs {
        /// The source code to run. Variables, imports and functions defined by earlier calls in the
        /// same session are still there. Print what you want to see: only stdout and stderr come back.
        code: String,
    }
    /// The language: "python" (default) or "node". A session keeps the template it was created with.
    template,
    /// The session to run in. Omit it to start a new session; pass the session_id of an earlier
    /// result to reuse that session and its state.
    session_id,
}

run_args! {
    /// Arguments of `execute_command`.
    ExecuteCommandArgs {
        /// The program to run, e.g. "ls" or "pip". It is executed directly, not by a shell: use
        /// command "sh" with args ["-c", "..."] for pipes, redirections or globs.
        command: String,
        /// The program's arguments, one string each.
        #[serde(default)]
        args: Vec<String>,
    }
    /// The template of a new session: "python" (default) or "node".
    template,
    /// The session to run in (omit it for a new session). Files written by earlier calls in the
    /// session are still there.
    session_id,
}

tool_args! {
    /// Arguments of `get_sessions`.
    #[derive(Default)]
    GetSessionsArgs {
        /// Only this session (an error if it does not exist). Omit it to list every live session.
        #[serde(default)]
        session_id: Option<String>,
    }
}

tool_args! {
    /// Arguments of `stop_session`.
    StopSessionArgs {
        /// The session to stop. Its sandbox and everything in it (variables, files) are discarded.
        session_id: String,
    }
}

tool_outputs! {
    /// What `execute_code` and `execute_command` return.
    RunOutput {
        /// The session it ran in: pass it as session_id to run more in the same sandbox.
        session_id: String,
        /// Whether the code completed without an uncaught exception (for a command: exited with 0).
        success: bool,
        /// "completed", "raised" (an uncaught exception) or "timed_out".
        status: String,
        /// The command's exit code (commands only; absent when it was killed).
        #[serde(skip_serializing_if = "Option::is_none")]
        exit_code: Option<i32>,
        /// What it printed on stdout.
        stdout: String,
        /// What it printed on stderr (an exception's traceback is here).
        stderr: String,
        /// Whether this call created the session.
        session_created: bool,
        /// Whether the session's sandbox was replaced by this call (earlier state is gone).
        sandbox_replaced: bool,
        /// Time taken, in milliseconds (a sandbox start included).
        execution_time_ms: u64,
        /// After a timeout: what became of the session ("intact", "state_lost" or "unusable").
        #[serde(skip_serializing_if = "Option::is_none")]
        aftermath: Option<String>,
    }
}

fn status_fields(status: ExecStatus) -> (String, Option<String>) {
    match status {
        ExecStatus::Completed => ("completed".into(), None),
        ExecStatus::Raised => ("raised".into(), None),
        ExecStatus::TimedOut { aftermath, .. } => (
            "timed_out".into(),
            serde_json::to_value(aftermath)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned)),
        ),
    }
}

/// A code or a command result, as the execution tools return it.
pub(crate) trait RunResult {
    /// The session it ran in (the wrapper's id).
    fn session_id(&self) -> &str;
    /// The tool's output; `session_id` is the id as the client knows it.
    fn output(&self, session_id: String) -> RunOutput;
}

/// [`RunResult`] for the code and the command result: they share these fields; only a command
/// has an exit code.
macro_rules! run_result {
    ($result:ty, |$r:ident| $exit_code:expr) => {
        impl RunResult for $result {
            fn session_id(&self) -> &str {
                &self.session_id
            }

            fn output(&self, session_id: String) -> RunOutput {
                let $r = self;
                let (status, aftermath) = status_fields($r.status);
                RunOutput {
                    session_id,
                    success: $r.success,
                    status,
                    exit_code: $exit_code,
                    stdout: $r.stdout.clone(),
                    stderr: $r.stderr.clone(),
                    session_created: $r.session_created,
                    sandbox_replaced: $r.sandbox_replaced,
                    execution_time_ms: $r.execution_time_ms,
                    aftermath,
                }
            }
        }
    };
}

run_result!(ExecutionResult, |r| None);
run_result!(CommandResult, |r| r.exit_code);

impl RunOutput {
    /// The result as text a model reads.
    pub(crate) fn text(&self) -> String {
        let mut t = format!("session_id: {}", self.session_id);
        if self.session_created {
            t.push_str(" (new session)");
        }
        if self.sandbox_replaced {
            t.push_str(" (sandbox replaced: earlier state is gone)");
        }
        t.push_str(&format!("\nstatus: {}", self.status));
        if let Some(code) = self.exit_code {
            t.push_str(&format!(" (exit code {code})"));
        }
        if let Some(a) = &self.aftermath {
            t.push_str(&format!(" (session {a})"));
        }
        t.push_str(&format!("\ntime: {} ms", self.execution_time_ms));
        t.push_str(&format!("\nstdout:\n{}", self.stdout));
        if !self.stderr.is_empty() {
            t.push_str(&format!("\nstderr:\n{}", self.stderr));
        }
        t
    }
}

tool_outputs! {
    /// One live session.
    SessionView {
        /// The session's id.
        session_id: String,
        /// Its template ("python" or "node").
        template: String,
        /// Its flavor ("small", "medium" or "large").
        flavor: String,
        /// Its state: "creating", "ready", "running", "error" or "stopping".
        status: String,
        /// How many executions it has run.
        executions: u64,
        /// Seconds since its last use.
        idle_seconds: u64,
        /// Whether its last execution was cancelled (by the client or a timeout) before it ended.
        last_execution_cancelled: bool,
    }
}

impl SessionView {
    /// From the wrapper's view; `session_id` is the id as the client knows it.
    pub(crate) fn new(s: &SessionInfo, session_id: String) -> Self {
        SessionView {
            session_id,
            template: s.template.to_string(),
            flavor: s.flavor.to_string(),
            status: s.status.to_string(),
            executions: s.executions,
            idle_seconds: s.last_accessed.elapsed().map(|d| d.as_secs()).unwrap_or(0),
            last_execution_cancelled: s.last_execution_cancelled,
        }
    }
}

tool_outputs! {
    /// What `get_sessions` returns.
    SessionsOutput {
        /// The sessions.
        sessions: Vec<SessionView>,
    }
}

tool_outputs! {
    /// What `stop_session` returns.
    StopOutput {
        /// The session stopped.
        session_id: String,
        /// Always true: an unknown session is an error.
        stopped: bool,
    }
}

tool_outputs! {
    /// One host folder mapped into every sandbox.
    VolumeView {
        /// The folder on the host.
        host_path: String,
        /// Where it appears inside each sandbox.
        container_path: String,
        /// Whether the sandbox may only read it.
        read_only: bool,
    }
}

impl From<&VolumeMapping> for VolumeView {
    fn from(v: &VolumeMapping) -> Self {
        VolumeView {
            host_path: v.host_path.clone(),
            container_path: v.container_path.clone(),
            read_only: v.read_only,
        }
    }
}

tool_outputs! {
    /// What `get_volume_mappings` returns.
    VolumesOutput {
        /// The mappings (empty: no host folder is visible in sandboxes).
        volumes: Vec<VolumeView>,
    }
}

tool_outputs! {
    /// What `get_resource_stats` returns: the server's use against its limits.
    StatsOutput {
        /// Live sessions (of every client of this server).
        active_sessions: u64,
        /// The most sessions allowed at once.
        max_sessions: u64,
        /// Memory reserved by live sessions, in MB.
        memory_used_mb: u64,
        /// The memory limit in MB (absent: none).
        #[serde(skip_serializing_if = "Option::is_none")]
        memory_limit_mb: Option<u64>,
        /// Every other figure the wrapper reports.
        details: serde_json::Value,
    }
}

impl From<&ResourceStats> for StatsOutput {
    fn from(s: &ResourceStats) -> Self {
        let details = serde_json::to_value(s).unwrap_or_default();
        let num = |k: &str| details.get(k).and_then(serde_json::Value::as_u64);
        StatsOutput {
            active_sessions: num("active_sessions").unwrap_or(0),
            max_sessions: num("max_sessions").unwrap_or(0),
            memory_used_mb: num("total_memory_mb").unwrap_or(0),
            memory_limit_mb: num("max_memory_mb"),
            details,
        }
    }
}
