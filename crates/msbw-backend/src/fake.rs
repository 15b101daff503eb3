//! An in-memory backend for tests: sandboxes are entries in a table, code and commands are
//! answered by a script, and every call is counted. It honours the trait's contract (it passes
//! the parts of the conformance suite that do not need a real interpreter) and can inject faults:
//! slow or failing starts, executions that never finish, stops that fail.
//!
//! Delays use `tokio::time`, so tests with a paused clock control them exactly.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;

use crate::{
    Aftermath, BackendError, Capabilities, CodeRequest, CommandRequest, ErrorKind, ExecOutput, ExecStatus, Health,
    ListFilter, Operation, SandboxBackend, SandboxId, SandboxInfo, SandboxSpec,
};

/// What the script answers to a piece of code or a command.
#[derive(Debug, Clone)]
pub enum Reply {
    /// A finished execution.
    Output(ExecOutput),
    /// Sleeps this long (on tokio's clock) first, then answers with the inner reply. A sleep
    /// longer than the request's timeout yields `TimedOut` with the fake's `timeout_aftermath`.
    After(Duration, Box<Reply>),
    /// Never answers.
    Hang,
    /// Fails with this error kind and message.
    Fail(ErrorKind, String),
}

type Script = dyn Fn(&SandboxId, &str) -> Reply + Send + Sync;

/// Counters of what the fake was asked to do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FakeStats {
    /// Calls to `start`, successful or not.
    pub start_calls: usize,
    /// Sandboxes that started successfully.
    pub started: usize,
    /// Successful stops of running sandboxes.
    pub stopped: usize,
    /// Calls to `stop`.
    pub stop_calls: usize,
    /// Executions (code and commands).
    pub executions: usize,
    /// Calls to `list`.
    pub list_calls: usize,
    /// The most sandboxes that were running (or starting) at the same time.
    pub max_running: usize,
    /// The most starts in progress at the same time.
    pub max_concurrent_starts: usize,
    /// The most executions in progress in one sandbox at the same time.
    pub max_concurrent_execs_per_sandbox: usize,
}

#[derive(Default)]
struct State {
    running: BTreeMap<SandboxId, SandboxSpec>,
    /// How many times each code or command text reached a sandbox.
    received: HashMap<String, usize>,
    starting: usize,
    execs: HashMap<SandboxId, usize>,
    stats: FakeStats,
    fail_starts: usize,
    fail_stops: usize,
    start_delay: Duration,
    timeout_aftermath: Option<Aftermath>,
    capabilities: Option<Capabilities>,
    healthy: bool,
    /// The files of each sandbox, by path (a flat table: folders are path prefixes).
    files: BTreeMap<(SandboxId, String), Vec<u8>>,
}

/// The in-memory fake backend. Clones share the same state.
#[derive(Clone)]
pub struct FakeBackend {
    state: Arc<Mutex<State>>,
    script: Arc<Script>,
}

impl fmt::Debug for FakeBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FakeBackend")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl Default for FakeBackend {
    fn default() -> Self {
        FakeBackend::new()
    }
}

impl FakeBackend {
    /// A fake whose code prints the code back and whose commands print their arguments.
    pub fn new() -> Self {
        FakeBackend::with_script(|_, code| Reply::Output(ExecOutput::completed(code, "", None)))
    }

    /// A fake that answers code and commands with `script(sandbox, text)`; for a command the
    /// text is the command and its arguments joined by spaces.
    pub fn with_script(script: impl Fn(&SandboxId, &str) -> Reply + Send + Sync + 'static) -> Self {
        FakeBackend {
            state: Arc::new(Mutex::new(State {
                healthy: true,
                ..State::default()
            })),
            script: Arc::new(script),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// What the fake has been asked so far.
    pub fn stats(&self) -> FakeStats {
        self.lock().stats.clone()
    }

    /// How many times `text` (code, or a command and its arguments joined by spaces) reached a
    /// running sandbox.
    pub fn times_received(&self, text: &str) -> usize {
        self.lock().received.get(text).copied().unwrap_or(0)
    }

    /// The sandboxes running now.
    pub fn running(&self) -> Vec<SandboxId> {
        self.lock().running.keys().cloned().collect()
    }

    /// The spec a running sandbox was started with.
    pub fn spec_of(&self, id: &SandboxId) -> Option<SandboxSpec> {
        self.lock().running.get(id).cloned()
    }

    /// Makes every start take this long (on tokio's clock).
    pub fn set_start_delay(&self, delay: Duration) {
        self.lock().start_delay = delay;
    }

    /// Makes the next `n` starts fail with `ErrorKind::Rejected`.
    pub fn fail_next_starts(&self, n: usize) {
        self.lock().fail_starts = n;
    }

    /// Makes the next `n` stops fail with `ErrorKind::Connect`.
    pub fn fail_next_stops(&self, n: usize) {
        self.lock().fail_stops = n;
    }

    /// What a timed-out execution does to its sandbox (default `StateLost`).
    pub fn set_timeout_aftermath(&self, aftermath: Aftermath) {
        self.lock().timeout_aftermath = Some(aftermath);
    }

    /// The capabilities to report (default: [`Capabilities::basic`] with read-only volumes).
    pub fn set_capabilities(&self, caps: Capabilities) {
        self.lock().capabilities = Some(caps);
    }

    /// Makes the health check fail (`false`) or pass.
    pub fn set_healthy(&self, healthy: bool) {
        self.lock().healthy = healthy;
    }

    /// Adds a running sandbox behind the manager's back (a leftover of a crash, or another
    /// client's sandbox).
    pub fn insert_running(&self, spec: SandboxSpec) {
        let mut state = self.lock();
        state.running.insert(spec.id.clone(), spec);
        state.stats.max_running = state.stats.max_running.max(state.running.len() + state.starting);
    }

    /// Removes a sandbox behind the manager's back (as if it crashed).
    pub fn kill(&self, id: &SandboxId) -> bool {
        self.lock().running.remove(id).is_some()
    }

    fn error(kind: ErrorKind, op: Operation, id: &SandboxId, message: impl Into<String>) -> BackendError {
        BackendError::new(kind, op, message)
            .with_backend("fake")
            .with_sandbox(id)
    }

    async fn execute(
        &self,
        op: Operation,
        id: &SandboxId,
        text: &str,
        timeout: Duration,
    ) -> Result<ExecOutput, BackendError> {
        {
            let mut state = self.lock();
            if !state.running.contains_key(id) {
                // Refused before the script saw anything: certainly not run.
                return Err(Self::error(ErrorKind::NotFound, op, id, "no such sandbox").unsent());
            }
            state.stats.executions += 1;
            *state.received.entry(text.to_owned()).or_insert(0) += 1;
            let now = {
                let n = state.execs.entry(id.clone()).or_insert(0);
                *n += 1;
                *n
            };
            state.stats.max_concurrent_execs_per_sandbox = state.stats.max_concurrent_execs_per_sandbox.max(now);
        }
        let _guard = ExecGuard { fake: self, id };
        let mut reply = (self.script)(id, text);
        let mut waited = Duration::ZERO;
        loop {
            match reply {
                Reply::Output(out) => return Ok(out),
                Reply::Fail(kind, message) => return Err(Self::error(kind, op, id, message)),
                Reply::Hang => std::future::pending::<()>().await,
                Reply::After(delay, next) => {
                    if waited + delay > timeout {
                        tokio::time::sleep(timeout.saturating_sub(waited)).await;
                        let aftermath = self.lock().timeout_aftermath.unwrap_or(Aftermath::StateLost);
                        return Ok(ExecOutput {
                            stdout: String::new(),
                            stderr: String::new(),
                            status: ExecStatus::TimedOut {
                                after: timeout,
                                aftermath,
                            },
                            exit_code: None,
                        });
                    }
                    tokio::time::sleep(delay).await;
                    if !self.lock().running.contains_key(id) {
                        return Err(Self::error(
                            ErrorKind::NotFound,
                            op,
                            id,
                            "the sandbox was stopped during the execution",
                        ));
                    }
                    waited += delay;
                    reply = *next;
                }
            }
        }
    }
}

/// Decrements the per-sandbox execution count when an execution ends or is cancelled.
struct ExecGuard<'a> {
    fake: &'a FakeBackend,
    id: &'a SandboxId,
}

impl Drop for ExecGuard<'_> {
    fn drop(&mut self) {
        if let Some(n) = self.fake.lock().execs.get_mut(self.id) {
            *n = n.saturating_sub(1);
        }
    }
}

/// Decrements the count of starts in progress when a start ends or is cancelled.
struct StartGuard<'a>(&'a FakeBackend);

impl Drop for StartGuard<'_> {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        state.starting = state.starting.saturating_sub(1);
    }
}

#[async_trait]
impl SandboxBackend for FakeBackend {
    fn name(&self) -> &'static str {
        "fake"
    }

    async fn capabilities(&self) -> Capabilities {
        self.lock().capabilities.clone().unwrap_or_else(|| {
            Capabilities::basic()
                .with_read_only_volumes(true)
                .with_metrics(true)
                .with_native_files(true)
        })
    }

    async fn health(&self) -> Result<Health, BackendError> {
        if self.lock().healthy {
            Ok(Health {
                message: "fake backend is healthy".into(),
            })
        } else {
            Err(BackendError::new(ErrorKind::Connect, Operation::Health, "fake backend is down").with_backend("fake"))
        }
    }

    async fn start(&self, spec: &SandboxSpec) -> Result<(), BackendError> {
        spec.validate()?;
        let delay = {
            let mut state = self.lock();
            state.stats.start_calls += 1;
            if state.running.contains_key(&spec.id) {
                return Err(Self::error(
                    ErrorKind::AlreadyExists,
                    Operation::Start,
                    &spec.id,
                    "already running",
                ));
            }
            state.starting += 1;
            state.stats.max_concurrent_starts = state.stats.max_concurrent_starts.max(state.starting);
            state.stats.max_running = state.stats.max_running.max(state.running.len() + state.starting);
            state.start_delay
        };
        let guard = StartGuard(self);
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let mut state = self.lock();
        if state.fail_starts > 0 {
            state.fail_starts -= 1;
            drop(state);
            drop(guard);
            return Err(Self::error(
                ErrorKind::Rejected,
                Operation::Start,
                &spec.id,
                "injected start failure",
            ));
        }
        state.running.insert(spec.id.clone(), spec.clone());
        state.stats.started += 1;
        drop(state);
        drop(guard);
        Ok(())
    }

    async fn stop(&self, id: &SandboxId) -> Result<(), BackendError> {
        let mut state = self.lock();
        state.stats.stop_calls += 1;
        if state.fail_stops > 0 {
            state.fail_stops -= 1;
            return Err(Self::error(
                ErrorKind::Connect,
                Operation::Stop,
                id,
                "injected stop failure",
            ));
        }
        if state.running.remove(id).is_some() {
            state.stats.stopped += 1;
        }
        state.files.retain(|(sandbox, _), _| sandbox != id);
        Ok(())
    }

    async fn run_code(&self, id: &SandboxId, request: &CodeRequest) -> Result<ExecOutput, BackendError> {
        self.execute(Operation::RunCode, id, &request.code, request.timeout)
            .await
    }

    async fn run_command(&self, id: &SandboxId, request: &CommandRequest) -> Result<ExecOutput, BackendError> {
        let mut text = request.command.clone();
        for arg in &request.args {
            text.push(' ');
            text.push_str(arg);
        }
        self.execute(Operation::RunCommand, id, &text, request.timeout).await
    }

    async fn list(&self, filter: &ListFilter) -> Result<Vec<SandboxInfo>, BackendError> {
        let mut state = self.lock();
        state.stats.list_calls += 1;
        Ok(state
            .running
            .values()
            .filter(|spec| filter.matches(&spec.id))
            .map(|spec| SandboxInfo {
                id: spec.id.clone(),
                cpu_percent: Some(0.0),
                memory_mb: Some(u64::from(spec.memory_mb) / 4),
                disk_bytes: None,
            })
            .collect())
    }

    // ---- Files: an in-memory table per sandbox ----

    async fn write_file(&self, id: &SandboxId, path: &str, data: &[u8]) -> Result<(), BackendError> {
        crate::files::check_path(path, Operation::WriteFile, false)?;
        let mut state = self.running_or_not_found(id, Operation::WriteFile)?;
        state.files.insert((id.clone(), path.to_owned()), data.to_vec());
        Ok(())
    }

    async fn read_file(&self, id: &SandboxId, path: &str, max_bytes: u64) -> Result<Vec<u8>, BackendError> {
        use crate::files::{FileErrorKind, file_error};
        crate::files::check_path(path, Operation::ReadFile, false)?;
        let state = self.running_or_not_found(id, Operation::ReadFile)?;
        match state.files.get(&(id.clone(), path.to_owned())) {
            None => Err(file_error(
                FileErrorKind::NotFound,
                Operation::ReadFile,
                path,
                "no such file",
            )),
            Some(data) if data.len() as u64 > max_bytes => Err(file_error(
                FileErrorKind::TooLarge,
                Operation::ReadFile,
                path,
                format!("{} bytes is more than the limit of {max_bytes}", data.len()),
            )),
            Some(data) => Ok(data.clone()),
        }
    }

    async fn list_files(&self, id: &SandboxId, path: &str) -> Result<Vec<crate::FileEntry>, BackendError> {
        crate::files::check_path(path, Operation::ListFiles, true)?;
        let state = self.running_or_not_found(id, Operation::ListFiles)?;
        let prefix = crate::files::join(path, "");
        Ok(state
            .files
            .iter()
            .filter(|((sandbox, p), _)| sandbox == id && p.starts_with(&prefix) && !p[prefix.len()..].contains('/'))
            .map(|((_, p), data)| crate::FileEntry {
                name: p[prefix.len()..].to_owned(),
                path: p.clone(),
                kind: crate::FileKind::File,
                size: data.len() as u64,
                mode: None,
            })
            .collect())
    }

    async fn remove_file(&self, id: &SandboxId, path: &str) -> Result<(), BackendError> {
        use crate::files::{FileErrorKind, file_error};
        crate::files::check_path(path, Operation::RemoveFile, false)?;
        let mut state = self.running_or_not_found(id, Operation::RemoveFile)?;
        match state.files.remove(&(id.clone(), path.to_owned())) {
            Some(_) => Ok(()),
            None => Err(file_error(
                FileErrorKind::NotFound,
                Operation::RemoveFile,
                path,
                "no such file",
            )),
        }
    }
}

impl FakeBackend {
    fn running_or_not_found(&self, id: &SandboxId, op: Operation) -> Result<MutexGuard<'_, State>, BackendError> {
        let state = self.lock();
        if state.running.contains_key(id) {
            Ok(state)
        } else {
            Err(Self::error(ErrorKind::NotFound, op, id, "no such sandbox"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Template;

    fn spec(name: &str) -> SandboxSpec {
        SandboxSpec::new(SandboxId::new("default", name).unwrap(), Template::Python)
    }

    #[tokio::test(start_paused = true)]
    async fn it_follows_the_contract_for_lifecycle_and_errors() {
        let fake = FakeBackend::new();
        let s = spec("a");
        fake.start(&s).await.unwrap();
        assert_eq!(fake.start(&s).await.unwrap_err().kind(), ErrorKind::AlreadyExists);
        let req = CodeRequest {
            language: Template::Python,
            code: "hi".into(),
            timeout: Duration::from_secs(5),
        };
        assert_eq!(fake.run_code(&s.id, &req).await.unwrap().stdout, "hi");
        assert_eq!(fake.list(&ListFilter::default()).await.unwrap().len(), 1);
        fake.stop(&s.id).await.unwrap();
        fake.stop(&s.id).await.unwrap();
        assert_eq!(
            fake.run_code(&s.id, &req).await.unwrap_err().kind(),
            ErrorKind::NotFound
        );
        let stats = fake.stats();
        assert_eq!((stats.started, stats.stopped, stats.stop_calls), (1, 1, 2));
    }

    #[tokio::test(start_paused = true)]
    async fn slow_replies_time_out_on_the_paused_clock() {
        let fake = FakeBackend::with_script(|_, _| {
            Reply::After(
                Duration::from_secs(60),
                Box::new(Reply::Output(ExecOutput::completed("late", "", None))),
            )
        });
        let s = spec("b");
        fake.start(&s).await.unwrap();
        let req = CodeRequest {
            language: Template::Python,
            code: "x".into(),
            timeout: Duration::from_secs(5),
        };
        let started = tokio::time::Instant::now();
        let out = fake.run_code(&s.id, &req).await.unwrap();
        assert!(out.timed_out());
        assert_eq!(started.elapsed(), Duration::from_secs(5));
    }
}
