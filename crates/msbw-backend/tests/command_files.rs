//! The command-based file transfers (the defaults of `write_file`, `read_file`, `list_files`,
//! `remove_file`) against a real `sh`, over a transport that loses the end of command output
//! the way the microsandbox server 0.2.6 does: whatever its readers had not passed on when the
//! process exited, at most the pipe (64 KiB) and one reader's buffer (8 KiB).

#![allow(clippy::unwrap_used)] // test helpers may unwrap

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Mutex;

use async_trait::async_trait;
use msbw_backend::{
    BackendError, CodeRequest, CommandRequest, ErrorKind, ExecOutput, FileKind, Health, ListFilter, Operation,
    SandboxBackend, SandboxId, SandboxInfo, SandboxSpec,
};

/// Runs commands with the real `sh` in a folder of its own; drops the end of stdout as told.
#[derive(Debug)]
struct ShellBackend {
    root: PathBuf,
    loss: Mutex<Loss>,
    calls: Mutex<usize>,
}

#[derive(Debug)]
enum Loss {
    /// Drops nothing.
    None,
    /// Drops between 0 and 72 KiB at the end of every other call's stdout (a fixed sequence).
    Tail(u64),
    /// Drops all but the first few bytes of every call's stdout.
    Everything,
}

impl ShellBackend {
    fn new(loss: Loss) -> ShellBackend {
        let root = std::env::temp_dir().join(format!("msbw-command-files-{}-{}", std::process::id(), rand_suffix()));
        std::fs::create_dir_all(&root).unwrap();
        ShellBackend {
            root,
            loss: Mutex::new(loss),
            calls: Mutex::new(0),
        }
    }

    fn cut(&self, stdout: String) -> String {
        *self.calls.lock().unwrap() += 1;
        let mut loss = self.loss.lock().unwrap();
        let keep = match &mut *loss {
            Loss::None => stdout.len(),
            Loss::Tail(seed) => {
                *seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let lost = if (*seed >> 33) % 2 == 0 {
                    0
                } else {
                    ((*seed >> 20) % (72 * 1024)) as usize
                };
                stdout.len().saturating_sub(lost)
            }
            Loss::Everything => stdout.len().min(3),
        };
        // The transport forwards whole lines only.
        let kept = &stdout[..keep];
        match kept.rfind('\n') {
            Some(end) if keep < stdout.len() => kept[..=end].to_owned(),
            None if keep < stdout.len() => String::new(),
            _ => stdout,
        }
    }
}

impl Drop for ShellBackend {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

fn rand_suffix() -> u64 {
    use std::time::{SystemTime, UNIX_EPOCH};
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64
}

#[async_trait]
impl SandboxBackend for ShellBackend {
    fn name(&self) -> &'static str {
        "shell"
    }

    async fn health(&self) -> Result<Health, BackendError> {
        Ok(Health { message: "ok".into() })
    }

    async fn start(&self, _spec: &SandboxSpec) -> Result<(), BackendError> {
        Ok(())
    }

    async fn stop(&self, _id: &SandboxId) -> Result<(), BackendError> {
        Ok(())
    }

    async fn run_code(&self, _id: &SandboxId, _request: &CodeRequest) -> Result<ExecOutput, BackendError> {
        Err(BackendError::new(
            ErrorKind::Unsupported,
            Operation::RunCode,
            "no code here",
        ))
    }

    async fn run_command(&self, _id: &SandboxId, request: &CommandRequest) -> Result<ExecOutput, BackendError> {
        let out = tokio::process::Command::new(&request.command)
            .args(&request.args)
            .current_dir(&self.root)
            .stdin(Stdio::null())
            .output()
            .await
            .unwrap();
        let stdout = self.cut(String::from_utf8(out.stdout).unwrap());
        Ok(ExecOutput::completed(
            stdout,
            String::from_utf8_lossy(&out.stderr),
            out.status.code(),
        ))
    }

    async fn list(&self, _filter: &ListFilter) -> Result<Vec<SandboxInfo>, BackendError> {
        Ok(Vec::new())
    }
}

fn id() -> SandboxId {
    SandboxId::new("default", "shell").unwrap()
}

/// Bytes that are not text and not a repeating pattern a lost line could hide in.
fn data(len: usize) -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15_u64;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

#[tokio::test]
async fn files_round_trip_over_a_transport_that_loses_the_end_of_the_output() {
    let backend = ShellBackend::new(Loss::Tail(7));
    let id = id();
    // Several read chunks and a short last one, and an empty file.
    let big = data(600 * 1024 + 17);
    backend.write_file(&id, "dir/big.bin", &big).await.unwrap();
    backend.write_file(&id, "dir/empty", b"").await.unwrap();
    backend
        .write_file(&id, "dir/odd\nname --msbw-end--", b"x")
        .await
        .unwrap();
    for _ in 0..3 {
        assert!(backend.read_file(&id, "dir/big.bin", u64::MAX).await.unwrap() == big);
        assert_eq!(backend.read_file(&id, "dir/empty", 10).await.unwrap(), b"");
        let listing = backend.list_files(&id, "dir").await.unwrap();
        let names: Vec<_> = listing.iter().map(|e| (e.name.as_str(), e.kind, e.size)).collect();
        assert_eq!(
            names,
            [
                ("big.bin", FileKind::File, big.len() as u64),
                ("empty", FileKind::File, 0),
                ("odd\nname --msbw-end--", FileKind::File, 1)
            ]
        );
    }
    assert!(*backend.calls.lock().unwrap() > 10);
    backend.remove_file(&id, "dir/big.bin").await.unwrap();
    let err = backend.read_file(&id, "dir/big.bin", 10).await.unwrap_err();
    assert_eq!(
        err.kind(),
        ErrorKind::File(msbw_backend::FileErrorKind::NotFound),
        "{err}"
    );
}

#[tokio::test]
async fn output_that_always_loses_its_end_is_an_error_never_a_short_file() {
    let backend = ShellBackend::new(Loss::None);
    let id = id();
    backend.write_file(&id, "a.bin", &data(300 * 1024)).await.unwrap();
    *backend.loss.lock().unwrap() = Loss::Everything;
    for err in [
        backend.read_file(&id, "a.bin", u64::MAX).await.unwrap_err(),
        backend.list_files(&id, ".").await.unwrap_err(),
    ] {
        assert_eq!(err.kind(), ErrorKind::Protocol, "{err}");
        assert!(err.to_string().contains("was cut short"), "{err}");
    }
}
