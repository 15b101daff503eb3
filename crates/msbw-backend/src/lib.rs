//! The transport-agnostic interface between the session manager and whatever makes sandboxes.
//!
//! A backend knows how to start, check, use and stop one sandbox; it knows nothing of sessions,
//! limits or cleanup policy, which belong to the manager. The required trait,
//! [`SandboxBackend`], is small and object-safe; conveniences live in [`SandboxBackendExt`],
//! implemented for every backend.
//!
//! Features:
//! - `mock`: [`MockSandboxBackend`], a mockall mock of the trait, and [`fake::FakeBackend`], an
//!   in-memory backend with counters and fault injection, for other crates' tests.
//! - `conformance`: [`conformance`], the checks every backend must pass.

mod error;
pub mod files;
pub mod stream;
mod types;

#[cfg(feature = "conformance")]
pub mod conformance;
#[cfg(any(test, feature = "mock"))]
pub mod fake;

use std::fmt::Debug;

use async_trait::async_trait;

pub use error::{BackendError, ErrorKind, Operation};
pub use files::{FileEntry, FileErrorKind, FileKind};
pub use msbw_config::VolumeMapping;
pub use stream::{ExecEvent, ExecStream};
pub use types::{
    Aftermath, Capabilities, CodeRequest, CommandRequest, ExecOutput, ExecStatus, Health, ListFilter, MAX_NAME_LEN,
    SandboxId, SandboxInfo, SandboxSpec, Template, UnknownTemplate, is_valid_name,
};

/// Something that makes sandboxes: the microsandbox server, local processes, or your own.
///
/// Contract (checked by the [`conformance`] suite):
/// - `start` starts a sandbox from a validated spec and returns once it can run code; starting
///   a name that is already running fails with [`ErrorKind::AlreadyExists`]; an invalid spec fails
///   with [`ErrorKind::InvalidInput`] and creates nothing.
/// - `run_code` runs code in the sandbox's persistent REPL: state persists across calls, calls
///   run one at a time. An exception is a result with [`ExecStatus::Raised`], not an error; so is a
///   timeout ([`ExecStatus::TimedOut`]), which says what became of the sandbox.
/// - `run_command` runs a program directly (no shell); a non-zero exit code is a result.
/// - Output is returned **verbatim**: stdout and stderr as the program wrote them, nothing
///   trimmed or added (where a transport carries lines, each line is followed by `\n`). The
///   session manager normalises for callers (trailing white space trimmed); a backend never does.
/// - Calls on a stopped or unknown sandbox fail with [`ErrorKind::NotFound`].
/// - `stop` is idempotent: stopping a stopped sandbox succeeds.
/// - `list` returns the running sandboxes that pass the filter.
/// - `run_code_stream` / `run_command_stream` yield the output as it is written, then the same
///   result the buffered call returns (see [`stream`]); dropping the stream cancels the
///   execution. Their default implementations run the buffered call and send its output as one
///   chunk per stream, so a backend that does not stream needs nothing more.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait SandboxBackend: Send + Sync + Debug + 'static {
    /// A short name for messages and logs (`microsandbox`, `local`, ...).
    fn name(&self) -> &'static str;

    /// What this backend can do. It may ask the backend (a server may announce abilities).
    /// The default is [`Capabilities::basic`]: both templates and nothing else.
    async fn capabilities(&self) -> Capabilities {
        Capabilities::basic()
    }

    /// Whether the backend is up.
    async fn health(&self) -> Result<Health, BackendError>;

    /// Starts a sandbox and waits until it can run code.
    async fn start(&self, spec: &SandboxSpec) -> Result<(), BackendError>;

    /// Stops a sandbox and everything running in it.
    async fn stop(&self, id: &SandboxId) -> Result<(), BackendError>;

    /// Runs code in the sandbox's persistent REPL.
    async fn run_code(&self, id: &SandboxId, request: &CodeRequest) -> Result<ExecOutput, BackendError>;

    /// Runs a command in the sandbox.
    async fn run_command(&self, id: &SandboxId, request: &CommandRequest) -> Result<ExecOutput, BackendError>;

    /// The running sandboxes that pass the filter, with their resource use.
    async fn list(&self, filter: &ListFilter) -> Result<Vec<SandboxInfo>, BackendError>;

    // --- Streaming (output as it happens). Both methods have buffered defaults; a backend that
    // --- streams natively overrides them and says so in `Capabilities::streaming`.

    /// Runs code like [`run_code`](Self::run_code), yielding its output as it is written, then
    /// [`ExecEvent::Finished`]. Errors that [`run_code`](Self::run_code) would return before
    /// running anything may come from this call or as the stream's first item. The default runs
    /// `run_code` and sends its output as one chunk per stream ([`stream::buffered`]).
    async fn run_code_stream(&self, id: &SandboxId, request: &CodeRequest) -> Result<ExecStream, BackendError> {
        Ok(stream::buffered(self.run_code(id, request).await?))
    }

    /// Runs a command like [`run_command`](Self::run_command), yielding its output as it is
    /// written, then [`ExecEvent::Finished`]. The default runs `run_command` and sends its output
    /// as one chunk per stream.
    async fn run_command_stream(&self, id: &SandboxId, request: &CommandRequest) -> Result<ExecStream, BackendError> {
        Ok(stream::buffered(self.run_command(id, request).await?))
    }

    // --- End of streaming.
    // ---- Files (see [`files`]) ----
    // Defaults run POSIX `sh` commands through `run_command` ([`files::commands`]), so every
    // backend has them; a backend with native file access overrides all four and sets
    // `Capabilities::native_files`. Paths are checked with [`files::check_path`] (no `..`);
    // failures of the file itself are [`ErrorKind::File`], a gone sandbox [`ErrorKind::NotFound`].

    /// Writes `data` to `path` in the sandbox, replacing the file; missing parent folders are
    /// created. Files larger than [`files::MAX_FILE_BYTES`] are refused.
    async fn write_file(&self, id: &SandboxId, path: &str, data: &[u8]) -> Result<(), BackendError> {
        files::commands::write(self, id, path, data).await
    }

    /// Reads the regular file `path`; one larger than `max_bytes` (at most
    /// [`files::MAX_FILE_BYTES`]) is refused with [`FileErrorKind::TooLarge`] before it is read.
    async fn read_file(&self, id: &SandboxId, path: &str, max_bytes: u64) -> Result<Vec<u8>, BackendError> {
        files::commands::read(self, id, path, max_bytes).await
    }

    /// Lists the folder `path`, sorted by name, links not followed; at most
    /// [`files::MAX_LIST_ENTRIES`] entries.
    async fn list_files(&self, id: &SandboxId, path: &str) -> Result<Vec<FileEntry>, BackendError> {
        files::commands::list(self, id, path).await
    }

    /// Removes the file or symbolic link `path` (a folder is refused).
    async fn remove_file(&self, id: &SandboxId, path: &str) -> Result<(), BackendError> {
        files::commands::remove(self, id, path).await
    }
    // ---- end of files ----
}

/// Conveniences built on [`SandboxBackend`], available on every backend.
#[async_trait]
pub trait SandboxBackendExt: SandboxBackend {
    /// Whether the sandbox is running.
    async fn is_running(&self, id: &SandboxId) -> Result<bool, BackendError> {
        Ok(self.list(&ListFilter::sandbox(id)).await?.iter().any(|s| s.id == *id))
    }

    /// Checks a spec against the rules every backend shares and against this backend's
    /// capabilities, so that an unsupported request fails before anything is created.
    async fn check_supported(&self, spec: &SandboxSpec) -> Result<(), BackendError> {
        spec.validate()?;
        let caps = self.capabilities().await;
        let unsupported = |message: String| {
            Err(BackendError::new(ErrorKind::Unsupported, Operation::Start, message)
                .with_backend(self.name())
                .with_sandbox(&spec.id))
        };
        if !caps.templates.contains(&spec.template) {
            return unsupported(format!(
                "the {} backend cannot start {} sandboxes",
                self.name(),
                spec.template
            ));
        }
        if let Some(v) = spec.volumes.iter().find(|v| v.read_only)
            && !caps.read_only_volumes
        {
            return unsupported(format!(
                "the {} backend cannot mount {} read-only, and mounting it writable would break the promise; \
                 drop the :ro suffix or use a backend that supports read-only volumes (local, or msbw serve)",
                self.name(),
                v.host_path
            ));
        }
        Ok(())
    }
}

impl<T: SandboxBackend + ?Sized> SandboxBackendExt for T {}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn check_supported_refuses_read_only_volumes_on_a_backend_without_them() {
        let mut mock = MockSandboxBackend::new();
        mock.expect_name().return_const("mock");
        mock.expect_capabilities().returning(Capabilities::basic);
        let mut spec = SandboxSpec::new(SandboxId::new("default", "s").unwrap(), Template::Python);
        spec.volumes
            .push(VolumeMapping::read_only("/data", "/sandbox/data").unwrap());
        let err = mock.check_supported(&spec).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unsupported);
        assert!(err.to_string().contains("cannot mount /data read-only"), "{err}");
        spec.volumes[0].read_only = false;
        mock.check_supported(&spec).await.unwrap();
    }

    #[tokio::test]
    async fn check_supported_refuses_templates_the_backend_lacks() {
        let mut mock = MockSandboxBackend::new();
        mock.expect_name().return_const("mock");
        mock.expect_capabilities()
            .returning(|| Capabilities::basic().with_templates(vec![Template::Python]));
        let spec = SandboxSpec::new(SandboxId::new("default", "s").unwrap(), Template::Node);
        let err = mock.check_supported(&spec).await.unwrap_err();
        assert!(err.to_string().contains("cannot start node sandboxes"), "{err}");
    }

    #[tokio::test]
    async fn is_running_looks_for_the_sandbox_in_the_listing() {
        let id = SandboxId::new("default", "s").unwrap();
        let listed = id.clone();
        let mut mock = MockSandboxBackend::new();
        mock.expect_list().returning(move |_| {
            Ok(vec![SandboxInfo {
                id: listed.clone(),
                cpu_percent: None,
                memory_mb: None,
                disk_bytes: None,
            }])
        });
        assert!(mock.is_running(&id).await.unwrap());
        assert!(
            !mock
                .is_running(&SandboxId::new("default", "other").unwrap())
                .await
                .unwrap()
        );
    }

    #[test]
    fn the_trait_is_object_safe_and_the_mock_is_debug() {
        let backend: Box<dyn SandboxBackend> = Box::new(MockSandboxBackend::new());
        assert!(format!("{backend:?}").contains("Mock"));
    }
}
