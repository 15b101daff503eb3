//! The JSON shapes of the microsandbox server 0.2.6, exactly as the real server reads and writes
//! them (`shared/spec/microsandbox-server-protocol.md`), and nothing of our domain.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The JSON-RPC method names.
pub(crate) mod method {
    pub(crate) const START: &str = "sandbox.start";
    pub(crate) const STOP: &str = "sandbox.stop";
    pub(crate) const METRICS: &str = "sandbox.metrics.get";
    pub(crate) const REPL_RUN: &str = "sandbox.repl.run";
    pub(crate) const COMMAND_RUN: &str = "sandbox.command.run";
}

/// The RPC route, relative to the server URL.
pub(crate) const RPC_PATH: &str = "/api/v1/rpc";
/// The health route, relative to the server URL.
pub(crate) const HEALTH_PATH: &str = "/api/v1/health";
/// The server refuses request bodies over 2 MiB with a plain-text 413.
pub(crate) const MAX_REQUEST_BYTES: usize = 2 * 1024 * 1024;

/// One JSON-RPC 2.0 request.
#[derive(Debug, Serialize)]
pub(crate) struct RpcRequest<'a, P> {
    pub(crate) jsonrpc: &'static str,
    pub(crate) method: &'a str,
    pub(crate) params: P,
    pub(crate) id: u64,
}

/// `sandbox.start` params.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct StartParams {
    pub(crate) sandbox: String,
    pub(crate) namespace: String,
    pub(crate) config: StartConfig,
}

/// `sandbox.start` `config`: always complete, since a start with `image` replaces the whole
/// stored entry (defence 6).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct StartConfig {
    pub(crate) image: String,
    pub(crate) memory: u32,
    pub(crate) cpus: u8,
    pub(crate) volumes: Vec<String>,
    pub(crate) envs: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) shell: Option<String>,
}

/// `sandbox.stop` params.
#[derive(Debug, Serialize)]
pub(crate) struct StopParams<'a> {
    pub(crate) sandbox: &'a str,
    pub(crate) namespace: &'a str,
}

/// `sandbox.metrics.get` params; `sandbox` is sent as `null` when absent, like real clients.
#[derive(Debug, Serialize)]
pub(crate) struct MetricsParams<'a> {
    pub(crate) namespace: &'a str,
    pub(crate) sandbox: Option<&'a str>,
}

/// `sandbox.repl.run` params.
#[derive(Debug, Serialize)]
pub(crate) struct ReplParams<'a> {
    pub(crate) sandbox: &'a str,
    pub(crate) namespace: &'a str,
    pub(crate) language: &'a str,
    pub(crate) code: &'a str,
    pub(crate) timeout: u64,
}

/// `sandbox.command.run` params.
#[derive(Debug, Serialize)]
pub(crate) struct CommandParams<'a> {
    pub(crate) sandbox: &'a str,
    pub(crate) namespace: &'a str,
    pub(crate) command: &'a str,
    pub(crate) args: &'a [String],
    pub(crate) timeout: u64,
}

/// A line of output of a forwarded call.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub(crate) struct OutputLine {
    pub(crate) stream: String,
    pub(crate) text: String,
}

/// `sandbox.repl.run` result. `status` is always `success` on 0.2.6, so it decides nothing.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct ReplResult {
    #[serde(default)]
    #[allow(dead_code, reason = "read for Debug only: it is always \"success\"")]
    pub(crate) status: Option<String>,
    pub(crate) output: Vec<OutputLine>,
}

/// `sandbox.command.run` result.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct CommandResult {
    pub(crate) exit_code: i32,
    pub(crate) output: Vec<OutputLine>,
}

/// `sandbox.metrics.get` result.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct MetricsResult {
    pub(crate) sandboxes: Vec<SandboxStatus>,
}

/// One sandbox of a metrics result. Every sandbox the namespace ever configured is listed,
/// failed and stopped ones included; the usages are `null` when it is not running.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct SandboxStatus {
    #[serde(default)]
    pub(crate) namespace: Option<String>,
    pub(crate) name: String,
    pub(crate) running: bool,
    #[serde(default)]
    pub(crate) cpu_usage: Option<f64>,
    #[serde(default)]
    pub(crate) memory_usage: Option<f64>,
    #[serde(default)]
    pub(crate) disk_usage: Option<f64>,
}

/// What `sandbox.start` answered (a string on success; see [`StartAnswer::parse`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StartAnswer {
    /// `Sandbox NAME started successfully`: the process is spawned (not yet ready).
    Started,
    /// Anything else, in particular `... timed out waiting for it to be fully running ...` and
    /// `... couldn't verify it's running: ...`: the state is unknown and must be confirmed.
    Uncertain(String),
}

impl StartAnswer {
    /// Classifies the result string. Only the exact success sentence counts as started.
    pub(crate) fn parse(name: &str, text: &str) -> StartAnswer {
        if text.trim() == format!("Sandbox {name} started successfully") {
            StartAnswer::Started
        } else {
            StartAnswer::Uncertain(text.to_owned())
        }
    }
}

/// The health answer. Old servers send only `{"message": ...}`; a server may announce extra
/// abilities in `capabilities` (our own `msbw serve` does), which are read leniently: anything
/// missing or of the wrong type counts as "not supported".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct HealthAnswer {
    pub(crate) message: Option<String>,
    pub(crate) read_only_volumes: bool,
}

impl HealthAnswer {
    /// Reads a health body that is known to be JSON.
    pub(crate) fn from_json(value: &Value) -> HealthAnswer {
        HealthAnswer {
            message: value.get("message").and_then(Value::as_str).map(str::to_owned),
            read_only_volumes: value
                .get("capabilities")
                .and_then(|c| c.get("read_only_volumes"))
                .and_then(Value::as_bool)
                .unwrap_or(false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn metrics_params_send_a_null_sandbox() {
        let p = MetricsParams {
            namespace: "*",
            sandbox: None,
        };
        assert_eq!(
            serde_json::to_value(&p).unwrap(),
            json!({"namespace": "*", "sandbox": null})
        );
    }

    #[test]
    fn start_answers_are_classified() {
        assert_eq!(
            StartAnswer::parse("sb", "Sandbox sb started successfully"),
            StartAnswer::Started
        );
        for text in [
            "Sandbox sb was started, but timed out waiting for it to be fully running. It may still be initializing.",
            "Sandbox sb was started, but couldn't verify it's running: boom",
            "Sandbox other started successfully",
            "",
        ] {
            assert!(
                matches!(StartAnswer::parse("sb", text), StartAnswer::Uncertain(_)),
                "{text}"
            );
        }
    }

    #[test]
    fn health_answers_are_read_leniently() {
        let old = HealthAnswer::from_json(&json!({"message": "Service is healthy"}));
        assert_eq!(old.message.as_deref(), Some("Service is healthy"));
        assert!(!old.read_only_volumes);
        let new = HealthAnswer::from_json(&json!({"message": "ok", "capabilities": {"read_only_volumes": true}}));
        assert!(new.read_only_volumes);
        for odd in [
            json!({"capabilities": {"read_only_volumes": "yes"}}),
            json!({"capabilities": ["read_only_volumes"]}),
            json!({"capabilities": null}),
            json!([1, 2]),
            json!("text"),
        ] {
            assert!(!HealthAnswer::from_json(&odd).read_only_volumes, "{odd}");
        }
    }

    #[test]
    fn real_results_deserialize() {
        // Verbatim from the real server 0.2.6 (see /work/krun-standin/NOTES.md).
        let repl: ReplResult = serde_json::from_value(
            json!({"language":"python","output":[{"stream":"stdout","text":"42"}],"status":"success"}),
        )
        .unwrap();
        assert_eq!(repl.output[0].text, "42");
        let cmd: CommandResult = serde_json::from_value(json!({"args":["-c","echo hello; exit 3"],"command":"sh","exit_code":3,"output":[{"stream":"stdout","text":"hello"}],"success":false})).unwrap();
        assert_eq!(cmd.exit_code, 3);
        let metrics: MetricsResult = serde_json::from_value(json!({"sandboxes":[
            {"cpu_usage":0.0,"disk_usage":92,"memory_usage":4,"name":"sb1","namespace":"default","running":true},
            {"cpu_usage":null,"disk_usage":null,"memory_usage":null,"name":"sb2","namespace":"default","running":false}
        ]}))
        .unwrap();
        assert_eq!(metrics.sandboxes.len(), 2);
        assert_eq!(metrics.sandboxes[0].memory_usage, Some(4.0));
        assert_eq!(metrics.sandboxes[1].disk_usage, None);
    }
}
