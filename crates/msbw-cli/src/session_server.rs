//! The per-user session server: `msbw serve --unix` on a socket in the user's runtime directory,
//! found or started on demand (detached) by `msbw exec --session`, `msbw session` and `msbw cp`.
//!
//! - The directory is `$XDG_RUNTIME_DIR/msbw`, else `$TMPDIR/msbw-UID` (`/tmp/msbw-UID`),
//!   created mode 0700. One that belongs to another user, is a symbolic link or is open to
//!   others is refused, as is a socket there of another owner: another user could otherwise
//!   serve our code, or read it.
//! - The socket `server.sock` is mode 0600; its server exits on its own once it has had no
//!   session and no connection for `MSBW_SESSION_SERVER_IDLE_EXIT` seconds (default:
//!   MSB_SESSION_TIMEOUT). Its log is `server.log` next to it.
//! - Two `msbw` racing to start it start one: the starter holds an exclusive `flock` on
//!   `server.lock` from "nothing answers" until its server answers.

use std::fs::{DirBuilder, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, OpenOptionsExt};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use microsandbox_wrapper::WrapperError;

use crate::cli::Global;

/// The variable that sets the server's idle exit, in seconds (tests shorten it).
pub(crate) const IDLE_EXIT_VAR: &str = "MSBW_SESSION_SERVER_IDLE_EXIT";

/// How long a started server may take to answer.
const START_DEADLINE: Duration = Duration::from_secs(30);

fn refused(message: String) -> WrapperError {
    WrapperError::InvalidInput {
        what: "session server directory".into(),
        message,
    }
}

fn uid() -> u32 {
    rustix::process::getuid().as_raw()
}

/// The runtime directory, created if missing and checked to be private to this user.
pub(crate) fn runtime_dir() -> Result<PathBuf, WrapperError> {
    let dir = match std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        Some(base) => PathBuf::from(base).join("msbw"),
        None => std::env::temp_dir().join(format!("msbw-{}", uid())),
    };
    match DirBuilder::new().mode(0o700).create(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(refused(format!("cannot create {}: {e}", dir.display()))),
    }
    let meta = std::fs::symlink_metadata(&dir).map_err(|e| refused(format!("{}: {e}", dir.display())))?;
    if !meta.file_type().is_dir() {
        return Err(refused(format!(
            "{} is not a directory: refusing to use it",
            dir.display()
        )));
    }
    if meta.uid() != uid() {
        return Err(refused(format!(
            "{} belongs to uid {}, not to you (uid {}): refusing to use it",
            dir.display(),
            meta.uid(),
            uid()
        )));
    }
    if meta.mode() & 0o077 != 0 {
        return Err(refused(format!(
            "{} is open to other users (mode {:o}): refusing to use it; make it 0700",
            dir.display(),
            meta.mode() & 0o777
        )));
    }
    Ok(dir)
}

/// Refuses a socket path that exists and is not a socket of this user.
fn check_socket(socket: &Path) -> Result<(), WrapperError> {
    match std::fs::symlink_metadata(socket) {
        Err(_) => Ok(()),
        Ok(meta) if !meta.file_type().is_socket() => Err(refused(format!(
            "{} is not a socket: refusing to use it",
            socket.display()
        ))),
        Ok(meta) if meta.uid() != uid() => Err(refused(format!(
            "{} belongs to uid {}, not to you (uid {}): refusing to connect",
            socket.display(),
            meta.uid(),
            uid()
        ))),
        Ok(_) => Ok(()),
    }
}

/// Opens (creating it mode 0600) a file of the private directory, never through a link.
fn private_file(path: &Path, truncate: bool) -> std::io::Result<std::fs::File> {
    OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(truncate)
        .mode(0o600)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(path)
}

fn answers(socket: &Path) -> bool {
    UnixStream::connect(socket).is_ok()
}

/// The socket of the running per-user server; if none answers, `None` unless `start`, when one
/// is started (detached). Blocking.
pub(crate) fn ensure(global: &Global, session_timeout: Duration, start: bool) -> Result<Option<PathBuf>, WrapperError> {
    let dir = runtime_dir()?;
    let socket = dir.join("server.sock");
    check_socket(&socket)?;
    if answers(&socket) {
        return Ok(Some(socket));
    }
    if !start {
        return Ok(None);
    }
    let lock_path = dir.join("server.lock");
    let lock =
        private_file(&lock_path, false).map_err(|e| refused(format!("cannot open {}: {e}", lock_path.display())))?;
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive)
        .map_err(|e| refused(format!("cannot lock {}: {e}", lock_path.display())))?;
    // Another msbw may have started it while this one waited for the lock.
    check_socket(&socket)?;
    if answers(&socket) {
        return Ok(Some(socket));
    }
    launch(global, &dir, &socket, session_timeout)?;
    Ok(Some(socket))
}

/// Starts `msbw serve --unix` in its own process group and waits until it answers.
fn launch(global: &Global, dir: &Path, socket: &Path, session_timeout: Duration) -> Result<(), WrapperError> {
    let failed = |message: String| WrapperError::Internal { message, source: None };
    let idle = match std::env::var(IDLE_EXIT_VAR) {
        Ok(v) => v
            .trim()
            .parse::<u64>()
            .ok()
            .filter(|s| (1..=86_400).contains(s))
            .ok_or_else(|| WrapperError::InvalidInput {
                what: IDLE_EXIT_VAR.into(),
                message: format!("{v:?} is not a number of seconds from 1 to 86400"),
            })?,
        Err(_) => session_timeout.as_secs().clamp(1, 86_400),
    };
    let exe = std::env::current_exe().map_err(|e| failed(format!("cannot find the msbw executable: {e}")))?;
    let log_path = dir.join("server.log");
    let log = private_file(&log_path, true).map_err(|e| failed(format!("cannot open {}: {e}", log_path.display())))?;
    let mut command = Command::new(exe);
    command
        .arg("serve")
        .arg("--unix")
        .arg(socket)
        .arg("--idle-exit")
        .arg(idle.to_string());
    match &global.env_file {
        Some(file) => {
            let file = file.canonicalize().unwrap_or_else(|_| file.clone());
            command.arg("--env-file").arg(file);
        }
        None => {
            command.arg("--no-env-file");
        }
    }
    if let Some(backend) = &global.backend {
        command.arg("--backend").arg(backend);
    }
    // Its own process group: Ctrl-C in this terminal does not reach it.
    command
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .process_group(0);
    let mut child = command
        .spawn()
        .map_err(|e| failed(format!("cannot start the session server: {e}")))?;
    let deadline = Instant::now() + START_DEADLINE;
    let mut pause = Duration::from_millis(5);
    loop {
        if answers(socket) {
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(5).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            return Err(failed(format!(
                "the session server exited ({status}) before answering: {}",
                tail.join(" / ")
            )));
        }
        if Instant::now() >= deadline {
            return Err(failed(format!(
                "the session server did not answer within {} s (its log: {})",
                START_DEADLINE.as_secs(),
                log_path.display()
            )));
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}
