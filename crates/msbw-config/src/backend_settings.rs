//! The settings that belong to one backend (`MSB_PYTHON_IMAGE`, `MSB_LOCAL_NETWORK`, ...): this
//! crate knows their names and keeps their text; the backend that reads one parses and validates
//! it (see `msbw_http::HttpBackendConfig` and `msbw_local::LocalConfig`).

use std::collections::BTreeMap;

use crate::error::{ConfigError, ConfigProblem};
use crate::{BackendKind, ConfigKey, WrapperConfig};

/// A backend's own configuration, built from the wrapper's: the backend names the problems
/// of its settings and builds itself from a valid [`WrapperConfig`]; reading `(name, value)`
/// pairs comes with it.
pub trait BackendConfig: Sized {
    /// Every problem with this backend's own settings (empty when they are valid).
    fn settings_problems(settings: &BackendSettings) -> Vec<ConfigProblem>;

    /// This backend's configuration from the wrapper's, its own settings validated.
    fn from_wrapper(config: &WrapperConfig) -> Result<Self, ConfigError>;

    /// The configuration from `(name, value)` pairs, as if they were the environment (`MSB_*`):
    /// every problem, the wrapper's settings' and this backend's, is reported at once.
    fn from_vars<I, K, V>(vars: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let config = WrapperConfig::from_vars_checked(vars, Self::settings_problems)?;
        Self::from_wrapper(&config)
    }
}

/// The text of every backend-owned setting that was given, by key.
///
/// Unset (or empty) settings are absent: the backend applies its default. Values are kept as
/// written; nothing here says whether they are valid, the owning backend does.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BackendSettings {
    values: BTreeMap<ConfigKey, String>,
}

impl BackendSettings {
    /// The text given for `key`, if any.
    pub fn get(&self, key: ConfigKey) -> Option<&str> {
        self.values.get(&key).map(String::as_str)
    }

    /// The text given for `key`, or its documented default.
    pub fn text(&self, key: ConfigKey) -> &str {
        self.get(key).unwrap_or(key.default_value())
    }

    /// Sets `key`'s text; an empty (or blank) value, or the default itself, unsets it. Keys that
    /// no backend owns are ignored (they are [`WrapperConfig`](crate::WrapperConfig) fields).
    pub fn set(&mut self, key: ConfigKey, value: &str) {
        if key.backend().is_none() {
            return;
        }
        if value.trim().is_empty() || value.trim() == key.default_value() {
            self.values.remove(&key);
        } else {
            self.values.insert(key, value.trim().to_owned());
        }
    }

    /// The settings of one backend that were given, as `(variable, text)` pairs.
    pub fn of(&self, backend: BackendKind) -> impl Iterator<Item = (&'static str, &str)> {
        self.values
            .iter()
            .filter(move |(k, _)| k.backend() == Some(backend))
            .map(|(k, v)| (k.var_name(), v.as_str()))
    }
}

impl ConfigProblem {
    /// A problem with `key`'s `value`: the value is masked for secrets, and `allowed` is the
    /// key's documented rule.
    pub fn new(key: ConfigKey, value: &str, message: impl Into<String>) -> Self {
        ConfigProblem {
            key,
            value: if key.is_secret() {
                crate::MASK.to_owned()
            } else {
                value.to_owned()
            },
            message: message.into(),
            allowed: key.allowed(),
        }
    }
}

impl ConfigError {
    /// `Ok` when `problems` is empty, else every problem, in the order of [`ConfigKey::ALL`].
    pub fn check(mut problems: Vec<ConfigProblem>) -> Result<(), ConfigError> {
        if problems.is_empty() {
            return Ok(());
        }
        problems.sort_by_key(|p| ConfigKey::ALL.iter().position(|k| *k == p.key));
        Err(ConfigError::Invalid { problems })
    }
}

/// The value parsers every crate uses for settings, so that `true`, `yes` and `on` mean the same
/// everywhere.
pub mod value {
    /// `true`/`false`, `1`/`0`, `yes`/`no`, `on`/`off`, in any case.
    pub fn boolean(text: &str) -> Result<bool, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(true),
            "false" | "0" | "no" | "off" => Ok(false),
            _ => Err("is not a boolean".to_owned()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_only_backend_settings_and_unsets_on_empty() {
        let mut s = BackendSettings::default();
        s.set(ConfigKey::PythonImage, " my/python ");
        s.set(ConfigKey::MaxSessions, "3");
        assert_eq!(s.get(ConfigKey::PythonImage), Some("my/python"));
        assert_eq!(s.get(ConfigKey::MaxSessions), None);
        assert_eq!(s.text(ConfigKey::NodeImage), "microsandbox/node");
        assert_eq!(
            s.of(BackendKind::Microsandbox).collect::<Vec<_>>(),
            [("MSB_PYTHON_IMAGE", "my/python")]
        );
        assert_eq!(s.of(BackendKind::Local).count(), 0);
        s.set(ConfigKey::PythonImage, "");
        assert_eq!(s.get(ConfigKey::PythonImage), None);
    }

    #[test]
    fn problems_mask_secrets_and_quote_the_rule() {
        let p = ConfigProblem::new(ConfigKey::ApiKey, "msb_secret", "is bad");
        assert_eq!(p.value, crate::MASK);
        let p = ConfigProblem::new(ConfigKey::LocalNetwork, "maybe", "is not a boolean");
        assert_eq!(
            p.to_string(),
            "MSB_LOCAL_NETWORK (local_network) = \"maybe\": is not a boolean; allowed: true or false (also 1/0, yes/no, on/off)"
        );
        assert!(ConfigError::check(Vec::new()).is_ok());
    }
}
