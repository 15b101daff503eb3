//! The client of the harness's control socket (`xtask/src/integration/control.rs`): what only
//! the owner of the server can do. One request per connection, one line each way; the answer
//! is `ok <value>` or `err <why>`.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

/// How long the harness may take to answer (a restart waits for the server's health).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(90);

/// The harness's control socket.
#[derive(Debug, Clone)]
pub struct Control {
    path: PathBuf,
}

/// What a restart did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Restarted {
    /// How long the server was away, health wait included.
    pub away: Duration,
    /// The new server's PID.
    pub pid: u32,
}

impl Control {
    /// The control socket at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Control { path: path.into() }
    }

    /// Restarts the server on the same port and folders (its sandboxes keep running).
    pub async fn restart(&self) -> Result<Restarted, String> {
        let answer = self.request("restart").await?;
        let mut words = answer.split_whitespace();
        let away = words.next().and_then(|w| w.parse::<u64>().ok());
        let pid = words.next().and_then(|w| w.parse::<u32>().ok());
        match (away, pid) {
            (Some(ms), Some(pid)) => Ok(Restarted {
                away: Duration::from_millis(ms),
                pid,
            }),
            _ => Err(format!("the harness answered the restart with {answer:?}")),
        }
    }

    /// A key from `msb server keygen`, for one namespace or (with `None`) for all.
    pub async fn keygen(&self, namespace: Option<&str>) -> Result<String, String> {
        self.request(&format!("keygen {}", namespace.unwrap_or("*"))).await
    }

    /// A key signed with the server's key by the harness, valid for `namespace` (`*` for all)
    /// until `exp_offset_secs` from now; negative means already expired.
    pub async fn mint(&self, namespace: &str, exp_offset_secs: i64) -> Result<String, String> {
        self.request(&format!("mint {namespace} {exp_offset_secs}")).await
    }

    async fn request(&self, line: &str) -> Result<String, String> {
        let path = self.path.clone();
        let line = format!("{line}\n");
        let answer = tokio::task::spawn_blocking(move || -> Result<String, String> {
            let socket = path.display().to_string();
            let mut stream = UnixStream::connect(&path)
                .map_err(|e| format!("cannot reach the harness's control socket {socket}: {e}"))?;
            stream
                .set_read_timeout(Some(ANSWER_TIMEOUT))
                .map_err(|e| e.to_string())?;
            stream.write_all(line.as_bytes()).map_err(|e| e.to_string())?;
            let mut answer = String::new();
            BufReader::new(stream)
                .read_line(&mut answer)
                .map_err(|e| format!("no answer on the control socket {socket}: {e}"))?;
            Ok(answer.trim_end().to_owned())
        })
        .await
        .map_err(|e| format!("the control request did not finish: {e}"))??;
        match answer.split_once(' ') {
            Some(("ok", value)) => Ok(value.to_owned()),
            Some(("err", why)) => Err(format!("the harness could not do it: {why}")),
            _ => Err(format!("the harness answered {answer:?}")),
        }
    }
}
