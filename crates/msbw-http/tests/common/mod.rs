//! Shared helpers of the wiremock tests: a backend with short timeouts, canned answers of the
//! real server 0.2.6, and a scripted fake server that keeps state like the real one.
#![allow(dead_code, unreachable_pub, reason = "each test file uses a different part")]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use msbw_backend::{Aftermath, BackendError, CodeRequest, CommandRequest, ExecOutput, ExecStatus, SandboxId, Template};
use msbw_http::{HttpBackend, HttpBackendConfig, RetryPolicy};
use serde_json::{Value, json};
use wiremock::matchers::{body_partial_json, method, path};
use wiremock::{Mock, MockBuilder, MockServer, Request, Respond, ResponseTemplate};

/// The API key of tests that set one.
pub const KEY: &str = "msb_eyJhbGciOiJIUzI1NiJ9.test-secret-key";

/// Settings for tests: short timeouts, fast polls, quick retries.
pub fn config(server_url: &str) -> HttpBackendConfig {
    let mut c = HttpBackendConfig::new(server_url);
    c.request_timeout = Duration::from_secs(3);
    c.connect_timeout = Duration::from_secs(1);
    c.start_timeout = Duration::from_secs(10);
    c.exec_grace = Duration::from_millis(700);
    c.retry = RetryPolicy {
        max_attempts: 3,
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(40),
    };
    c.readiness_window = Duration::from_secs(2);
    c.poll_interval = Duration::from_millis(10);
    c.max_poll_interval = Duration::from_millis(50);
    c.stop_wait = Duration::from_secs(1);
    c
}

/// A backend for the mock server, without a key.
pub fn backend(server: &MockServer) -> HttpBackend {
    HttpBackend::new(config(&server.uri())).expect("valid test config")
}

/// A backend for the mock server, without a key, with `edit` applied to the test settings.
pub fn backend_with(server: &MockServer, edit: impl FnOnce(&mut HttpBackendConfig)) -> HttpBackend {
    let mut config = config(&server.uri());
    edit(&mut config);
    HttpBackend::new(config).expect("valid test config")
}

/// A backend for the mock server, with [`KEY`].
pub fn keyed_backend(server: &MockServer) -> HttpBackend {
    HttpBackend::new(config(&server.uri()).with_api_key(KEY)).expect("valid test config")
}

/// A sandbox id.
pub fn id(name: &str) -> SandboxId {
    SandboxId::new("default", name).expect("valid id")
}

/// A request to run `code` in `language` with `timeout`.
pub fn code_in(language: Template, code: &str, timeout: Duration) -> CodeRequest {
    CodeRequest {
        language,
        code: code.into(),
        timeout,
    }
}

/// A request to run Python `code` with `timeout`.
pub fn code_request(code: &str, timeout: Duration) -> CodeRequest {
    code_in(Template::Python, code, timeout)
}

/// A request to run `program` with `args` and `timeout`.
pub fn command_request(program: &str, args: &[&str], timeout: Duration) -> CommandRequest {
    CommandRequest {
        command: program.into(),
        args: args.iter().map(|a| (*a).to_owned()).collect(),
        timeout,
    }
}

/// A mock of one RPC method.
pub fn rpc(name: &str) -> MockBuilder {
    Mock::given(method("POST"))
        .and(path("/api/v1/rpc"))
        .and(body_partial_json(json!({"jsonrpc": "2.0", "method": name})))
}

/// A mock of the health check, `GET /api/v1/health`.
pub fn health() -> MockBuilder {
    Mock::given(method("GET")).and(path("/api/v1/health"))
}

/// The health check's answer of a healthy server.
pub fn healthy() -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({"message": "Service is healthy"}))
}

/// Answers every call of the RPC method `name` with `answer`.
pub async fn answer(server: &MockServer, name: &str, answer: ResponseTemplate) {
    rpc(name).respond_with(answer).mount(server).await;
}

/// A new mock server that answers every call of the RPC method `name` with `answer`.
pub async fn server_answering(name: &str, answer: ResponseTemplate) -> MockServer {
    let server = MockServer::start().await;
    self::answer(&server, name, answer).await;
    server
}

/// A new mock server that answers the calls of the RPC method `name` as [`answer_in_turn`] does.
pub async fn server_answering_in_turn(
    name: &str,
    first: Vec<(ResponseTemplate, u64)>,
    then: ResponseTemplate,
) -> MockServer {
    let server = MockServer::start().await;
    answer_in_turn(&server, name, first, then).await;
    server
}

/// Answers the calls of the RPC method `name` in turn: each of `first` for as many calls as it
/// says, then `then` for every later call.
pub async fn answer_in_turn(
    server: &MockServer,
    name: &str,
    first: Vec<(ResponseTemplate, u64)>,
    then: ResponseTemplate,
) {
    for (answer, times) in first {
        rpc(name).respond_with(answer).up_to_n_times(times).mount(server).await;
    }
    rpc(name).respond_with(then).mount(server).await;
}

/// A JSON-RPC success.
pub fn ok(result: Value) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({"jsonrpc": "2.0", "result": result, "id": 1}))
}

/// A REST-style error of the server.
pub fn rest(status: u16, message: &str, code: u32) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(json!({"error": message, "code": code}))
}

/// The server's masked error: 500 / 5002.
pub fn masked() -> ResponseTemplate {
    rest(500, "Internal server error", 5002)
}

/// One sandbox of a metrics result as the server gives it: usage figures only while it runs.
pub fn metrics_entry(namespace: &str, name: &str, running: bool) -> Value {
    let usage = |value: Value| if running { value } else { Value::Null };
    json!({"namespace": namespace, "name": name, "running": running,
           "cpu_usage": usage(json!(1.5)), "memory_usage": usage(json!(40)), "disk_usage": usage(json!(4096))})
}

/// The sandboxes of a metrics result: those of `namespace` (`*`: every namespace), only the one
/// named `filter` if there is one.
pub fn metrics_listing<'a>(
    sandboxes: impl IntoIterator<Item = (&'a str, &'a str, bool)>,
    namespace: &str,
    filter: Option<&str>,
) -> Value {
    let listed: Vec<Value> = sandboxes
        .into_iter()
        .filter(|(ns, name, _)| (namespace == "*" || *ns == namespace) && filter.is_none_or(|f| f == *name))
        .map(|(ns, name, running)| metrics_entry(ns, name, running))
        .collect();
    json!({"sandboxes": listed})
}

/// A metrics result listing `(name, running)` in namespace `default`.
pub fn metrics(entries: &[(&str, bool)]) -> ResponseTemplate {
    ok(metrics_listing(
        entries.iter().map(|(name, running)| ("default", *name, *running)),
        "*",
        None,
    ))
}

/// A command result.
pub fn command_result(exit_code: i32, lines: &[(&str, &str)]) -> ResponseTemplate {
    ok(json!({
        "command": "x", "args": [], "exit_code": exit_code, "success": exit_code == 0,
        "output": lines.iter().map(|(s, t)| json!({"stream": s, "text": t})).collect::<Vec<_>>(),
    }))
}

/// A REPL result.
pub fn repl_result(lines: &[(&str, &str)]) -> ResponseTemplate {
    ok(json!({
        "status": "success", "language": "python",
        "output": lines.iter().map(|(s, t)| json!({"stream": s, "text": t})).collect::<Vec<_>>(),
    }))
}

/// The JSON bodies of every RPC request the server received, in order.
pub async fn requests(server: &MockServer) -> Vec<Value> {
    server
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter(|r| r.url.path() == "/api/v1/rpc")
        .map(|r| serde_json::from_slice(&r.body).expect("the client sends JSON"))
        .collect()
}

/// The params of every request of one method.
pub async fn params_of(server: &MockServer, name: &str) -> Vec<Value> {
    requests(server)
        .await
        .into_iter()
        .filter(|r| r["method"] == name)
        .map(|r| r["params"].clone())
        .collect()
}

/// Asserts that exactly one `sandbox.stop` reached the server, for `name` in namespace
/// `default`.
pub async fn assert_stopped_once(server: &MockServer, name: &str) {
    assert_eq!(
        params_of(server, "sandbox.stop").await,
        [json!({"sandbox": name, "namespace": "default"})],
        "the server was asked to stop {name} once"
    );
}

/// The methods of every RPC request, in order.
pub async fn methods(server: &MockServer) -> Vec<String> {
    requests(server)
        .await
        .iter()
        .map(|r| r["method"].as_str().unwrap_or("?").to_owned())
        .collect()
}

/// Checks what every error must satisfy: tagged with the backend, a message, and no key.
#[track_caller]
pub fn assert_clean(err: &BackendError) {
    let display = err.to_string();
    let debug = format!("{err:?}");
    assert_eq!(err.backend(), Some("microsandbox"), "{display}");
    assert!(!err.message().trim().is_empty(), "{debug}");
    for secret in [KEY, "test-secret-key"] {
        assert!(!display.contains(secret), "the key leaked into Display: {display}");
        assert!(!debug.contains(secret), "the key leaked into Debug: {debug}");
    }
}

/// A loopback port that nothing listens on (bound, then released).
pub fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

/// One sandbox of the [`FakeServer`].
#[derive(Debug, Clone)]
pub struct FakeSandbox {
    pub running: bool,
    pub vars: BTreeMap<String, String>,
    pub started: Instant,
    pub config: Value,
}

/// The state of the [`FakeServer`], open to tests.
#[derive(Debug, Default)]
pub struct FakeState {
    /// Every sandbox ever configured, by (namespace, name).
    pub sandboxes: BTreeMap<(String, String), FakeSandbox>,
    /// How long after a start the agent answers forwarded calls (500 before).
    pub agent_delay: Duration,
    /// What `sandbox.start` answers instead of success, if set.
    pub start_answer: Option<String>,
    /// When each `sandbox.start` arrived, with its namespace.
    pub start_arrivals: Vec<(String, Instant)>,
    /// How long `sandbox.start` takes.
    pub start_delay: Duration,
}

/// A scripted stand-in for the real server 0.2.6, with its quirks: the masked 500 for unknown
/// sandboxes on stop, metrics and forwarded calls, the 400 for a namespace without folder, an
/// agent that is not up right after a start, a REPL status that is always `success`, command
/// timeouts as 500s, and Node errors on stdout. It understands just enough code for the
/// conformance suite: assignments, `print`/`console.log` of literals, names and `name + 1`,
/// `raise`, `time.sleep`, and the commands `true`, `echo`, `sleep` and `sh -c` scripts of
/// `echo` and `exit`.
#[derive(Debug, Clone, Default)]
pub struct FakeServer {
    pub state: Arc<Mutex<FakeState>>,
}

impl FakeServer {
    /// Mounts it on a new mock server.
    pub async fn start() -> (MockServer, FakeServer) {
        let server = MockServer::start().await;
        let fake = FakeServer::default();
        Mock::given(method("POST"))
            .and(path("/api/v1/rpc"))
            .respond_with(fake.clone())
            .mount(&server)
            .await;
        health().respond_with(healthy()).mount(&server).await;
        (server, fake)
    }

    /// Locks the state.
    pub fn state(&self) -> std::sync::MutexGuard<'_, FakeState> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The real server's answer for a namespace that has no directory yet.
pub fn not_found_namespace(ns: &str) -> ResponseTemplate {
    rest(400, &format!("Namespace directory '{ns}' does not exist"), 2001)
}

fn lines(spec: &[(&str, String)]) -> Vec<Value> {
    spec.iter().map(|(s, t)| json!({"stream": s, "text": t})).collect()
}

impl Respond for FakeServer {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let Ok(body) = serde_json::from_slice::<Value>(&request.body) else {
            return ResponseTemplate::new(400).set_body_string("Failed to parse the request body as JSON");
        };
        let params = &body["params"];
        let text = |k: &str| params[k].as_str().unwrap_or_default().to_owned();
        let (ns, name) = (text("namespace"), text("sandbox"));
        let key = (ns.clone(), name.clone());
        let mut state = self.state();
        match body["method"].as_str().unwrap_or_default() {
            "sandbox.start" => {
                state.start_arrivals.push((ns.clone(), Instant::now()));
                let delay = state.start_delay;
                state.sandboxes.insert(
                    key,
                    FakeSandbox {
                        running: true,
                        vars: BTreeMap::new(),
                        started: Instant::now() + delay,
                        config: params["config"].clone(),
                    },
                );
                let answer = state
                    .start_answer
                    .clone()
                    .unwrap_or_else(|| format!("Sandbox {name} started successfully"));
                ok(json!(answer)).set_delay(delay)
            }
            "sandbox.stop" => {
                if !state.sandboxes.keys().any(|(n, _)| *n == ns) {
                    return not_found_namespace(&ns);
                }
                match state.sandboxes.get_mut(&key) {
                    Some(sb) => {
                        sb.running = false;
                        ok(json!(format!("Sandbox {name} stopped successfully")))
                    }
                    None => masked(),
                }
            }
            "sandbox.metrics.get" => {
                let filter = params["sandbox"].as_str();
                if ns != "*" && !state.sandboxes.keys().any(|(n, _)| *n == ns) {
                    return not_found_namespace(&ns);
                }
                if let Some(f) = filter
                    && ns != "*"
                    && !state.sandboxes.contains_key(&(ns.clone(), f.to_owned()))
                {
                    return masked();
                }
                let sandboxes = state.sandboxes.iter().map(|((n, s), sb)| (n.as_str(), s.as_str(), sb.running));
                ok(metrics_listing(sandboxes, &ns, filter))
            }
            m @ ("sandbox.repl.run" | "sandbox.command.run") => {
                let delay = state.agent_delay;
                let Some(sb) = state.sandboxes.get_mut(&key).filter(|sb| sb.running) else {
                    return masked();
                };
                if sb.started.elapsed() < delay {
                    return masked();
                }
                let timeout = params["timeout"].as_u64().unwrap_or(3600);
                if m == "sandbox.repl.run" {
                    repl(sb, &text("language"), &text("code"), timeout)
                } else {
                    let args: Vec<String> = params["args"]
                        .as_array()
                        .map(|a| a.iter().map(|v| v.as_str().unwrap_or_default().to_owned()).collect())
                        .unwrap_or_default();
                    command(&text("command"), &args, timeout)
                }
            }
            other => ResponseTemplate::new(404).set_body_json(json!({
                "jsonrpc": "2.0", "error": {"code": -32601, "message": format!("Method not found: {other}")}, "id": body["id"],
            })),
        }
    }
}

fn repl(sb: &mut FakeSandbox, language: &str, code: &str, timeout: u64) -> ResponseTemplate {
    let mut out: Vec<(&str, String)> = Vec::new();
    let mut delay = Duration::ZERO;
    let node = language != "python";
    for raw in code.lines() {
        let line = raw.trim().trim_end_matches(';');
        if line.is_empty() || line.starts_with("import ") || line.starts_with("__import__('time').sleep(") {
            continue;
        }
        if let Some(rest) = line.strip_prefix("time.sleep(").and_then(|r| r.strip_suffix(')')) {
            let secs: u64 = rest.parse().unwrap_or(0);
            if secs > timeout {
                out.push(("stderr", format!("Error: Execution timed out after {timeout} seconds")));
                return repl_answer(language, &out).set_delay(Duration::from_secs(timeout));
            }
            delay += Duration::from_secs(secs);
            continue;
        }
        if let Some(rest) = line.strip_prefix("raise ") {
            let (class, msg) = rest.split_once("('").unwrap_or((rest, ""));
            out.push(("stderr", "Traceback (most recent call last):".into()));
            out.push(("stderr", "  File \"<stdin>\", line 1, in <module>".into()));
            out.push(("stderr", format!("{class}: {}", msg.trim_end_matches("')"))));
            continue;
        }
        let printed = line
            .strip_prefix("print(")
            .or_else(|| line.strip_prefix("console.log("))
            .and_then(|r| r.strip_suffix(')'));
        if let Some(expr) = printed {
            let (expr, stream) = match expr.strip_suffix(", file=sys.stderr") {
                Some(e) => (e, "stderr"),
                None => (expr, "stdout"),
            };
            match eval(sb, expr) {
                Some(value) => out.push((stream, value)),
                None if node => out.push(("stdout", format!("Uncaught ReferenceError: {expr} is not defined"))),
                None => {
                    out.push(("stderr", "Traceback (most recent call last):".into()));
                    out.push(("stderr", format!("NameError: name '{expr}' is not defined")));
                }
            }
            continue;
        }
        let assignment = line.strip_prefix("var ").unwrap_or(line);
        if let Some((name, value)) = assignment.split_once(" = ") {
            let value = eval(sb, value).unwrap_or_default();
            sb.vars.insert(name.trim().to_owned(), value);
            continue;
        }
        out.push(("stderr", format!("SyntaxError: cannot run {line:?} in the fake")));
    }
    repl_answer(language, &out).set_delay(delay)
}

fn eval(sb: &FakeSandbox, expr: &str) -> Option<String> {
    let expr = expr.trim();
    if let Some(lit) = expr
        .strip_prefix('\'')
        .and_then(|e| e.strip_suffix('\''))
        .or_else(|| expr.strip_prefix('"').and_then(|e| e.strip_suffix('"')))
    {
        return Some(lit.to_owned());
    }
    if let Ok(n) = expr.parse::<i64>() {
        return Some(n.to_string());
    }
    if let Some((name, n)) = expr.split_once(" + ") {
        let a: i64 = sb.vars.get(name.trim())?.parse().ok()?;
        let b: i64 = n.trim().parse().ok()?;
        return Some((a + b).to_string());
    }
    sb.vars.get(expr).cloned()
}

fn repl_answer(language: &str, out: &[(&str, String)]) -> ResponseTemplate {
    ok(json!({"status": "success", "language": language, "output": lines(out)}))
}

fn command(program: &str, args: &[String], timeout: u64) -> ResponseTemplate {
    let done = |code: i32, out: &[(&str, String)]| {
        ok(json!({"command": program, "args": args, "exit_code": code, "success": code == 0, "output": lines(out)}))
    };
    match program {
        "true" => done(0, &[]),
        "echo" => done(0, &[("stdout", args.join(" "))]),
        "sleep" => {
            let secs: u64 = args.first().and_then(|a| a.parse().ok()).unwrap_or(0);
            if secs > timeout {
                masked().set_delay(Duration::from_secs(timeout))
            } else {
                done(0, &[]).set_delay(Duration::from_secs(secs))
            }
        }
        // The file methods' command fallback: run for real on the host, as the guest would,
        // and answered in lines like the real server.
        "sh" if args.get(1).is_some_and(|a| a.starts_with("command -v base64")) => {
            let Ok(ran) = std::process::Command::new("sh").args(args).output() else {
                return masked();
            };
            let mut out = Vec::new();
            for (stream, bytes) in [("stdout", &ran.stdout), ("stderr", &ran.stderr)] {
                for line in String::from_utf8_lossy(bytes).lines() {
                    out.push((stream, line.to_owned()));
                }
            }
            done(ran.status.code().unwrap_or(-1), &out)
        }
        "sh" if args.first().is_some_and(|a| a == "-c") => {
            let mut out = Vec::new();
            let mut code = 0;
            for part in args.get(1).map(String::as_str).unwrap_or_default().split(';') {
                let part = part.trim();
                if let Some(n) = part.strip_prefix("exit ") {
                    code = n.parse().unwrap_or(1);
                    break;
                }
                if let Some(text) = part.strip_prefix("echo ") {
                    match text.strip_suffix(" >&2") {
                        Some(t) => out.push(("stderr", t.to_owned())),
                        None => out.push(("stdout", text.to_owned())),
                    }
                }
            }
            done(code, &out)
        }
        _ => masked(),
    }
}

/// A hand-made HTTP server on `listener` for transport tests, counting the connections it
/// accepts. With an answer, it answers every request with that JSON body; without, it reads the
/// request and closes the connection without a word (the request was sent, the answer lost).
pub fn raw_server(listener: std::net::TcpListener, answer: Option<String>) -> Arc<std::sync::atomic::AtomicUsize> {
    use std::io::{BufRead, BufReader, Read, Write};
    let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = Arc::clone(&connections);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut length = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            if let Some(answer) = &answer {
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                    answer.len()
                );
            }
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
    });
    connections
}

/// Asserts that `out` is a timeout after which the sandbox is unusable.
pub fn assert_timed_out_unusable(out: &ExecOutput) {
    assert!(
        matches!(
            out.status,
            ExecStatus::TimedOut {
                aftermath: Aftermath::Unusable,
                ..
            }
        ),
        "{out:?}"
    );
}
