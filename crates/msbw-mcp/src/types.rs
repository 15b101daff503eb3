//! The tools' arguments and structured results, with the JSON schemas a model reads.

use microsandbox_wrapper::{
    CommandResult, ExecStatus, ExecutionResult, ResourceStats, SandboxFlavor, SessionInfo, Template, VolumeMapping,
};
use rmcp::schemars::JsonSchema;
use serde::{Deserialize, Serialize};

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

/// Arguments of `execute_code`.
#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
#[serde(deny_unknown_fields)]
pub(crate) struct ExecuteCodeArgs {
    /// The source code to run. Variables, imports and functions defined by earlier calls in the
    /// same session are still there. Print what you want to see: only stdout and stderr come back.
    pub(crate) code: String,
    /// The language: "python" (default) or "node". A session keeps the template it was created with.
    #[serde(default)]
    pub(crate) template: Option<TemplateArg>,
    /// The session to run in. Omit it to start a new session; pass the session_id of an earlier
    /// result to reuse that session and its state.
    #[serde(default)]
    pub(crate) session_id: Option<String>,
    /// The sandbox size for a new session: "small" (default), "medium" or "large".
    #[serde(default)]
    pub(crate) flavor: Option<FlavorArg>,
    /// The time limit in seconds (above 0, at most 3600; default: the server's MSB_EXECUTION_TIMEOUT).
    #[serde(default)]
    pub(crate) timeout: Option<f64>,
}

/// Arguments of `execute_command`.
#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
#[serde(deny_unknown_fields)]
pub(crate) struct ExecuteCommandArgs {
    /// The program to run, e.g. "ls" or "pip". It is executed directly, not by a shell: use
    /// command "sh" with args ["-c", "..."] for pipes, redirections or globs.
    pub(crate) command: String,
    /// The program's arguments, one string each.
    #[serde(default)]
    pub(crate) args: Vec<String>,
    /// The template of a new session: "python" (default) or "node".
    #[serde(default)]
    pub(crate) template: Option<TemplateArg>,
    /// The session to run in (omit it for a new session). Files written by earlier calls in the
    /// session are still there.
    #[serde(default)]
    pub(crate) session_id: Option<String>,
    /// The sandbox size for a new session: "small" (default), "medium" or "large".
    #[serde(default)]
    pub(crate) flavor: Option<FlavorArg>,
    /// The time limit in seconds (above 0, at most 3600; default: the server's MSB_EXECUTION_TIMEOUT).
    #[serde(default)]
    pub(crate) timeout: Option<f64>,
}

/// Arguments of `get_sessions`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
#[serde(deny_unknown_fields)]
pub(crate) struct GetSessionsArgs {
    /// Only this session (an error if it does not exist). Omit it to list every live session.
    #[serde(default)]
    pub(crate) session_id: Option<String>,
}

/// Arguments of `stop_session`.
#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
#[serde(deny_unknown_fields)]
pub(crate) struct StopSessionArgs {
    /// The session to stop. Its sandbox and everything in it (variables, files) are discarded.
    pub(crate) session_id: String,
}

/// What `execute_code` and `execute_command` return.
#[derive(Debug, Serialize, JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
pub(crate) struct RunOutput {
    /// The session it ran in: pass it as session_id to run more in the same sandbox.
    pub(crate) session_id: String,
    /// Whether the code completed without an uncaught exception (for a command: exited with 0).
    pub(crate) success: bool,
    /// "completed", "raised" (an uncaught exception) or "timed_out".
    pub(crate) status: String,
    /// The command's exit code (commands only; absent when it was killed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) exit_code: Option<i32>,
    /// What it printed on stdout.
    pub(crate) stdout: String,
    /// What it printed on stderr (an exception's traceback is here).
    pub(crate) stderr: String,
    /// Whether this call created the session.
    pub(crate) session_created: bool,
    /// Whether the session's sandbox was replaced by this call (earlier state is gone).
    pub(crate) sandbox_replaced: bool,
    /// Time taken, in milliseconds (a sandbox start included).
    pub(crate) execution_time_ms: u64,
    /// After a timeout: what became of the session ("intact", "state_lost" or "unusable").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) aftermath: Option<String>,
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

impl RunOutput {
    /// From a code result; `session_id` is the id as the client knows it.
    pub(crate) fn from_code(r: &ExecutionResult, session_id: String) -> Self {
        let (status, aftermath) = status_fields(r.status);
        RunOutput {
            session_id,
            success: r.success,
            status,
            exit_code: None,
            stdout: r.stdout.clone(),
            stderr: r.stderr.clone(),
            session_created: r.session_created,
            sandbox_replaced: r.sandbox_replaced,
            execution_time_ms: r.execution_time_ms,
            aftermath,
        }
    }

    /// From a command result; `session_id` is the id as the client knows it.
    pub(crate) fn from_command(r: &CommandResult, session_id: String) -> Self {
        let (status, aftermath) = status_fields(r.status);
        RunOutput {
            session_id,
            success: r.success,
            status,
            exit_code: r.exit_code,
            stdout: r.stdout.clone(),
            stderr: r.stderr.clone(),
            session_created: r.session_created,
            sandbox_replaced: r.sandbox_replaced,
            execution_time_ms: r.execution_time_ms,
            aftermath,
        }
    }

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

/// One live session.
#[derive(Debug, Serialize, JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
pub(crate) struct SessionView {
    /// The session's id.
    pub(crate) session_id: String,
    /// Its template ("python" or "node").
    pub(crate) template: String,
    /// Its flavor ("small", "medium" or "large").
    pub(crate) flavor: String,
    /// Its state: "creating", "ready", "running", "error" or "stopping".
    pub(crate) status: String,
    /// How many executions it has run.
    pub(crate) executions: u64,
    /// Seconds since its last use.
    pub(crate) idle_seconds: u64,
    /// Whether its last execution was cancelled (by the client or a timeout) before it ended.
    pub(crate) last_execution_cancelled: bool,
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

/// What `get_sessions` returns.
#[derive(Debug, Serialize, JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
pub(crate) struct SessionsOutput {
    /// The sessions.
    pub(crate) sessions: Vec<SessionView>,
}

/// What `stop_session` returns.
#[derive(Debug, Serialize, JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
pub(crate) struct StopOutput {
    /// The session stopped.
    pub(crate) session_id: String,
    /// Always true: an unknown session is an error.
    pub(crate) stopped: bool,
}

/// One host folder mapped into every sandbox.
#[derive(Debug, Serialize, JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
pub(crate) struct VolumeView {
    /// The folder on the host.
    pub(crate) host_path: String,
    /// Where it appears inside each sandbox.
    pub(crate) container_path: String,
    /// Whether the sandbox may only read it.
    pub(crate) read_only: bool,
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

/// What `get_volume_mappings` returns.
#[derive(Debug, Serialize, JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
pub(crate) struct VolumesOutput {
    /// The mappings (empty: no host folder is visible in sandboxes).
    pub(crate) volumes: Vec<VolumeView>,
}

/// What `get_resource_stats` returns: the server's use against its limits.
#[derive(Debug, Serialize, JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
pub(crate) struct StatsOutput {
    /// Live sessions (of every client of this server).
    pub(crate) active_sessions: u64,
    /// The most sessions allowed at once.
    pub(crate) max_sessions: u64,
    /// Memory reserved by live sessions, in MB.
    pub(crate) memory_used_mb: u64,
    /// The memory limit in MB (absent: none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) memory_limit_mb: Option<u64>,
    /// Every other figure the wrapper reports.
    pub(crate) details: serde_json::Value,
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
