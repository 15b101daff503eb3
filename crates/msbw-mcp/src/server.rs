//! The MCP server: the wrapper's operations as tools.

use std::time::Duration;

use futures_util::StreamExt;
use microsandbox_wrapper::{
    CallEvent, CodeCall, CommandCall, EventStream, MicrosandboxWrapper, SessionOptions, Template, WrapperError,
};
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::tool::schema_for_type;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{
    CallToolResult, ContentBlock, Implementation, ProgressNotificationParam, ProgressToken, ServerCapabilities,
    ServerConfig,
};
use rmcp::service::{Peer, RequestContext};
use rmcp::{ErrorData, RoleServer, ServerHandler, tool, tool_handler, tool_router};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::errors::{cancelled, to_rpc};
use crate::types::{
    ExecuteCodeArgs, ExecuteCommandArgs, FlavorArg, GetSessionsArgs, RunOutput, RunResult, SessionView, SessionsOutput,
    StatsOutput, StopOutput, StopSessionArgs, TemplateArg, VolumeView, VolumesOutput,
};

#[path = "files.rs"]
mod files;

/// The most output text one progress notification carries (longer chunks are split).
const PROGRESS_CHUNK: usize = 16 * 1024;

/// The progress notifications of one call that asked for them.
struct Progress {
    token: ProgressToken,
    peer: Peer<RoleServer>,
    done: u64,
}

impl Progress {
    /// Sends `message` with the next progress value. A client that went away loses it; the
    /// call goes on (and is cancelled by the transport if the client is gone).
    async fn send(&mut self, message: &str) {
        let param = ProgressNotificationParam::new(self.token.clone(), self.done as f64).with_message(message);
        self.done += 1;
        let _ = self.peer.notify_progress(param).await;
    }

    /// The last notification: progress equals total.
    async fn finish(self) {
        let n = self.done as f64;
        let param = ProgressNotificationParam::new(self.token, n)
            .with_total(n)
            .with_message("finished");
        let _ = self.peer.notify_progress(param).await;
    }
}

/// `text` in pieces of at most [`PROGRESS_CHUNK`] bytes, split at character boundaries.
fn pieces(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = text;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut end = rest.len().min(PROGRESS_CHUNK);
        while !rest.is_char_boundary(end) {
            end -= 1;
        }
        let (piece, tail) = rest.split_at(end);
        rest = tail;
        Some(piece)
    })
}

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

    /// The error for the client, with session ids as it knows them.
    fn rpc(&self, e: &WrapperError) -> ErrorData {
        to_rpc(e, |s| self.unwrap(s))
    }
}

/// The request context a tool gets.
type Ctx = RequestContext<RoleServer>;

/// What a tool returns.
type ToolResult = Result<CallToolResult, ErrorData>;

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

/// The template of an execution: Python unless the call names one.
fn template_of(t: Option<TemplateArg>) -> Template {
    t.map(Template::from).unwrap_or(Template::Python)
}

/// A list as text a model reads: one line an item, or `empty` when there are none.
fn listing<T>(items: &[T], empty: &str, line: impl Fn(&T) -> String) -> String {
    if items.is_empty() {
        return empty.to_owned();
    }
    items.iter().map(line).collect::<Vec<_>>().join("\n")
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

    /// Runs one streamed execution. A client that sent a progress token gets a notification at
    /// the start, one per output chunk (the text, lossy UTF-8, at most [`PROGRESS_CHUNK`] bytes
    /// each) and one at the end. A client that cancels the request cancels the execution: the
    /// stream is dropped, which ends the run and keeps the session (and, where the backend
    /// streams natively, its sandbox) usable.
    async fn run<T: Send + 'static>(
        &self,
        ctx: &Ctx,
        session: Option<String>,
        stream: Result<EventStream<T>, WrapperError>,
    ) -> Result<T, ErrorData> {
        let scope = self.scope(ctx);
        let mut stream = stream.map_err(|e| scope.rpc(&e))?;
        let mut progress = ctx.meta.get_progress_token().map(|token| Progress {
            token,
            peer: ctx.peer.clone(),
            done: 0,
        });
        if let Some(p) = &mut progress {
            p.send("started").await;
        }
        let outcome = loop {
            let event = tokio::select! {
                e = stream.next() => e,
                () = ctx.ct.cancelled() => {
                    drop(stream);
                    let shown = session.as_deref().map(|s| scope.unwrap(s)).unwrap_or_default();
                    tracing::info!(session = %shown, "cancelled by the client: execution dropped");
                    return Err(cancelled(&shown));
                }
            };
            match event {
                Some(Ok(CallEvent::Stdout(b) | CallEvent::Stderr(b))) => {
                    if let Some(p) = &mut progress {
                        for piece in pieces(&String::from_utf8_lossy(&b)) {
                            p.send(piece).await;
                        }
                    }
                }
                Some(Ok(CallEvent::Finished(r))) => break Ok(r),
                Some(Ok(_)) => {}
                Some(Err(e)) => break Err(e),
                None => {
                    break Err(WrapperError::Internal {
                        message: "the output stream ended without a result".into(),
                        source: None,
                    });
                }
            }
        };
        if let Some(p) = progress {
            p.finish().await;
        }
        outcome.map_err(|e| scope.rpc(&e))
    }

    /// An execution tool's call: its session in this call's scope, the stream `start` opens with
    /// the call's session options, run to its result (see [`Self::run`]), as the tool's output.
    async fn execute<T: RunResult + Send + 'static>(
        &self,
        ctx: &Ctx,
        (session_id, flavor, timeout): (Option<String>, Option<FlavorArg>, Option<f64>),
        start: impl FnOnce(SessionOptions) -> Result<EventStream<T>, WrapperError>,
    ) -> ToolResult {
        let scope = self.scope(ctx);
        let session = self.session_for(&scope, session_id);
        let options = SessionOptions {
            session_id: session.clone(),
            flavor: flavor.map(Into::into),
            timeout: timeout_of(timeout)?,
            must_exist: false,
        };
        let r = self.run(ctx, session, start(options)).await?;
        let out = r.output(scope.unwrap(r.session_id()));
        tracing::debug!(session = %out.session_id, "call done");
        Ok(result(&out, out.text(), !out.success))
    }

    /// Run code.
    #[tool(
        description = "Run Python (default) or JavaScript code in a sandbox session and return its stdout, stderr and status. \
State persists within a session: pass the session_id from an earlier result to reuse variables, imports and files. \
Omit session_id to start a new session. Code that raises or times out is a normal result with success=false \
(the traceback is in stderr); an error is returned only for bad arguments, a limit reached or an unknown problem around the code.",
        output_schema = schema_for_type::<RunOutput>()
    )]
    async fn execute_code(&self, Parameters(args): Parameters<ExecuteCodeArgs>, ctx: Ctx) -> ToolResult {
        let call = CodeCall::new(args.code).template(template_of(args.template));
        let start = |options| self.wrapper.execute_code_stream(CodeCall { options, ..call });
        self.execute(&ctx, (args.session_id, args.flavor, args.timeout), start)
            .await
    }

    /// Run a command.
    #[tool(
        description = "Run a program (not a shell line) in a sandbox session, e.g. command \"ls\" with args [\"-la\"], or \
command \"sh\" with args [\"-c\", \"echo hi | wc -c\"] for shell syntax. Returns stdout, stderr and the exit code. \
Files persist within a session: pass the session_id from an earlier result. A non-zero exit code is a normal \
result with success=false.",
        output_schema = schema_for_type::<RunOutput>()
    )]
    async fn execute_command(&self, Parameters(args): Parameters<ExecuteCommandArgs>, ctx: Ctx) -> ToolResult {
        let call = CommandCall::new(args.command, args.args).template(template_of(args.template));
        let start = |options| self.wrapper.execute_command_stream(CommandCall { options, ..call });
        self.execute(&ctx, (args.session_id, args.flavor, args.timeout), start)
            .await
    }

    /// List sessions.
    #[tool(
        description = "List your live sandbox sessions (id, template, flavor, state, executions, idle time), or only the one named by session_id.",
        output_schema = schema_for_type::<SessionsOutput>()
    )]
    async fn get_sessions(&self, Parameters(args): Parameters<GetSessionsArgs>, ctx: Ctx) -> ToolResult {
        let scope = self.scope(&ctx);
        let wanted = args.session_id.as_deref().map(|s| scope.wrap(s));
        let sessions = self
            .wrapper
            .get_sessions(wanted.as_deref())
            .map_err(|e| scope.rpc(&e))?;
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
        let text = listing(&sessions, "no live sessions", |s| {
            format!(
                "{}: {} {} {} ({} executions, idle {} s)",
                s.session_id, s.template, s.flavor, s.status, s.executions, s.idle_seconds
            )
        });
        Ok(result(&SessionsOutput { sessions }, text, false))
    }

    /// Stop a session.
    #[tool(
        description = "Stop a session and discard its sandbox (variables and files in it are lost). Frees a slot when the session limit is reached.",
        output_schema = schema_for_type::<StopOutput>()
    )]
    async fn stop_session(&self, Parameters(args): Parameters<StopSessionArgs>, ctx: Ctx) -> ToolResult {
        let scope = self.scope(&ctx);
        let stopped = self
            .wrapper
            .stop_session(&scope.wrap(&args.session_id))
            .await
            .map_err(|e| scope.rpc(&e))?;
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
    async fn get_volume_mappings(&self) -> ToolResult {
        let volumes: Vec<VolumeView> = self
            .wrapper
            .get_volume_mappings()
            .iter()
            .map(VolumeView::from)
            .collect();
        let text = listing(&volumes, "no host folders are mapped into sandboxes", |v| {
            let read_only = if v.read_only { " (read-only)" } else { "" };
            format!("{} -> {}{read_only}", v.host_path, v.container_path)
        });
        Ok(result(&VolumesOutput { volumes }, text, false))
    }

    /// Resource use.
    #[tool(
        description = "Show the server's resource use against its limits: live sessions of all clients and the session limit, reserved memory and the memory limit.",
        output_schema = schema_for_type::<StatsOutput>()
    )]
    async fn get_resource_stats(&self) -> ToolResult {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_pieces_are_bounded_and_split_at_characters() {
        assert_eq!(pieces("").count(), 0);
        assert_eq!(pieces("a\n").collect::<Vec<_>>(), ["a\n"]);
        let text = format!("{}{}", "x".repeat(PROGRESS_CHUNK - 1), "é".repeat(PROGRESS_CHUNK));
        let parts: Vec<&str> = pieces(&text).collect();
        assert!(parts.iter().all(|p| !p.is_empty() && p.len() <= PROGRESS_CHUNK));
        assert_eq!(parts[0].len(), PROGRESS_CHUNK - 1, "é does not fit after the x's");
        assert_eq!(parts.concat(), text);
    }
}
