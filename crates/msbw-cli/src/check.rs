//! `msbw config check`: the configuration guide's validation script.

use microsandbox_wrapper::config::ConfigReport;

use crate::exit;
use crate::out::outln;

/// Prints the findings (or the JSON) and returns the exit status: 2 when there are errors.
/// `notes` are warnings from loading (what of ./.env was ignored).
pub(crate) fn run(report: &ConfigReport, notes: &[String], json: bool) -> u8 {
    let errors: Vec<String> = report.problems.iter().map(ToString::to_string).collect();
    let mut warnings: Vec<String> = report.warnings.iter().map(ToString::to_string).collect();
    warnings.extend(
        report
            .unknown
            .iter()
            .map(|u| format!("{}: not a setting, ignored: {u}", u.name)),
    );
    warnings.extend(notes.iter().cloned());
    if json {
        let mut value = serde_json::to_value(&report.config).unwrap_or_else(|_| serde_json::json!({}));
        if let Some(map) = value.as_object_mut() {
            map.insert("errors".into(), errors.clone().into());
            map.insert("warnings".into(), warnings.clone().into());
        }
        outln!("{}", serde_json::to_string_pretty(&value).unwrap_or_default());
    } else {
        if errors.is_empty() {
            outln!("ok       configuration is valid");
        }
        for w in &warnings {
            outln!("warning  {w}");
        }
        for e in &errors {
            outln!("error    {e}");
        }
        let c = &report.config;
        outln!();
        outln!("Configuration summary:");
        outln!(
            "  Server URL:        {}",
            microsandbox_wrapper::config::redact_url(&c.server_url)
        );
        outln!(
            "  API key:           {}",
            if c.api_key.is_some() { "set (***)" } else { "not set" }
        );
        outln!("  Backend:           {}", c.backend);
        outln!("  Max sessions:      {}", c.max_concurrent_sessions);
        outln!("  Session timeout:   {} s", c.session_timeout.as_secs());
        outln!("  Default flavor:    {}", c.default_flavor);
        outln!(
            "  Memory limit:      {}",
            c.max_total_memory_mb
                .map(|m| format!("{m} MB"))
                .unwrap_or_else(|| "none".into())
        );
        outln!("  Volume mappings:   {}", c.shared_volume_mappings.len());
        outln!(
            "  Warm pool:         {}",
            if c.warm_pool.is_empty() {
                "none".to_owned()
            } else {
                format!("{} ({} sandboxes)", c.warm_pool, c.warm_pool.total())
            }
        );
        outln!(
            "  Result:            {} errors, {} warnings",
            errors.len(),
            warnings.len()
        );
    }
    if errors.is_empty() { exit::OK } else { exit::USAGE }
}
