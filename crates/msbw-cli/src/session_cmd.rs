//! `msbw session list|stop|stats` and `msbw cp`, over the server that owns the sessions.
//!
//! `cp` uses the backend's file API (`write_file`, `read_file`): against `msbw serve` (the
//! per-user server included) its `msbw.fs.*` extension, chunked and bounded; against another
//! server, the API's command fallback. A download is written under a temporary name and renamed,
//! so that a failed copy leaves no half file under the destination's name.

use std::io::Write;
use std::path::{Path, PathBuf};

use microsandbox_wrapper::{SandboxInfo, WrapperConfig, WrapperError};
use serde::Serialize;

use crate::cli::{CpArgs, Global, SessionCommand};
use crate::exec::Ended;
use crate::out::{outln, usage};
use crate::session_client::{Remote, with_remote};
use crate::{exit, print_error};

/// The largest file `msbw cp` copies (the file API's own limit).
pub(crate) const MAX_COPY_BYTES: u64 = microsandbox_wrapper::backend::files::MAX_FILE_BYTES;

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
    let (from, to) = (place(&args.source), place(&args.destination));
    let ended = match (from, to) {
        (Place::Local(local), Place::Session { id, path }) => {
            with_remote(config, global, async |remote| {
                let remote = remote.ok_or_else(|| WrapperError::SessionNotFound { session_id: id.clone() })?;
                upload(remote, &local, &id, &path).await
            })
            .await
        }
        (Place::Session { id, path }, Place::Local(local)) => {
            with_remote(config, global, async |remote| {
                let remote = remote.ok_or_else(|| WrapperError::SessionNotFound { session_id: id.clone() })?;
                download(remote, &id, &path, &local).await
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

/// Copies a local file into the session; returns its size.
async fn upload(remote: &Remote, local: &Path, id: &str, path: &str) -> Result<u64, WrapperError> {
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
    remote.write_file(id, path, &data).await?;
    Ok(data.len() as u64)
}

/// Copies a file of the session to a local path (into it, if it is a directory); returns its
/// size.
async fn download(remote: &Remote, id: &str, path: &str, local: &Path) -> Result<u64, WrapperError> {
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
    let bytes = remote.read_file(id, path, MAX_COPY_BYTES).await?;
    let mut part = Part::create_in(&dir)?;
    part.file
        .write_all(&bytes)
        .map_err(|e| copy_error(format!("{}: {e}", part.path.display())))?;
    part.persist(&target)?;
    Ok(bytes.len() as u64)
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
