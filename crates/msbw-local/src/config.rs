//! [`LocalConfig`]: how the local backend builds its sandboxes.

use std::path::PathBuf;

use msbw_config::WrapperConfig;

/// Settings of the local backend. Start from [`LocalConfig::default`] (or
/// [`LocalConfig::from_config`]) and change fields as needed.
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
    /// The local backend's settings from the wrapper's configuration (`MSB_LOCAL_NETWORK`).
    pub fn from_config(config: &WrapperConfig) -> Self {
        LocalConfig {
            network: config.local_network,
            ..LocalConfig::default()
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_the_wrapper_configuration() {
        let config = WrapperConfig::from_vars([("MSB_LOCAL_NETWORK", "true")]).unwrap();
        assert!(LocalConfig::from_config(&config).network);
        assert!(!LocalConfig::from_config(&WrapperConfig::default()).network);
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
