//! The conformance suite: checks that every [`SandboxBackend`] must pass, written once over
//! `&dyn SandboxBackend` and run against every backend (the local one, the HTTP one against a
//! server, custom ones).
//!
//! ```no_run
//! # async fn demo(backend: &dyn msbw_backend::SandboxBackend) {
//! use msbw_backend::conformance::{ConformanceOptions, run_all};
//!
//! let report = run_all(backend, &ConformanceOptions::default()).await;
//! report.assert_all_passed();
//! # }
//! ```
//!
//! Each check starts its own sandboxes under unique names and stops them again, also when the
//! check fails. Every backend call is bounded in time, so a hanging backend fails a check instead
//! of hanging the suite.

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::files::FileErrorKind;
use crate::{
    BackendError, CodeRequest, CommandRequest, ErrorKind, ExecEvent, ExecOutput, ExecStatus, ExecStream, FileKind,
    ListFilter, SandboxBackend, SandboxBackendExt, SandboxId, SandboxSpec, Template,
};

/// How the suite runs.
#[derive(Debug, Clone)]
pub struct ConformanceOptions {
    /// The namespace the sandboxes are started in.
    pub namespace: String,
    /// The start of every sandbox name (a unique suffix is added).
    pub name_prefix: String,
    /// The templates to test; `None` for every template the backend's capabilities list.
    pub templates: Option<Vec<Template>>,
    /// The execution timeout the timeout checks use (keep it short).
    pub exec_timeout: Duration,
    /// The timeout of executions that should finish quickly.
    pub quick_timeout: Duration,
    /// The start timeout put into every spec.
    pub start_timeout: Duration,
    /// Memory of each sandbox, in MiB.
    pub memory_mb: u32,
    /// How much longer than its own timeout any backend call may take before the check fails.
    pub grace: Duration,
}

impl Default for ConformanceOptions {
    fn default() -> Self {
        ConformanceOptions {
            namespace: "default".into(),
            name_prefix: "conformance".into(),
            templates: None,
            exec_timeout: Duration::from_secs(2),
            quick_timeout: Duration::from_secs(60),
            start_timeout: Duration::from_secs(120),
            memory_mb: 512,
            grace: Duration::from_secs(30),
        }
    }
}

/// Why a check failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure(pub String);

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<BackendError> for Failure {
    fn from(e: BackendError) -> Self {
        Failure(format!("unexpected error: {e} (kind {:?})", e.kind()))
    }
}

/// The result of one check.
pub type CheckResult = Result<(), Failure>;

/// The outcome of [`run_all`].
#[derive(Debug, Clone, Default)]
pub struct ConformanceReport {
    /// Every check run, with its outcome.
    pub results: Vec<(String, CheckResult)>,
}

impl ConformanceReport {
    /// The names and reasons of the failed checks.
    pub fn failures(&self) -> Vec<(&str, &Failure)> {
        self.results
            .iter()
            .filter_map(|(n, r)| r.as_ref().err().map(|f| (n.as_str(), f)))
            .collect()
    }

    /// How many checks passed.
    pub fn passed(&self) -> usize {
        self.results.iter().filter(|(_, r)| r.is_ok()).count()
    }

    /// Panics with every failure if any check failed.
    #[track_caller]
    pub fn assert_all_passed(&self) {
        let failures = self.failures();
        if !failures.is_empty() {
            let lines: Vec<String> = failures.iter().map(|(n, f)| format!("  - {n}: {f}")).collect();
            panic!(
                "{} of {} conformance checks failed:\n{}",
                failures.len(),
                self.results.len(),
                lines.join("\n")
            );
        }
        assert!(!self.results.is_empty(), "no conformance check ran");
    }
}

impl fmt::Display for ConformanceReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (name, result) in &self.results {
            match result {
                Ok(()) => writeln!(f, "ok     {name}")?,
                Err(why) => writeln!(f, "FAILED {name}: {why}")?,
            }
        }
        write!(
            f,
            "{} passed, {} failed",
            self.passed(),
            self.results.len() - self.passed()
        )
    }
}

/// Runs every check and reports each outcome. Checks run one after another.
pub async fn run_all(backend: &dyn SandboxBackend, options: &ConformanceOptions) -> ConformanceReport {
    let templates = match &options.templates {
        Some(t) => t.clone(),
        None => backend.capabilities().await.templates,
    };
    let mut report = ConformanceReport::default();
    for template in &templates {
        let name = format!("repl_state_persists[{template}]");
        report
            .results
            .push((name, repl_state_persists(backend, options, *template).await));
    }
    macro_rules! run {
        ($($check:ident),+ $(,)?) => {
            $( report.results.push((stringify!($check).to_owned(), $check(backend, options).await)); )+
        };
    }
    run!(
        stdout_and_stderr_are_separate,
        output_is_verbatim,
        exception_is_a_failed_execution,
        command_exit_code_is_returned,
        code_timeout_is_reported,
        command_timeout_is_reported,
        listed_while_running_and_gone_after_stop,
        stopped_or_unknown_sandbox_is_not_found,
        stopping_twice_is_harmless,
        starting_a_running_sandbox_is_refused,
        invalid_spec_is_refused_before_anything_starts,
        concurrent_sandboxes_are_independent,
        streamed_output_matches_buffered,
        streamed_events_arrive_in_order,
        files_round_trip_byte_for_byte,
        file_errors_are_typed,
    );
    report
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A sandbox id that no other check (or earlier run) uses.
pub fn unique_id(options: &ConformanceOptions) -> SandboxId {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    SandboxId {
        namespace: options.namespace.clone(),
        name: format!("{}-{}-{:x}-{n}", options.name_prefix, std::process::id(), nanos),
    }
}

fn spec(options: &ConformanceOptions, template: Template) -> SandboxSpec {
    let mut spec = SandboxSpec::new(unique_id(options), template);
    spec.memory_mb = options.memory_mb;
    spec.start_timeout = options.start_timeout;
    spec
}

/// Bounds a backend call: it must finish within `limit` plus the grace period.
async fn bounded<T>(
    options: &ConformanceOptions,
    limit: Duration,
    what: &str,
    fut: impl Future<Output = Result<T, BackendError>>,
) -> Result<Result<T, BackendError>, Failure> {
    tokio::time::timeout(limit + options.grace, fut)
        .await
        .map_err(|_| Failure(format!("{what} did not return within {:?}", limit + options.grace)))
}

async fn stop_quietly(backend: &dyn SandboxBackend, options: &ConformanceOptions, id: &SandboxId) {
    let _ = bounded(options, Duration::from_secs(30), "stop", backend.stop(id)).await;
}

fn code_request(language: Template, source: &str, timeout: Duration) -> CodeRequest {
    CodeRequest {
        language,
        code: source.to_owned(),
        timeout,
    }
}

fn command_request(program: &str, args: &[&str], timeout: Duration) -> CommandRequest {
    CommandRequest {
        command: program.to_owned(),
        args: args.iter().map(|a| (*a).to_owned()).collect(),
        timeout,
    }
}

/// A sandbox of a check (under a unique name), and the calls the checks make in it, each
/// bounded in time.
#[derive(Clone)]
struct Sandbox<'a> {
    backend: &'a dyn SandboxBackend,
    options: &'a ConformanceOptions,
    spec: SandboxSpec,
}

impl<'a> Sandbox<'a> {
    /// A sandbox that is not started yet.
    fn new(backend: &'a dyn SandboxBackend, options: &'a ConformanceOptions, template: Template) -> Self {
        Sandbox {
            backend,
            options,
            spec: spec(options, template),
        }
    }

    fn id(&self) -> &SandboxId {
        &self.spec.id
    }

    async fn start(&self) -> CheckResult {
        let call = self.backend.start(&self.spec);
        bounded(self.options, self.spec.start_timeout, "start", call).await??;
        Ok(())
    }

    async fn stop_quietly(&self) {
        stop_quietly(self.backend, self.options, self.id()).await;
    }

    async fn run_code(&self, request: &CodeRequest) -> Result<ExecOutput, Failure> {
        let call = self.backend.run_code(self.id(), request);
        Ok(bounded(self.options, request.timeout, "run_code", call).await??)
    }

    async fn run_command(&self, request: &CommandRequest) -> Result<ExecOutput, Failure> {
        let call = self.backend.run_command(self.id(), request);
        Ok(bounded(self.options, request.timeout, "run_command", call).await??)
    }

    /// Runs `source` in the sandbox's language, within the quick timeout.
    async fn code(&self, source: &str) -> Result<ExecOutput, Failure> {
        let request = code_request(self.spec.template, source, self.options.quick_timeout);
        self.run_code(&request).await
    }

    /// Runs a command, within the quick timeout.
    async fn command(&self, program: &str, args: &[&str]) -> Result<ExecOutput, Failure> {
        let request = command_request(program, args, self.options.quick_timeout);
        self.run_command(&request).await
    }

    async fn stream_code(&self, request: &CodeRequest) -> Result<Streamed, Failure> {
        let open = self.backend.run_code_stream(self.id(), request);
        open_and_drain(self.options, request.timeout, "run_code_stream", open).await
    }

    async fn stream_command(&self, request: &CommandRequest) -> Result<Streamed, Failure> {
        let open = self.backend.run_command_stream(self.id(), request);
        open_and_drain(self.options, request.timeout, "run_command_stream", open).await
    }
}

fn expect(condition: bool, why: impl FnOnce() -> String) -> CheckResult {
    if condition { Ok(()) } else { Err(Failure(why())) }
}

/// Starts a sandbox, runs `body` in it, and stops it whatever happened.
async fn with_sandbox<'a, F, Fut>(
    backend: &'a dyn SandboxBackend,
    options: &'a ConformanceOptions,
    template: Template,
    body: F,
) -> CheckResult
where
    F: FnOnce(Sandbox<'a>) -> Fut,
    Fut: Future<Output = CheckResult> + 'a,
{
    let sandbox = Sandbox::new(backend, options, template);
    sandbox.start().await?;
    let result = body(sandbox.clone()).await;
    sandbox.stop_quietly().await;
    result
}

/// `x = 41`, then `print(x + 1)` prints 42 (in the template's language).
pub async fn repl_state_persists(
    backend: &dyn SandboxBackend,
    options: &ConformanceOptions,
    template: Template,
) -> CheckResult {
    let (set, get) = match template {
        Template::Python => ("x = 41", "print(x + 1)"),
        Template::Node => ("var x = 41;", "console.log(x + 1);"),
    };
    with_sandbox(backend, options, template, |sb| async move {
        let first = sb.code(set).await?;
        expect(first.success(), || format!("`{set}` did not succeed: {first:?}"))?;
        let second = sb.code(get).await?;
        expect(second.success(), || format!("`{get}` did not succeed: {second:?}"))?;
        expect(second.stdout.trim_end() == "42", || {
            format!("expected stdout \"42\", got {:?}", second.stdout)
        })
    })
    .await
}

/// What code writes to stderr is kept apart from what it writes to stdout.
pub async fn stdout_and_stderr_are_separate(backend: &dyn SandboxBackend, options: &ConformanceOptions) -> CheckResult {
    with_sandbox(backend, options, Template::Python, |sb| async move {
        let source = "import sys\nprint('to-stdout')\nprint('to-stderr', file=sys.stderr)";
        let out = sb.code(source).await?;
        expect(
            out.stdout.contains("to-stdout") && !out.stdout.contains("to-stderr"),
            || format!("stdout should hold only 'to-stdout': {:?}", out.stdout),
        )?;
        expect(
            out.stderr.contains("to-stderr") && !out.stderr.contains("to-stdout"),
            || format!("stderr should hold only 'to-stderr': {:?}", out.stderr),
        )?;
        expect(out.status == ExecStatus::Completed, || {
            format!("writing to stderr is not a failure: {out:?}")
        })
    })
    .await
}

/// The output contract: a backend returns output as the program wrote it, nothing trimmed (the
/// manager normalises it for callers). Leading spaces, empty lines and the final newline are
/// kept, on both streams, for code and for commands. (A last line without a newline may gain one
/// on a backend whose transport carries lines, so that case is not checked.)
pub async fn output_is_verbatim(backend: &dyn SandboxBackend, options: &ConformanceOptions) -> CheckResult {
    with_sandbox(backend, options, Template::Python, |sb| async move {
        let source = "import sys\nprint('a')\nprint('')\nprint('  b')\nprint('e', file=sys.stderr)";
        let out = sb.code(source).await?;
        expect(out.stdout == "a\n\n  b\n", || {
            format!("code's stdout should be exactly \"a\\n\\n  b\\n\": {:?}", out.stdout)
        })?;
        expect(out.stderr == "e\n", || {
            format!("code's stderr should be exactly \"e\\n\": {:?}", out.stderr)
        })?;
        let out = sb.command("echo", &["  x"]).await?;
        expect(out.stdout == "  x\n", || {
            format!("a command's stdout should be exactly \"  x\\n\": {:?}", out.stdout)
        })?;
        let out = sb.command("sh", &["-c", "echo y >&2"]).await?;
        expect(out.stderr == "y\n", || {
            format!("a command's stderr should be exactly \"y\\n\": {:?}", out.stderr)
        })
    })
    .await
}

/// An exception is a result with status `Raised` and the traceback on stderr, not a transport
/// error; the sandbox keeps working.
pub async fn exception_is_a_failed_execution(
    backend: &dyn SandboxBackend,
    options: &ConformanceOptions,
) -> CheckResult {
    with_sandbox(backend, options, Template::Python, |sb| async move {
        let out = sb.code("raise ValueError('conformance-boom')").await?;
        expect(out.status == ExecStatus::Raised, || {
            format!("expected status Raised: {out:?}")
        })?;
        expect(!out.success(), || "a raised exception must not count as success".into())?;
        expect(
            out.stderr.contains("ValueError") && out.stderr.contains("conformance-boom"),
            || format!("stderr should name the exception: {:?}", out.stderr),
        )?;
        let after = sb.code("print('still-alive')").await?;
        expect(after.stdout.trim_end() == "still-alive", || {
            format!("sandbox broken after an exception: {after:?}")
        })
    })
    .await
}

/// A command's non-zero exit code is a result, with its stdout and stderr apart.
pub async fn command_exit_code_is_returned(backend: &dyn SandboxBackend, options: &ConformanceOptions) -> CheckResult {
    with_sandbox(backend, options, Template::Python, |sb| async move {
        let out = sb.command("sh", &["-c", "echo out; echo err >&2; exit 3"]).await?;
        expect(out.exit_code == Some(3), || format!("expected exit code 3: {out:?}"))?;
        expect(out.status == ExecStatus::Completed, || {
            format!("a non-zero exit is a completed command: {out:?}")
        })?;
        expect(out.stdout.trim_end() == "out" && out.stderr.trim_end() == "err", || {
            format!("expected stdout \"out\" and stderr \"err\": {out:?}")
        })?;
        let ok = sb.command("echo", &["hello", "world"]).await?;
        expect(
            ok.exit_code == Some(0) && ok.stdout.trim_end() == "hello world" && ok.success(),
            || format!("echo hello world: {ok:?}"),
        )
    })
    .await
}

/// Code that runs past its timeout is reported as timed out, and the sandbox is usable again
/// unless the backend says it is not.
pub async fn code_timeout_is_reported(backend: &dyn SandboxBackend, options: &ConformanceOptions) -> CheckResult {
    with_sandbox(backend, options, Template::Python, |sb| async move {
        let source = "import time\ntime.sleep(300)";
        let request = code_request(Template::Python, source, options.exec_timeout);
        let out = sb.run_code(&request).await?;
        let ExecStatus::TimedOut { aftermath, .. } = out.status else {
            return Err(Failure(format!("expected a timeout: {out:?}")));
        };
        if aftermath != crate::Aftermath::Unusable {
            let after = sb.code("print('alive')").await?;
            expect(after.stdout.trim_end() == "alive", || {
                format!("the backend said the sandbox survived the timeout ({aftermath:?}), but: {after:?}")
            })?;
        }
        Ok(())
    })
    .await
}

/// A command that runs past its timeout is reported as timed out.
pub async fn command_timeout_is_reported(backend: &dyn SandboxBackend, options: &ConformanceOptions) -> CheckResult {
    with_sandbox(backend, options, Template::Python, |sb| async move {
        let request = command_request("sleep", &["300"], options.exec_timeout);
        let out = sb.run_command(&request).await?;
        expect(out.timed_out(), || format!("expected a timeout: {out:?}"))
    })
    .await
}

/// A running sandbox is listed; after stop it is not.
pub async fn listed_while_running_and_gone_after_stop(
    backend: &dyn SandboxBackend,
    options: &ConformanceOptions,
) -> CheckResult {
    let sandbox = Sandbox::new(backend, options, Template::Python);
    sandbox.start().await?;
    let listed = bounded(
        options,
        Duration::from_secs(30),
        "list",
        backend.list(&ListFilter::namespace(&options.namespace)),
    )
    .await?;
    let result = match listed {
        Ok(list) => expect(list.iter().any(|s| s.id == *sandbox.id()), || {
            format!("{} is not in the listing {list:?}", sandbox.id())
        }),
        Err(e) => Err(e.into()),
    };
    sandbox.stop_quietly().await;
    result?;
    let running = bounded(
        options,
        Duration::from_secs(30),
        "is_running",
        backend.is_running(sandbox.id()),
    )
    .await??;
    expect(!running, || format!("{} is still listed after stop", sandbox.id()))
}

fn expect_not_found(what: &str, result: Result<ExecOutput, BackendError>) -> CheckResult {
    match result {
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Failure(format!("{what}: expected NotFound, got {:?}: {e}", e.kind()))),
        Ok(out) => Err(Failure(format!("{what}: expected NotFound, got a result {out:?}"))),
    }
}

/// Code and commands on an unknown or stopped sandbox fail as not found.
pub async fn stopped_or_unknown_sandbox_is_not_found(
    backend: &dyn SandboxBackend,
    options: &ConformanceOptions,
) -> CheckResult {
    let t = options.quick_timeout;
    let unknown = unique_id(options);
    let request = code_request(Template::Python, "print(1)", t);
    let cmd = command_request("echo", &["1"], t);
    expect_not_found(
        "code on an unknown sandbox",
        bounded(options, t, "run_code", backend.run_code(&unknown, &request)).await?,
    )?;
    expect_not_found(
        "command on an unknown sandbox",
        bounded(options, t, "run_command", backend.run_command(&unknown, &cmd)).await?,
    )?;

    let sandbox = Sandbox::new(backend, options, Template::Python);
    sandbox.start().await?;
    let stopped = sandbox.id();
    bounded(options, Duration::from_secs(30), "stop", backend.stop(stopped)).await??;
    expect_not_found(
        "code on a stopped sandbox",
        bounded(options, t, "run_code", backend.run_code(stopped, &request)).await?,
    )?;
    expect_not_found(
        "command on a stopped sandbox",
        bounded(options, t, "run_command", backend.run_command(stopped, &cmd)).await?,
    )
}

/// Stopping a stopped sandbox succeeds; stopping an unknown one succeeds or fails as not found.
pub async fn stopping_twice_is_harmless(backend: &dyn SandboxBackend, options: &ConformanceOptions) -> CheckResult {
    let sandbox = Sandbox::new(backend, options, Template::Python);
    sandbox.start().await?;
    let limit = Duration::from_secs(30);
    bounded(options, limit, "stop", backend.stop(sandbox.id())).await??;
    bounded(options, limit, "second stop", backend.stop(sandbox.id())).await??;
    match bounded(
        options,
        limit,
        "stop of an unknown sandbox",
        backend.stop(&unique_id(options)),
    )
    .await?
    {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Failure(format!(
            "stopping an unknown sandbox should succeed or be NotFound: {e}"
        ))),
    }
}

/// Starting a name that is already running fails as `AlreadyExists`, and the running sandbox
/// keeps working (the server would otherwise break it).
pub async fn starting_a_running_sandbox_is_refused(
    backend: &dyn SandboxBackend,
    options: &ConformanceOptions,
) -> CheckResult {
    with_sandbox(backend, options, Template::Python, |sb| async move {
        sb.code("kept = 'yes'").await?;
        match bounded(options, sb.spec.start_timeout, "second start", backend.start(&sb.spec)).await? {
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
            Err(e) => return Err(Failure(format!("expected AlreadyExists, got {:?}: {e}", e.kind()))),
            Ok(()) => {
                return Err(Failure(
                    "starting a running sandbox succeeded; it must be refused".into(),
                ));
            }
        }
        let out = sb.code("print(kept)").await?;
        expect(out.stdout.trim_end() == "yes", || {
            format!("the running sandbox lost its state: {out:?}")
        })
    })
    .await
}

/// An invalid spec fails as `InvalidInput` and starts nothing.
pub async fn invalid_spec_is_refused_before_anything_starts(
    backend: &dyn SandboxBackend,
    options: &ConformanceOptions,
) -> CheckResult {
    let mut bad = spec(options, Template::Python);
    bad.env.push(("NOT VALID".into(), "x".into()));
    match bounded(options, bad.start_timeout, "start", backend.start(&bad)).await? {
        Err(e) if e.kind() == ErrorKind::InvalidInput => {}
        Err(e) => return Err(Failure(format!("expected InvalidInput, got {:?}: {e}", e.kind()))),
        Ok(()) => {
            stop_quietly(backend, options, &bad.id).await;
            return Err(Failure(
                "a spec with an invalid environment variable name was started".into(),
            ));
        }
    }
    let running = bounded(
        options,
        Duration::from_secs(30),
        "is_running",
        backend.is_running(&bad.id),
    )
    .await??;
    expect(!running, || "the refused sandbox is running anyway".into())
}

/// Two sandboxes do not share REPL state, and both work at the same time.
pub async fn concurrent_sandboxes_are_independent(
    backend: &dyn SandboxBackend,
    options: &ConformanceOptions,
) -> CheckResult {
    let a = Sandbox::new(backend, options, Template::Python);
    let b = Sandbox::new(backend, options, Template::Python);
    let (ra, rb) = tokio::join!(a.start(), b.start());
    let result = async {
        ra?;
        rb?;
        a.code("owner = 'a'").await?;
        b.code("owner = 'b'").await?;
        let (oa, ob) = tokio::join!(a.code("print(owner)"), b.code("print(owner)"));
        let (oa, ob) = (oa?, ob?);
        expect(oa.stdout.trim_end() == "a" && ob.stdout.trim_end() == "b", || {
            format!(
                "sandboxes share state: a printed {:?}, b printed {:?}",
                oa.stdout, ob.stdout
            )
        })
    }
    .await;
    a.stop_quietly().await;
    b.stop_quietly().await;
    result
}

/// What a stream delivered: the chunks of each stream concatenated, the final result, and
/// whether the event order was right (chunks, then exactly one `Finished`, then the end).
struct Streamed {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    /// The events in order: `o`/`e` for a chunk's stream, `F` for `Finished`.
    order: String,
    finished: Option<ExecOutput>,
}

/// Opens a stream (bounded in time) and drains it.
async fn open_and_drain(
    options: &ConformanceOptions,
    limit: Duration,
    what: &str,
    open: impl Future<Output = Result<ExecStream, BackendError>>,
) -> Result<Streamed, Failure> {
    let stream = bounded(options, limit, what, open).await??;
    drain(options, limit, &format!("{what}'s events"), stream).await
}

async fn drain(
    options: &ConformanceOptions,
    limit: Duration,
    what: &str,
    stream: ExecStream,
) -> Result<Streamed, Failure> {
    use futures_util::StreamExt;
    let mut streamed = Streamed {
        stdout: Vec::new(),
        stderr: Vec::new(),
        order: String::new(),
        finished: None,
    };
    let mut stream = stream;
    let all = async {
        while let Some(event) = stream.next().await {
            match event? {
                ExecEvent::Stdout(b) => {
                    streamed.order.push('o');
                    streamed.stdout.extend_from_slice(&b);
                }
                ExecEvent::Stderr(b) => {
                    streamed.order.push('e');
                    streamed.stderr.extend_from_slice(&b);
                }
                ExecEvent::Finished(out) => {
                    streamed.order.push('F');
                    streamed.finished.get_or_insert(out);
                }
            }
        }
        Ok::<(), BackendError>(())
    };
    bounded(options, limit, what, all).await??;
    Ok(streamed)
}

/// The streamed calls deliver what the buffered ones return: the chunks of each stream,
/// concatenated, are the final result's text, and that result equals the buffered call's, for
/// code and for commands, with output on both streams and a non-zero exit.
pub async fn streamed_output_matches_buffered(
    backend: &dyn SandboxBackend,
    options: &ConformanceOptions,
) -> CheckResult {
    with_sandbox(backend, options, Template::Python, |sb| async move {
        let source = "import sys\nprint('a')\nprint('  b')\nprint('e', file=sys.stderr)\nprint('c')";
        let request = code_request(Template::Python, source, options.quick_timeout);
        let buffered = sb.run_code(&request).await?;
        check_streamed(&sb.stream_code(&request).await?, &buffered, "code")?;
        let script = "echo out; echo err >&2; exit 3";
        let request = command_request("sh", &["-c", script], options.quick_timeout);
        let buffered = sb.run_command(&request).await?;
        expect(buffered.exit_code == Some(3), || {
            format!("`exit 3` should exit 3: {buffered:?}")
        })?;
        check_streamed(&sb.stream_command(&request).await?, &buffered, "command")
    })
    .await
}

/// Compares what a stream delivered with the buffered call's result (see
/// [`streamed_output_matches_buffered`]).
fn check_streamed(streamed: &Streamed, buffered: &ExecOutput, what: &str) -> CheckResult {
    expect(
        streamed.order.ends_with('F') && streamed.order.matches('F').count() == 1,
        || {
            format!(
                "{what}: the stream must end with exactly one Finished after every chunk, got events {:?}",
                streamed.order
            )
        },
    )?;
    let Some(finished) = &streamed.finished else {
        return Err(Failure(format!("{what}: no Finished event")));
    };
    for (name, chunks, text) in [
        ("stdout", &streamed.stdout, &finished.stdout),
        ("stderr", &streamed.stderr, &finished.stderr),
    ] {
        let chunks = String::from_utf8_lossy(chunks);
        expect(chunks == text.as_str(), || {
            format!("{what}: the {name} chunks {chunks:?} are not Finished's {name} {text:?}")
        })?;
    }
    expect(
        finished.stdout == buffered.stdout
            && finished.stderr == buffered.stderr
            && finished.status == buffered.status
            && finished.exit_code == buffered.exit_code,
        || format!("{what}: the streamed result {finished:?} differs from the buffered one {buffered:?}"),
    )
}

/// Events come in the order the program wrote them (per stream), a raised exception and a
/// timeout are `Finished` results (not errors), and the sandbox keeps working after a streamed
/// timeout.
pub async fn streamed_events_arrive_in_order(
    backend: &dyn SandboxBackend,
    options: &ConformanceOptions,
) -> CheckResult {
    with_sandbox(backend, options, Template::Python, |sb| async move {
        // Scripted test servers know only the codes of the other checks: this one needs a real
        // interpreter behind a native streamer.
        if backend.capabilities().await.streaming {
            let source = "for i in range(5):\n    print(i, flush=True)\nraise ValueError('x')";
            let streamed = sb
                .stream_code(&code_request(Template::Python, source, options.quick_timeout))
                .await?;
            expect(String::from_utf8_lossy(&streamed.stdout) == "0\n1\n2\n3\n4\n", || {
                format!(
                    "stdout chunks should be 0..4 in order: {:?}",
                    String::from_utf8_lossy(&streamed.stdout)
                )
            })?;
            let finished = streamed.finished.ok_or_else(|| Failure("no Finished event".into()))?;
            expect(finished.status == ExecStatus::Raised, || {
                format!("the exception should be Raised: {finished:?}")
            })?;
        }
        let source = "import time\nprint('before', flush=True)\ntime.sleep(60)";
        let streamed = sb
            .stream_code(&code_request(Template::Python, source, options.exec_timeout))
            .await?;
        let finished = streamed
            .finished
            .ok_or_else(|| Failure("no Finished event after a timeout".into()))?;
        let ExecStatus::TimedOut { aftermath, .. } = finished.status else {
            return Err(Failure(format!("a streamed timeout should be reported: {finished:?}")));
        };
        // A native streamer has sent what was written before the timeout.
        if backend.capabilities().await.streaming {
            expect(String::from_utf8_lossy(&streamed.stdout).contains("before"), || {
                format!(
                    "output before a timeout should be streamed: {:?}",
                    String::from_utf8_lossy(&streamed.stdout)
                )
            })?;
        }
        if aftermath != crate::Aftermath::Unusable {
            let after = sb.command("echo", &["alive"]).await?;
            expect(after.stdout.contains("alive"), || {
                format!("the sandbox should work after a timeout: {after:?}")
            })?;
        }
        Ok(())
    })
    .await
}
/// A folder every backend's sandboxes may write to, one per sandbox (a backend whose
/// sandboxes share a `/tmp` must not see another run's files).
fn files_dir(id: &SandboxId) -> String {
    format!("/tmp/conformance-files-{}", id.name)
}

/// Bounds a file call (the command fallback may take many commands).
async fn file_call<T>(
    options: &ConformanceOptions,
    what: &str,
    fut: impl Future<Output = Result<T, BackendError>>,
) -> Result<Result<T, BackendError>, Failure> {
    bounded(options, Duration::from_secs(120), what, fut).await
}

/// A binary file (every byte value, larger than one command of the fallback), an empty file
/// and a text file are written, read back byte for byte, listed with their sizes, and removed.
pub async fn files_round_trip_byte_for_byte(backend: &dyn SandboxBackend, options: &ConformanceOptions) -> CheckResult {
    with_sandbox(backend, options, Template::Python, |sb| async move {
        let dir = files_dir(sb.id());
        let binary: Vec<u8> = (0..600 * 1024u32).map(|i| (i % 251) as u8 ^ (i >> 11) as u8).collect();
        let files: [(&str, &[u8]); 3] = [
            ("bin.dat", &binary),
            ("empty", b""),
            ("text with spaces.txt", b"line 1\n\n  line 3 \n"),
        ];
        for (name, data) in files {
            let path = format!("{dir}/{name}");
            file_call(options, "write_file", backend.write_file(sb.id(), &path, data)).await??;
            let back = file_call(options, "read_file", backend.read_file(sb.id(), &path, 1 << 20)).await??;
            expect(back == data, || {
                format!(
                    "{path}: wrote {} bytes, read back {} bytes that differ",
                    data.len(),
                    back.len()
                )
            })?;
        }
        // Writing again replaces the file.
        let path = format!("{dir}/empty");
        file_call(options, "write_file", backend.write_file(sb.id(), &path, b"now full")).await??;
        let back = file_call(options, "read_file", backend.read_file(sb.id(), &path, 1 << 20)).await??;
        expect(back == b"now full", || {
            format!("a second write was not a replacement: {back:?}")
        })?;

        let entries = file_call(options, "list_files", backend.list_files(sb.id(), &dir)).await??;
        let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
        expect(names == ["bin.dat", "empty", "text with spaces.txt"], || {
            format!("the listing is {names:?}")
        })?;
        let bin = &entries[0];
        expect(
            bin.kind == FileKind::File && bin.size == binary.len() as u64 && bin.path == format!("{dir}/bin.dat"),
            || format!("bin.dat is listed as {bin:?}"),
        )?;

        for entry in &entries {
            file_call(options, "remove_file", backend.remove_file(sb.id(), &entry.path)).await??;
        }
        let gone = file_call(options, "read_file", backend.read_file(sb.id(), &path, 1 << 20)).await?;
        expect(
            matches!(&gone, Err(e) if e.kind() == ErrorKind::File(FileErrorKind::NotFound)),
            || format!("reading a removed file gave {gone:?}"),
        )?;
        let left = file_call(options, "list_files", backend.list_files(sb.id(), &dir)).await??;
        expect(left.is_empty(), || format!("left after removing everything: {left:?}"))
    })
    .await
}

/// Missing files, files over the limit, folders read as files, `..` paths and gone sandboxes
/// fail with their own kinds.
pub async fn file_errors_are_typed(backend: &dyn SandboxBackend, options: &ConformanceOptions) -> CheckResult {
    fn kind_of<T: fmt::Debug>(what: &str, r: Result<T, BackendError>, want: ErrorKind) -> CheckResult {
        match r {
            Err(e) if e.kind() == want => Ok(()),
            other => Err(Failure(format!("{what}: expected {want:?}, got {other:?}"))),
        }
    }
    let file = |k| ErrorKind::File(k);
    with_sandbox(backend, options, Template::Python, |sb| async move {
        let dir = files_dir(sb.id());
        let missing = format!("{dir}/missing");
        let r = file_call(options, "read_file", backend.read_file(sb.id(), &missing, 100)).await?;
        kind_of("reading a missing file", r, file(FileErrorKind::NotFound))?;
        let r = file_call(options, "remove_file", backend.remove_file(sb.id(), &missing)).await?;
        kind_of("removing a missing file", r, file(FileErrorKind::NotFound))?;
        let r = file_call(options, "list_files", backend.list_files(sb.id(), &missing)).await?;
        kind_of("listing a missing folder", r, file(FileErrorKind::NotFound))?;

        let big = format!("{dir}/big");
        file_call(options, "write_file", backend.write_file(sb.id(), &big, &[7u8; 1000])).await??;
        let r = file_call(options, "read_file", backend.read_file(sb.id(), &big, 999)).await?;
        kind_of("reading over the limit", r, file(FileErrorKind::TooLarge))?;
        let r = file_call(options, "read_file", backend.read_file(sb.id(), "/tmp", 100)).await?;
        kind_of("reading a folder", r, file(FileErrorKind::NotAFile))?;
        let r = file_call(options, "list_files", backend.list_files(sb.id(), &big)).await?;
        kind_of("listing a file", r, file(FileErrorKind::NotADirectory))?;
        file_call(options, "remove_file", backend.remove_file(sb.id(), &big)).await??;
        for bad in ["../../etc/passwd", "/tmp/../etc/passwd", ""] {
            let r = file_call(options, "read_file", backend.read_file(sb.id(), bad, 100)).await?;
            kind_of(&format!("reading {bad:?}"), r, file(FileErrorKind::InvalidPath))?;
            let r = file_call(options, "write_file", backend.write_file(sb.id(), bad, b"x")).await?;
            kind_of(&format!("writing {bad:?}"), r, file(FileErrorKind::InvalidPath))?;
        }
        Ok(())
    })
    .await?;
    let gone = unique_id(options);
    let r = file_call(options, "read_file", backend.read_file(&gone, "/tmp/x", 100)).await?;
    kind_of("reading from an unknown sandbox", r, ErrorKind::NotFound)
}
