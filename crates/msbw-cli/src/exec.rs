//! `msbw exec` and `msbw run`.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use microsandbox_wrapper::{
    CallEvent, CodeCall, CommandCall, EventStream, ExecStatus, ExecutionResult, MicrosandboxWrapper, SandboxFlavor,
    SessionOptions, Template, WrapperConfig, WrapperError,
};
use msbw_protocol::stream::{ChunkLine, ChunkStream};

use crate::cli::{ExecArgs, Global, RunArgs, SessionArgs};
use crate::out::{errln, outln, usage};

use crate::{exit, input, print_error, progress};

fn session_options(args: &SessionArgs, file: Option<&Path>) -> Result<(Template, SessionOptions), String> {
    let template: Template = match &args.template {
        Some(t) => t
            .parse()
            .map_err(|e: microsandbox_wrapper::backend::UnknownTemplate| e.to_string())?,
        None => template_for(file),
    };
    let flavor = match &args.flavor {
        Some(f) => Some(f.parse::<SandboxFlavor>().map_err(|e| e.to_string())?),
        None => None,
    };
    let timeout = match args.timeout {
        None => None,
        Some(t) if t.is_finite() && t > 0.0 && t <= MicrosandboxWrapper::MAX_TIMEOUT.as_secs_f64() => {
            Some(Duration::from_secs_f64(t))
        }
        Some(t) => {
            return Err(format!(
                "--timeout {t} is not a number of seconds from 0 (exclusive) to {}",
                MicrosandboxWrapper::MAX_TIMEOUT.as_secs()
            ));
        }
    };
    Ok((
        template,
        SessionOptions {
            session_id: args.session.clone(),
            flavor,
            timeout,
            must_exist: false,
        },
    ))
}

/// The template a code file's extension names: node for `.js`, `.mjs` and `.cjs`, python
/// otherwise (`.py` and anything else).
fn template_for(file: Option<&Path>) -> Template {
    match file.and_then(|f| f.extension()).and_then(|e| e.to_str()) {
        Some("js" | "mjs" | "cjs") => Template::Node,
        _ => Template::Python,
    }
}

fn read_code(args: &ExecArgs) -> Result<String, String> {
    match (&args.file, args.code.as_deref()) {
        (Some(path), None) => input::read_code_file(path),
        (None, Some("-")) => input::read_code_stdin(),
        (None, Some(code)) => Ok(code.to_owned()),
        (None, None) => Err("no code given: pass CODE, -f FILE, or - to read stdin (see msbw exec --help)".into()),
        (Some(_), Some(_)) => Err("give the code either as CODE or with -f FILE, not both".into()),
    }
}

/// How a call ended: with its result, or by a signal (after stopping what it started).
pub(crate) enum Ended<T> {
    Done(Result<T, WrapperError>),
    Signalled(u8),
}

/// Waits for SIGINT or SIGTERM; returns the exit status for it.
pub(crate) async fn signalled() -> u8 {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => exit::INTERRUPTED,
        Some(()) = async { term.as_mut()?.recv().await } => exit::TERMINATED,
    }
}

/// Builds and starts a wrapper, runs `f`, and stops the wrapper; on SIGINT or SIGTERM the call is
/// abandoned and everything started is stopped before returning.
async fn with_wrapper<T>(
    config: WrapperConfig,
    global: &Global,
    f: impl AsyncFnOnce(&MicrosandboxWrapper) -> Result<T, WrapperError>,
) -> Ended<T> {
    let signal = signalled();
    tokio::pin!(signal);
    let wrapper = tokio::select! {
        w = MicrosandboxWrapper::new(config) => match w {
            Ok(w) => w,
            Err(e) => return Ended::Done(Err(e)),
        },
        code = &mut signal => return Ended::Signalled(code),
    };
    tracing::debug!(backend = %wrapper.backend_selection().backend, reason = %wrapper.backend_selection().reason, "backend");
    let spinner = progress::Spinner::start(&wrapper, global);
    let ended = tokio::select! {
        r = async {
            // Fails fast, with the one error that matters, when the server cannot be reached: without
            // this the first start fails and stopping the sandbox that never started is retried.
            wrapper.ensure_reachable().await?;
            wrapper.start().await?;
            f(&wrapper).await
        } => Ended::Done(r),
        code = &mut signal => Ended::Signalled(code),
    };
    spinner.stop().await;
    if let Ended::Signalled(_) = ended
        && !global.quiet
    {
        errln!("msbw: interrupted: stopping the sandbox");
    }
    let stopping = async {
        match ended {
            Ended::Signalled(_) => wrapper.stop_now().await,
            Ended::Done(_) => wrapper.stop().await,
        }
    };
    let report = tokio::select! {
        report = stopping => Some(report),
        code = signalled() => {
            errln!("msbw: interrupted again: exiting without waiting for the sandbox to stop");
            return Ended::Signalled(code);
        }
    };
    for (sandbox, why) in report.iter().flat_map(|r| &r.failed) {
        tracing::error!(%sandbox, error = %why, "could not stop sandbox");
    }
    ended
}

/// `msbw exec`.
pub(crate) async fn exec(config: WrapperConfig, args: ExecArgs, global: &Global) -> u8 {
    let (template, options) = match session_options(&args.session, args.file.as_deref()) {
        Ok(v) => v,
        Err(e) => return usage(&e, global.json),
    };
    let code = match read_code(&args) {
        Ok(code) => code,
        Err(e) => return usage(&e, global.json),
    };
    let call = CodeCall {
        code,
        template,
        options,
    };
    execute(config, global, &args.session, call, |r| {
        let code = match r.status {
            // Through a server, the local node driver's exit note arrives on a completed run.
            ExecStatus::Completed if r.template == Template::Node => own_exit_status(r).unwrap_or(exit::OK),
            ExecStatus::Completed => exit::OK,
            ExecStatus::Raised => own_exit_status(r).unwrap_or(exit::FAILED),
            ExecStatus::TimedOut { .. } => exit::TIMED_OUT,
        };
        (r.status, code)
    })
    .await
}

/// The status the code asked to exit with, as the backend reported it: Python's `SystemExit: N`
/// (the last line of its traceback) or the local node driver's "exited with code N". `None` for
/// an ordinary exception; never 0 for code that did not complete.
fn own_exit_status(r: &ExecutionResult) -> Option<u8> {
    let last = r.stderr.lines().rev().find(|l| !l.trim().is_empty())?.trim();
    let code: i64 = match r.template {
        Template::Python => last.strip_prefix("SystemExit: ")?.parse().ok()?,
        Template::Node => {
            let rest = last.split_once("interpreter exited with code ")?.1;
            rest.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()?
        }
    };
    u8::try_from(code.rem_euclid(256)).ok().filter(|c| *c != 0)
}

/// `msbw run`.
pub(crate) async fn run(config: WrapperConfig, args: RunArgs, global: &Global) -> u8 {
    let (template, options) = match session_options(&args.session, None) {
        Ok(v) => v,
        Err(e) => return usage(&e, global.json),
    };
    let mut words = args.command.into_iter();
    let Some(command) = words.next() else {
        return usage("no command given (msbw run COMMAND [ARGS...])", global.json);
    };
    let call = CommandCall {
        command,
        args: words.collect(),
        template,
        options,
    };
    execute(config, global, &args.session, call, |r| {
        let code = match (r.status, r.exit_code) {
            (ExecStatus::TimedOut { .. }, _) => exit::TIMED_OUT,
            (_, Some(code)) => u8::try_from(code.rem_euclid(256)).unwrap_or(exit::FAILED),
            (_, None) => exit::KILLED,
        };
        (r.status, code)
    })
    .await
}

/// Runs a call and prints its output as it comes, then its result (or its error); returns the
/// exit status: `status` gives a result's status and exit status. A named session lives in the session server; its
/// output streams when the server announces streaming (`msbw serve` does), else it arrives at
/// the end. Without one, the call runs in a wrapper of this process.
async fn execute<C>(
    config: WrapperConfig,
    global: &Global,
    session: &SessionArgs,
    call: C,
    status: impl FnOnce(&C::Result) -> (ExecStatus, u8),
) -> u8
where
    C: microsandbox_wrapper::Call,
    C::Result: serde::Serialize,
{
    let mut printer = Printer::new(session, global);
    let ran = if call.options().session_id.is_some() {
        crate::session_client::execute(config, global, call, &mut |stream, bytes| printer.chunk(stream, bytes)).await
    } else {
        with_wrapper(config, global, async |w| printer.follow(w.execute_stream(call)?).await).await
    };
    match ran {
        Ended::Done(Ok(r)) => {
            let (status, code) = status(&r);
            printer.result(&r, status);
            code
        }
        Ended::Done(Err(e)) => {
            printer.finish_lines();
            print_error(&e, global.json || printer.jsonl);
            exit::for_error(&e)
        }
        Ended::Signalled(code) => code,
    }
}

fn describe(aftermath: microsandbox_wrapper::Aftermath) -> &'static str {
    match aftermath {
        microsandbox_wrapper::Aftermath::Intact => "the session is intact",
        microsandbox_wrapper::Aftermath::StateLost => "the interpreter was restarted; its state is lost",
        microsandbox_wrapper::Aftermath::Unusable => "the sandbox will be replaced",
    }
}

/// Prints a call's output as it arrives: chunks on the matching streams (or as JSON lines with
/// `--jsonl`), then the end of the call. With `--json` only the final result is printed.
struct Printer {
    json: bool,
    jsonl: bool,
    /// Whether the last byte written to stdout / stderr ended a line (or nothing was written).
    ended: [bool; 2],
}

impl Printer {
    fn new(args: &SessionArgs, global: &Global) -> Self {
        Printer {
            json: global.json && !args.jsonl,
            jsonl: args.jsonl,
            ended: [true, true],
        }
    }

    /// Prints the stream's chunks as they come and returns its result.
    async fn follow<T: Send + 'static>(&mut self, mut stream: EventStream<T>) -> Result<T, WrapperError> {
        use futures_util::StreamExt;
        while let Some(event) = stream.next().await {
            match event? {
                CallEvent::Stdout(b) => self.chunk(ChunkStream::Stdout, &b),
                CallEvent::Stderr(b) => self.chunk(ChunkStream::Stderr, &b),
                CallEvent::Finished(r) => return Ok(r),
                _ => {}
            }
        }
        Err(WrapperError::Internal {
            message: "the output stream ended without a result".into(),
            source: None,
        })
    }

    fn chunk(&mut self, stream: ChunkStream, bytes: &[u8]) {
        if self.json || bytes.is_empty() {
            return;
        }
        if self.jsonl {
            let line = ChunkLine::new(stream, bytes).encode();
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(&line);
            let _ = out.flush();
            return;
        }
        let ends_line = bytes.ends_with(b"\n");
        match stream {
            ChunkStream::Stdout => {
                self.ended[0] = ends_line;
                progress::write_stdout(bytes);
            }
            ChunkStream::Stderr => {
                self.ended[1] = ends_line;
                progress::write_stderr(bytes);
            }
        }
    }

    /// Ends unfinished lines, as the buffered output always ended with a newline.
    fn finish_lines(&mut self) {
        if self.json || self.jsonl {
            return;
        }
        if !std::mem::replace(&mut self.ended[0], true) {
            progress::write_stdout(b"\n");
        }
        if !std::mem::replace(&mut self.ended[1], true) {
            progress::write_stderr(b"\n");
        }
    }

    /// Prints the end of a call: the result as JSON (`--json`), its line (`--jsonl`), or a line
    /// on stderr when it timed out.
    fn result(&mut self, result: &impl serde::Serialize, status: ExecStatus) {
        if self.json {
            outln!("{}", serde_json::to_string(result).unwrap_or_default());
            return;
        }
        if self.jsonl {
            let line = serde_json::json!({"event": "finished", "result": result});
            outln!("{line}");
            return;
        }
        self.finish_lines();
        if let ExecStatus::TimedOut { after, aftermath } = status {
            errln!(
                "msbw: timed out after {:.1} s ({})",
                after.as_secs_f64(),
                describe(aftermath)
            );
        }
    }
}
