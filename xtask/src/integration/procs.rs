//! Finding and ending every process a test run started, without the server's help.
//!
//! Every process the harness starts (msbserver, `msb`, the suites) gets the marker
//! `MSBW_INTEGRATION_RUN=<run id>` in its environment. Every descendant inherits it: msbserver →
//! `msbrun supervisor` → `msbrun microvm` → the stand-in's agent (`portal`) → `python3`, `node` and
//! the commands it runs (checked in /work/krun-standin/NOTES.md, "Processes"). So scanning
//! `/proc/*/environ` for the marker finds them all, even after msbserver was killed and its
//! sandboxes were re-parented to PID 1, and never touches anybody else's processes (other runs,
//! another developer's msbserver).

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

/// The environment variable that marks the processes of one run.
pub(crate) const MARKER_VAR: &str = "MSBW_INTEGRATION_RUN";

/// One process found in `/proc`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Proc {
    pub(crate) pid: u32,
    /// The program name (`comm`), e.g. `msbserver`, `msbrun`, `portal`.
    pub(crate) name: String,
    /// The process state letter from `/proc/PID/stat` (`Z` is a zombie).
    pub(crate) state: char,
}

impl Proc {
    /// A zombie has exited; only its parent's wait is missing. It cannot be killed, and is not
    /// running anything.
    pub(crate) fn is_zombie(&self) -> bool {
        self.state == 'Z' || self.state == 'X'
    }
}

impl fmt::Display for Proc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (pid {}, state {})", self.name, self.pid, self.state)
    }
}

/// Reads `/proc/PID/stat`: the name and the state. `None` if the process is gone.
fn stat(pid: u32) -> Option<(String, char)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "PID (comm) S ..." where comm may itself contain spaces and parentheses.
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let name = text.get(open + 1..close)?.to_owned();
    let state = text.get(close + 1..)?.trim_start().chars().next()?;
    Some((name, state))
}

/// Whether the environment of `pid` holds exactly `entry` (`NAME=value`).
fn environ_has(pid: u32, entry: &[u8]) -> bool {
    std::fs::read(format!("/proc/{pid}/environ")).is_ok_and(|env| env.split(|b| *b == 0).any(|e| e == entry))
}

/// Every process (zombies included) whose environment carries the marker of run `run_id`,
/// except this process.
pub(crate) fn marked(run_id: &str) -> Vec<Proc> {
    let entry = format!("{MARKER_VAR}={run_id}").into_bytes();
    let me = std::process::id();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found: Vec<Proc> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != me && environ_has(*pid, &entry))
        .filter_map(|pid| {
            let (name, state) = stat(pid)?;
            Some(Proc { pid, name, state })
        })
        .collect();
    found.sort_by_key(|p| p.pid);
    found
}

/// Every live process whose command line mentions `path` (a run's private folder): a second
/// net, for processes that somehow lost the marker.
pub(crate) fn mentioning(path: &Path) -> Vec<Proc> {
    let needle = path.as_os_str().as_encoded_bytes();
    let me = std::process::id();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != me)
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|cmd| !needle.is_empty() && cmd.windows(needle.len()).any(|w| w == needle))
        })
        .filter_map(|pid| {
            let (name, state) = stat(pid)?;
            Some(Proc { pid, name, state })
        })
        .filter(|p| !p.is_zombie())
        .collect()
}

/// Sends `signal` (`TERM`, `KILL`) to the processes, through the shell's `kill` builtin (the
/// standard library can only SIGKILL its own children). Processes that are already gone are
/// ignored.
pub(crate) fn signal(pids: &[u32], signal: &str) {
    if pids.is_empty() {
        return;
    }
    let _ = Command::new("sh")
        .arg("-c")
        .arg(format!("kill -s {signal} \"$@\" 2>/dev/null; exit 0"))
        .arg("sh")
        .args(pids.iter().map(u32::to_string))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// What [`end_all`] did.
#[derive(Debug, Default)]
pub(crate) struct Ended {
    /// How many processes of each name were ended.
    pub(crate) by_name: BTreeMap<String, usize>,
    /// The processes still alive at the end (should be none).
    pub(crate) left: Vec<Proc>,
}

impl Ended {
    /// How many processes were ended.
    pub(crate) fn count(&self) -> usize {
        self.by_name.values().sum()
    }
}

impl fmt::Display for Ended {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.by_name.is_empty() {
            f.write_str("none were running")?;
        } else {
            let names: Vec<String> = self.by_name.iter().map(|(n, c)| format!("{n} x{c}")).collect();
            write!(f, "ended {} ({})", self.count(), names.join(", "))?;
        }
        if !self.left.is_empty() {
            let left: Vec<String> = self.left.iter().map(ToString::to_string).collect();
            write!(f, "; STILL RUNNING: {}", left.join(", "))?;
        }
        Ok(())
    }
}

/// Ends every live process of run `run_id`: SIGTERM first (the stand-in then stops its agent's
/// process group, like a VM shutdown), SIGKILL for whatever is left after `grace`, and again
/// until a scan finds nothing, for at most `grace` + 10 s. New processes appearing meanwhile
/// (a supervisor that had not finished spawning) are caught by the repeated scans.
pub(crate) fn end_all(run_id: &str, grace: Duration) -> Ended {
    let mut ended = Ended::default();
    let mut seen = std::collections::BTreeSet::new();
    let started = Instant::now();
    let kill_after = started + grace;
    let give_up = kill_after + Duration::from_secs(10);
    let mut termed = std::collections::BTreeSet::new();
    loop {
        let live: Vec<Proc> = marked(run_id).into_iter().filter(|p| !p.is_zombie()).collect();
        for p in &live {
            if seen.insert(p.pid) {
                *ended.by_name.entry(p.name.clone()).or_default() += 1;
            }
        }
        if live.is_empty() {
            return ended;
        }
        let now = Instant::now();
        if now >= give_up {
            ended.left = live;
            return ended;
        }
        let fresh: Vec<u32> = live.iter().map(|p| p.pid).filter(|pid| termed.insert(*pid)).collect();
        signal(&fresh, "TERM");
        if now >= kill_after {
            let pids: Vec<u32> = live.iter().map(|p| p.pid).collect();
            signal(&pids, "KILL");
        }
        sleep(Duration::from_millis(100));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_marked_child_is_found_and_ended_and_others_are_not() {
        let run_id = format!("xtask-test-{}", std::process::id());
        let mut marked_child = Command::new("sleep")
            .arg("60")
            .env(MARKER_VAR, &run_id)
            .spawn()
            .expect("sleep runs");
        let mut other = Command::new("sleep")
            .arg("60")
            .env(MARKER_VAR, "another-run")
            .spawn()
            .expect("sleep runs");
        let found = marked(&run_id);
        assert_eq!(found.iter().map(|p| p.pid).collect::<Vec<_>>(), vec![marked_child.id()]);
        assert_eq!(found[0].name, "sleep");
        let ended = end_all(&run_id, Duration::from_secs(2));
        assert!(ended.left.is_empty(), "{ended}");
        assert_eq!(ended.by_name.get("sleep"), Some(&1), "{ended}");
        assert!(marked_child.wait().is_ok());
        assert!(
            other.try_wait().expect("wait works").is_none(),
            "another run's process was touched"
        );
        other.kill().expect("kill works");
        other.wait().expect("wait works");
    }

    #[test]
    fn stat_reads_names_with_spaces_and_parentheses() {
        let (name, state) = stat(std::process::id()).expect("own stat");
        assert!(!name.is_empty());
        assert!(state.is_ascii_alphabetic());
    }
}
