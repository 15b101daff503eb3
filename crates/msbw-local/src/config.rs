//! [`LocalConfig`]: how the local backend builds its sandboxes.

use std::path::PathBuf;

use msbw_config::{BackendConfig, BackendSettings, ConfigError, ConfigKey, ConfigProblem, WrapperConfig};

/// Settings of the local backend. Start from [`LocalConfig::default`] (or
/// [`LocalConfig::from_config`] / [`BackendConfig::from_vars`]) and change fields as needed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LocalConfig {
    /// Whether sandboxes share the host's network (`MSB_LOCAL_NETWORK`). By default each sandbox
    /// has its own network namespace with nothing but a loopback interface.
    pub network: bool,
    /// The Python 3 interpreter of `python` sandboxes; `None` looks for `python3` in
    /// `/usr/local/bin`, `/usr/bin` and `/bin`. It must be visible inside the sandbox (below a
    /// system directory or one of [`read_only_paths`](Self::read_only_paths)).
    pub python: Option<PathBuf>,
    /// The Node.js interpreter of `node` sandboxes; `None` looks for `node` (then `nodejs`) like
    /// [`python`](Self::python).
    pub node: Option<PathBuf>,
    /// The working directory inside sandboxes: writable, private, the current directory of code
    /// and commands, and `HOME`.
    pub work_dir: String,
    /// Where the per-sandbox host directories (the sandbox's `/tmp` and work directory) are
    /// created; `None` for the system's temporary directory.
    pub temp_dir: Option<PathBuf>,
    /// How many tasks (processes and threads) one sandbox may run at once.
    pub max_processes: u32,
    /// How many bytes of stdout, and of stderr, one execution may return; the rest is dropped
    /// with a note.
    pub max_output_bytes: usize,
    /// Host directories visible read-only inside every sandbox, besides the system directories
    /// (`/usr`, `/etc`, `/bin`, `/sbin`, `/lib*`).
    pub read_only_paths: Vec<PathBuf>,
    /// Whether to restrict filesystem access with Landlock where the kernel has it.
    pub landlock: bool,
    /// Whether to put each sandbox in its own cgroups (memory, pids, cpu) where possible.
    pub cgroups: bool,
    /// When the backend runs as root, each sandbox runs as its own unprivileged host uid taken
    /// from `first_uid..first_uid + uid_count` (never host root).
    pub first_uid: u32,
    /// See [`first_uid`](Self::first_uid).
    pub uid_count: u32,
}

impl Default for LocalConfig {
    fn default() -> Self {
        LocalConfig {
            network: false,
            python: None,
            node: None,
            work_dir: "/workspace".to_owned(),
            temp_dir: None,
            max_processes: 256,
            max_output_bytes: 16 << 20,
            read_only_paths: Vec::new(),
            landlock: true,
            cgroups: true,
            first_uid: 0x6000_0000,
            uid_count: 0x0100_0000,
        }
    }
}

impl LocalConfig {
    /// The settings only this backend reads (`MSB_LOCAL_NETWORK`), which it parses and
    /// validates itself.
    pub const SETTINGS: [ConfigKey; 1] = [ConfigKey::LocalNetwork];

    /// The local backend's settings from the wrapper's configuration: its own settings
    /// (`MSB_LOCAL_NETWORK`) parsed from [`backend_settings`](WrapperConfig::backend_settings);
    /// an invalid one is refused, naming the variable, the value and what is allowed.
    pub fn from_config(config: &WrapperConfig) -> Result<Self, ConfigError> {
        Self::from_settings(&config.backend_settings)
    }

    fn from_settings(settings: &BackendSettings) -> Result<Self, ConfigError> {
        let key = ConfigKey::LocalNetwork;
        let text = settings.text(key);
        let network = msbw_config::value::boolean(text).map_err(|why| ConfigError::Invalid {
            problems: vec![ConfigProblem::new(key, text, why)],
        })?;
        Ok(LocalConfig {
            network,
            ..LocalConfig::default()
        })
    }

    /// Checks the settings that the backend cannot work without.
    pub(crate) fn problems(&self) -> Option<String> {
        let work = std::path::Path::new(&self.work_dir);
        if !work.is_absolute() || work.components().count() < 2 {
            return Some(format!(
                "the work directory {:?} must be an absolute path below /",
                self.work_dir
            ));
        }
        if self.work_dir.starts_with("/proc") || self.work_dir.starts_with("/dev") || self.work_dir == "/tmp" {
            return Some(format!("the work directory {:?} is reserved", self.work_dir));
        }
        if self.max_processes < 8 {
            return Some("max_processes must be at least 8 (an interpreter needs a few threads)".into());
        }
        if self.uid_count == 0 || self.first_uid == 0 || self.first_uid.checked_add(self.uid_count).is_none() {
            return Some("the sandbox uid range must be non-empty, above 0 and below 2^32".into());
        }
        None
    }
}

impl BackendConfig for LocalConfig {
    /// Every problem with this backend's own settings (empty when they are valid).
    fn settings_problems(settings: &BackendSettings) -> Vec<ConfigProblem> {
        Self::from_settings(settings)
            .err()
            .map(|e| e.problems().to_vec())
            .unwrap_or_default()
    }

    /// [`LocalConfig::from_config`].
    fn from_wrapper(config: &WrapperConfig) -> Result<Self, ConfigError> {
        Self::from_config(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_the_wrapper_configuration() {
        let config = WrapperConfig::from_vars([("MSB_LOCAL_NETWORK", "true")]).unwrap();
        assert!(LocalConfig::from_config(&config).unwrap().network);
        assert!(!LocalConfig::from_config(&WrapperConfig::default()).unwrap().network);
        assert!(LocalConfig::from_vars([("MSB_LOCAL_NETWORK", "Yes")]).unwrap().network);
        assert!(!LocalConfig::from_vars([("MSB_LOCAL_NETWORK", "")]).unwrap().network);
    }

    #[test]
    fn its_own_setting_is_validated_here_with_the_variable_the_value_and_the_rule() {
        let err = LocalConfig::from_vars([("MSB_LOCAL_NETWORK", "maybe"), ("MSB_SESSION_TIMEOUT", "5")]).unwrap_err();
        let problems: Vec<String> = err.problems().iter().map(ToString::to_string).collect();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].starts_with("MSB_SESSION_TIMEOUT"), "{problems:?}");
        assert_eq!(
            problems[1],
            "MSB_LOCAL_NETWORK (local_network) = \"maybe\": is not a boolean; allowed: true or false (also 1/0, yes/no, on/off)"
        );
        let mut config = WrapperConfig::default();
        config.backend_settings.set(ConfigKey::LocalNetwork, "maybe");
        assert!(LocalConfig::from_config(&config).is_err());
        assert_eq!(LocalConfig::settings_problems(&config.backend_settings).len(), 1);
    }

    #[test]
    fn refuses_unusable_settings() {
        assert_eq!(LocalConfig::default().problems(), None);
        let with = |f: fn(&mut LocalConfig)| {
            let mut c = LocalConfig::default();
            f(&mut c);
            c.problems()
        };
        assert!(with(|c| c.work_dir = "relative".into()).unwrap().contains("absolute"));
        assert!(with(|c| c.work_dir = "/proc/x".into()).unwrap().contains("reserved"));
        assert!(with(|c| c.max_processes = 2).is_some());
        assert!(with(|c| c.first_uid = u32::MAX).is_some());
    }
}
