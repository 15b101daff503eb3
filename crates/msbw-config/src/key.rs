//! The names of the settings: one enum variant per `MSB_*` environment variable.

use std::fmt;
use std::str::FromStr;

/// One configuration setting, named after its environment variable.
///
/// It parses from and prints to the variable's name (`MSB_SESSION_TIMEOUT`), and knows the
/// matching field (of [`WrapperConfig`](crate::WrapperConfig), or of the owning backend's
/// configuration for [backend settings](ConfigKey::backend)), its default and what it allows, so
/// that errors, documentation and `msbw config check` all speak of settings the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum ConfigKey {
    /// `MSB_SERVER_URL`: URL of the microsandbox server.
    ServerUrl,
    /// `MSB_API_KEY`: API key for the microsandbox server.
    ApiKey,
    /// `MSB_SESSION_TIMEOUT`: idle time after which a session is stopped.
    SessionTimeout,
    /// `MSB_MAX_SESSIONS`: maximum number of concurrent sessions.
    MaxSessions,
    /// `MSB_CLEANUP_INTERVAL`: time between idle-session cleanup passes.
    CleanupInterval,
    /// `MSB_DEFAULT_FLAVOR`: flavor used when a call names none.
    DefaultFlavor,
    /// `MSB_SANDBOX_START_TIMEOUT`: how long a sandbox may take to start.
    SandboxStartTimeout,
    /// `MSB_EXECUTION_TIMEOUT`: default time limit of one execution.
    ExecutionTimeout,
    /// `MSB_MAX_TOTAL_MEMORY_MB`: memory limit across all sessions.
    MaxTotalMemoryMb,
    /// `MSB_SHARED_VOLUME_PATH`: host folders mapped into every sandbox.
    SharedVolumePath,
    /// `MSB_ORPHAN_CLEANUP_INTERVAL`: time between orphan cleanup passes.
    OrphanCleanupInterval,
    /// `MSB_LOG_LEVEL`: log level of the wrapper.
    LogLevel,
    /// `MSB_BACKEND`: which backend makes sandboxes (`auto`, `microsandbox`, `local`).
    Backend,
    /// `MSB_NAMESPACE`: the server namespace this wrapper's sandboxes live in.
    Namespace,
    /// `MSB_OWNER_MARK`: the mark in every sandbox name that says this wrapper owns it.
    OwnerMark,
    /// `MSB_LIMIT_POLICY`: what a call does when a session limit is reached.
    LimitPolicy,
    /// `MSB_LIMIT_WAIT_TIMEOUT`: how long the `wait` policy waits for a free slot.
    LimitWaitTimeout,
    /// `MSB_MAX_CONCURRENT_STARTS`: how many sandboxes may be starting at the same time.
    MaxConcurrentStarts,
    /// `MSB_SHUTDOWN_TIMEOUT`: how long shutdown waits for running executions.
    ShutdownTimeout,
    /// `MSB_WARM_POOL`: sandboxes started ahead, per template and flavor.
    WarmPool,
    /// `MSB_PYTHON_IMAGE`: the image the microsandbox backend starts for the `python` template.
    PythonImage,
    /// `MSB_NODE_IMAGE`: the image the microsandbox backend starts for the `node` template.
    NodeImage,
    /// `MSB_LOCAL_NETWORK`: whether local-backend sandboxes get network access.
    LocalNetwork,
}

impl ConfigKey {
    /// Every key, in the order the configuration guide presents them (extensions last).
    pub const ALL: [ConfigKey; 23] = [
        ConfigKey::ServerUrl,
        ConfigKey::ApiKey,
        ConfigKey::SessionTimeout,
        ConfigKey::MaxSessions,
        ConfigKey::CleanupInterval,
        ConfigKey::DefaultFlavor,
        ConfigKey::SandboxStartTimeout,
        ConfigKey::ExecutionTimeout,
        ConfigKey::MaxTotalMemoryMb,
        ConfigKey::SharedVolumePath,
        ConfigKey::OrphanCleanupInterval,
        ConfigKey::LogLevel,
        ConfigKey::Backend,
        ConfigKey::Namespace,
        ConfigKey::OwnerMark,
        ConfigKey::LimitPolicy,
        ConfigKey::LimitWaitTimeout,
        ConfigKey::MaxConcurrentStarts,
        ConfigKey::ShutdownTimeout,
        ConfigKey::WarmPool,
        ConfigKey::PythonImage,
        ConfigKey::NodeImage,
        ConfigKey::LocalNetwork,
    ];

    /// The environment variable's name, e.g. `MSB_SESSION_TIMEOUT`.
    pub const fn var_name(self) -> &'static str {
        match self {
            ConfigKey::ServerUrl => "MSB_SERVER_URL",
            ConfigKey::ApiKey => "MSB_API_KEY",
            ConfigKey::SessionTimeout => "MSB_SESSION_TIMEOUT",
            ConfigKey::MaxSessions => "MSB_MAX_SESSIONS",
            ConfigKey::CleanupInterval => "MSB_CLEANUP_INTERVAL",
            ConfigKey::DefaultFlavor => "MSB_DEFAULT_FLAVOR",
            ConfigKey::SandboxStartTimeout => "MSB_SANDBOX_START_TIMEOUT",
            ConfigKey::ExecutionTimeout => "MSB_EXECUTION_TIMEOUT",
            ConfigKey::MaxTotalMemoryMb => "MSB_MAX_TOTAL_MEMORY_MB",
            ConfigKey::SharedVolumePath => "MSB_SHARED_VOLUME_PATH",
            ConfigKey::OrphanCleanupInterval => "MSB_ORPHAN_CLEANUP_INTERVAL",
            ConfigKey::LogLevel => "MSB_LOG_LEVEL",
            ConfigKey::Backend => "MSB_BACKEND",
            ConfigKey::Namespace => "MSB_NAMESPACE",
            ConfigKey::OwnerMark => "MSB_OWNER_MARK",
            ConfigKey::LimitPolicy => "MSB_LIMIT_POLICY",
            ConfigKey::LimitWaitTimeout => "MSB_LIMIT_WAIT_TIMEOUT",
            ConfigKey::MaxConcurrentStarts => "MSB_MAX_CONCURRENT_STARTS",
            ConfigKey::ShutdownTimeout => "MSB_SHUTDOWN_TIMEOUT",
            ConfigKey::WarmPool => "MSB_WARM_POOL",
            ConfigKey::PythonImage => "MSB_PYTHON_IMAGE",
            ConfigKey::NodeImage => "MSB_NODE_IMAGE",
            ConfigKey::LocalNetwork => "MSB_LOCAL_NETWORK",
        }
    }

    /// The matching [`WrapperConfig`](crate::WrapperConfig) field, e.g. `session_timeout` (for a
    /// backend setting, the name under which `msbw config check --json` shows it).
    pub const fn field_name(self) -> &'static str {
        match self {
            ConfigKey::ServerUrl => "server_url",
            ConfigKey::ApiKey => "api_key",
            ConfigKey::SessionTimeout => "session_timeout",
            ConfigKey::MaxSessions => "max_concurrent_sessions",
            ConfigKey::CleanupInterval => "cleanup_interval",
            ConfigKey::DefaultFlavor => "default_flavor",
            ConfigKey::SandboxStartTimeout => "sandbox_start_timeout",
            ConfigKey::ExecutionTimeout => "default_execution_timeout",
            ConfigKey::MaxTotalMemoryMb => "max_total_memory_mb",
            ConfigKey::SharedVolumePath => "shared_volume_mappings",
            ConfigKey::OrphanCleanupInterval => "orphan_cleanup_interval",
            ConfigKey::LogLevel => "log_level",
            ConfigKey::Backend => "backend",
            ConfigKey::Namespace => "namespace",
            ConfigKey::OwnerMark => "owner_mark",
            ConfigKey::LimitPolicy => "limit_policy",
            ConfigKey::LimitWaitTimeout => "limit_wait_timeout",
            ConfigKey::MaxConcurrentStarts => "max_concurrent_starts",
            ConfigKey::ShutdownTimeout => "shutdown_timeout",
            ConfigKey::WarmPool => "warm_pool",
            ConfigKey::PythonImage => "python_image",
            ConfigKey::NodeImage => "node_image",
            ConfigKey::LocalNetwork => "local_network",
        }
    }

    /// The default value, as it would be written in the environment (empty when unset).
    pub const fn default_value(self) -> &'static str {
        match self {
            ConfigKey::ServerUrl => crate::DEFAULT_SERVER_URL,
            ConfigKey::ApiKey => "",
            ConfigKey::SessionTimeout => "1800",
            ConfigKey::MaxSessions => "10",
            ConfigKey::CleanupInterval => "60",
            ConfigKey::DefaultFlavor => "small",
            ConfigKey::SandboxStartTimeout => "180.0",
            ConfigKey::ExecutionTimeout => "300",
            ConfigKey::MaxTotalMemoryMb => "",
            ConfigKey::SharedVolumePath => "[]",
            ConfigKey::OrphanCleanupInterval => "600",
            ConfigKey::LogLevel => "INFO",
            ConfigKey::Backend => "auto",
            ConfigKey::Namespace => "default",
            ConfigKey::OwnerMark => "msbw",
            ConfigKey::LimitPolicy => "reject",
            ConfigKey::LimitWaitTimeout => "30",
            ConfigKey::MaxConcurrentStarts => "4",
            ConfigKey::ShutdownTimeout => "30",
            ConfigKey::WarmPool => "",
            ConfigKey::PythonImage => "microsandbox/python",
            ConfigKey::NodeImage => "microsandbox/node",
            ConfigKey::LocalNetwork => "false",
        }
    }

    /// The numeric range the setting allows, inclusive, where it has one.
    pub const fn range(self) -> Option<(f64, f64)> {
        match self {
            ConfigKey::SessionTimeout => Some((60.0, 86_400.0)),
            ConfigKey::MaxSessions => Some((1.0, 100.0)),
            ConfigKey::CleanupInterval => Some((10.0, 3600.0)),
            ConfigKey::SandboxStartTimeout => Some((30.0, 600.0)),
            ConfigKey::ExecutionTimeout => Some((10.0, 3600.0)),
            // At least one small sandbox (1024 MB); at most 16 TiB.
            ConfigKey::MaxTotalMemoryMb => Some((1024.0, 16_777_216.0)),
            // The guide documents 60-3600 but its own testing example uses 30: widened to 30.
            ConfigKey::OrphanCleanupInterval => Some((30.0, 3600.0)),
            ConfigKey::LimitWaitTimeout => Some((1.0, 3600.0)),
            ConfigKey::MaxConcurrentStarts => Some((1.0, 100.0)),
            ConfigKey::ShutdownTimeout => Some((0.0, 3600.0)),
            _ => None,
        }
    }

    /// What the setting allows, in words, as error messages and documentation quote it.
    pub fn allowed(self) -> String {
        let unit = match self {
            ConfigKey::MaxSessions | ConfigKey::MaxConcurrentStarts => "",
            ConfigKey::MaxTotalMemoryMb => " MB",
            _ => " seconds",
        };
        if let Some((min, max)) = self.range() {
            if self == ConfigKey::SandboxStartTimeout {
                return format!("a number from {min:.1} to {max:.1}{unit}");
            }
            return format!("a whole number from {min} to {max}{unit}");
        }
        match self {
            ConfigKey::ServerUrl => "an http:// or https:// URL with a host, e.g. http://127.0.0.1:5555".into(),
            ConfigKey::ApiKey => "any non-empty string, or empty for none".into(),
            ConfigKey::DefaultFlavor => "one of small, medium, large (any case)".into(),
            ConfigKey::SharedVolumePath => {
                "a JSON array of \"host:container[:ro|:rw]\" strings, or the same entries separated by commas; both paths absolute, no '..', no repeated container path".into()
            }
            ConfigKey::LogLevel => "one of DEBUG, INFO, WARNING, ERROR, CRITICAL (any case)".into(),
            ConfigKey::Backend => "one of auto, microsandbox, local".into(),
            ConfigKey::Namespace => "1 to 63 letters, digits, '-' or '_', starting with a letter or digit".into(),
            ConfigKey::OwnerMark => "1 to 16 letters or digits".into(),
            ConfigKey::LimitPolicy => "one of reject, wait, evict".into(),
            ConfigKey::WarmPool => format!(
                "empty for no pool, or template:flavor=count entries separated by commas (templates python, node; flavors small, medium, large; each count 1 to {}; each template and flavor once; at most MSB_MAX_SESSIONS in all), e.g. python:small=2,node:medium=1",
                crate::MAX_POOLED_PER_KEY
            ),
            ConfigKey::PythonImage | ConfigKey::NodeImage => {
                "an OCI image reference, or a host directory path starting with '/' or '.'".into()
            }
            ConfigKey::LocalNetwork => "true or false (also 1/0, yes/no, on/off)".into(),
            _ => String::new(),
        }
    }

    /// One line saying what the setting does.
    pub const fn description(self) -> &'static str {
        match self {
            ConfigKey::ServerUrl => "URL of the microsandbox server",
            ConfigKey::ApiKey => "API key for server authentication (never printed)",
            ConfigKey::SessionTimeout => "idle time after which a session and its sandbox are stopped",
            ConfigKey::MaxSessions => "maximum number of concurrent sessions",
            ConfigKey::CleanupInterval => "interval between idle-session cleanup checks",
            ConfigKey::DefaultFlavor => "flavor (memory and CPUs) of a session when a call names none",
            ConfigKey::SandboxStartTimeout => "timeout for a sandbox to start",
            ConfigKey::ExecutionTimeout => "default timeout of one code or command execution",
            ConfigKey::MaxTotalMemoryMb => "maximum total memory across all sessions (unset: no limit)",
            ConfigKey::SharedVolumePath => "host folders mapped into every sandbox",
            ConfigKey::OrphanCleanupInterval => "interval between orphan sandbox cleanup checks",
            ConfigKey::LogLevel => "log level of the wrapper",
            ConfigKey::Backend => "which backend makes sandboxes",
            ConfigKey::Namespace => "namespace of this wrapper's sandboxes on the server",
            ConfigKey::OwnerMark => "mark in every sandbox name that says this wrapper owns it",
            ConfigKey::LimitPolicy => {
                "what a new session does at a limit: reject at once, wait for a slot, or evict the least recently used idle session"
            }
            ConfigKey::LimitWaitTimeout => "how long the wait policy waits for a free slot",
            ConfigKey::MaxConcurrentStarts => "how many sandboxes may be starting at the same time",
            ConfigKey::ShutdownTimeout => {
                "how long shutdown waits for running executions before stopping their sandboxes"
            }
            ConfigKey::WarmPool => {
                "sandboxes started ahead per template and flavor, claimed by new sessions (unset: no pool)"
            }
            ConfigKey::PythonImage => "image started for the python template on a microsandbox server",
            ConfigKey::NodeImage => "image started for the node template on a microsandbox server",
            ConfigKey::LocalNetwork => "whether local-backend sandboxes may use the network",
        }
    }

    /// Whether the setting comes from the configuration guide (`false`: one of our extensions).
    pub const fn in_guide(self) -> bool {
        matches!(
            self,
            ConfigKey::ServerUrl
                | ConfigKey::ApiKey
                | ConfigKey::SessionTimeout
                | ConfigKey::MaxSessions
                | ConfigKey::CleanupInterval
                | ConfigKey::DefaultFlavor
                | ConfigKey::SandboxStartTimeout
                | ConfigKey::ExecutionTimeout
                | ConfigKey::MaxTotalMemoryMb
                | ConfigKey::SharedVolumePath
                | ConfigKey::OrphanCleanupInterval
                | ConfigKey::LogLevel
        )
    }

    /// The backend that owns the setting, which parses and validates it; `None` for the
    /// wrapper's own settings (typed fields of [`WrapperConfig`](crate::WrapperConfig)).
    pub const fn backend(self) -> Option<crate::BackendKind> {
        match self {
            ConfigKey::PythonImage | ConfigKey::NodeImage => Some(crate::BackendKind::Microsandbox),
            ConfigKey::LocalNetwork => Some(crate::BackendKind::Local),
            _ => None,
        }
    }

    /// Whether the setting is an on/off switch (read with [`value::boolean`](crate::value::boolean)).
    pub const fn is_switch(self) -> bool {
        matches!(self, ConfigKey::LocalNetwork)
    }

    /// Whether the value is a secret that must never be printed.
    pub const fn is_secret(self) -> bool {
        matches!(self, ConfigKey::ApiKey)
    }
}

impl fmt::Display for ConfigKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.var_name())
    }
}

/// The error of parsing a variable name that is not one of ours.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown setting {name:?}{}", .suggestion.map(|s| format!(" (did you mean {s}?)")).unwrap_or_default())]
pub struct UnknownKey {
    /// The name that was given.
    pub name: String,
    /// The closest known variable, when one is close.
    pub suggestion: Option<ConfigKey>,
}

impl FromStr for ConfigKey {
    type Err = UnknownKey;

    /// Parses a variable name (`MSB_MAX_SESSIONS`) or a field name (`max_concurrent_sessions`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ConfigKey::ALL
            .into_iter()
            .find(|k| k.var_name() == s || k.field_name() == s)
            .ok_or_else(|| UnknownKey {
                name: s.to_owned(),
                suggestion: closest(s),
            })
    }
}

/// The known variable closest to a misspelt one, if any is within a small edit distance.
pub(crate) fn closest(name: &str) -> Option<ConfigKey> {
    let upper = name.to_ascii_uppercase();
    ConfigKey::ALL
        .into_iter()
        .map(|k| (edit_distance(&upper, k.var_name()), k))
        .filter(|(d, _)| *d <= 3)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_round_trips_through_its_variable_and_field_name() {
        for key in ConfigKey::ALL {
            assert_eq!(key.var_name().parse::<ConfigKey>(), Ok(key));
            assert_eq!(key.field_name().parse::<ConfigKey>(), Ok(key));
            assert_eq!(key.to_string(), key.var_name());
            assert!(key.var_name().starts_with("MSB_"));
            assert!(!key.description().is_empty());
            assert!(!key.allowed().is_empty(), "{key} says nothing about what it allows");
        }
    }

    #[test]
    fn misspelt_names_suggest_the_closest_variable() {
        let err = "MSB_MAX_SESSION".parse::<ConfigKey>().unwrap_err();
        assert_eq!(err.suggestion, Some(ConfigKey::MaxSessions));
        assert!(err.to_string().contains("did you mean MSB_MAX_SESSIONS?"), "{err}");
        let err = "MSB_SOMETHING_ELSE_ENTIRELY".parse::<ConfigKey>().unwrap_err();
        assert_eq!(err.suggestion, None);
    }

    #[test]
    fn ranges_are_the_guides_except_the_documented_orphan_widening() {
        assert_eq!(ConfigKey::SessionTimeout.range(), Some((60.0, 86_400.0)));
        assert_eq!(ConfigKey::MaxSessions.range(), Some((1.0, 100.0)));
        assert_eq!(ConfigKey::CleanupInterval.range(), Some((10.0, 3600.0)));
        assert_eq!(ConfigKey::SandboxStartTimeout.range(), Some((30.0, 600.0)));
        assert_eq!(ConfigKey::ExecutionTimeout.range(), Some((10.0, 3600.0)));
        assert_eq!(ConfigKey::OrphanCleanupInterval.range(), Some((30.0, 3600.0)));
        assert_eq!(
            ConfigKey::SandboxStartTimeout.allowed(),
            "a number from 30.0 to 600.0 seconds"
        );
        assert_eq!(ConfigKey::MaxSessions.allowed(), "a whole number from 1 to 100");
    }
}
