//! Files in and out of a local sandbox, done by the sandbox itself: a `sh` inside it (its
//! mounts, its user, its Landlock rules, its view of links) checks the path and then `cat`s the
//! bytes from or to a pipe the backend holds. So `:ro` volumes refuse writes, a link planted by
//! the sandbox's code resolves inside the sandbox, files belong to whom the sandbox's code would
//! make them belong, and no host-side path resolution exists that could be led astray. The
//! bytes travel raw (no base64) in one command per transfer; reads are bounded on the host.
//! Listing and removing use the trait's command scripts (`msbw_backend::files::commands`).

use msbw_backend::files::{self, FileErrorKind, MAX_FILE_BYTES, commands, file_error};
use msbw_backend::{BackendError, CommandRequest, Operation, SandboxId};

use crate::backend::LocalBackend;
use crate::sandbox::RawIo;

const WRITE: &str = r#"{ cat > "$f"; } 2>/dev/null || exit 5"#;
const READ: &str = r#"exec cat -- "$f""#;

impl LocalBackend {
    async fn file_command(
        &self,
        id: &SandboxId,
        operation: Operation,
        path: &str,
        script: String,
        args: Vec<String>,
        raw: RawIo,
    ) -> Result<Option<Vec<u8>>, BackendError> {
        let sandbox = self.sandbox(id).map_err(|e| e.into_backend(operation, Some(id)))?;
        let mut argv = vec!["-c".to_owned(), script, "sh".to_owned(), path.to_owned()];
        argv.extend(args);
        let request = CommandRequest {
            command: "sh".into(),
            args: argv,
            timeout: commands::COMMAND_TIMEOUT * 5,
        };
        let (out, stdout) = sandbox
            .run_command_io(&request, raw)
            .await
            .map_err(|e| e.into_backend(operation, Some(id)))?;
        commands::check_outcome("local", id, operation, path, &out)?;
        Ok(stdout)
    }

    pub(crate) async fn write_in(&self, id: &SandboxId, path: &str, data: &[u8]) -> Result<(), BackendError> {
        let op = Operation::WriteFile;
        files::check_write(path, data.len())?;
        let script = format!("{}{WRITE}", commands::WRITE_CHECKS);
        let raw = RawIo {
            input: Some(data.to_vec()),
            max_stdout: None,
        };
        self.file_command(id, op, path, script, Vec::new(), raw).await?;
        Ok(())
    }

    pub(crate) async fn read_in(&self, id: &SandboxId, path: &str, max: u64) -> Result<Vec<u8>, BackendError> {
        let op = Operation::ReadFile;
        files::check_path(path, op, false)?;
        let max = max.min(MAX_FILE_BYTES);
        let script = format!("{}{READ}", commands::READ_CHECKS);
        let raw = RawIo {
            input: None,
            max_stdout: Some(usize::try_from(max).unwrap_or(usize::MAX)),
        };
        let result = self
            .file_command(id, op, path, script, vec![max.to_string()], raw)
            .await;
        match result {
            Err(e) if e.file_kind() == Some(FileErrorKind::TooLarge) => Err(file_error(
                FileErrorKind::TooLarge,
                op,
                path,
                format!("the file is larger than the limit of {max} bytes"),
            )),
            Err(e) => Err(e),
            // The file grew between the check and the read.
            Ok(Some(data)) if data.len() as u64 > max => Err(file_error(
                FileErrorKind::TooLarge,
                op,
                path,
                format!("the file grew past the limit of {max} bytes while it was read"),
            )),
            Ok(data) => Ok(data.unwrap_or_default()),
        }
    }
}
