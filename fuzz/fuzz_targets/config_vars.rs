//! The configuration loader: any set of `MSB_*` values is loaded or reported without a panic,
//! and a configuration that loads reads back equal from its own `to_env_vars`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use msbw_config::{ConfigKey, WrapperConfig};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    // One setting per line: the first character picks the variable (so that every value parser
    // is reached), the rest is its value. Lines starting with '!' give a free-form name.
    let vars: Vec<(String, String)> = text
        .lines()
        .filter_map(|line| {
            let mut chars = line.chars();
            let first = chars.next()?;
            let rest: String = chars.collect();
            if first == '!' {
                let (name, value) = rest.split_once('=').unwrap_or((&rest, ""));
                return Some((name.to_owned(), value.to_owned()));
            }
            let key = ConfigKey::ALL[first as usize % ConfigKey::ALL.len()];
            Some((key.var_name().to_owned(), rest))
        })
        .collect();
    let report = WrapperConfig::report_from_vars(vars.clone());
    // The API key never shows in Debug output.
    // (Unless another variable's value holds the same text: that value is not a secret and may
    // show, as in `MSB_LOCAL_NETWORK=MSB_API_KEY=msb_abcx` next to `MSB_API_KEY=msb_abcx`.)
    if let Some(key) = report.config.api_key.as_ref().map(|k| k.expose().to_owned())
        && key.len() >= 8
        && !vars
            .iter()
            .any(|(name, value)| name != "MSB_API_KEY" && (value.contains(&key) || name.contains(&key)))
    {
        let shown = format!("{:?} {:?}", report.config, report.problems);
        assert!(!shown.contains(&key), "the API key shows in {shown}");
    }
    if let Ok(config) = WrapperConfig::from_vars(vars) {
        let again = WrapperConfig::from_vars(config.to_env_vars()).expect("a loaded configuration reloads");
        assert_eq!(
            again, config,
            "to_env_vars does not read back to the same configuration"
        );
    }
});
