//! Where `msbw` takes its settings from: a `.env` file, the environment on top, the command-line
//! options on top of that.
//!
//! A `.env` named with `--env-file` (or `MSB_ENV_FILE`) is trusted like the environment. `./.env`,
//! read because it happens to be in the working directory, may have been written by a sandbox
//! with a volume on that directory: it may not weaken isolation or raise limits (see
//! [`microsandbox_wrapper::config::implicit_rule`]); what it tried is named in a warning.

use std::path::Path;

use microsandbox_wrapper::config::{ConfigReport, process_vars, read_env_file, read_implicit_env_file};
use microsandbox_wrapper::{ConfigKey, WrapperConfig, WrapperError};

use crate::cli::Global;

/// The loaded configuration, and warnings about what of `./.env` was not used.
pub(crate) struct Loaded {
    pub(crate) report: ConfigReport,
    pub(crate) notes: Vec<String>,
}

/// Reads the settings.
pub(crate) fn load(global: &Global) -> Result<Loaded, WrapperError> {
    let mut vars: Vec<(String, String)> = Vec::new();
    let mut notes = Vec::new();
    match &global.env_file {
        Some(path) => vars.extend(read_env_file(path)?),
        None if !global.no_env_file => {
            if let Some(found) = read_implicit_env_file(Path::new(".env"))? {
                if let Some(why) = found.distrusted {
                    notes.push(format!(
                        "ignored ./.env: {why}; fix its owner or mode, or name it with --env-file to use it"
                    ));
                }
                if !found.ignored.is_empty() {
                    notes.push(format!(
                        "ignored {} from ./.env: a .env found in the working directory may not weaken \
                         isolation or raise limits (a sandbox may have written it); set these in the \
                         environment or name the file with --env-file",
                        found.ignored.join(", ")
                    ));
                }
                vars.extend(found.vars);
            }
        }
        None => {}
    }
    vars.extend(process_vars());
    if let Some(backend) = &global.backend {
        vars.push((ConfigKey::Backend.var_name().to_owned(), backend.clone()));
    }
    if let Some(url) = &global.server_url {
        vars.push((ConfigKey::ServerUrl.var_name().to_owned(), url.clone()));
    }
    let mut report = WrapperConfig::report_from_vars(vars);
    // Backend settings (MSB_PYTHON_IMAGE, ...) are validated by their backends.
    report
        .problems
        .extend(microsandbox_wrapper::backend_problems(&report.config));
    report
        .problems
        .sort_by_key(|p| ConfigKey::ALL.iter().position(|k| *k == p.key));
    Ok(Loaded { report, notes })
}
