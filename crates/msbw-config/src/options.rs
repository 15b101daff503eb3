//! The settings that take one of a few named values: flavor, log level, backend, limit policy.

use std::fmt;
use std::str::FromStr;

use serde::{Serialize, Serializer};

/// The error of parsing a named option (a flavor, a log level, ...) from text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not a valid {what}; expected {allowed}")]
pub struct ParseOptionError {
    /// What was being parsed, e.g. `flavor`.
    pub what: &'static str,
    /// The text that was given.
    pub value: String,
    /// The accepted values, in words.
    pub allowed: &'static str,
}

/// Defines a case-insensitive option enum with its names, `Display`, `FromStr` and `Serialize`.
macro_rules! named_option {
    (
        $(#[$meta:meta])*
        $name:ident, $what:literal, $allowed:literal {
            $( $(#[$vmeta:meta])* $variant:ident => $text:literal $(| $alias:literal)* ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $( $(#[$vmeta])* $variant ),+
        }

        impl $name {
            /// Every value, in order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The lower-case name, as printed and serialised.
            pub const fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = ParseOptionError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                let lower = s.trim().to_ascii_lowercase();
                match lower.as_str() {
                    $( $text $(| $alias)* => Ok($name::$variant), )+
                    _ => Err(ParseOptionError { what: $what, value: s.to_owned(), allowed: $allowed }),
                }
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }
    };
}

named_option! {
    /// The resources of a sandbox: memory and CPUs.
    ///
    /// | flavor | memory | CPUs |
    /// |---|---|---|
    /// | small | 1024 MB | 1 |
    /// | medium | 2048 MB | 2 |
    /// | large | 4096 MB | 4 |
    #[derive(Default)]
    SandboxFlavor, "flavor", "small, medium or large" {
        /// 1024 MB, 1 CPU.
        #[default]
        Small => "small",
        /// 2048 MB, 2 CPUs.
        Medium => "medium",
        /// 4096 MB, 4 CPUs.
        Large => "large",
    }
}

impl SandboxFlavor {
    /// The memory of a sandbox of this flavor, in MiB.
    pub const fn memory_mb(self) -> u32 {
        match self {
            SandboxFlavor::Small => 1024,
            SandboxFlavor::Medium => 2048,
            SandboxFlavor::Large => 4096,
        }
    }

    /// The number of CPUs of a sandbox of this flavor.
    pub const fn cpus(self) -> u8 {
        match self {
            SandboxFlavor::Small => 1,
            SandboxFlavor::Medium => 2,
            SandboxFlavor::Large => 4,
        }
    }
}

named_option! {
    /// How much the wrapper logs (`MSB_LOG_LEVEL`).
    #[derive(Default)]
    LogLevel, "log level", "DEBUG, INFO, WARNING, ERROR or CRITICAL" {
        /// Everything, including each backend call.
        Debug => "debug",
        /// Sessions starting and stopping, cleanup results.
        #[default]
        Info => "info",
        /// Things that went wrong but were handled.
        Warning => "warning" | "warn",
        /// Failures.
        Error => "error",
        /// Only failures that stop the wrapper working.
        Critical => "critical",
    }
}

impl LogLevel {
    /// The matching `tracing`/`env_logger` filter directive (`critical` maps to `error`).
    pub const fn as_filter(self) -> &'static str {
        match self {
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warning => "warn",
            LogLevel::Error | LogLevel::Critical => "error",
        }
    }
}

named_option! {
    /// Which backend makes sandboxes (`MSB_BACKEND`).
    #[derive(Default)]
    BackendKind, "backend", "auto, microsandbox or local" {
        /// The microsandbox server when one is configured or answers at the default URL,
        /// the local backend otherwise.
        #[default]
        Auto => "auto",
        /// The microsandbox server at `MSB_SERVER_URL` (microVMs).
        Microsandbox => "microsandbox",
        /// Isolated local processes; needs no server.
        Local => "local",
    }
}

named_option! {
    /// What a call that needs a new session does when a limit is reached (`MSB_LIMIT_POLICY`).
    #[derive(Default)]
    LimitPolicy, "limit policy", "reject, wait or evict" {
        /// Fail at once with a resource-limit error.
        #[default]
        Reject => "reject",
        /// Wait up to `limit_wait_timeout` for a slot, then fail.
        Wait => "wait",
        /// Stop the least recently used idle session to make room (never a busy one).
        Evict => "evict",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flavors_have_the_references_resources() {
        assert_eq!(
            (SandboxFlavor::Small.memory_mb(), SandboxFlavor::Small.cpus()),
            (1024, 1)
        );
        assert_eq!(
            (SandboxFlavor::Medium.memory_mb(), SandboxFlavor::Medium.cpus()),
            (2048, 2)
        );
        assert_eq!(
            (SandboxFlavor::Large.memory_mb(), SandboxFlavor::Large.cpus()),
            (4096, 4)
        );
        assert_eq!(SandboxFlavor::default(), SandboxFlavor::Small);
    }

    #[test]
    fn options_parse_in_any_case_and_print_lower_case() {
        assert_eq!("MEDIUM".parse(), Ok(SandboxFlavor::Medium));
        assert_eq!(" Large ".parse(), Ok(SandboxFlavor::Large));
        assert_eq!("WARNING".parse(), Ok(LogLevel::Warning));
        assert_eq!("critical".parse(), Ok(LogLevel::Critical));
        assert_eq!("Local".parse(), Ok(BackendKind::Local));
        assert_eq!("EVICT".parse(), Ok(LimitPolicy::Evict));
        for f in SandboxFlavor::ALL {
            assert_eq!(f.to_string().parse(), Ok(*f));
        }
        for l in LogLevel::ALL {
            assert_eq!(l.to_string().parse(), Ok(*l));
        }
        assert_eq!(serde_json::to_string(&LogLevel::Critical).unwrap(), "\"critical\"");
    }

    #[test]
    fn unknown_options_say_what_is_allowed() {
        let err = "huge".parse::<SandboxFlavor>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "\"huge\" is not a valid flavor; expected small, medium or large"
        );
        let err = "verbose".parse::<LogLevel>().unwrap_err();
        assert!(
            err.to_string().contains("DEBUG, INFO, WARNING, ERROR or CRITICAL"),
            "{err}"
        );
    }

    #[test]
    fn log_levels_map_to_filters() {
        assert_eq!(LogLevel::Critical.as_filter(), "error");
        assert_eq!(LogLevel::Warning.as_filter(), "warn");
        assert_eq!(LogLevel::default(), LogLevel::Info);
    }
}
