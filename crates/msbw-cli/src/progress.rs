//! A progress indicator on stderr while a sandbox starts and code runs: only on a terminal, never
//! with --json or -q.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use microsandbox_wrapper::{MicrosandboxWrapper, SessionStatus};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::cli::Global;

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
            const FRAMES: [char; 10] = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            for frame in FRAMES.iter().cycle() {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = &mut rx => break,
                }
                let starting = wrapper
                    .get_sessions(None)
                    .map(|s| s.iter().any(|s| s.status == SessionStatus::Creating))
                    .unwrap_or(false);
                let what = if starting {
                    format!("starting a {backend} sandbox")
                } else {
                    "running".to_owned()
                };
                let mut err = std::io::stderr().lock();
                let _ = write!(err, "\r{frame} {what}…\x1b[K");
                let _ = err.flush();
            }
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[K");
            let _ = err.flush();
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
