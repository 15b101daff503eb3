//! The MCP server: the wrapper's operations as tools.

use std::future::Future;
use std::time::Duration;

use microsandbox_wrapper::{CodeCall, CommandCall, MicrosandboxWrapper, SessionOptions, Template, WrapperError};
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::tool::schema_for_type;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{
    CallToolResult, ContentBlock, Implementation, ProgressNotificationParam, ServerCapabilities, ServerConfig,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler, tool, tool_handler, tool_router};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::errors::{cancelled, to_rpc};
use crate::types::{
    ExecuteCodeArgs, ExecuteCommandArgs, GetSessionsArgs, RunOutput, SessionView, SessionsOutput, StatsOutput,
    StopOutput, StopSessionArgs, VolumeView, VolumesOutput,
};

#[path = "files.rs"]
mod files;

/// How long a cancelled call may take to end once its sandbox is stopped.
const CANCEL_SETTLE: Duration = Duration::from_secs(10);

/// How session ids are scoped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scoping {
    /// One client (stdio): session ids are used as they are.
    None,
    /// Many clients (HTTP): each MCP session (`Mcp-Session-Id`) gets its own namespace.
    PerMcpSession,
}

/// The MCP server over one wrapper. Clones share the wrapper (and so its sessions).
#[derive(Debug, Clone)]
pub struct McpServer {
    wrapper: MicrosandboxWrapper,
    scoping: Scoping,
    tool_router: ToolRouter<McpServer>,
}

/// The scope of one call: the prefix the client's session ids get on the wrapper.
struct Scope(String);

impl Scope {
    fn wrap(&self, id: &str) -> String {
        format!("{}{id}", self.0)
    }

    fn unwrap(&self, id: &str) -> String {
        if self.0.is_empty() {
            return id.to_owned();
        }
        id.replace(&self.0, "")
    }

    fn owns(&self, id: &str) -> bool {
        id.starts_with(&self.0)
    }
}

fn timeout_of(t: Option<f64>) -> Result<Option<Duration>, ErrorData> {
    let max = MicrosandboxWrapper::MAX_TIMEOUT.as_secs_f64();
    match t {
        None => Ok(None),
        Some(t) if t.is_finite() && t > 0.0 && t <= max => Ok(Some(Duration::from_secs_f64(t))),
        Some(t) => Err(to_rpc(
            &WrapperError::InvalidInput {
                what: "timeout".into(),
                message: format!("{t} is not a number of seconds above 0 and at most {max}"),
            },
            str::to_owned,
        )),
    }
}

/// A structured result with a readable text next to it.
fn result<T: Serialize>(value: &T, text: String, is_error: bool) -> CallToolResult {
    let mut r = if is_error {
        CallToolResult::error(vec![ContentBlock::text(text)])
    } else {
        CallToolResult::success(vec![ContentBlock::text(text)])
    };
    r.structured_content = serde_json::to_value(value).ok();
    r
}

#[tool_router]
impl McpServer {
    /// A server over `wrapper` (started by the caller).
    pub(crate) fn new(wrapper: MicrosandboxWrapper, scoping: Scoping) -> Self {
        McpServer {
            wrapper,
            scoping,
            tool_router: Self::tool_router() + Self::file_tool_router(),
        }
    }

    /// The namespace of this call's session ids.
    fn scope(&self, ctx: &RequestContext<RoleServer>) -> Scope {
        if self.scoping == Scoping::None {
            return Scope(String::new());
        }
        let header = ctx
            .extensions
            .get::<axum::http::request::Parts>()
            .and_then(|p| p.headers.get("mcp-session-id"))
            .map(|v| v.as_bytes().to_vec());
        match header {
            // The header is a credential of sorts: only a digest of it names sessions.
            Some(h) => {
                let digest = Sha256::digest(&h);
                let hex: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
                Scope(format!("mcp-{hex}."))
            }
            None => Scope("mcp-shared.".into()),
        }
    }

    /// The wrapper's session id for a call: the client's id in its scope, or a fresh one.
    fn session_for(&self, scope: &Scope, id: Option<String>) -> Option<String> {
        match id {
            Some(id) => Some(scope.wrap(&id)),
            None if scope.0.is_empty() => None,
            None => Some(scope.wrap(&format!("s{:012x}", fastrand::u64(..) >> 16))),
        }
    }

    /// Runs one execution with progress notifications (start, finish) when the client asked for
    /// them, and stops the session's sandbox when the client cancels.
    async fn run<T>(
        &self,
        ctx: &RequestContext<RoleServer>,
        session: Option<String>,
        call: impl Future<Output = Result<T, WrapperError>>,
        session_of: impl Fn(&T) -> String,
    ) -> Result<T, ErrorData> {
        let token = ctx.meta.get_progress_token();
        if let Some(token) = &token {
            let _ = ctx
                .peer
                .notify_progress(ProgressNotificationParam::new(token.clone(), 0.0).with_message("started"))
                .await;
        }
        let scope = self.scope(ctx);
        tokio::pin!(call);
        let outcome = tokio::select! {
            r = &mut call => r,
            () = ctx.ct.cancelled() => {
                // Dropping the call does not end the run (the wrapper finishes it on its own);
                // stopping the sandbox does. The session id stays usable: its next call starts
                // a fresh sandbox.
                let shown = session.as_deref().map(|s| scope.unwrap(s)).unwrap_or_default();
                if let Some(s) = &session {
                    tracing::info!(session = %shown, "cancelled by the client: stopping the session");
                    if let Err(e) = self.wrapper.stop_session(s).await {
                        tracing::warn!(session = %shown, error = %e, "could not stop the cancelled session");
                    }
                    // Let the abandoned call finish (its sandbox is gone, so it ends at once)
                    // before answering: the wrapper retries a call whose sandbox vanished, and
                    // that retry must not find a session the client creates again under the
                    // same id.
                    if tokio::time::timeout(CANCEL_SETTLE, &mut call).await.is_err() {
                        tracing::warn!(session = %shown, "the cancelled call did not end in time");
                    }
                }
                return Err(cancelled(&shown));
            }
        };
        if let Some(token) = token {
            let _ = ctx
                .peer
                .notify_progress(
                    ProgressNotificationParam::new(token, 1.0)
                        .with_total(1.0)
                        .with_message("finished"),
                )
                .await;
        }
        match outcome {
            Ok(r) => {
                tracing::debug!(session = %scope.unwrap(&session_of(&r)), "call done");
                Ok(r)
            }
            Err(e) => Err(to_rpc(&e, |s| scope.unwrap(s))),
        }
    }

    /// Run code.
    #[tool(
        description = "Run Python (default) or JavaScript code in a sandbox session and return its stdout, stderr and status. \
State persists within a session: pass the session_id from an earlier result to reuse variables, imports and files. \
Omit session_id to start a new session. Code that raises or times out is a normal result with success=false \
(the traceback is in stderr); an error is returned only for bad arguments, a limit reached or an unknown problem around the code.",
        output_schema = schema_for_type::<RunOutput>()
    )]
    async fn execute_code(
        &self,
        Parameters(args): Parameters<ExecuteCodeArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let scope = self.scope(&ctx);
        let session = self.session_for(&scope, args.session_id);
        let call = CodeCall {
            code: args.code,
            template: args.template.map(Template::from).unwrap_or(Template::Python),
            options: SessionOptions {
                session_id: session.clone(),
                flavor: args.flavor.map(Into::into),
                timeout: timeout_of(args.timeout)?,
                must_exist: false,
            },
        };
        let r = self
            .run(&ctx, session, self.wrapper.execute_code(call), |r| r.session_id.clone())
            .await?;
        let out = RunOutput::from_code(&r, scope.unwrap(&r.session_id));
        Ok(result(&out, out.text(), !out.success))
    }

    /// Run a command.
    #[tool(
        description = "Run a program (not a shell line) in a sandbox session, e.g. command \"ls\" with args [\"-la\"], or \
command \"sh\" with args [\"-c\", \"echo hi | wc -c\"] for shell syntax. Returns stdout, stderr and the exit code. \
Files persist within a session: pass the session_id from an earlier result. A non-zero exit code is a normal \
result with success=false.",
        output_schema = schema_for_type::<RunOutput>()
    )]
    async fn execute_command(
        &self,
        Parameters(args): Parameters<ExecuteCommandArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let scope = self.scope(&ctx);
        let session = self.session_for(&scope, args.session_id);
        let call = CommandCall {
            command: args.command,
            args: args.args,
            template: args.template.map(Template::from).unwrap_or(Template::Python),
            options: SessionOptions {
                session_id: session.clone(),
                flavor: args.flavor.map(Into::into),
                timeout: timeout_of(args.timeout)?,
                must_exist: false,
            },
        };
        let r = self
            .run(&ctx, session, self.wrapper.execute_command(call), |r| {
                r.session_id.clone()
            })
            .await?;
        let out = RunOutput::from_command(&r, scope.unwrap(&r.session_id));
        Ok(result(&out, out.text(), !out.success))
    }

    /// List sessions.
    #[tool(
        description = "List your live sandbox sessions (id, template, flavor, state, executions, idle time), or only the one named by session_id.",
        output_schema = schema_for_type::<SessionsOutput>()
    )]
    async fn get_sessions(
        &self,
        Parameters(args): Parameters<GetSessionsArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let scope = self.scope(&ctx);
        let wanted = args.session_id.as_deref().map(|s| scope.wrap(s));
        let sessions = self
            .wrapper
            .get_sessions(wanted.as_deref())
            .map_err(|e| to_rpc(&e, |s| scope.unwrap(s)))?;
        let sessions: Vec<SessionView> = sessions
            .iter()
            .filter(|s| scope.owns(&s.session_id))
            .map(|s| SessionView::new(s, scope.unwrap(&s.session_id)))
            .collect();
        if let (Some(id), true) = (&args.session_id, sessions.is_empty()) {
            return Err(to_rpc(
                &WrapperError::SessionNotFound { session_id: id.clone() },
                str::to_owned,
            ));
        }
        let text = if sessions.is_empty() {
            "no live sessions".to_owned()
        } else {
            sessions
                .iter()
                .map(|s| {
                    format!(
                        "{}: {} {} {} ({} executions, idle {} s)",
                        s.session_id, s.template, s.flavor, s.status, s.executions, s.idle_seconds
                    )
                })
                .collect::<Vec<_>>()
                .join("\n")
        };
        Ok(result(&SessionsOutput { sessions }, text, false))
    }

    /// Stop a session.
    #[tool(
        description = "Stop a session and discard its sandbox (variables and files in it are lost). Frees a slot when the session limit is reached.",
        output_schema = schema_for_type::<StopOutput>()
    )]
    async fn stop_session(
        &self,
        Parameters(args): Parameters<StopSessionArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let scope = self.scope(&ctx);
        let stopped = self
            .wrapper
            .stop_session(&scope.wrap(&args.session_id))
            .await
            .map_err(|e| to_rpc(&e, |s| scope.unwrap(s)))?;
        if !stopped {
            return Err(to_rpc(
                &WrapperError::SessionNotFound {
                    session_id: args.session_id,
                },
                str::to_owned,
            ));
        }
        let out = StopOutput {
            session_id: args.session_id,
            stopped: true,
        };
        let text = format!("stopped session {}", out.session_id);
        Ok(result(&out, text, false))
    }

    /// The volume mappings.
    #[tool(
        description = "List the host folders mapped into every sandbox (host path, path inside the sandbox, read-only or not). Empty: sandboxes see no host files.",
        output_schema = schema_for_type::<VolumesOutput>()
    )]
    async fn get_volume_mappings(&self) -> Result<CallToolResult, ErrorData> {
        let volumes: Vec<VolumeView> = self
            .wrapper
            .get_volume_mappings()
            .iter()
            .map(VolumeView::from)
            .collect();
        let text = if volumes.is_empty() {
            "no host folders are mapped into sandboxes".to_owned()
        } else {
            volumes
                .iter()
                .map(|v| {
                    format!(
                        "{} -> {}{}",
                        v.host_path,
                        v.container_path,
                        if v.read_only { " (read-only)" } else { "" }
                    )
                })
                .collect::<Vec<_>>()
                .join("\n")
        };
        Ok(result(&VolumesOutput { volumes }, text, false))
    }

    /// Resource use.
    #[tool(
        description = "Show the server's resource use against its limits: live sessions of all clients and the session limit, reserved memory and the memory limit.",
        output_schema = schema_for_type::<StatsOutput>()
    )]
    async fn get_resource_stats(&self) -> Result<CallToolResult, ErrorData> {
        let stats = self
            .wrapper
            .get_resource_stats()
            .map_err(|e| to_rpc(&e, str::to_owned))?;
        let out = StatsOutput::from(&stats);
        let text = format!(
            "sessions: {} of {}\nmemory: {} MB{}",
            out.active_sessions,
            out.max_sessions,
            out.memory_used_mb,
            out.memory_limit_mb.map(|m| format!(" of {m} MB")).unwrap_or_default()
        );
        Ok(result(&out, text, false))
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for McpServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("msbw", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "Run untrusted code and commands in sandbox sessions. Start with execute_code; reuse the \
returned session_id to keep state; stop sessions you no longer need with stop_session.",
            )
    }
}
