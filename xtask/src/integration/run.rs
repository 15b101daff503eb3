//! One test run's private folder, its marker, and the reaper that cleans up after it whatever
//! happens to the harness.
//!
//! The reaper is this same program (`xtask __reap RUN_ID DIR KEEP`), started in its own process
//! group (so a Ctrl-C in the terminal does not reach it) with a pipe on its stdin. It waits for
//! the pipe to close. If the harness wrote `done` first, the harness has cleaned up itself and
//! the reaper just exits. If the pipe closes without it, the harness died (Ctrl-C, a panic,
//! SIGKILL): the reaper ends every process that carries the run's marker (see
//! [`procs`](super::procs)) and removes the folder unless told to keep it.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitCode, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::procs::{self, Ended, MARKER_VAR};

/// The hidden task name of the reaper.
pub(crate) const REAPER_TASK: &str = "__reap";

/// How long processes get between SIGTERM and SIGKILL at cleanup (the stand-in gives its
/// agent 3 s).
const GRACE: Duration = Duration::from_secs(5);

/// A run: its id (the marker's value) and private folder.
pub(crate) struct Run {
    id: String,
    dir: PathBuf,
    reaper: Option<(Child, ChildStdin)>,
}

impl Run {
    /// Creates the folder and starts the reaper.
    pub(crate) fn new(keep: bool) -> Result<Run, String> {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let id = format!("{}-{nanos:08x}", std::process::id());
        let dir = std::env::temp_dir().join(format!("msbw-integration-{id}"));
        std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let exe = std::env::current_exe().map_err(|e| format!("cannot find this program to start the reaper: {e}"))?;
        let mut command = Command::new(exe);
        command
            .arg(REAPER_TASK)
            .arg(&id)
            .arg(&dir)
            .arg(if keep { "keep" } else { "remove" })
            .env_remove(MARKER_VAR)
            .stdin(Stdio::piped())
            .stdout(Stdio::null());
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let mut child = command.spawn().map_err(|e| format!("cannot start the reaper: {e}"))?;
        let stdin = child
            .stdin
            .take()
            .ok_or_else(|| "the reaper has no stdin pipe".to_owned())?;
        Ok(Run {
            id,
            dir,
            reaper: Some((child, stdin)),
        })
    }

    /// The marker's value.
    pub(crate) fn id(&self) -> &str {
        &self.id
    }

    /// The private folder.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Ends every process of the run (after the suites stopped what they started, there should
    /// be none but the servers' sandboxes), checks that none is left, tells the reaper it is
    /// done, and removes the folder unless `keep`.
    pub(crate) fn finish(mut self, keep: bool) -> (Ended, Vec<procs::Proc>) {
        self.clean_up(keep)
    }

    fn clean_up(&mut self, keep: bool) -> (Ended, Vec<procs::Proc>) {
        let ended = procs::end_all(&self.id, GRACE);
        if let Some((mut child, mut stdin)) = self.reaper.take() {
            let _ = stdin.write_all(b"done");
            drop(stdin);
            let _ = child.wait();
        }
        // After the reaper is gone: its own command line names the folder.
        let stray = procs::mentioning(&self.dir);
        if !keep && ended.left.is_empty() && stray.is_empty() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
        (ended, stray)
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        // Not finished (an error or a panic on the way): clean up now, and keep the logs.
        if self.reaper.is_some() {
            let (ended, stray) = self.clean_up(true);
            eprintln!(
                "xtask: cleanup after an error: processes {ended}{}; logs kept in {}",
                if stray.is_empty() {
                    ""
                } else {
                    " (and some that mention the run's folder are left)"
                },
                self.dir.display()
            );
        }
    }
}

/// The reaper's main: `__reap RUN_ID DIR keep|remove`.
pub(crate) fn reaper_main(args: &[String]) -> ExitCode {
    let [run_id, dir, keep] = args else {
        eprintln!("usage: xtask {REAPER_TASK} RUN_ID DIR keep|remove");
        return ExitCode::from(2);
    };
    let mut said = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut said);
    if said == b"done" {
        return ExitCode::SUCCESS;
    }
    let ended = procs::end_all(run_id, GRACE);
    let dir = Path::new(dir);
    let folder = if keep == "keep" {
        format!("kept {}", dir.display())
    } else {
        let _ = std::fs::remove_dir_all(dir);
        format!("removed {}", dir.display())
    };
    eprintln!("\nxtask test-integration was interrupted; its reaper cleaned up: processes {ended}; {folder}");
    if ended.left.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
