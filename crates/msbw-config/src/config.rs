//! `WrapperConfig`: the settings, their one set of defaults, loading and validation.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use serde::ser::SerializeStruct;
use serde::{Serialize, Serializer};

use crate::env_file::read_env_file;
use crate::error::{ConfigError, ConfigProblem, ConfigWarning};
use crate::secret::{ApiKey, MASK};
use crate::url::parse_server_url;
use crate::volume::{VolumeMapping, duplicate_container_paths, parse_volume_mappings};
use crate::{BackendKind, BackendSettings, ConfigKey, LimitPolicy, LogLevel, SandboxFlavor, WarmPool};

/// The microsandbox server's default address.
pub const DEFAULT_SERVER_URL: &str = "http://127.0.0.1:5555";

/// The whole configuration of a wrapper.
///
/// Build it with [`Default`] (the guide's defaults), [`WrapperConfig::from_env`],
/// [`WrapperConfig::from_vars`], [`WrapperConfig::from_env_file`] or [`WrapperConfig::builder`].
/// Fields are public so a loaded configuration can be adjusted, as in the guide's examples; every
/// consumer (the manager, the wrapper) calls [`WrapperConfig::validate`] again before using it,
/// so no path skips validation.
#[derive(Debug, Clone, PartialEq)]
pub struct WrapperConfig {
    /// `MSB_SERVER_URL`: URL of the microsandbox server.
    pub server_url: String,
    /// `MSB_API_KEY`: API key for the server, if it needs one. Never printed.
    pub api_key: Option<ApiKey>,
    /// `MSB_SESSION_TIMEOUT`: a session unused for this long is stopped (60 s to 24 h).
    pub session_timeout: Duration,
    /// `MSB_MAX_SESSIONS`: maximum number of concurrent sessions (1 to 100).
    pub max_concurrent_sessions: u32,
    /// `MSB_CLEANUP_INTERVAL`: time between idle-session cleanup passes (10 s to 1 h).
    pub cleanup_interval: Duration,
    /// `MSB_DEFAULT_FLAVOR`: flavor of a session when a call names none.
    pub default_flavor: SandboxFlavor,
    /// `MSB_SANDBOX_START_TIMEOUT`: how long a sandbox may take to start (30 s to 600 s).
    pub sandbox_start_timeout: Duration,
    /// `MSB_EXECUTION_TIMEOUT`: time limit of an execution that names none (10 s to 1 h).
    pub default_execution_timeout: Duration,
    /// `MSB_MAX_TOTAL_MEMORY_MB`: memory limit across all sessions; `None` for no limit.
    pub max_total_memory_mb: Option<u64>,
    /// `MSB_SHARED_VOLUME_PATH`: host folders mapped into every sandbox.
    pub shared_volume_mappings: Vec<VolumeMapping>,
    /// `MSB_ORPHAN_CLEANUP_INTERVAL`: time between orphan cleanup passes (30 s to 1 h).
    pub orphan_cleanup_interval: Duration,
    /// `MSB_LOG_LEVEL`: how much the wrapper logs.
    pub log_level: LogLevel,
    /// `MSB_BACKEND`: which backend makes sandboxes.
    pub backend: BackendKind,
    /// `MSB_NAMESPACE`: the server namespace of this wrapper's sandboxes.
    pub namespace: String,
    /// `MSB_OWNER_MARK`: the mark in sandbox names that says this wrapper owns them. Give two
    /// wrappers that share a server different marks, or each will take the other's sandboxes
    /// for orphans.
    pub owner_mark: String,
    /// `MSB_LIMIT_POLICY`: what a call needing a new session does at a limit.
    pub limit_policy: LimitPolicy,
    /// `MSB_LIMIT_WAIT_TIMEOUT`: how long the `wait` policy waits for a slot (1 s to 1 h).
    pub limit_wait_timeout: Duration,
    /// `MSB_MAX_CONCURRENT_STARTS`: how many sandboxes may be starting at once (1 to 100).
    pub max_concurrent_starts: u32,
    /// `MSB_SHUTDOWN_TIMEOUT`: how long shutdown waits for running executions (0 s to 1 h).
    pub shutdown_timeout: Duration,
    /// `MSB_WARM_POOL`: sandboxes started ahead per template and flavor; empty for no pool.
    /// Pooled sandboxes count against `max_concurrent_sessions` and `max_total_memory_mb`.
    pub warm_pool: WarmPool,
    /// The settings that belong to one backend (`MSB_PYTHON_IMAGE`, `MSB_NODE_IMAGE`,
    /// `MSB_LOCAL_NETWORK`), as text: the backend that reads them parses and validates them.
    pub backend_settings: BackendSettings,
}

impl Default for WrapperConfig {
    /// The configuration guide's defaults; the same as an empty environment.
    fn default() -> Self {
        WrapperConfig {
            server_url: DEFAULT_SERVER_URL.to_owned(),
            api_key: None,
            session_timeout: Duration::from_secs(1800),
            max_concurrent_sessions: 10,
            cleanup_interval: Duration::from_secs(60),
            default_flavor: SandboxFlavor::Small,
            sandbox_start_timeout: Duration::from_secs(180),
            default_execution_timeout: Duration::from_secs(300),
            max_total_memory_mb: None,
            shared_volume_mappings: Vec::new(),
            orphan_cleanup_interval: Duration::from_secs(600),
            log_level: LogLevel::Info,
            backend: BackendKind::Auto,
            namespace: "default".to_owned(),
            owner_mark: "msbw".to_owned(),
            limit_policy: LimitPolicy::Reject,
            limit_wait_timeout: Duration::from_secs(30),
            max_concurrent_starts: 4,
            shutdown_timeout: Duration::from_secs(30),
            warm_pool: WarmPool::default(),
            backend_settings: BackendSettings::default(),
        }
    }
}

impl WrapperConfig {
    /// Loads the configuration from the process environment (`MSB_*` variables).
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(process_vars())
    }

    /// Loads the configuration from `(name, value)` pairs, as if they were the environment.
    ///
    /// Names that are not `MSB_*` settings are ignored; an empty value means "use the default";
    /// a later pair overrides an earlier one. All problems are reported together.
    pub fn from_vars<I, K, V>(vars: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let report = Self::report_from_vars(vars);
        if report.problems.is_empty() {
            Ok(report.config)
        } else {
            Err(ConfigError::Invalid {
                problems: report.problems,
            })
        }
    }

    /// [`WrapperConfig::from_vars`] for a backend: `backend_problems` adds the problems of the
    /// backend's own settings, so that every problem (the wrapper's and the backend's) is
    /// reported at once, in the order of the settings.
    pub fn from_vars_checked<I, K, V>(
        vars: I,
        backend_problems: impl FnOnce(&crate::BackendSettings) -> Vec<ConfigProblem>,
    ) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let mut report = Self::report_from_vars(vars);
        report
            .problems
            .extend(backend_problems(&report.config.backend_settings));
        if report.problems.is_empty() {
            Ok(report.config)
        } else {
            Err(ConfigError::Invalid {
                problems: report.problems,
            })
        }
    }

    /// Loads what can be loaded and reports everything else: the configuration with the default
    /// in place of every invalid value, every problem, every warning, and the `MSB_*` variables
    /// that are not settings. This is what `msbw config check` shows; use
    /// [`WrapperConfig::from_vars`] to get a configuration only when it is valid.
    pub fn report_from_vars<I, K, V>(vars: I) -> ConfigReport
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let mut values: BTreeMap<ConfigKey, String> = BTreeMap::new();
        let mut unknown = Vec::new();
        for (name, value) in vars {
            let name = name.as_ref();
            match ConfigKey::ALL.into_iter().find(|k| k.var_name() == name) {
                Some(key) => {
                    values.insert(key, value.as_ref().to_owned());
                }
                None if name.starts_with("MSB_") && !unknown.iter().any(|u: &crate::UnknownKey| u.name == name) => {
                    unknown.push(crate::UnknownKey {
                        name: name.to_owned(),
                        suggestion: crate::key::closest(name),
                    });
                }
                None => {}
            }
        }
        let mut config = WrapperConfig::default();
        let mut problems = Vec::new();
        for (key, value) in &values {
            if let Err(problem) = config.set(*key, value) {
                problems.push(problem);
            }
        }
        let failed: BTreeSet<ConfigKey> = problems.iter().map(|p| p.key).collect();
        problems.extend(config.check(&failed));
        problems.sort_by_key(|p| ConfigKey::ALL.iter().position(|k| *k == p.key));
        let warnings = config.warnings();
        ConfigReport {
            config,
            problems,
            warnings,
            unknown,
        }
    }

    /// Loads a `.env` file, then the process environment on top of it (the environment wins,
    /// as with dotenv). The process environment itself is not modified.
    pub fn from_env_file(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let mut vars = read_env_file(path.as_ref())?;
        vars.extend(process_vars());
        Self::from_vars(vars)
    }

    /// A builder starting from the defaults; [`ConfigBuilder::build`] validates.
    pub fn builder() -> ConfigBuilder {
        ConfigBuilder {
            config: WrapperConfig::default(),
            problems: Vec::new(),
        }
    }

    /// A builder starting from this configuration, to override some settings.
    pub fn into_builder(self) -> ConfigBuilder {
        ConfigBuilder {
            config: self,
            problems: Vec::new(),
        }
    }

    /// Sets one setting from its environment-variable text. An empty value restores the default.
    /// A backend's setting is kept as text (its backend validates it), so it never fails here.
    pub fn set(&mut self, key: ConfigKey, value: &str) -> Result<(), ConfigProblem> {
        if key.backend().is_some() {
            self.backend_settings.set(key, value);
            return Ok(());
        }
        let text = value.trim();
        let text = if text.is_empty() { key.default_value() } else { text };
        let problem = |message: String| ConfigProblem {
            key,
            value: if key.is_secret() {
                MASK.to_owned()
            } else {
                value.to_owned()
            },
            message,
            allowed: key.allowed(),
        };
        match key {
            ConfigKey::ServerUrl => self.server_url = text.to_owned(),
            ConfigKey::ApiKey => self.api_key = (!text.is_empty()).then(|| ApiKey::new(text)),
            ConfigKey::SessionTimeout => self.session_timeout = whole_seconds(text).map_err(problem)?,
            ConfigKey::MaxSessions => self.max_concurrent_sessions = whole_number(text).map_err(problem)?,
            ConfigKey::CleanupInterval => self.cleanup_interval = whole_seconds(text).map_err(problem)?,
            ConfigKey::DefaultFlavor => {
                self.default_flavor = text.parse().map_err(|_| problem("is not a known flavor".into()))?;
            }
            ConfigKey::SandboxStartTimeout => {
                self.sandbox_start_timeout = decimal_seconds(text).map_err(problem)?;
            }
            ConfigKey::ExecutionTimeout => {
                self.default_execution_timeout = whole_seconds(text).map_err(problem)?;
            }
            ConfigKey::MaxTotalMemoryMb => {
                self.max_total_memory_mb = if text.is_empty() {
                    None
                } else {
                    Some(whole_number(text).map_err(problem)?)
                };
            }
            ConfigKey::SharedVolumePath => {
                self.shared_volume_mappings = parse_volume_mappings(text).map_err(|errors| {
                    let reasons: Vec<String> = errors.iter().map(ToString::to_string).collect();
                    problem(reasons.join("; "))
                })?;
            }
            ConfigKey::OrphanCleanupInterval => {
                self.orphan_cleanup_interval = whole_seconds(text).map_err(problem)?;
            }
            ConfigKey::LogLevel => {
                self.log_level = text.parse().map_err(|_| problem("is not a known log level".into()))?;
            }
            ConfigKey::Backend => {
                self.backend = text.parse().map_err(|_| problem("is not a known backend".into()))?;
            }
            ConfigKey::Namespace => self.namespace = text.to_owned(),
            ConfigKey::OwnerMark => self.owner_mark = text.to_owned(),
            ConfigKey::LimitPolicy => {
                self.limit_policy = text.parse().map_err(|_| problem("is not a known policy".into()))?;
            }
            ConfigKey::LimitWaitTimeout => self.limit_wait_timeout = whole_seconds(text).map_err(problem)?,
            ConfigKey::MaxConcurrentStarts => {
                self.max_concurrent_starts = whole_number(text).map_err(problem)?;
            }
            ConfigKey::ShutdownTimeout => self.shutdown_timeout = whole_seconds(text).map_err(problem)?,
            ConfigKey::WarmPool => self.warm_pool = text.parse().map_err(problem)?,
            // Handled above: backend settings are kept as text.
            _ => {}
        }
        Ok(())
    }

    /// The setting's value as environment-variable text, with the API key masked.
    pub fn get(&self, key: ConfigKey) -> String {
        if key.is_secret() {
            return self.api_key.as_ref().map(|_| MASK.to_owned()).unwrap_or_default();
        }
        self.env_text(key)
    }

    /// Every setting as `(variable, value)` pairs that [`WrapperConfig::from_vars`] reads back to
    /// an equal configuration. This includes the API key in clear: use it only to hand the
    /// configuration to a child process, never to print.
    pub fn to_env_vars(&self) -> Vec<(&'static str, String)> {
        ConfigKey::ALL
            .into_iter()
            .map(|key| {
                let value = match key {
                    ConfigKey::ApiKey => self.api_key.as_ref().map(|k| k.expose().to_owned()).unwrap_or_default(),
                    k if k.backend().is_some() => self.backend_settings.get(k).unwrap_or_default().to_owned(),
                    _ => self.env_text(key),
                };
                (key.var_name(), value)
            })
            .collect()
    }

    fn env_text(&self, key: ConfigKey) -> String {
        match key {
            ConfigKey::ServerUrl => self.server_url.clone(),
            ConfigKey::ApiKey => String::new(),
            ConfigKey::SessionTimeout => seconds_text(self.session_timeout),
            ConfigKey::MaxSessions => self.max_concurrent_sessions.to_string(),
            ConfigKey::CleanupInterval => seconds_text(self.cleanup_interval),
            ConfigKey::DefaultFlavor => self.default_flavor.to_string(),
            ConfigKey::SandboxStartTimeout => seconds_text(self.sandbox_start_timeout),
            ConfigKey::ExecutionTimeout => seconds_text(self.default_execution_timeout),
            ConfigKey::MaxTotalMemoryMb => self.max_total_memory_mb.map(|m| m.to_string()).unwrap_or_default(),
            ConfigKey::SharedVolumePath => crate::format_volume_mappings(&self.shared_volume_mappings),
            ConfigKey::OrphanCleanupInterval => seconds_text(self.orphan_cleanup_interval),
            ConfigKey::LogLevel => self.log_level.to_string().to_ascii_uppercase(),
            ConfigKey::Backend => self.backend.to_string(),
            ConfigKey::Namespace => self.namespace.clone(),
            ConfigKey::OwnerMark => self.owner_mark.clone(),
            ConfigKey::LimitPolicy => self.limit_policy.to_string(),
            ConfigKey::LimitWaitTimeout => seconds_text(self.limit_wait_timeout),
            ConfigKey::MaxConcurrentStarts => self.max_concurrent_starts.to_string(),
            ConfigKey::ShutdownTimeout => seconds_text(self.shutdown_timeout),
            ConfigKey::WarmPool => self.warm_pool.to_string(),
            _ => self.backend_settings.text(key).to_owned(),
        }
    }

    /// Checks every rule and reports every problem at once.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let problems = self.check(&BTreeSet::new());
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid { problems })
        }
    }

    /// Validates and returns the configuration, for chaining.
    pub fn validated(self) -> Result<Self, ConfigError> {
        self.validate().map(|()| self)
    }

    /// Adds the rule checks to problems already found while parsing, and decides.
    fn finish(self, mut problems: Vec<ConfigProblem>) -> Result<Self, ConfigError> {
        let failed: BTreeSet<ConfigKey> = problems.iter().map(|p| p.key).collect();
        problems.extend(self.check(&failed));
        problems.sort_by_key(|p| ConfigKey::ALL.iter().position(|k| *k == p.key));
        if problems.is_empty() {
            Ok(self)
        } else {
            Err(ConfigError::Invalid { problems })
        }
    }

    /// Every rule violated, skipping the settings in `failed` (already reported as unparseable).
    fn check(&self, failed: &BTreeSet<ConfigKey>) -> Vec<ConfigProblem> {
        let mut problems = Vec::new();
        let mut report = |key: ConfigKey, message: String| {
            if !failed.contains(&key) {
                problems.push(ConfigProblem {
                    key,
                    value: self.get(key),
                    message,
                    allowed: key.allowed(),
                });
            }
        };

        if let Err(why) = parse_server_url(&self.server_url) {
            report(ConfigKey::ServerUrl, why);
        }
        if let Some(key) = &self.api_key {
            if key.expose().trim().is_empty() {
                report(ConfigKey::ApiKey, "is blank; leave it unset for no key".into());
            } else if key.expose().chars().any(char::is_control) {
                report(ConfigKey::ApiKey, "contains control characters".into());
            }
        }
        for (key, value) in [
            (ConfigKey::SessionTimeout, self.session_timeout),
            (ConfigKey::CleanupInterval, self.cleanup_interval),
            (ConfigKey::ExecutionTimeout, self.default_execution_timeout),
            (ConfigKey::OrphanCleanupInterval, self.orphan_cleanup_interval),
            (ConfigKey::LimitWaitTimeout, self.limit_wait_timeout),
            (ConfigKey::ShutdownTimeout, self.shutdown_timeout),
        ] {
            if value.subsec_nanos() != 0 {
                report(key, "is not a whole number of seconds".into());
            } else if let Some(why) = out_of_range(key, value.as_secs_f64()) {
                report(key, why);
            }
        }
        if let Some(why) = out_of_range(ConfigKey::SandboxStartTimeout, self.sandbox_start_timeout.as_secs_f64()) {
            report(ConfigKey::SandboxStartTimeout, why);
        }
        for (key, value) in [
            (ConfigKey::MaxSessions, self.max_concurrent_sessions),
            (ConfigKey::MaxConcurrentStarts, self.max_concurrent_starts),
        ] {
            if let Some(why) = out_of_range(key, f64::from(value)) {
                report(key, why);
            }
        }
        if let Some(limit) = self.max_total_memory_mb {
            let flavor = self.default_flavor;
            if let Some(why) = out_of_range(ConfigKey::MaxTotalMemoryMb, limit as f64) {
                report(ConfigKey::MaxTotalMemoryMb, why);
            } else if limit < u64::from(flavor.memory_mb()) && !failed.contains(&ConfigKey::DefaultFlavor) {
                report(
                    ConfigKey::MaxTotalMemoryMb,
                    format!(
                        "is less than the default flavor's memory ({flavor} = {} MB), so no session could start",
                        flavor.memory_mb()
                    ),
                );
            }
        }
        let session_ok = self.session_timeout.subsec_nanos() == 0
            && out_of_range(ConfigKey::SessionTimeout, self.session_timeout.as_secs_f64()).is_none()
            && !failed.contains(&ConfigKey::SessionTimeout);
        if self.cleanup_interval >= self.session_timeout && session_ok {
            report(
                ConfigKey::CleanupInterval,
                format!(
                    "must be shorter than the session timeout ({} s), or idle sessions outlive their timeout",
                    seconds_text(self.session_timeout)
                ),
            );
        }
        let mut volume_errors: Vec<String> = Vec::new();
        for mapping in &self.shared_volume_mappings {
            match mapping.to_string().parse::<VolumeMapping>() {
                Ok(parsed) if parsed == *mapping => {}
                Ok(parsed) => volume_errors.push(format!(
                    "invalid volume mapping {:?}: paths must be normalised (write {:?})",
                    mapping.to_string(),
                    parsed.to_string()
                )),
                Err(e) => volume_errors.push(e.to_string()),
            }
        }
        volume_errors.extend(
            duplicate_container_paths(&self.shared_volume_mappings)
                .iter()
                .map(ToString::to_string),
        );
        if !volume_errors.is_empty() {
            report(ConfigKey::SharedVolumePath, volume_errors.join("; "));
        }
        if let Some(why) = self.warm_pool.problem() {
            report(ConfigKey::WarmPool, why);
        } else if self.warm_pool.total() > u64::from(self.max_concurrent_sessions)
            && !failed.contains(&ConfigKey::MaxSessions)
        {
            report(
                ConfigKey::WarmPool,
                format!(
                    "keeps {} sandboxes in all, more than MSB_MAX_SESSIONS = {} (pooled sandboxes count against it)",
                    self.warm_pool.total(),
                    self.max_concurrent_sessions
                ),
            );
        }
        if !is_name(&self.namespace, 63, true) {
            report(ConfigKey::Namespace, "is not a valid namespace name".into());
        }
        if !is_name(&self.owner_mark, 16, false) {
            report(ConfigKey::OwnerMark, "is not a valid owner mark".into());
        }
        problems
    }

    /// Non-fatal findings: settings that work but probably not as intended (the checks of the
    /// guide's validation script, and a few more).
    pub fn warnings(&self) -> Vec<ConfigWarning> {
        let mut warnings = Vec::new();
        let mut warn = |key: ConfigKey, message: String| warnings.push(ConfigWarning { key, message });
        if let Ok(url) = parse_server_url(&self.server_url) {
            if url.scheme == "http" && !url.is_loopback() && self.backend != BackendKind::Local {
                let what = if self.api_key.is_some() {
                    "the API key and all code"
                } else {
                    "all code and output"
                };
                warn(
                    ConfigKey::ServerUrl,
                    format!("uses plain http to a remote host, so {what} cross the network unencrypted; use https"),
                );
            }
            if url.has_credentials {
                warn(
                    ConfigKey::ServerUrl,
                    "carries credentials in the URL; use MSB_API_KEY instead".into(),
                );
            }
        }
        if self.default_execution_timeout > self.session_timeout {
            warn(
                ConfigKey::ExecutionTimeout,
                format!(
                    "({} s) is longer than the session timeout ({} s)",
                    seconds_text(self.default_execution_timeout),
                    seconds_text(self.session_timeout)
                ),
            );
        }
        if self.orphan_cleanup_interval < Duration::from_secs(60) {
            warn(
                ConfigKey::OrphanCleanupInterval,
                "is below the guide's documented minimum of 60 s (accepted down to 30 s, as in the guide's testing example)".into(),
            );
        }
        if let Some(limit) = self.max_total_memory_mb {
            let per = u64::from(self.default_flavor.memory_mb());
            let fit = limit / per;
            if fit < u64::from(self.max_concurrent_sessions) {
                warn(
                    ConfigKey::MaxTotalMemoryMb,
                    format!(
                        "allows only {fit} sessions of the default flavor ({} = {per} MB), fewer than MSB_MAX_SESSIONS = {}",
                        self.default_flavor, self.max_concurrent_sessions
                    ),
                );
            }
        }
        if let Some(limit) = self.max_total_memory_mb
            && self.warm_pool.memory_mb() > limit
        {
            warn(
                ConfigKey::WarmPool,
                format!(
                    "would reserve {} MB when full, more than MSB_MAX_TOTAL_MEMORY_MB = {limit}; the pool stays partly empty",
                    self.warm_pool.memory_mb()
                ),
            );
        }
        for mapping in &self.shared_volume_mappings {
            if !Path::new(&mapping.host_path).exists() {
                warn(
                    ConfigKey::SharedVolumePath,
                    format!("host path {} does not exist", mapping.host_path),
                );
            }
            if is_sensitive(&mapping.host_path) {
                warn(
                    ConfigKey::SharedVolumePath,
                    format!(
                        "host path {} is a sensitive system directory; map only what the code needs",
                        mapping.host_path
                    ),
                );
            }
        }
        if self.backend == BackendKind::Microsandbox && self.shared_volume_mappings.iter().any(|m| m.read_only) {
            warn(
                ConfigKey::SharedVolumePath,
                "has read-only mappings, which microsandbox server 0.2.6 cannot mount; sessions will be refused unless the server announces read-only support (msbw serve does)".into(),
            );
        }
        warnings
    }

    /// Whether the user pointed the wrapper at a server: a URL other than the default, or an
    /// API key. `MSB_BACKEND=auto` then uses the server without probing the default URL.
    pub fn server_is_configured(&self) -> bool {
        self.server_url != DEFAULT_SERVER_URL || self.api_key.is_some()
    }

    /// Names of `MSB_*` variables among `vars` that are not settings (likely typos), each with the
    /// closest known name when there is one.
    pub fn unknown_variables<I, K, V>(vars: I) -> Vec<crate::UnknownKey>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
    {
        vars.into_iter()
            .map(|(k, _)| k.as_ref().to_owned())
            .filter(|name| name.starts_with("MSB_") && !ConfigKey::ALL.iter().any(|k| k.var_name() == name))
            .map(|name| crate::UnknownKey {
                suggestion: crate::key::closest(&name),
                name,
            })
            .collect()
    }
}

/// Everything known about a configuration as loaded: see [`WrapperConfig::report_from_vars`].
#[derive(Debug, Clone)]
pub struct ConfigReport {
    /// The configuration, with defaults in place of invalid values.
    pub config: WrapperConfig,
    /// Every problem (empty when the configuration is valid).
    pub problems: Vec<ConfigProblem>,
    /// Every warning.
    pub warnings: Vec<ConfigWarning>,
    /// `MSB_*` variables that are not settings.
    pub unknown: Vec<crate::UnknownKey>,
}

impl ConfigReport {
    /// The report for the process environment.
    pub fn from_env() -> Self {
        WrapperConfig::report_from_vars(process_vars())
    }

    /// The report for a `.env` file with the process environment on top.
    pub fn from_env_file(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let mut vars = read_env_file(path.as_ref())?;
        vars.extend(process_vars());
        Ok(WrapperConfig::report_from_vars(vars))
    }

    /// Whether the configuration is valid.
    pub fn is_valid(&self) -> bool {
        self.problems.is_empty()
    }
}

impl Serialize for WrapperConfig {
    /// Every field under its name; durations as seconds, options lower-case, the API key masked.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut s = serializer.serialize_struct("WrapperConfig", ConfigKey::ALL.len())?;
        s.serialize_field("server_url", &crate::url::redact_url(&self.server_url))?;
        s.serialize_field("api_key", &self.api_key)?;
        s.serialize_field("session_timeout", &seconds_value(self.session_timeout))?;
        s.serialize_field("max_concurrent_sessions", &self.max_concurrent_sessions)?;
        s.serialize_field("cleanup_interval", &seconds_value(self.cleanup_interval))?;
        s.serialize_field("default_flavor", &self.default_flavor)?;
        s.serialize_field("sandbox_start_timeout", &self.sandbox_start_timeout.as_secs_f64())?;
        s.serialize_field(
            "default_execution_timeout",
            &seconds_value(self.default_execution_timeout),
        )?;
        s.serialize_field("max_total_memory_mb", &self.max_total_memory_mb)?;
        s.serialize_field("shared_volume_mappings", &self.shared_volume_mappings)?;
        s.serialize_field("orphan_cleanup_interval", &seconds_value(self.orphan_cleanup_interval))?;
        s.serialize_field("log_level", &self.log_level)?;
        s.serialize_field("backend", &self.backend)?;
        s.serialize_field("namespace", &self.namespace)?;
        s.serialize_field("owner_mark", &self.owner_mark)?;
        s.serialize_field("limit_policy", &self.limit_policy)?;
        s.serialize_field("limit_wait_timeout", &seconds_value(self.limit_wait_timeout))?;
        s.serialize_field("max_concurrent_starts", &self.max_concurrent_starts)?;
        s.serialize_field("shutdown_timeout", &seconds_value(self.shutdown_timeout))?;
        s.serialize_field("warm_pool", &self.warm_pool.to_string())?;
        // Backend settings as text; a switch that reads as one as a boolean, as before the split.
        for key in ConfigKey::ALL.into_iter().filter(|k| k.backend().is_some()) {
            let text = self.backend_settings.text(key);
            match crate::value::boolean(text) {
                Ok(flag) if key.is_switch() => s.serialize_field(key.field_name(), &flag)?,
                _ => s.serialize_field(key.field_name(), text)?,
            }
        }
        s.end()
    }
}

/// Builds a [`WrapperConfig`] setting by setting; [`build`](ConfigBuilder::build) validates and
/// reports every problem, including those of values given as text.
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until build() is called"]
pub struct ConfigBuilder {
    config: WrapperConfig,
    problems: Vec<ConfigProblem>,
}

macro_rules! setters {
    ($($(#[$doc:meta])* $name:ident: $ty:ty),+ $(,)?) => {
        $(
            $(#[$doc])*
            pub fn $name(mut self, value: $ty) -> Self {
                self.config.$name = value.into();
                self
            }
        )+
    };
}

impl ConfigBuilder {
    setters! {
        /// Sets `server_url`.
        server_url: &str,
        /// Sets `session_timeout`.
        session_timeout: Duration,
        /// Sets `max_concurrent_sessions`.
        max_concurrent_sessions: u32,
        /// Sets `cleanup_interval`.
        cleanup_interval: Duration,
        /// Sets `default_flavor`.
        default_flavor: SandboxFlavor,
        /// Sets `sandbox_start_timeout`.
        sandbox_start_timeout: Duration,
        /// Sets `default_execution_timeout`.
        default_execution_timeout: Duration,
        /// Sets `orphan_cleanup_interval`.
        orphan_cleanup_interval: Duration,
        /// Sets `log_level`.
        log_level: LogLevel,
        /// Sets `backend`.
        backend: BackendKind,
        /// Sets `namespace`.
        namespace: &str,
        /// Sets `owner_mark`.
        owner_mark: &str,
        /// Sets `limit_policy`.
        limit_policy: LimitPolicy,
        /// Sets `limit_wait_timeout`.
        limit_wait_timeout: Duration,
        /// Sets `max_concurrent_starts`.
        max_concurrent_starts: u32,
        /// Sets `shutdown_timeout`.
        shutdown_timeout: Duration,
        /// Sets the memory limit across all sessions, in MB.
        max_total_memory_mb: u64,
        /// Sets the warm pool.
        warm_pool: WarmPool,
    }

    /// Sets the API key.
    pub fn api_key(mut self, key: impl Into<ApiKey>) -> Self {
        self.config.api_key = Some(key.into());
        self
    }

    /// Adds a volume mapping written as `host:container[:ro|:rw]`; a bad one is reported by `build`.
    pub fn volume(mut self, mapping: &str) -> Self {
        match mapping.parse::<VolumeMapping>() {
            Ok(m) => self.config.shared_volume_mappings.push(m),
            Err(e) => self.problems.push(ConfigProblem {
                key: ConfigKey::SharedVolumePath,
                value: mapping.to_owned(),
                message: e.to_string(),
                allowed: ConfigKey::SharedVolumePath.allowed(),
            }),
        }
        self
    }

    /// Replaces the volume mappings.
    pub fn volumes(mut self, mappings: Vec<VolumeMapping>) -> Self {
        self.config.shared_volume_mappings = mappings;
        self
    }

    /// Sets a setting from its environment-variable text; a bad value is reported by `build`.
    pub fn set(mut self, key: ConfigKey, value: &str) -> Self {
        if let Err(problem) = self.config.set(key, value) {
            self.problems.push(problem);
        }
        self
    }

    /// Validates and returns the configuration, or every problem found.
    pub fn build(self) -> Result<WrapperConfig, ConfigError> {
        self.config.finish(self.problems)
    }
}

/// The process environment's `MSB_*` variables, as `(name, value)` pairs.
pub fn process_vars() -> Vec<(String, String)> {
    std::env::vars_os()
        .filter_map(|(k, v)| {
            let k = k.into_string().ok()?;
            k.starts_with("MSB_").then(|| (k, v.to_string_lossy().into_owned()))
        })
        .collect()
}

fn out_of_range(key: ConfigKey, value: f64) -> Option<String> {
    let (min, max) = key.range()?;
    (value < min || value > max).then(|| "is out of range".to_owned())
}

fn whole_number<T: std::str::FromStr>(text: &str) -> Result<T, String> {
    text.parse()
        .map_err(|_| "is not a whole number (or is too large)".to_owned())
}

fn whole_seconds(text: &str) -> Result<Duration, String> {
    whole_number::<u64>(text)
        .map(Duration::from_secs)
        .map_err(|_| "is not a whole number of seconds".to_owned())
}

/// Parses `180`, `180.0` or `180.25` exactly (to the nanosecond).
fn decimal_seconds(text: &str) -> Result<Duration, String> {
    let bad = || "is not a number of seconds such as 180 or 180.5".to_owned();
    let (whole, frac) = text.split_once('.').unwrap_or((text, ""));
    if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let secs: u64 = whole.parse().map_err(|_| bad())?;
    let digits = frac.trim_end_matches('0');
    if digits.len() > 9 {
        return Err("has more than 9 decimal places".to_owned());
    }
    let nanos: u32 = if digits.is_empty() {
        0
    } else {
        format!("{digits:0<9}").parse().map_err(|_| bad())?
    };
    Ok(Duration::new(secs, nanos))
}

/// Seconds as text: `1800`, or `180.5` when there is a fraction (exact, no exponent).
fn seconds_text(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        d.as_secs().to_string()
    } else {
        let frac = format!("{:09}", d.subsec_nanos());
        format!("{}.{}", d.as_secs(), frac.trim_end_matches('0'))
    }
}

/// Seconds as a JSON number: an integer when whole.
fn seconds_value(d: Duration) -> serde_json::Value {
    if d.subsec_nanos() == 0 {
        d.as_secs().into()
    } else {
        d.as_secs_f64().into()
    }
}

/// `[A-Za-z0-9][A-Za-z0-9_-]*` up to `max` characters; only letters and digits unless `punct`.
fn is_name(s: &str, max: usize, punct: bool) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && s.len() <= max
        && chars.all(|c| c.is_ascii_alphanumeric() || (punct && matches!(c, '-' | '_')))
}

fn is_sensitive(host_path: &str) -> bool {
    const SENSITIVE: [&str; 9] = [
        "/", "/etc", "/root", "/proc", "/sys", "/dev", "/boot", "/var/run", "/run",
    ];
    SENSITIVE.contains(&host_path) || host_path.ends_with("docker.sock") || host_path.starts_with("/root/.ssh")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_seconds_are_exact() {
        assert_eq!(decimal_seconds("180"), Ok(Duration::from_secs(180)));
        assert_eq!(decimal_seconds("180.0"), Ok(Duration::from_secs(180)));
        assert_eq!(decimal_seconds("0.000000001"), Ok(Duration::new(0, 1)));
        assert_eq!(decimal_seconds("30.25"), Ok(Duration::from_millis(30_250)));
        for bad in ["", ".5", "1e3", "-5", "1.2.3", "abc", "5.", "1.0000000001"] {
            if bad == "5." {
                assert_eq!(decimal_seconds(bad), Ok(Duration::from_secs(5)));
                continue;
            }
            assert!(decimal_seconds(bad).is_err(), "{bad:?} should not parse");
        }
        assert_eq!(seconds_text(Duration::from_millis(30_250)), "30.25");
        assert_eq!(seconds_text(Duration::from_secs(60)), "60");
    }

    #[test]
    fn names_follow_the_servers_rule() {
        assert!(is_name("default", 63, true));
        assert!(is_name("a-b_c9", 63, true));
        assert!(!is_name("-a", 63, true));
        assert!(!is_name("", 63, true));
        assert!(!is_name(&"a".repeat(64), 63, true));
        assert!(is_name(&"a".repeat(63), 63, true));
        assert!(!is_name("msb-w", 16, false));
        assert!(!is_name("name space", 63, true));
    }
}
