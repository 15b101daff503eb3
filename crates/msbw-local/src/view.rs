//! What every sandbox sees of the host: the system directories (read-only) and the configured
//! read-only paths.

use std::path::Path;

use crate::config::LocalConfig;

/// The host's system directories that every sandbox sees read-only (or as the same symlinks).
pub(crate) const SYSTEM_DIRS: [&str; 8] = ["usr", "etc", "bin", "sbin", "lib", "lib32", "lib64", "libx32"];

/// Whether `path` (absolute, on the host) is visible inside sandboxes.
pub(crate) fn visible_in_sandbox(path: &Path, config: &LocalConfig) -> bool {
    path.is_absolute()
        && (SYSTEM_DIRS.iter().any(|d| path.starts_with(Path::new("/").join(d)))
            || config.read_only_paths.iter().any(|p| path.starts_with(p)))
}
