//! Configuration of microsandbox-wrapper: every `MSB_*` setting with its default, its allowed
//! range and its format, loaded from the environment, a `.env` file or code, and validated with
//! errors that name the variable, the value and what is allowed.
//!
//! This crate has no async runtime and no HTTP client, so a deployment can check its
//! configuration with this crate alone.
//!
//! ```
//! use msbw_config::{SandboxFlavor, WrapperConfig};
//!
//! let config = WrapperConfig::from_vars([
//!     ("MSB_MAX_SESSIONS", "20"),
//!     ("MSB_DEFAULT_FLAVOR", "medium"),
//!     ("MSB_SHARED_VOLUME_PATH", r#"["/data/input:/sandbox/input:ro"]"#),
//! ])?;
//! assert_eq!(config.max_concurrent_sessions, 20);
//! assert_eq!(config.default_flavor, SandboxFlavor::Medium);
//! assert!(config.shared_volume_mappings[0].read_only);
//!
//! let err = WrapperConfig::from_vars([("MSB_SESSION_TIMEOUT", "30")]).unwrap_err();
//! assert!(err.to_string().contains("MSB_SESSION_TIMEOUT"));
//! # Ok::<(), msbw_config::ConfigError>(())
//! ```

mod backend_settings;
mod config;
mod env_file;
mod error;
mod key;
mod options;
mod secret;
mod template;
mod url;
mod volume;
mod warm_pool;

pub use backend_settings::{BackendConfig, BackendSettings, value};
pub use config::{ConfigBuilder, ConfigReport, DEFAULT_SERVER_URL, WrapperConfig, process_vars};
pub use env_file::{
    ImplicitEnvFile, ImplicitRule, MAX_ENV_FILE_BYTES, implicit_rule, read_env_file, read_implicit_env_file,
};
pub use error::{ConfigError, ConfigProblem, ConfigWarning};
pub use key::{ConfigKey, UnknownKey};
pub use options::{BackendKind, LimitPolicy, LogLevel, ParseOptionError, SandboxFlavor};
pub use secret::{ApiKey, MASK};
pub use template::{Template, UnknownTemplate};
pub use url::{ServerUrlParts, parse_server_url, redact_url};
pub use volume::{VolumeError, VolumeMapping, format_volume_mappings, parse_volume_mappings};
pub use warm_pool::{MAX_POOLED_PER_KEY, PoolEntry, WarmPool};
