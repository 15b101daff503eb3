//! The local backend of microsandbox-wrapper: sandboxes as isolated process trees on this Linux
//! machine, with no server and no KVM.
//!
//! ```no_run
//! # async fn demo() -> Result<(), msbw_backend::BackendError> {
//! use std::time::Duration;
//! use msbw_backend::{CodeRequest, SandboxBackend, SandboxId, SandboxSpec, Template};
//! use msbw_local::{LocalBackend, LocalConfig};
//!
//! let backend = LocalBackend::new(LocalConfig::default());
//! println!("{}", backend.host_support());
//! let spec = SandboxSpec::new(SandboxId::new("default", "demo")?, Template::Python);
//! backend.start(&spec).await?;
//! let request = CodeRequest {
//!     language: Template::Python,
//!     code: "x = 41\nprint(x + 1)".into(),
//!     timeout: Duration::from_secs(10),
//! };
//! assert_eq!(backend.run_code(&spec.id, &request).await?.stdout, "42\n");
//! backend.stop(&spec.id).await?;
//! # Ok(())
//! # }
//! ```
//!
//! Each sandbox is a *holder* process, pid 1 of new user, mount, pid, ipc, uts and network
//! namespaces, whose root is a read-only view of the host's system directories plus a private
//! writable `/tmp` and work directory and the configured volumes. Code runs in a persistent
//! interpreter (a small driver script per language, spoken to over a socket with length-prefixed
//! JSON frames);
//! commands and the interpreter each run in their own pid namespace inside the sandbox, so a
//! timeout kills everything they started. Programs run without capabilities, under
//! `no_new_privs`, rlimits, Landlock and cgroups where the host has them. What this does and
//! does not protect against is in `docs/backends.md` (local backend): it shares the host's
//! kernel and is not a virtual machine.
//!
//! Linux only.

mod backend;
mod cgroup;
mod child;
mod cleanup;
mod config;
mod error;
mod exec;
mod files;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod holder;
mod ids;
mod interpreter;
mod landlock;
mod launch;
mod launcher;
mod metrics;
mod nosuid;
mod plan;
mod probe;
mod protocol;
mod sandbox;
mod seccomp;
mod spawner;
mod sys;
mod view;
mod volumes;

pub use backend::LocalBackend;
pub use config::LocalConfig;
pub use msbw_config::BackendConfig;
pub use probe::{HostSupport, ProcessLimit};
pub use seccomp::SeccompSummary;
