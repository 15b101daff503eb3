//! Reading the code of `msbw exec`: from a file (a regular file or a pipe, never a device) or
//! from stdin, never more than the wrapper accepts.

use std::io::Read;
use std::path::Path;

use microsandbox_wrapper::manager::MAX_INPUT_BYTES;

/// Why the code could not be read: a message naming the source and, when exceeded, the limit.
pub(crate) type ReadError = String;

/// Reads a code file: a regular file or a pipe (`-f <(...)`), at most [`MAX_INPUT_BYTES`].
pub(crate) fn read_code_file(path: &Path) -> Result<String, ReadError> {
    use std::os::unix::fs::FileTypeExt;
    let what = path.display().to_string();
    let file = std::fs::File::open(path).map_err(|e| format!("cannot read {what}: {e}"))?;
    let kind = file
        .metadata()
        .map_err(|e| format!("cannot read {what}: {e}"))?
        .file_type();
    if !(kind.is_file() || kind.is_fifo()) {
        return Err(format!("cannot read {what}: not a regular file or a pipe"));
    }
    read_bounded(file, &what)
}

/// Reads the code from stdin (a file, a pipe or a terminal), at most [`MAX_INPUT_BYTES`].
pub(crate) fn read_code_stdin() -> Result<String, ReadError> {
    read_bounded(std::io::stdin().lock(), "stdin")
}

fn read_bounded(reader: impl Read, what: &str) -> Result<String, ReadError> {
    let limit = MAX_INPUT_BYTES as u64;
    let mut bytes = Vec::new();
    reader
        .take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read {what}: {e}"))?;
    if bytes.len() as u64 > limit {
        return Err(format!(
            "cannot read {what}: the code is larger than {MAX_INPUT_BYTES} bytes, the most a call takes"
        ));
    }
    String::from_utf8(bytes).map_err(|_| format!("cannot read {what}: the code is not UTF-8 text"))
}
