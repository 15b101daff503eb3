//! Files in and out of a sandbox: the types, the limits, the path rules, and the command-based
//! implementation every backend gets by default.
//!
//! The default ([`commands`]) needs nothing but `run_command` and, inside the sandbox, a POSIX
//! `sh` with `base64`, `dd` and `wc` (coreutils or busybox; the microsandbox images have them).
//! Paths travel as arguments (`sh -c SCRIPT sh PATH ...`), never inside the script's text; data
//! travels base64-encoded in arguments of bounded size, so no command line exceeds
//! [`commands::MAX_ARGS_BYTES`]; reads go in bounded chunks. A backend with native file access
//! overrides the four trait methods and says so with [`crate::Capabilities::native_files`].

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{BackendError, ErrorKind, Operation};

/// The largest file any transfer moves, in bytes (reads and writes alike).
pub const MAX_FILE_BYTES: u64 = 256 * 1024 * 1024;

/// The most entries one listing returns; a larger folder is an error, not a silent cut.
pub const MAX_LIST_ENTRIES: usize = 10_000;

/// The longest path accepted, in bytes.
pub const MAX_PATH_BYTES: usize = 4096;

/// Why a file operation failed, beyond the sandbox being gone (that is [`ErrorKind::NotFound`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum FileErrorKind {
    /// No file or folder at that path.
    NotFound,
    /// The sandbox may not do this there (permissions, a read-only volume or file system).
    PermissionDenied,
    /// The file is larger than the limit of the call.
    TooLarge,
    /// The path names something other than a regular file (a folder, a FIFO, a device, ...).
    NotAFile,
    /// The path (or one of its parents) is not a folder.
    NotADirectory,
    /// The path is refused before anything is done: empty, a NUL byte, a `..` component, too long.
    InvalidPath,
}

impl FileErrorKind {
    /// A short description, as shown in messages.
    pub const fn describe(self) -> &'static str {
        match self {
            FileErrorKind::NotFound => "file not found",
            FileErrorKind::PermissionDenied => "permission denied",
            FileErrorKind::TooLarge => "file too large",
            FileErrorKind::NotAFile => "not a regular file",
            FileErrorKind::NotADirectory => "not a folder",
            FileErrorKind::InvalidPath => "invalid path",
        }
    }
}

impl FileErrorKind {
    /// The name on the wire (`not_found`, `permission_denied`, ...), as serde writes it.
    pub const fn as_str(self) -> &'static str {
        match self {
            FileErrorKind::NotFound => "not_found",
            FileErrorKind::PermissionDenied => "permission_denied",
            FileErrorKind::TooLarge => "too_large",
            FileErrorKind::NotAFile => "not_a_file",
            FileErrorKind::NotADirectory => "not_a_directory",
            FileErrorKind::InvalidPath => "invalid_path",
        }
    }

    /// The kind named `name` on the wire; unknown names are `None`.
    pub fn from_name(name: &str) -> Option<Self> {
        [
            FileErrorKind::NotFound,
            FileErrorKind::PermissionDenied,
            FileErrorKind::TooLarge,
            FileErrorKind::NotAFile,
            FileErrorKind::NotADirectory,
            FileErrorKind::InvalidPath,
        ]
        .into_iter()
        .find(|k| k.as_str() == name)
    }
}

impl fmt::Display for FileErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.describe())
    }
}

/// What a listed entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum FileKind {
    /// A regular file.
    File,
    /// A folder.
    Dir,
    /// A symbolic link (not followed).
    Symlink,
    /// Anything else: a FIFO, a socket, a device.
    Other,
}

impl FileKind {
    /// The name on the wire (`file`, `dir`, `symlink`, `other`).
    pub const fn as_str(self) -> &'static str {
        match self {
            FileKind::File => "file",
            FileKind::Dir => "dir",
            FileKind::Symlink => "symlink",
            FileKind::Other => "other",
        }
    }

    /// The kind named `name`; unknown names are [`FileKind::Other`].
    pub fn from_name(name: &str) -> Self {
        match name {
            "file" => FileKind::File,
            "dir" => FileKind::Dir,
            "symlink" => FileKind::Symlink,
            _ => FileKind::Other,
        }
    }
}

/// One entry of a folder listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// The entry's name inside the folder.
    pub name: String,
    /// Its path: the listed folder's path joined with the name.
    pub path: String,
    /// What it is.
    pub kind: FileKind,
    /// Its size in bytes (regular files; 0 for the rest).
    pub size: u64,
    /// Its permission bits (`0o644`), when the backend knows them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<u32>,
}

/// An error of kind [`ErrorKind::File`] about `path`.
pub fn file_error(kind: FileErrorKind, operation: Operation, path: &str, detail: impl fmt::Display) -> BackendError {
    BackendError::new(ErrorKind::File(kind), operation, format!("{}: {detail}", shown(path)))
}

/// A path as messages show it (quoted, cut to a readable length).
pub fn shown(path: &str) -> String {
    let mut cut: String = path.chars().take(200).collect();
    if cut.len() < path.len() {
        cut.push_str("...");
    }
    format!("{cut:?}")
}

/// Checks a path every backend accepts: not empty, no NUL byte, no `..` component, at most
/// [`MAX_PATH_BYTES`]. Relative paths are relative to the sandbox's working folder. `folder`
/// allows a trailing `/` (a listing); a file path may not end with one.
pub fn check_path(path: &str, operation: Operation, folder: bool) -> Result<(), BackendError> {
    let invalid = |why: &str| Err(file_error(FileErrorKind::InvalidPath, operation, path, why));
    if path.is_empty() {
        return invalid("the path is empty");
    }
    if path.len() > MAX_PATH_BYTES {
        return invalid(&format!("the path is longer than {MAX_PATH_BYTES} bytes"));
    }
    if path.contains('\0') {
        return invalid("the path contains a NUL byte");
    }
    if path.split('/').any(|c| c == "..") {
        return invalid("`..` components are refused; give the path from the sandbox's root or working folder");
    }
    if !folder && (path.ends_with('/') || path.split('/').next_back() == Some(".")) {
        return invalid("a file path must name a file, not end with `/` or `.`");
    }
    Ok(())
}

/// Checks a write of `len` bytes to `path` before anything is sent: the path rules of
/// [`check_path`] and [`MAX_FILE_BYTES`].
pub fn check_write(path: &str, len: usize) -> Result<(), BackendError> {
    let op = Operation::WriteFile;
    check_path(path, op, false)?;
    if len as u64 > MAX_FILE_BYTES {
        return Err(file_error(
            FileErrorKind::TooLarge,
            op,
            path,
            format!("{len} bytes is more than the limit of {MAX_FILE_BYTES}"),
        ));
    }
    Ok(())
}

/// `dir` joined with `name`, as listings report paths.
pub fn join(dir: &str, name: &str) -> String {
    if dir.ends_with('/') {
        format!("{dir}{name}")
    } else {
        format!("{dir}/{name}")
    }
}

pub mod commands {
    //! The command-based implementation of the file methods: POSIX `sh` scripts run through
    //! [`SandboxBackend::run_command`], with the path and data as arguments.

    use std::time::Duration;

    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;

    use super::{FileEntry, FileErrorKind, FileKind, MAX_FILE_BYTES, MAX_LIST_ENTRIES, check_path, file_error, join};
    use crate::{
        BackendError, CommandRequest, ErrorKind, ExecOutput, ExecStatus, Operation, SandboxBackend, SandboxId,
    };

    /// Raw bytes per base64 argument of a write (encodes to exactly 64 KiB, under Linux's
    /// 128 KiB limit for one argument).
    pub const WRITE_ARG_BYTES: usize = 48 * 1024;
    /// Arguments of data per write command.
    pub const WRITE_ARGS_PER_COMMAND: usize = 8;
    /// The most argument bytes one command carries (well under `ARG_MAX` and the manager's and
    /// the microsandbox server's request limits).
    pub const MAX_ARGS_BYTES: usize = WRITE_ARGS_PER_COMMAND * WRITE_ARG_BYTES * 4 / 3 + 8192;
    /// Raw bytes one read command returns (about 350 KB of base64 output: the microsandbox
    /// server loses the end of larger outputs now and then).
    pub const READ_BYTES_PER_COMMAND: u64 = 256 * 1024;
    /// How often a read whose output came back short is asked for.
    pub const READ_ATTEMPTS: usize = 3;
    /// The line that follows the output of a reading script.
    pub(super) const END: &str = "--msbw-end--";
    /// What a reading script prints after its output: the end line, then 72 KiB of zeros as
    /// base64 (96 KiB of `A` lines) that may be lost. The microsandbox server 0.2.6 answers a
    /// command when its process exits and drops the lines its readers had not passed on yet;
    /// those sit in the pipe (64 KiB) and in one reader's buffer (8 KiB). A script whose last
    /// write came back has had all but those 72 KiB read, so everything up to the end line
    /// is in the answer.
    pub(super) const TAIL: &str =
        "\nprintf '\\n%s\\n' --msbw-end--; dd if=/dev/zero bs=1024 count=72 2>/dev/null | base64";
    /// How long one command of a transfer may run.
    pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

    const READ_BLOCK: u64 = 64 * 1024;

    // Exit codes of the scripts: 3 not found, 4 not a regular file, 5 permission denied,
    // 6 not a folder, 7 too many entries, 9 a tool is missing.
    const PRELUDE: &str = "command -v base64 >/dev/null 2>&1 || exit 9; ";

    /// The checks before a write of `$1` (a regular file or nothing there; its folder made).
    pub const WRITE_CHECKS: &str = r#"f=$1
if [ -L "$f" ] || [ -e "$f" ]; then [ -f "$f" ] || exit 4; fi
case $f in */*) d=${f%/*}; [ -n "$d" ] || d=/;; *) d=.;; esac
if [ ! -d "$d" ]; then
  if [ -e "$d" ] || [ -L "$d" ]; then exit 6; fi
  mkdir -p -- "$d" 2>/dev/null || exit 5
fi
"#;

    /// The checks before a read of `$1` at most `$2` bytes long.
    pub const READ_CHECKS: &str = r#"f=$1
[ -e "$f" ] || exit 3
[ -f "$f" ] || exit 4
s=$(wc -c < "$f" 2>/dev/null) || exit 5
[ "$s" -le "$2" ] || exit 7
"#;

    const WRITE: &str = r#"mode=$2; shift 2
if [ "$mode" = new ]; then { : > "$f"; } 2>/dev/null || exit 5; fi
for c; do printf %s "$c" | base64 -d 2>/dev/null >> "$f" || exit 5; done"#;

    const SIZE: &str = r#"f=$1
[ -e "$f" ] || exit 3
[ -f "$f" ] || exit 4
wc -c < "$f" 2>/dev/null || exit 5"#;

    const READ: &str = r#"dd if="$1" bs=$2 skip=$3 count=$4 2>/dev/null | base64"#;

    const LIST: &str = r#"d=$1
[ -e "$d" ] || [ -L "$d" ] || exit 3
[ -d "$d" ] || exit 6
cd -- "$d" 2>/dev/null || exit 5
n=0
for f in * .*; do
  case $f in .|..) continue;; esac
  [ -e "$f" ] || [ -L "$f" ] || continue
  n=$((n+1)); [ "$n" -gt "$2" ] && exit 7
  s=0
  if [ -L "$f" ]; then k=l; elif [ -d "$f" ]; then k=d; elif [ -f "$f" ]; then k=f; s=$(wc -c < "$f" 2>/dev/null) || s=0; else k=o; fi
  printf '%s %s %s/' "$k" $s "$f"
done"#;

    const REMOVE: &str = r#"f=$1
[ -e "$f" ] || [ -L "$f" ] || exit 3
if [ -d "$f" ] && [ ! -L "$f" ]; then exit 4; fi
rm -f -- "$f" 2>/dev/null
if [ -e "$f" ] || [ -L "$f" ]; then exit 5; fi"#;

    /// One file operation's commands: the sandbox they run in, the operation and the path they
    /// are about.
    struct On<'a, B: ?Sized> {
        backend: &'a B,
        id: &'a SandboxId,
        operation: Operation,
        path: &'a str,
    }

    impl<'a, B: SandboxBackend + ?Sized> On<'a, B> {
        fn new(backend: &'a B, id: &'a SandboxId, operation: Operation, path: &'a str) -> Self {
            On {
                backend,
                id,
                operation,
                path,
            }
        }

        /// Runs `script` with the path and `args` as its arguments.
        async fn sh(&self, script: &str, args: Vec<String>) -> Result<ExecOutput, BackendError> {
            let mut argv = vec![
                "-c".to_owned(),
                format!("{PRELUDE}{}{script}", if script == WRITE { WRITE_CHECKS } else { "" }),
                "sh".to_owned(),
                self.path.to_owned(),
            ];
            argv.extend(args);
            let request = CommandRequest {
                command: "sh".into(),
                args: argv,
                timeout: COMMAND_TIMEOUT,
            };
            let out = self
                .backend
                .run_command(self.id, &request)
                .await
                .map_err(|e| retag(e, self.operation))?;
            check_outcome(self.backend.name(), self.id, self.operation, self.path, &out)?;
            Ok(out)
        }

        /// Runs a script that only reads and returns its output, asked for again when the end
        /// line did not come back (its output was cut short).
        async fn sh_read(&self, script: &str, args: Vec<String>) -> Result<String, BackendError> {
            let script = format!("{script}{TAIL}");
            for _ in 0..READ_ATTEMPTS {
                let out = self.sh(&script, args.clone()).await?;
                if let Some(output) = before_end(&out.stdout) {
                    return Ok(output.to_owned());
                }
            }
            Err(BackendError::new(
                ErrorKind::Protocol,
                self.operation,
                format!(
                    "the output of a file command on {} was cut short {READ_ATTEMPTS} times",
                    super::shown(self.path)
                ),
            )
            .with_backend(self.backend.name())
            .with_sandbox(self.id))
        }
    }

    /// The output before the end line, if the end line is there (the last one: the output
    /// before it is the sandbox's and may hold anything).
    pub(super) fn before_end(stdout: &str) -> Option<&str> {
        let marker = format!("\n{END}");
        let mut rest = stdout;
        while let Some(at) = rest.rfind(&marker) {
            let after = &stdout[at + marker.len()..];
            if after.is_empty() || after.starts_with('\n') || after.starts_with("\r\n") {
                return Some(&stdout[..at]);
            }
            rest = &stdout[..at];
        }
        None
    }

    /// The outcome of one of the file scripts as a typed error (exit codes: 3 not found, 4 not
    /// a regular file, 5 permission denied, 6 not a folder, 7 too large, 9 no `base64`), for
    /// backends that run such scripts their own way.
    pub fn check_outcome(
        backend: &'static str,
        id: &SandboxId,
        operation: Operation,
        path: &str,
        out: &ExecOutput,
    ) -> Result<(), BackendError> {
        let fail = |kind: ErrorKind, message: String| {
            Err(BackendError::new(kind, operation, message)
                .with_backend(backend)
                .with_sandbox(id))
        };
        if let ExecStatus::TimedOut { after, .. } = out.status {
            let took = after.as_secs();
            return fail(
                ErrorKind::Timeout,
                format!("a file command on {} took more than {took} s", super::shown(path)),
            );
        }
        let kind = match out.exit_code {
            Some(0) => return Ok(()),
            Some(3) => FileErrorKind::NotFound,
            Some(4) => FileErrorKind::NotAFile,
            Some(5) => FileErrorKind::PermissionDenied,
            Some(6) => FileErrorKind::NotADirectory,
            Some(7) => FileErrorKind::TooLarge,
            Some(9) => {
                return fail(
                    ErrorKind::Unsupported,
                    "the sandbox has no `base64` program, which file transfers over commands need".into(),
                );
            }
            code => {
                let stderr: String = out.stderr.chars().take(300).collect();
                return fail(
                    ErrorKind::Internal,
                    format!(
                        "the file command on {} failed (exit code {code:?}): {}",
                        super::shown(path),
                        stderr.trim()
                    ),
                );
            }
        };
        let detail = match kind {
            FileErrorKind::TooLarge if operation == Operation::ListFiles => {
                format!("the folder has more than {MAX_LIST_ENTRIES} entries")
            }
            _ => kind.describe().to_owned(),
        };
        Err(file_error(kind, operation, path, detail)
            .with_backend(backend)
            .with_sandbox(id))
    }

    /// Keeps the error (its kind decides what the manager does) but names the file operation.
    fn retag(e: BackendError, operation: Operation) -> BackendError {
        if e.operation() == operation {
            return e;
        }
        let mut out = BackendError::new(e.kind(), operation, e.message().to_owned()).with_retryable(e.is_retryable());
        if let Some(b) = e.backend() {
            out = out.with_backend(b);
        }
        if let Some(s) = e.sandbox() {
            out = out.with_sandbox(&s.clone());
        }
        if e.is_unsent() {
            out = out.unsent();
        }
        out.with_source(e)
    }

    /// Writes `data` to `path` (replacing it; missing parent folders are created).
    pub async fn write<B: SandboxBackend + ?Sized>(
        backend: &B,
        id: &SandboxId,
        path: &str,
        data: &[u8],
    ) -> Result<(), BackendError> {
        let op = Operation::WriteFile;
        let on = On::new(backend, id, op, path);
        super::check_write(path, data.len())?;
        let per_command = WRITE_ARG_BYTES * WRITE_ARGS_PER_COMMAND;
        let mut first = true;
        let mut chunks = data.chunks(per_command).peekable();
        if chunks.peek().is_none() {
            on.sh(WRITE, vec!["new".into()]).await?;
            return Ok(());
        }
        for chunk in chunks {
            let mut args = vec![if first { "new" } else { "append" }.to_owned()];
            args.extend(chunk.chunks(WRITE_ARG_BYTES).map(|c| STANDARD.encode(c)));
            on.sh(WRITE, args).await?;
            first = false;
        }
        Ok(())
    }

    /// Reads `path`, refusing files larger than `max_bytes`.
    pub async fn read<B: SandboxBackend + ?Sized>(
        backend: &B,
        id: &SandboxId,
        path: &str,
        max_bytes: u64,
    ) -> Result<Vec<u8>, BackendError> {
        let op = Operation::ReadFile;
        let on = On::new(backend, id, op, path);
        check_path(path, op, false)?;
        let max_bytes = max_bytes.min(MAX_FILE_BYTES);
        let out = on.sh_read(SIZE, Vec::new()).await?;
        let size: u64 = out.trim().parse().map_err(|_| {
            BackendError::new(
                ErrorKind::Protocol,
                op,
                format!("the size of {} came back as {:?}", super::shown(path), out.trim()),
            )
        })?;
        if size > max_bytes {
            return Err(file_error(
                FileErrorKind::TooLarge,
                op,
                path,
                format!("{size} bytes is more than the limit of {max_bytes}"),
            ));
        }
        let mut data = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        let blocks = READ_BYTES_PER_COMMAND / READ_BLOCK;
        let mut skip = 0u64;
        while (data.len() as u64) < size {
            let expected = usize::try_from(READ_BYTES_PER_COMMAND.min(size - data.len() as u64)).unwrap_or(0);
            let args = vec![READ_BLOCK.to_string(), skip.to_string(), blocks.to_string()];
            // Output that lost its end is asked for again (`sh_read`); a chunk still short
            // after that is an error, never a silent cut.
            let out = on.sh_read(READ, args).await?;
            let text: String = out.chars().filter(|c| !c.is_ascii_whitespace()).collect();
            let chunk = STANDARD.decode(text.as_bytes()).map_err(|e| {
                BackendError::new(
                    ErrorKind::Protocol,
                    op,
                    format!("the sandbox sent invalid base64 for {}", super::shown(path)),
                )
                .with_source(e)
            })?;
            if chunk.is_empty() {
                break; // the file shrank while it was read
            }
            if chunk.len() < expected {
                return Err(BackendError::new(
                    ErrorKind::Protocol,
                    op,
                    format!(
                        "reading {} at byte {}: {} bytes came back, {expected} expected (the file changed while it was read)",
                        super::shown(path),
                        data.len(),
                        chunk.len()
                    ),
                ));
            }
            data.extend_from_slice(&chunk[..expected]);
            skip += blocks;
        }
        Ok(data)
    }

    /// Lists the folder `path` (entries not followed; sizes of regular files).
    pub async fn list<B: SandboxBackend + ?Sized>(
        backend: &B,
        id: &SandboxId,
        path: &str,
    ) -> Result<Vec<FileEntry>, BackendError> {
        let op = Operation::ListFiles;
        let on = On::new(backend, id, op, path);
        check_path(path, op, true)?;
        let out = on.sh_read(LIST, vec![MAX_LIST_ENTRIES.to_string()]).await?;
        let mut entries = Vec::new();
        let records: Vec<&str> = out.split('/').collect();
        // The last piece follows the last `/`: empty, or the newline a line transport adds.
        for record in &records[..records.len().saturating_sub(1)] {
            let mut parts = record.splitn(3, ' ');
            let (Some(kind), Some(size), Some(name)) = (parts.next(), parts.next(), parts.next()) else {
                return Err(BackendError::new(
                    ErrorKind::Protocol,
                    op,
                    format!("the listing of {} has a malformed entry", super::shown(path)),
                ));
            };
            // A line transport may put the newline of the previous line in front.
            let kind = kind.trim_start_matches('\n');
            let kind = match kind {
                "f" => FileKind::File,
                "d" => FileKind::Dir,
                "l" => FileKind::Symlink,
                _ => FileKind::Other,
            };
            entries.push(FileEntry {
                name: name.to_owned(),
                path: join(path, name),
                kind,
                size: size.trim().parse().unwrap_or(0),
                mode: None,
            });
        }
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(entries)
    }

    /// Removes the file (or symbolic link) `path`; folders are refused.
    pub async fn remove<B: SandboxBackend + ?Sized>(
        backend: &B,
        id: &SandboxId,
        path: &str,
    ) -> Result<(), BackendError> {
        let op = Operation::RemoveFile;
        let on = On::new(backend, id, op, path);
        check_path(path, op, false)?;
        on.sh(REMOVE, Vec::new()).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_with_dot_dot_nul_or_nothing_are_refused() {
        for bad in [
            "",
            "../etc/passwd",
            "/sandbox/../../etc",
            "a/..",
            "a\0b",
            "dir/",
            "dir/.",
        ] {
            let err = check_path(bad, Operation::ReadFile, false).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::File(FileErrorKind::InvalidPath), "{bad:?}");
        }
        assert!(check_path(&"a".repeat(MAX_PATH_BYTES + 1), Operation::ReadFile, false).is_err());
        for good in ["/sandbox/a.txt", "a..b", "rel/x", "-dash", ".hidden"] {
            check_path(good, Operation::WriteFile, false).unwrap();
        }
        check_path("/sandbox/", Operation::ListFiles, true).unwrap();
        check_path(".", Operation::ListFiles, true).unwrap();
    }

    #[test]
    fn the_output_ends_at_the_last_end_line_and_a_missing_end_line_is_noticed() {
        use commands::before_end;
        assert!(commands::TAIL.contains(commands::END));
        assert_eq!(before_end("12\n\n--msbw-end--\nAAAA\nAA"), Some("12\n"));
        assert_eq!(before_end("\n--msbw-end--"), Some(""));
        assert_eq!(
            before_end("f 0 a\n--msbw-end--/\n--msbw-end--\r\nAAA"),
            Some("f 0 a\n--msbw-end--/")
        );
        assert_eq!(before_end("f 0 a\n--msbw-end--x/"), None);
        assert_eq!(before_end("QUJD\nQUJD\n"), None, "cut before the end line");
        assert_eq!(before_end(""), None);
    }

    #[test]
    fn the_write_arguments_stay_under_the_bounds() {
        assert_eq!(base64_len(commands::WRITE_ARG_BYTES), 64 * 1024);
        const { assert!(commands::MAX_ARGS_BYTES < 1024 * 1024) };
    }

    fn base64_len(n: usize) -> usize {
        n.div_ceil(3) * 4
    }
}
