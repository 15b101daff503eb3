//! The params of the five methods. One shape serves both sides: the client fills every field
//! it sends; the server reads leniently, as the real one does (unknown fields are ignored).

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A time limit in seconds. Whole seconds go on the wire as an integer (the real server reads
/// an integer); a server reads any number.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Seconds(pub f64);

impl Seconds {
    /// A whole number of seconds.
    pub fn whole(seconds: u64) -> Seconds {
        Seconds(seconds as f64)
    }
}

/// Below this, every whole `f64` is exact as an integer.
const EXACT: f64 = 9_007_199_254_740_992.0;

impl Serialize for Seconds {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let s = self.0;
        if s.fract() == 0.0 && (0.0..EXACT).contains(&s) {
            serializer.serialize_u64(s as u64)
        } else {
            serializer.serialize_f64(s)
        }
    }
}

impl<'de> Deserialize<'de> for Seconds {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Seconds, D::Error> {
        f64::deserialize(deserializer).map(Seconds)
    }
}

impl fmt::Display for Seconds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} s", self.0)
    }
}

/// `sandbox.start` params.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StartParams {
    /// The sandbox name.
    pub sandbox: String,
    /// The namespace.
    pub namespace: String,
    /// The configuration; a start with `image` replaces the sandbox's whole stored entry, so a
    /// client sends it complete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<StartConfig>,
}

/// `sandbox.start` `config`. `scripts`, `exec` and `depends_on` are not read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct StartConfig {
    /// An OCI reference or a host directory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Memory in MiB.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<u32>,
    /// CPUs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpus: Option<u8>,
    /// `host:guest` volume mappings.
    pub volumes: Vec<String>,
    /// `host:guest` port mappings.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<String>,
    /// `K=V` environment entries.
    pub envs: Vec<String>,
    /// The working directory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workdir: Option<String>,
    /// The shell, the entrypoint of last resort.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shell: Option<String>,
}

/// `sandbox.stop` params.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StopParams {
    /// The sandbox name.
    pub sandbox: String,
    /// The namespace.
    pub namespace: String,
}

/// `sandbox.metrics.get` params; an absent `sandbox` is sent as `null`, like real clients do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetricsParams {
    /// The namespace, or `*` for all.
    pub namespace: String,
    /// One sandbox, or all of the namespace.
    #[serde(default)]
    pub sandbox: Option<String>,
}

/// `sandbox.repl.run` params.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplParams {
    /// The sandbox name.
    pub sandbox: String,
    /// The namespace.
    pub namespace: String,
    /// `python`, or `node` / `nodejs` / `javascript`.
    pub language: String,
    /// The code.
    pub code: String,
    /// The agent's time limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Seconds>,
}

/// `sandbox.command.run` params. A missing `command` is the real server's 500, so it is
/// optional here and checked by the server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandParams {
    /// The sandbox name.
    pub sandbox: String,
    /// The namespace.
    pub namespace: String,
    /// The program, run without a shell.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// Its arguments.
    #[serde(default)]
    pub args: Vec<String>,
    /// The agent's time limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Seconds>,
}
