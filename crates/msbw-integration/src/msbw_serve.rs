//! The `msbw serve` binary as a child process of the suites: started on a free loopback port
//! (`--port 0`; the port is read from its "listening on" line), in dev mode or with a server key,
//! with a private working folder and none of the caller's `MSB_*` settings; its processes found
//! in `/proc`; stopped with SIGTERM.
//!
//! The child inherits the harness's run marker (`MSBW_INTEGRATION_RUN`) like every other
//! process of a run, so the harness's reaper ends it and its sandboxes if the suites die.

use std::collections::{BTreeMap, VecDeque};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub use msbw_harness::random_key;
use tokio::process::{Child, Command};

use crate::target::Target;

/// How long `msbw serve` may take to say where it listens.
const LISTEN_WAIT: Duration = Duration::from_secs(30);

/// A running `msbw serve`.
#[derive(Debug)]
pub struct ServeProcess {
    child: Child,
    pid: u32,
    url: String,
    bin: PathBuf,
    log: PathBuf,
    server_key: Option<String>,
}

/// How a `msbw serve` ended after SIGTERM.
#[derive(Debug)]
pub struct Exited {
    /// Its exit status.
    pub status: ExitStatus,
    /// How long it took to exit after the signal.
    pub took: Duration,
    /// Everything it wrote (stdout and stderr).
    pub log: String,
}

/// One process, identified beyond its PID (PIDs are reused): its start time in clock ticks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessId {
    /// The PID.
    pub pid: u32,
    /// The program name.
    pub name: String,
    /// When it started (field 22 of `/proc/PID/stat`).
    pub start_time: u64,
}

impl std::fmt::Display for ProcessId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (pid {})", self.name, self.pid)
    }
}

/// `/proc/PID/stat`: the name, the state, the parent and the start time.
fn stat(pid: u32) -> Option<(String, char, u32, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let name = text.get(open + 1..close)?.to_owned();
    let fields: Vec<&str> = text.get(close + 1..)?.split_whitespace().collect();
    let state = fields.first()?.chars().next()?;
    let ppid = fields.get(1)?.parse().ok()?;
    let start_time = fields.get(19)?.parse().ok()?;
    Some((name, state, ppid, start_time))
}

impl ProcessId {
    /// Whether this very process is still alive (not a zombie).
    pub fn is_alive(&self) -> bool {
        stat(self.pid).is_some_and(|(_, state, _, start)| start == self.start_time && !matches!(state, 'Z' | 'X'))
    }
}

/// Every live descendant of `root`.
pub fn descendants(root: u32) -> Vec<ProcessId> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut children: BTreeMap<u32, Vec<ProcessId>> = BTreeMap::new();
    for pid in dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok()) {
        if let Some((name, state, ppid, start_time)) = stat(pid)
            && !matches!(state, 'Z' | 'X')
        {
            children
                .entry(ppid)
                .or_default()
                .push(ProcessId { pid, name, start_time });
        }
    }
    let mut found = Vec::new();
    let mut queue = VecDeque::from([root]);
    while let Some(pid) = queue.pop_front() {
        for child in children.remove(&pid).unwrap_or_default() {
            queue.push_back(child.pid);
            found.push(child);
        }
    }
    found
}

/// A command for `bin` without the caller's `MSB_*` settings and server key (the run marker
/// stays), in `dir`, so that only what the suites choose applies.
fn clean_command(bin: &Path, dir: &Path) -> Command {
    let mut command = Command::new(bin);
    for (name, _) in std::env::vars_os() {
        let text = name.to_string_lossy();
        if text.starts_with("MSB_") || text == "MSBW_SERVE_KEY" {
            command.env_remove(&name);
        }
    }
    command.current_dir(dir).stdin(Stdio::null());
    command
}

/// The `msbw` binary of the target, if it has a `serve` subcommand; otherwise what is missing.
pub async fn available(target: &Target) -> Result<PathBuf, String> {
    let Some(msbw) = target.msbw_bin.as_deref() else {
        return Err(match &target.msbw_unavailable {
            Some(why) => format!("msbw is not available: {why}"),
            None => "no msbw binary (pass --msbw-bin or set MSBW_BIN)".into(),
        });
    };
    let status = Command::new(msbw)
        .args(["serve", "--help"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await;
    match status {
        Ok(s) if s.success() => Ok(msbw.to_owned()),
        Ok(_) => Err(format!(
            "{} has no `serve` subcommand yet (`msbw serve --help` fails)",
            msbw.display()
        )),
        Err(e) => Err(format!("cannot run {}: {e}", msbw.display())),
    }
}

impl ServeProcess {
    /// Starts `bin serve` on 127.0.0.1, port 0, in dev mode (`key` `None`) or with the server
    /// key `key` (passed in the environment, not on the command line), over the local backend,
    /// logging to `dir/msbw-serve.log`; returns once it says where it listens (it has bound the
    /// port by then).
    pub async fn start(bin: &Path, key: Option<&str>, dir: &Path) -> Result<ServeProcess, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let log = dir.join("msbw-serve.log");
        let out = File::create(&log).map_err(|e| format!("cannot create {}: {e}", log.display()))?;
        let err = out
            .try_clone()
            .map_err(|e| format!("cannot open {} twice: {e}", log.display()))?;
        let mut command = clean_command(bin, dir);
        command
            .args(["serve", "--host", "127.0.0.1", "--port", "0"])
            .env("MSB_BACKEND", "local")
            .stdout(out)
            .stderr(err)
            .kill_on_drop(true);
        match key {
            Some(key) => command.env("MSBW_SERVE_KEY", key),
            None => command.arg("--dev"),
        };
        let child = command
            .spawn()
            .map_err(|e| format!("cannot start {} serve: {e}", bin.display()))?;
        let pid = child.id().ok_or_else(|| "msbw serve exited at once".to_owned())?;
        let mut serve = ServeProcess {
            child,
            pid,
            url: String::new(),
            bin: bin.to_owned(),
            log,
            server_key: key.map(str::to_owned),
        };
        let started = Instant::now();
        loop {
            if let Ok(Some(status)) = serve.child.try_wait() {
                return Err(format!(
                    "msbw serve exited at start ({status}): {}",
                    serve.log_text().trim()
                ));
            }
            let text = serve.log_text();
            if let Some(url) = listening_url(&text) {
                serve.url = url;
                break;
            }
            if started.elapsed() > LISTEN_WAIT {
                return Err(format!(
                    "msbw serve did not say where it listens within {LISTEN_WAIT:?}: {}",
                    text.trim()
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(serve)
    }

    /// Its base URL, e.g. `http://127.0.0.1:40123`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Its PID.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Its log file.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// What it has written so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// A client key from `msbw serve keygen` (the real binary), for `namespace` (`*` for all),
    /// valid for `expire` (`1h`).
    pub async fn keygen(&self, namespace: &str, expire: &str) -> Result<String, String> {
        let key = self
            .server_key
            .as_deref()
            .ok_or_else(|| "msbw serve runs in dev mode: there is no server key".to_owned())?;
        let dir = self.log.parent().unwrap_or(Path::new("/"));
        let out = clean_command(&self.bin, dir)
            .args(["serve", "keygen", "-n", namespace, "--expire", expire])
            .env("MSBW_SERVE_KEY", key)
            .output()
            .await
            .map_err(|e| format!("cannot run msbw serve keygen: {e}"))?;
        let stdout = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        if out.status.success() && stdout.starts_with("msb_") && !stdout.contains(char::is_whitespace) {
            Ok(stdout)
        } else {
            Err(format!(
                "msbw serve keygen -n {namespace} --expire {expire} failed ({}): {stdout} {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    /// Its live descendants (the local backend's sandbox processes).
    pub fn descendants(&self) -> Vec<ProcessId> {
        descendants(self.pid)
    }

    /// Sends SIGTERM and waits up to `wait` for it to exit (then kills it).
    pub async fn terminate(mut self, wait: Duration) -> Result<Exited, String> {
        let started = Instant::now();
        signal(self.pid, "TERM").await?;
        match tokio::time::timeout(wait, self.child.wait()).await {
            Ok(Ok(status)) => Ok(Exited {
                status,
                took: started.elapsed(),
                log: self.log_text(),
            }),
            Ok(Err(e)) => Err(format!("waiting for msbw serve failed: {e}")),
            Err(_) => {
                let _ = self.child.kill().await;
                Err(format!(
                    "msbw serve did not exit within {wait:?} of SIGTERM (killed); its log: {}",
                    self.log_text().trim()
                ))
            }
        }
    }
}

/// The URL in the line `msbw serve: listening on http://ADDR (...)`.
fn listening_url(log: &str) -> Option<String> {
    log.lines().find_map(|line| {
        let rest = line.split("listening on ").nth(1)?;
        let url = rest.split_whitespace().next()?;
        url.starts_with("http://").then(|| url.to_owned())
    })
}

/// Sends `signal` (`TERM`, `KILL`) to `pid` with the shell's `kill` (the standard library can
/// only SIGKILL its children).
async fn signal(pid: u32, signal: &str) -> Result<(), String> {
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!("kill -s {signal} \"$1\""))
        .arg("sh")
        .arg(pid.to_string())
        .stdin(Stdio::null())
        .status()
        .await
        .map_err(|e| format!("cannot run kill: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("kill -s {signal} {pid} failed ({status})"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_listening_line_gives_the_url() {
        let log = "msbw serve: listening on http://127.0.0.1:40123 (local backend, dev mode: no authentication)\n";
        assert_eq!(listening_url(log), Some("http://127.0.0.1:40123".into()));
        assert_eq!(listening_url("starting\n"), None);
    }

    #[test]
    fn own_children_are_found_and_their_end_is_seen() {
        let mut child = std::process::Command::new("sleep").arg("30").spawn().unwrap();
        let found = descendants(std::process::id());
        let me = found.iter().find(|p| p.pid == child.id()).cloned().unwrap();
        assert!(me.is_alive());
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(!me.is_alive());
    }
}
