//! The results of the five methods and the health answer.

use serde::{Deserialize, Serialize};
use serde_json::Number;
use serde_json::value::RawValue;

use crate::envelope::{AnswerError, object};
use crate::output::Output;

/// The result of `sandbox.start` on success.
pub fn started_message(name: &str) -> String {
    format!("Sandbox {name} started successfully")
}

/// The result of `sandbox.stop`.
pub fn stopped_message(name: &str) -> String {
    format!("Sandbox {name} stopped successfully")
}

/// What `sandbox.start` answered (a string on success).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartAnswer {
    /// `Sandbox NAME started successfully`: the process is spawned (not yet ready).
    Started,
    /// Anything else, in particular `... timed out waiting for it to be fully running ...` and
    /// `... couldn't verify it's running: ...`: the state is unknown and must be confirmed.
    Uncertain(String),
}

impl StartAnswer {
    /// Classifies the result string. Only the exact success sentence counts as started.
    pub fn parse(name: &str, text: &str) -> StartAnswer {
        if text.trim() == started_message(name) {
            StartAnswer::Started
        } else {
            StartAnswer::Uncertain(text.to_owned())
        }
    }
}

/// `sandbox.repl.run` result. `status` is always `success` on 0.2.6, so it decides nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplResult {
    /// Always `success`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// The language the code ran as.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    /// The output lines.
    pub output: Output,
}

/// `sandbox.command.run` result; a non-zero exit is a result with `success: false`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandResult {
    /// The program.
    #[serde(default)]
    pub command: String,
    /// Its arguments.
    #[serde(default)]
    pub args: Vec<String>,
    /// Its exit code.
    pub exit_code: i32,
    /// Whether the exit code is 0.
    #[serde(default)]
    pub success: bool,
    /// The output lines.
    pub output: Output,
}

/// `sandbox.metrics.get` result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricsResult {
    /// Every sandbox the namespace ever configured, failed and stopped ones included.
    pub sandboxes: Vec<SandboxStatus>,
}

/// One sandbox of a metrics result; the usages are `null` when it is not running.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SandboxStatus {
    /// Its namespace.
    #[serde(default)]
    pub namespace: Option<String>,
    /// Its name.
    pub name: String,
    /// Whether it runs.
    pub running: bool,
    /// CPU use in percent.
    #[serde(default)]
    pub cpu_usage: Option<Number>,
    /// Memory use in MiB.
    #[serde(default)]
    pub memory_usage: Option<Number>,
    /// Disk use in bytes.
    #[serde(default)]
    pub disk_usage: Option<Number>,
}

impl SandboxStatus {
    /// A row for a sandbox that is not running.
    pub fn stopped(namespace: &str, name: &str) -> SandboxStatus {
        SandboxStatus {
            namespace: Some(namespace.to_owned()),
            name: name.to_owned(),
            running: false,
            cpu_usage: None,
            memory_usage: None,
            disk_usage: None,
        }
    }
}

/// The health answer `msbw serve` gives: the real server's `message`, and what it can do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Health {
    /// `Service is healthy`.
    pub message: &'static str,
    /// `msbw`.
    pub server: &'static str,
    /// Its version.
    pub version: &'static str,
    /// Its extra abilities.
    pub capabilities: Capabilities,
}

/// Extra abilities a server announces in its health answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Capabilities {
    /// `host:guest:ro` volumes are mounted read-only.
    pub read_only_volumes: bool,
    /// The `msbw.fs.*` methods are served (see [`crate::files`]).
    pub files: bool,
    /// The streaming extension ([`crate::stream`]) is served.
    pub streaming: bool,
}

/// A health answer as a client reads it. Old servers send only `{"message": ...}`; anything
/// missing or of the wrong type counts as "not supported".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HealthAnswer {
    /// The message, when it is a string.
    pub message: Option<String>,
    /// Whether read-only volumes are announced.
    pub read_only_volumes: bool,
    /// Whether the `msbw.fs.*` file methods are announced.
    pub files: bool,
    /// Whether the streaming extension is announced.
    pub streaming: bool,
}

#[derive(Deserialize)]
struct RawHealth {
    message: Option<Box<RawValue>>,
    capabilities: Option<Box<RawValue>>,
}

#[derive(Deserialize)]
struct RawCapabilities {
    read_only_volumes: Option<Box<RawValue>>,
    files: Option<Box<RawValue>>,
    streaming: Option<Box<RawValue>>,
}

impl HealthAnswer {
    /// Reads a health body. Pure and bounded: never panics, whatever the bytes.
    pub fn decode(body: &[u8]) -> Result<HealthAnswer, AnswerError> {
        let raw: RawHealth = object(body)?;
        let caps = raw
            .capabilities
            .as_deref()
            .and_then(|c| object::<RawCapabilities>(c.get().as_bytes()).ok());
        let flag = |v: Option<&RawValue>| {
            v.and_then(|v| serde_json::from_str::<bool>(v.get()).ok())
                .unwrap_or(false)
        };
        let read_only_volumes = flag(caps.as_ref().and_then(|c| c.read_only_volumes.as_deref()));
        let files = flag(caps.as_ref().and_then(|c| c.files.as_deref()));
        Ok(HealthAnswer {
            message: raw.message.and_then(|m| serde_json::from_str(m.get()).ok()),
            read_only_volumes,
            files,
            streaming: flag(caps.as_ref().and_then(|c| c.streaming.as_deref())),
        })
    }
}
