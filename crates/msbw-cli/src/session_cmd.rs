//! `msbw session list|stop|stats` and `msbw cp`, over the server that owns the sessions.
//!
//! `cp` goes through commands in the session (`sh`, `dd`, `base64`), until the file API lands:
//! files up to [`MAX_COPY_BYTES`], sent and fetched in chunks of [`CHUNK_BYTES`], paths passed
//! as arguments (never spliced into the script), written to a temporary name and renamed, so
//! that an interrupted copy leaves no half file under the destination's name.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use microsandbox_wrapper::{MicrosandboxWrapper, SandboxInfo, WrapperConfig, WrapperError};
use serde::Serialize;

use crate::cli::{CpArgs, Global, SessionCommand};
use crate::exec::Ended;
use crate::out::{outln, usage};
use crate::session_client::{Remote, with_remote};
use crate::{exit, print_error};

/// The largest file `msbw cp` copies.
pub(crate) const MAX_COPY_BYTES: u64 = 32 * 1024 * 1024;
/// The size of one chunk of `msbw cp` (raw bytes; 4/3 of it as base64 in one argument, under
/// Linux's 128 KiB limit of one argument).
const CHUNK_BYTES: usize = 48 * 1024;

/// A session as `msbw session list --json` and `stats` print it.
#[derive(Debug, Serialize)]
struct Row<'a> {
    session: &'a str,
    namespace: &'a str,
    cpu_percent: Option<f32>,
    memory_mb: Option<u64>,
    disk_bytes: Option<u64>,
}

impl<'a> From<&'a SandboxInfo> for Row<'a> {
    fn from(s: &'a SandboxInfo) -> Self {
        Row {
            session: &s.id.name,
            namespace: &s.id.namespace,
            cpu_percent: s.cpu_percent,
            memory_mb: s.memory_mb,
            disk_bytes: s.disk_bytes,
        }
    }
}

fn finish<T>(ended: Ended<T>, json: bool, ok: impl FnOnce(T) -> u8) -> u8 {
    match ended {
        Ended::Done(Ok(v)) => ok(v),
        Ended::Done(Err(e)) => {
            print_error(&e, json);
            exit::for_error(&e)
        }
        Ended::Signalled(code) => code,
    }
}

/// `msbw session ...`.
pub(crate) async fn run(config: WrapperConfig, command: SessionCommand, global: &Global) -> u8 {
    let json = global.json;
    match command {
        SessionCommand::List | SessionCommand::Stats => {
            let stats = matches!(command, SessionCommand::Stats);
            let ended = with_remote(config, global, async |remote| match remote {
                Some(r) => r.list().await,
                None => Ok(Vec::new()),
            })
            .await;
            finish(ended, json, |list| {
                print_sessions(&list, json, stats);
                exit::OK
            })
        }
        SessionCommand::Stop { id } => {
            let ended = with_remote(config, global, async |remote| match remote {
                Some(r) => r.stop(&id).await,
                None => Ok(false),
            })
            .await;
            finish(ended, json, |stopped| {
                if stopped {
                    if json {
                        outln!("{}", serde_json::json!({ "session": id, "stopped": true }));
                    }
                    exit::OK
                } else {
                    let e = WrapperError::SessionNotFound { session_id: id };
                    print_error(&e, json);
                    exit::SESSION
                }
            })
        }
    }
}

fn print_sessions(list: &[SandboxInfo], json: bool, stats: bool) {
    if json {
        let rows: Vec<Row<'_>> = list.iter().map(Row::from).collect();
        outln!("{}", serde_json::to_string(&rows).unwrap_or_default());
        return;
    }
    if !stats {
        for s in list {
            outln!("{}", s.id.name);
        }
        return;
    }
    let dash = || "-".to_owned();
    outln!(
        "{:<24} {:>8} {:>12} {:>14}",
        "SESSION",
        "CPU %",
        "MEMORY MiB",
        "DISK BYTES"
    );
    for s in list {
        outln!(
            "{:<24} {:>8} {:>12} {:>14}",
            s.id.name,
            s.cpu_percent.map(|c| format!("{c:.1}")).unwrap_or_else(dash),
            s.memory_mb.map(|m| m.to_string()).unwrap_or_else(dash),
            s.disk_bytes.map(|d| d.to_string()).unwrap_or_else(dash)
        );
    }
}

/// One side of a copy.
#[derive(Debug, PartialEq, Eq)]
enum Place {
    Local(PathBuf),
    Session { id: String, path: String },
}

/// `SESSION:/PATH` is in a session (SESSION a valid session id, PATH absolute); anything else,
/// `./a:b` included, is a local path.
fn place(arg: &str) -> Place {
    match arg.split_once(':') {
        Some((id, path)) if microsandbox_wrapper::backend::is_valid_name(id) && path.starts_with('/') => {
            Place::Session {
                id: id.to_owned(),
                path: path.to_owned(),
            }
        }
        _ => Place::Local(PathBuf::from(arg)),
    }
}

/// `msbw cp SRC DST`.
pub(crate) async fn cp(config: WrapperConfig, args: CpArgs, global: &Global) -> u8 {
    let json = global.json;
    let timeout = match args.timeout {
        None => config.default_execution_timeout,
        Some(t) if t.is_finite() && t > 0.0 && t <= MicrosandboxWrapper::MAX_TIMEOUT.as_secs_f64() => {
            Duration::from_secs_f64(t)
        }
        Some(t) => return usage(&format!("--timeout {t} is not a valid number of seconds"), json),
    };
    let (from, to) = (place(&args.source), place(&args.destination));
    let ended = match (from, to) {
        (Place::Local(local), Place::Session { id, path }) => {
            with_remote(config, global, async |remote| {
                let remote = remote.ok_or_else(|| WrapperError::SessionNotFound { session_id: id.clone() })?;
                upload(remote, &local, &id, &path, timeout).await
            })
            .await
        }
        (Place::Session { id, path }, Place::Local(local)) => {
            with_remote(config, global, async |remote| {
                let remote = remote.ok_or_else(|| WrapperError::SessionNotFound { session_id: id.clone() })?;
                download(remote, &id, &path, &local, timeout).await
            })
            .await
        }
        _ => {
            return usage(
                "one side of `msbw cp` must be SESSION:/PATH and the other a local path",
                json,
            );
        }
    };
    finish(ended, json, |bytes| {
        if json {
            outln!("{}", serde_json::json!({ "copied_bytes": bytes }));
        }
        exit::OK
    })
}

fn copy_error(message: String) -> WrapperError {
    WrapperError::InvalidInput {
        what: "copy".into(),
        message,
    }
}

/// Runs `sh -c SCRIPT sh ARGS...` in the session; its stdout, or an error with its stderr.
async fn shell(
    remote: &Remote,
    id: &str,
    script: &str,
    args: &[&str],
    timeout: Duration,
) -> Result<String, WrapperError> {
    let mut argv = vec!["-c".to_owned(), script.to_owned(), "sh".to_owned()];
    argv.extend(args.iter().map(|a| (*a).to_owned()));
    let out = remote.command_in(id, "sh", argv, timeout).await?;
    if out.success() {
        Ok(out.stdout)
    } else {
        Err(copy_error(format!(
            "in session {id:?}: {}",
            out.stderr.trim().lines().last().unwrap_or("the copy step failed")
        )))
    }
}

/// Copies a local file into the session; returns its size.
async fn upload(remote: &Remote, local: &Path, id: &str, path: &str, timeout: Duration) -> Result<u64, WrapperError> {
    let meta = std::fs::metadata(local).map_err(|e| copy_error(format!("{}: {e}", local.display())))?;
    if !meta.is_file() {
        return Err(copy_error(format!("{} is not a regular file", local.display())));
    }
    if meta.len() > MAX_COPY_BYTES {
        return Err(copy_error(format!(
            "{} is {} bytes; msbw cp copies at most {MAX_COPY_BYTES}",
            local.display(),
            meta.len()
        )));
    }
    let data = std::fs::read(local).map_err(|e| copy_error(format!("{}: {e}", local.display())))?;
    let part = format!("{path}.msbw-cp-part");
    let sent = async {
        shell(remote, id, r#": > "$1""#, &[&part], timeout).await?;
        for chunk in data.chunks(CHUNK_BYTES) {
            let text = STANDARD.encode(chunk);
            shell(
                remote,
                id,
                r#"printf %s "$2" | base64 -d >> "$1""#,
                &[&part, &text],
                timeout,
            )
            .await?;
        }
        shell(remote, id, r#"mv -f "$1" "$2""#, &[&part, path], timeout).await
    }
    .await;
    if let Err(e) = sent {
        // Best effort: no half file is left under the temporary name either.
        let _ = shell(remote, id, r#"rm -f "$1""#, &[&part], timeout).await;
        return Err(e);
    }
    Ok(data.len() as u64)
}

/// Copies a file of the session to a local path (into it, if it is a directory); returns its
/// size.
async fn download(remote: &Remote, id: &str, path: &str, local: &Path, timeout: Duration) -> Result<u64, WrapperError> {
    let size = shell(
        remote,
        id,
        r#"test -f "$1" || { echo "$1: not a regular file" >&2; exit 1; }; wc -c < "$1""#,
        &[path],
        timeout,
    )
    .await?;
    let size: u64 = size
        .trim()
        .parse()
        .map_err(|_| copy_error(format!("in session {id:?}: cannot read the size of {path}")))?;
    if size > MAX_COPY_BYTES {
        return Err(copy_error(format!(
            "{path} is {size} bytes; msbw cp copies at most {MAX_COPY_BYTES}"
        )));
    }
    let target = if local.is_dir() {
        let name = Path::new(path)
            .file_name()
            .ok_or_else(|| copy_error(format!("{path} names no file")))?;
        local.join(name)
    } else {
        local.to_path_buf()
    };
    let dir = match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut part = Part::create_in(&dir)?;
    let blocks = (size as usize).div_ceil(CHUNK_BYTES);
    let mut written = 0u64;
    for block in 0..blocks {
        let text = shell(
            remote,
            id,
            r#"dd if="$1" bs="$2" skip="$3" count=1 2>/dev/null | base64"#,
            &[path, &CHUNK_BYTES.to_string(), &block.to_string()],
            timeout,
        )
        .await?;
        let compact: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
        let bytes = STANDARD
            .decode(compact)
            .map_err(|e| copy_error(format!("in session {id:?}: a chunk of {path} came back damaged: {e}")))?;
        written += bytes.len() as u64;
        if written > size {
            return Err(copy_error(format!("{path} grew while it was copied")));
        }
        part.file
            .write_all(&bytes)
            .map_err(|e| copy_error(format!("{}: {e}", part.path.display())))?;
    }
    if written != size {
        return Err(copy_error(format!("{path} changed size while it was copied")));
    }
    part.persist(&target)?;
    Ok(size)
}

/// A download in progress: a new file in the destination's folder (mode 0600, a unique name),
/// removed unless it is renamed to the destination.
struct Part {
    path: PathBuf,
    file: std::fs::File,
    kept: bool,
}

impl Part {
    fn create_in(dir: &Path) -> Result<Part, WrapperError> {
        use std::os::unix::fs::OpenOptionsExt;
        for n in 0..100u32 {
            let path = dir.join(format!(".msbw-cp-{}-{n}", std::process::id()));
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
            {
                Ok(file) => {
                    return Ok(Part {
                        path,
                        file,
                        kept: false,
                    });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(copy_error(format!("{}: {e}", dir.display()))),
            }
        }
        Err(copy_error(format!(
            "cannot create a temporary file in {}",
            dir.display()
        )))
    }

    fn persist(mut self, target: &Path) -> Result<(), WrapperError> {
        self.file
            .flush()
            .map_err(|e| copy_error(format!("{}: {e}", self.path.display())))?;
        std::fs::rename(&self.path, target).map_err(|e| copy_error(format!("{}: {e}", target.display())))?;
        self.kept = true;
        Ok(())
    }
}

impl Drop for Part {
    fn drop(&mut self) {
        if !self.kept {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_side_needs_a_valid_id_and_an_absolute_path() {
        assert_eq!(
            place("a:/tmp/x"),
            Place::Session {
                id: "a".into(),
                path: "/tmp/x".into()
            }
        );
        assert_eq!(place("./a:b"), Place::Local("./a:b".into()));
        assert_eq!(place("a:rel"), Place::Local("a:rel".into()));
        assert_eq!(place("/abs/x"), Place::Local("/abs/x".into()));
    }
}
