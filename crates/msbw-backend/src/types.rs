//! The backend's domain types: what a sandbox is made from, what is run in it, and what comes back.
//! These are not the wire format of any backend.

use std::fmt;
use std::time::Duration;

use msbw_config::VolumeMapping;
use serde::{Serialize, Serializer};

use crate::{BackendError, ErrorKind, Operation};

/// The longest sandbox or namespace name the microsandbox server accepts.
pub const MAX_NAME_LEN: usize = 63;

/// Whether `name` satisfies the server's rule for sandbox and namespace names:
/// `[A-Za-z0-9][A-Za-z0-9_-]{0,62}`.
pub fn is_valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && name.len() <= MAX_NAME_LEN
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Which sandbox a call is about: its namespace and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct SandboxId {
    /// The namespace, e.g. `default`.
    pub namespace: String,
    /// The sandbox's name, unique within its namespace.
    pub name: String,
}

impl SandboxId {
    /// A checked id: both parts must satisfy [`is_valid_name`].
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Result<Self, BackendError> {
        let id = SandboxId {
            namespace: namespace.into(),
            name: name.into(),
        };
        id.validate(Operation::Start)?;
        Ok(id)
    }

    /// Checks both parts against the server's naming rule, blaming `operation`.
    pub fn validate(&self, operation: Operation) -> Result<(), BackendError> {
        for (what, value) in [("namespace", &self.namespace), ("sandbox name", &self.name)] {
            if !is_valid_name(value) {
                return Err(BackendError::new(
                    ErrorKind::InvalidInput,
                    operation,
                    format!(
                        "invalid {what} {value:?}: use 1 to 63 letters, digits, '-' or '_', starting with a letter or digit"
                    ),
                ));
            }
        }
        Ok(())
    }
}

impl fmt::Display for SandboxId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

pub use msbw_config::{Template, UnknownTemplate};

/// Everything needed to start one sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxSpec {
    /// Where the sandbox lives and what it is called.
    pub id: SandboxId,
    /// Which interpreter its REPL runs.
    pub template: Template,
    /// An image to use instead of the backend's image for the template, if the backend has images.
    pub image: Option<String>,
    /// Memory limit in MiB.
    pub memory_mb: u32,
    /// Number of CPUs.
    pub cpus: u8,
    /// Host folders mapped into the sandbox.
    pub volumes: Vec<VolumeMapping>,
    /// Environment variables of every process in the sandbox, as `(name, value)`.
    pub env: Vec<(String, String)>,
    /// How long the start may take, readiness included.
    pub start_timeout: Duration,
}

impl SandboxSpec {
    /// A spec with the small flavor's resources (1024 MiB, 1 CPU), no volumes and a 180 s timeout.
    pub fn new(id: SandboxId, template: Template) -> Self {
        SandboxSpec {
            id,
            template,
            image: None,
            memory_mb: 1024,
            cpus: 1,
            volumes: Vec::new(),
            env: Vec::new(),
            start_timeout: Duration::from_secs(180),
        }
    }

    /// Checks what every backend needs before anything is sent or created: the names, the
    /// resources, the volume paths and the environment variable names.
    pub fn validate(&self) -> Result<(), BackendError> {
        let invalid = |message: String| {
            Err(BackendError::new(ErrorKind::InvalidInput, Operation::Start, message).with_sandbox(&self.id))
        };
        self.id.validate(Operation::Start)?;
        if self.memory_mb == 0 {
            return invalid("memory must be at least 1 MiB".into());
        }
        if self.cpus == 0 {
            return invalid("cpus must be at least 1".into());
        }
        if self.start_timeout.is_zero() {
            return invalid("the start timeout must be more than zero".into());
        }
        for v in &self.volumes {
            if v.to_string().parse::<VolumeMapping>().as_ref() != Ok(v) {
                return invalid(format!(
                    "invalid volume mapping {v}: paths must be absolute and normalised"
                ));
            }
        }
        for (name, value) in &self.env {
            let ok_name = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !ok_name {
                return invalid(format!("invalid environment variable name {name:?}"));
            }
            if value.contains('\0') {
                return invalid(format!("environment variable {name} contains a NUL byte"));
            }
        }
        if let Some(image) = &self.image
            && (image.is_empty() || image.chars().any(|c| c.is_whitespace() || c.is_control()))
        {
            return invalid(format!("invalid image {image:?}"));
        }
        Ok(())
    }
}

/// Code to run in a sandbox's persistent REPL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeRequest {
    /// The REPL's language.
    pub language: Template,
    /// The source code.
    pub code: String,
    /// How long the execution may run.
    pub timeout: Duration,
}

/// A command to run in a sandbox (executed directly, not by a shell).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandRequest {
    /// The program, looked up on the sandbox's `PATH`.
    pub command: String,
    /// Its arguments.
    pub args: Vec<String>,
    /// How long it may run.
    pub timeout: Duration,
}

/// What became of a sandbox whose execution timed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Aftermath {
    /// The execution was stopped and the sandbox is usable with its state intact.
    Intact,
    /// The execution was stopped by restarting the interpreter: the sandbox is usable, but the
    /// REPL's state (variables, imports) is lost.
    StateLost,
    /// The sandbox may still be busy or broken; it should be replaced.
    Unusable,
}

/// How an execution ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case", tag = "status")]
pub enum ExecStatus {
    /// It ran to the end (a command may still have exited non-zero: see `exit_code`).
    Completed,
    /// The code raised an exception that nothing caught.
    Raised,
    /// It ran out of time and was stopped.
    TimedOut {
        /// The limit it ran into.
        #[serde(serialize_with = "seconds")]
        after: Duration,
        /// What became of the sandbox.
        aftermath: Aftermath,
    },
}

fn seconds<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// The result of running code or a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    /// What it wrote to stdout.
    pub stdout: String,
    /// What it wrote to stderr.
    pub stderr: String,
    /// How it ended.
    pub status: ExecStatus,
    /// The process's exit code (commands only; `None` for code, or when killed by a signal).
    pub exit_code: Option<i32>,
}

impl ExecOutput {
    /// A completed execution with the given output.
    pub fn completed(stdout: impl Into<String>, stderr: impl Into<String>, exit_code: Option<i32>) -> Self {
        ExecOutput {
            stdout: stdout.into(),
            stderr: stderr.into(),
            status: ExecStatus::Completed,
            exit_code,
        }
    }

    /// Whether it completed without an exception and, for commands, with exit code 0.
    pub fn success(&self) -> bool {
        self.status == ExecStatus::Completed && self.exit_code.unwrap_or(0) == 0
    }

    /// Whether it timed out.
    pub fn timed_out(&self) -> bool {
        matches!(self.status, ExecStatus::TimedOut { .. })
    }
}

/// Which sandboxes to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListFilter {
    /// Only this namespace; `None` for every namespace.
    pub namespace: Option<String>,
    /// Only this sandbox.
    pub name: Option<String>,
}

impl ListFilter {
    /// Every sandbox of one namespace.
    pub fn namespace(namespace: impl Into<String>) -> Self {
        ListFilter {
            namespace: Some(namespace.into()),
            name: None,
        }
    }

    /// One sandbox.
    pub fn sandbox(id: &SandboxId) -> Self {
        ListFilter {
            namespace: Some(id.namespace.clone()),
            name: Some(id.name.clone()),
        }
    }

    /// Whether `id` passes the filter.
    pub fn matches(&self, id: &SandboxId) -> bool {
        self.namespace.as_ref().is_none_or(|ns| *ns == id.namespace) && self.name.as_ref().is_none_or(|n| *n == id.name)
    }
}

/// A running sandbox and its resource use.
#[derive(Debug, Clone, PartialEq)]
pub struct SandboxInfo {
    /// Which sandbox.
    pub id: SandboxId,
    /// CPU use in percent of one CPU, if known.
    pub cpu_percent: Option<f32>,
    /// Memory in use in MiB, if known.
    pub memory_mb: Option<u64>,
    /// Disk in use in bytes, if known.
    pub disk_bytes: Option<u64>,
}

/// Builder setters that each set one field: `name(field: Type);` becomes
/// `pub fn name(mut self, field: Type) -> Self`.
macro_rules! setters {
    ($($(#[$doc:meta])* $name:ident($field:ident: $ty:ty);)+) => {
        $(
            $(#[$doc])*
            pub fn $name(mut self, $field: $ty) -> Self {
                self.$field = $field;
                self
            }
        )+
    };
}

/// What a backend can and cannot do, so callers can refuse early with a clear error.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Capabilities {
    /// The templates it can start.
    pub templates: Vec<Template>,
    /// Whether it can mount a volume read-only.
    pub read_only_volumes: bool,
    /// Whether it can stream output while an execution runs.
    pub streaming: bool,
    /// Whether commands in one sandbox may run at the same time.
    pub concurrent_commands: bool,
    /// Whether its listing reports memory and CPU use.
    pub metrics: bool,
    /// Whether sandboxes have no network access (unless configured otherwise).
    pub network_isolated: bool,
    /// Whether the file methods are native; `false`: the command-based defaults of
    /// [`crate::files::commands`] (slower, and they need `sh` and `base64` in the sandbox).
    pub native_files: bool,
}

impl Capabilities {
    /// Both templates and nothing else: the least any backend offers.
    pub fn basic() -> Self {
        Capabilities {
            templates: Template::ALL.to_vec(),
            read_only_volumes: false,
            streaming: false,
            concurrent_commands: false,
            metrics: false,
            network_isolated: false,
            native_files: false,
        }
    }

    setters! {
        /// Sets whether read-only volumes are supported.
        with_read_only_volumes(read_only_volumes: bool);
        /// Sets the templates.
        with_templates(templates: Vec<Template>);
        /// Sets whether output can be streamed.
        with_streaming(streaming: bool);
        /// Sets whether commands may run concurrently in one sandbox.
        with_concurrent_commands(concurrent_commands: bool);
        /// Sets whether listings carry metrics.
        with_metrics(metrics: bool);
        /// Sets whether the file methods are native.
        with_native_files(native_files: bool);
        /// Sets whether sandboxes are cut off from the network.
        with_network_isolated(network_isolated: bool);
    }
}

impl Default for Capabilities {
    fn default() -> Self {
        Capabilities::basic()
    }
}

/// A backend's answer to a health check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    /// What the backend said, for people.
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_servers_rule() {
        let (longest, too_long) = ("a".repeat(63), "a".repeat(64));
        for (name, valid) in [
            ("a", true),
            ("msbw-user_1", true),
            (longest.as_str(), true),
            (too_long.as_str(), false),
            ("-a", false),
            ("_a", false),
            ("a.b", false),
            ("", false),
        ] {
            assert_eq!(is_valid_name(name), valid, "{name:?}");
        }
        let err = SandboxId::new("default", "bad name").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        assert!(err.to_string().contains("invalid sandbox name \"bad name\""), "{err}");
    }

    #[test]
    fn templates_parse_with_aliases() {
        for (text, t) in [
            ("python", Template::Python),
            ("Node", Template::Node),
            ("javascript", Template::Node),
        ] {
            assert_eq!(text.parse(), Ok(t));
        }
        assert_eq!(Template::Node.repl_language(), "nodejs");
        let err = "ruby".parse::<Template>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown template \"ruby\"; expected python, or node (also nodejs, javascript)"
        );
    }

    #[test]
    fn specs_are_validated() {
        let id = SandboxId::new("default", "s1").unwrap();
        let ok = SandboxSpec::new(id.clone(), Template::Python);
        ok.validate().unwrap();
        let mut bad = ok.clone();
        bad.env.push(("1BAD".into(), "x".into()));
        assert_eq!(bad.validate().unwrap_err().kind(), ErrorKind::InvalidInput);
        let mut bad = ok.clone();
        bad.volumes.push(VolumeMapping {
            host_path: "rel".into(),
            container_path: "/c".into(),
            read_only: false,
        });
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .contains("invalid volume mapping")
        );
        let mut bad = ok;
        bad.memory_mb = 0;
        assert!(bad.validate().is_err());
    }

    #[test]
    fn success_needs_completion_and_exit_zero() {
        assert!(ExecOutput::completed("", "", None).success());
        assert!(ExecOutput::completed("", "", Some(0)).success());
        assert!(!ExecOutput::completed("", "", Some(1)).success());
        let raised = ExecOutput {
            status: ExecStatus::Raised,
            ..ExecOutput::completed("", "", None)
        };
        assert!(!raised.success());
    }

    #[test]
    fn filters_match() {
        let id = SandboxId::new("ns", "a").unwrap();
        assert!(ListFilter::default().matches(&id));
        assert!(ListFilter::namespace("ns").matches(&id));
        assert!(!ListFilter::namespace("other").matches(&id));
        assert!(ListFilter::sandbox(&id).matches(&id));
    }
}
