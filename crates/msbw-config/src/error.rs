//! Configuration errors: every problem at once, each naming its variable, value and what is allowed.

use std::fmt;
use std::path::PathBuf;

use crate::ConfigKey;

/// One thing wrong with the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// The setting at fault (for a rule between two settings, the one to change).
    pub key: ConfigKey,
    /// The value given, as text (`***` for secrets).
    pub value: String,
    /// What is wrong with it.
    pub message: String,
    /// What would be accepted.
    pub allowed: String,
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ConfigProblem {
            key,
            value,
            message,
            allowed,
        } = self;
        let (var, field) = (key.var_name(), key.field_name());
        write!(f, "{var} ({field}) = {value:?}: {message}; allowed: {allowed}")
    }
}

/// A non-fatal finding: the configuration works, but probably not as intended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigWarning {
    /// The setting concerned.
    pub key: ConfigKey,
    /// What looks wrong, and what to do about it.
    pub message: String,
}

impl fmt::Display for ConfigWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (var, field) = (self.key.var_name(), self.key.field_name());
        write!(f, "{var} ({field}): {}", self.message)
    }
}

/// Why a configuration could not be loaded or was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// One or more settings are invalid; all of them are listed.
    #[error("{}", format_problems(.problems))]
    Invalid {
        /// Every problem found, in the order of [`ConfigKey::ALL`].
        problems: Vec<ConfigProblem>,
    },
    /// The `.env` file could not be read or parsed.
    #[error("cannot load env file {}: {reason}", .path.display())]
    EnvFile {
        /// The file's path.
        path: PathBuf,
        /// What went wrong (never the file's content, which may hold the API key).
        reason: String,
    },
}

impl ConfigError {
    /// The invalid settings (empty for an env-file error).
    pub fn problems(&self) -> &[ConfigProblem] {
        match self {
            ConfigError::Invalid { problems } => problems,
            ConfigError::EnvFile { .. } => &[],
        }
    }

    /// A stable code for programs, like the wrapper's other errors.
    pub fn code(&self) -> &'static str {
        "CONFIGURATION_ERROR"
    }
}

fn format_problems(problems: &[ConfigProblem]) -> String {
    match problems {
        [one] => format!("invalid configuration: {one}"),
        many => {
            let mut text = format!("invalid configuration ({} problems):", many.len());
            for p in many {
                text.push_str("\n  - ");
                text.push_str(&p.to_string());
            }
            text
        }
    }
}
