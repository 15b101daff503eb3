//! `.env` files: read with a size bound, and, when one is picked up implicitly from the working
//! directory, trusted only with settings that cannot weaken the next sandbox's isolation.
//!
//! A sandbox with a writable volume on the working directory can write `./.env`. If that file
//! could set `MSB_LOCAL_NETWORK=true` or map another host folder, one run would choose the
//! isolation of the next. So an implicitly found file is read under [`implicit_rule`]: it may
//! carry the API key, log level, intervals and policies, may *lower* a limit, and nothing else.
//! A file the user names (`--env-file`) is trusted like the environment.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::{ConfigError, ConfigKey, WrapperConfig};

/// The largest `.env` file read, in bytes (a real one is a few hundred).
pub const MAX_ENV_FILE_BYTES: u64 = 64 * 1024;

/// What an implicitly loaded `.env` may do with a setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ImplicitRule {
    /// Taken as written.
    Allowed,
    /// Taken only when it does not raise the limit above its default (a file may tighten a
    /// limit, never loosen it).
    AtMostDefault,
    /// Never taken: it changes where code runs, what it can reach, or whose sandboxes are whose.
    Refused,
}

/// What an implicitly loaded `.env` may do with `key`.
///
/// Refused: the backend and server (code and key would go elsewhere), the images (a host
/// directory can be an image), volume mappings, network access, and the namespace and owner mark
/// (orphan cleanup stops sandboxes by them). Limits may only be lowered. Anything that is not a
/// setting is refused too.
pub const fn implicit_rule(key: ConfigKey) -> ImplicitRule {
    match key {
        ConfigKey::ApiKey
        | ConfigKey::LogLevel
        | ConfigKey::CleanupInterval
        | ConfigKey::OrphanCleanupInterval
        | ConfigKey::LimitPolicy
        | ConfigKey::MaxTotalMemoryMb => ImplicitRule::Allowed,
        ConfigKey::SessionTimeout
        | ConfigKey::MaxSessions
        | ConfigKey::DefaultFlavor
        | ConfigKey::SandboxStartTimeout
        | ConfigKey::ExecutionTimeout
        | ConfigKey::LimitWaitTimeout
        | ConfigKey::MaxConcurrentStarts
        | ConfigKey::ShutdownTimeout
        | ConfigKey::WarmPool => ImplicitRule::AtMostDefault,
        ConfigKey::ServerUrl
        | ConfigKey::SharedVolumePath
        | ConfigKey::Backend
        | ConfigKey::Namespace
        | ConfigKey::OwnerMark
        | ConfigKey::PythonImage
        | ConfigKey::NodeImage
        | ConfigKey::LocalNetwork => ImplicitRule::Refused,
    }
}

/// An implicitly found `.env`, as far as it may be trusted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImplicitEnvFile {
    /// The settings it may carry, in file order.
    pub vars: Vec<(String, String)>,
    /// The `MSB_*` variables it set that were ignored, in file order.
    pub ignored: Vec<String>,
    /// Why the whole file was ignored (writable by others, or not the user's), if it was.
    pub distrusted: Option<String>,
}

/// The `(name, value)` pairs of a `.env` file the user named, without touching the process
/// environment. The file may be a regular file or a pipe (`--env-file <(...)`), at most
/// [`MAX_ENV_FILE_BYTES`]. Errors never quote the file's content (it may hold the API key).
pub fn read_env_file(path: &Path) -> Result<Vec<(String, String)>, ConfigError> {
    let file = std::fs::File::open(path).map_err(|e| fail(path, e.to_string()))?;
    let text = read_bounded(path, file, true)?;
    parse(path, &text)
}

/// Reads `path` as a `.env` found without being asked for (e.g. `./.env`): `Ok(None)` when there is
/// none. The file (or a link's target) must be a regular file, not a pipe or a device, of at most
/// [`MAX_ENV_FILE_BYTES`]. If others than its owner may write it, or it belongs to another user,
/// nothing in it is used ([`ImplicitEnvFile::distrusted`]); otherwise each `MSB_*` variable is kept
/// or ignored by [`implicit_rule`].
pub fn read_implicit_env_file(path: &Path) -> Result<Option<ImplicitEnvFile>, ConfigError> {
    let file = match open_nonblocking(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(fail(path, e.to_string())),
    };
    let meta = file.metadata().map_err(|e| fail(path, e.to_string()))?;
    if !meta.is_file() {
        return Err(fail(path, "is not a regular file".to_owned()));
    }
    if let Some(why) = distrust(&meta) {
        return Ok(Some(ImplicitEnvFile {
            distrusted: Some(why),
            ..ImplicitEnvFile::default()
        }));
    }
    let text = read_bounded(path, file, false)?;
    let mut found = ImplicitEnvFile::default();
    for (name, value) in parse(path, &text)? {
        if !name.starts_with("MSB_") {
            continue;
        }
        if implicit_allows(&name, &value) {
            found.vars.push((name, value));
        } else if !found.ignored.contains(&name) {
            found.ignored.push(name);
        }
    }
    Ok(Some(found))
}

/// Whether an implicitly loaded file may set `name` to `value`.
fn implicit_allows(name: &str, value: &str) -> bool {
    let Ok(key) = name.parse::<ConfigKey>() else {
        return false;
    };
    match implicit_rule(key) {
        ImplicitRule::Allowed => true,
        ImplicitRule::Refused => false,
        ImplicitRule::AtMostDefault => {
            let default = WrapperConfig::default();
            let mut set = default.clone();
            // An invalid value is kept, so that validation reports it by name.
            if set.set(key, value).is_err() {
                return true;
            }
            match key {
                ConfigKey::SessionTimeout => set.session_timeout <= default.session_timeout,
                ConfigKey::MaxSessions => set.max_concurrent_sessions <= default.max_concurrent_sessions,
                ConfigKey::DefaultFlavor => set.default_flavor.memory_mb() <= default.default_flavor.memory_mb(),
                ConfigKey::SandboxStartTimeout => set.sandbox_start_timeout <= default.sandbox_start_timeout,
                ConfigKey::ExecutionTimeout => set.default_execution_timeout <= default.default_execution_timeout,
                ConfigKey::LimitWaitTimeout => set.limit_wait_timeout <= default.limit_wait_timeout,
                ConfigKey::MaxConcurrentStarts => set.max_concurrent_starts <= default.max_concurrent_starts,
                ConfigKey::ShutdownTimeout => set.shutdown_timeout <= default.shutdown_timeout,
                ConfigKey::WarmPool => set.warm_pool.total() <= default.warm_pool.total(),
                _ => false,
            }
        }
    }
}

/// Opens for reading without blocking on a FIFO (a link is followed: its target is checked).
fn open_nonblocking(path: &Path) -> std::io::Result<std::fs::File> {
    use rustix::fs::{Mode, OFlags};
    let fd = rustix::fs::open(path, OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC, Mode::empty())?;
    Ok(std::fs::File::from(fd))
}

/// Why a file's owner or mode means someone other than this user may have written it.
fn distrust(meta: &std::fs::Metadata) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let me = rustix::process::geteuid().as_raw();
    let mode = meta.mode();
    if meta.uid() != me && meta.uid() != 0 {
        return Some(format!("it belongs to uid {}, not to this user (uid {me})", meta.uid()));
    }
    if mode & 0o002 != 0 {
        return Some("anyone may write it".to_owned());
    }
    if mode & 0o020 != 0 && meta.gid() != rustix::process::getegid().as_raw() {
        return Some(format!("its group (gid {}) may write it", meta.gid()));
    }
    None
}

/// Reads at most [`MAX_ENV_FILE_BYTES`]; `pipes` allows a FIFO besides a regular file.
fn read_bounded(path: &Path, file: std::fs::File, pipes: bool) -> Result<String, ConfigError> {
    use std::os::unix::fs::FileTypeExt;
    let kind = file.metadata().map_err(|e| fail(path, e.to_string()))?.file_type();
    if !(kind.is_file() || (pipes && kind.is_fifo())) {
        return Err(fail(path, "is not a regular file or a pipe".to_owned()));
    }
    let mut bytes = Vec::new();
    file.take(MAX_ENV_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| fail(path, e.to_string()))?;
    if bytes.len() as u64 > MAX_ENV_FILE_BYTES {
        return Err(fail(path, format!("is larger than {MAX_ENV_FILE_BYTES} bytes")));
    }
    String::from_utf8(bytes).map_err(|_| fail(path, "is not UTF-8 text".to_owned()))
}

fn parse(path: &Path, text: &str) -> Result<Vec<(String, String)>, ConfigError> {
    let mut vars = Vec::new();
    for item in dotenvy::from_read_iter(text.as_bytes()) {
        vars.push(item.map_err(|e| fail(path, reason(&e)))?);
    }
    Ok(vars)
}

fn fail(path: &Path, reason: String) -> ConfigError {
    ConfigError::EnvFile {
        path: PathBuf::from(path),
        reason,
    }
}

/// A description of a dotenv error that never quotes the file's content (it may hold secrets).
fn reason(e: &dotenvy::Error) -> String {
    match e {
        dotenvy::Error::LineParse(_, index) => format!("cannot parse the line at character {index}"),
        dotenvy::Error::Io(io) => io.to_string(),
        dotenvy::Error::EnvVar(_) => "an environment variable is not valid unicode".to_owned(),
        _ => "cannot parse the file".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_has_a_rule_and_the_isolation_keys_are_refused() {
        for key in ConfigKey::ALL {
            let _ = implicit_rule(key);
        }
        for name in [
            "MSB_LOCAL_NETWORK",
            "MSB_SHARED_VOLUME_PATH",
            "MSB_BACKEND",
            "MSB_SERVER_URL",
            "MSB_PYTHON_IMAGE",
            "MSB_NODE_IMAGE",
            "MSB_OWNER_MARK",
            "MSB_NAMESPACE",
            "MSB_NOT_A_SETTING",
        ] {
            assert!(!implicit_allows(name, "x"), "{name}");
        }
    }

    #[test]
    fn limits_may_be_lowered_not_raised() {
        assert!(implicit_allows("MSB_EXECUTION_TIMEOUT", "60"));
        assert!(!implicit_allows("MSB_EXECUTION_TIMEOUT", "3600"));
        assert!(implicit_allows("MSB_DEFAULT_FLAVOR", "small"));
        assert!(!implicit_allows("MSB_DEFAULT_FLAVOR", "large"));
        assert!(!implicit_allows("MSB_MAX_SESSIONS", "50"));
        assert!(implicit_allows("MSB_MAX_SESSIONS", "2"));
        assert!(
            implicit_allows("MSB_MAX_SESSIONS", "lots"),
            "invalid values reach validation"
        );
        assert!(implicit_allows("MSB_API_KEY", "k"));
    }
}
