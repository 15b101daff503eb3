//! A progress indicator on stderr while a sandbox starts and code runs: only on a terminal, never
//! with --json or -q. Everything else written to stderr (log lines, warnings) goes through
//! [`write_stderr`], which hides the indicator while the line is written, so neither overwrites
//! the other.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use microsandbox_wrapper::{MicrosandboxWrapper, SessionStatus};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::cli::Global;

/// The indicator being shown, if any.
static ACTIVE: Mutex<Option<ProgressBar>> = Mutex::new(None);

/// Writes to stderr with the indicator (if one is shown) cleared for the moment; errors (a
/// closed stderr) are ignored.
pub(crate) fn write_stderr(bytes: &[u8]) {
    suspended(|| {
        let mut err = std::io::stderr().lock();
        let _ = err.write_all(bytes);
        let _ = err.flush();
    });
}

/// Runs `write` with the indicator (if one is shown) cleared for the moment.
fn suspended(write: impl FnOnce()) {
    match ACTIVE.lock().ok().and_then(|a| a.clone()) {
        Some(bar) => bar.suspend(write),
        None => write(),
    }
}

/// Writes program output to stdout, clearing the progress indicator for the time it takes.
pub(crate) fn write_stdout(bytes: &[u8]) {
    suspended(|| {
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(bytes);
        let _ = out.flush();
    });
}

/// The writer of log lines: stderr, through the indicator.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        write_stderr(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LogWriter;

    fn make_writer(&'a self) -> LogWriter {
        LogWriter
    }
}

/// The running indicator; [`Spinner::stop`] clears its line.
pub(crate) struct Spinner {
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Spinner {
    /// Starts the indicator if stderr is a terminal and output is for people.
    pub(crate) fn start(wrapper: &MicrosandboxWrapper, global: &Global) -> Spinner {
        if global.json || global.quiet || !std::io::stderr().is_terminal() {
            return Spinner { stop: None, task: None };
        }
        let (tx, mut rx) = oneshot::channel();
        let wrapper = wrapper.clone();
        let backend = wrapper.backend_selection().backend.clone();
        let task = tokio::spawn(async move {
            // Quick calls finish before anything is drawn.
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(300)) => {}
                _ = &mut rx => return,
            }
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            if let Ok(style) = ProgressStyle::with_template("{spinner} {msg}…") {
                bar.set_style(style);
            }
            bar.enable_steady_tick(Duration::from_millis(100));
            if let Ok(mut active) = ACTIVE.lock() {
                *active = Some(bar.clone());
            }
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            loop {
                let starting = wrapper
                    .get_sessions(None)
                    .map(|s| s.iter().any(|s| s.status == SessionStatus::Creating))
                    .unwrap_or(false);
                bar.set_message(if starting {
                    format!("starting a {backend} sandbox")
                } else {
                    "running".to_owned()
                });
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = &mut rx => break,
                }
            }
            if let Ok(mut active) = ACTIVE.lock() {
                *active = None;
            }
            bar.finish_and_clear();
        });
        Spinner {
            stop: Some(tx),
            task: Some(task),
        }
    }

    /// Stops the indicator and clears its line.
    pub(crate) async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}
