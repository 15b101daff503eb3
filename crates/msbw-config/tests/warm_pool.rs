//! `MSB_WARM_POOL` is loaded, validated, reported and written back like every other setting.

use msbw_config::{ConfigKey, ImplicitRule, SandboxFlavor, Template, WrapperConfig, implicit_rule};

#[test]
fn a_pool_loads_and_round_trips_through_to_env_vars() {
    let config = WrapperConfig::from_vars([("MSB_WARM_POOL", "python:small=2, node:medium=1")]).unwrap();
    assert_eq!(config.warm_pool.target(Template::Python, SandboxFlavor::Small), 2);
    assert_eq!(config.warm_pool.target(Template::Node, SandboxFlavor::Medium), 1);
    assert_eq!(config.get(ConfigKey::WarmPool), "python:small=2,node:medium=1");
    let again = WrapperConfig::from_vars(config.to_env_vars()).unwrap();
    assert_eq!(again, config);
    let json = serde_json::to_value(&config).unwrap();
    assert_eq!(json["warm_pool"], "python:small=2,node:medium=1");
    // Unset or empty: no pool.
    assert!(
        WrapperConfig::from_vars([("MSB_WARM_POOL", " ")])
            .unwrap()
            .warm_pool
            .is_empty()
    );
    assert!(WrapperConfig::default().warm_pool.is_empty());
}

#[test]
fn a_bad_pool_is_an_error_naming_the_variable_the_value_and_what_is_allowed() {
    for (value, says) in [
        ("python:small", "no '=count'"),
        ("ruby:small=1", "unknown template"),
        ("python:tiny=1", "unknown flavor"),
        ("python:small=1,python:small=1", "more than once"),
        ("python:small=0", "from 1 to 100"),
        ("python:small=8,node:small=3", "more than MSB_MAX_SESSIONS = 10"),
    ] {
        let err = WrapperConfig::from_vars([("MSB_WARM_POOL", value)])
            .unwrap_err()
            .to_string();
        assert!(err.contains("MSB_WARM_POOL"), "{err}");
        assert!(err.contains(value), "{err}");
        assert!(err.contains(says), "{value:?}: {err}");
        assert!(err.contains("template:flavor=count"), "{err}");
    }
    // The session limit decides how large the pool may be.
    let ok = WrapperConfig::from_vars([
        ("MSB_WARM_POOL", "python:small=8,node:small=3"),
        ("MSB_MAX_SESSIONS", "11"),
    ]);
    assert!(ok.is_ok(), "{ok:?}");
}

#[test]
fn programmatic_pools_are_validated_too() {
    let mut config = WrapperConfig {
        warm_pool: "python:small=1".parse().unwrap(),
        ..WrapperConfig::default()
    };
    config.warm_pool.entries.push(config.warm_pool.entries[0]);
    let err = config.validate().unwrap_err().to_string();
    assert!(err.contains("MSB_WARM_POOL") && err.contains("more than once"), "{err}");
}

#[test]
fn a_pool_larger_than_the_memory_budget_is_a_warning_and_an_implicit_env_file_cannot_add_one() {
    let report = WrapperConfig::report_from_vars([
        ("MSB_WARM_POOL", "python:large=2"),
        ("MSB_MAX_TOTAL_MEMORY_MB", "4096"),
        ("MSB_DEFAULT_FLAVOR", "small"),
        ("MSB_MAX_SESSIONS", "4"),
    ]);
    assert!(report.is_valid(), "{:?}", report.problems);
    assert!(
        report
            .warnings
            .iter()
            .any(|w| w.key == ConfigKey::WarmPool && w.message.contains("8192 MB")),
        "{:?}",
        report.warnings
    );
    assert_eq!(implicit_rule(ConfigKey::WarmPool), ImplicitRule::AtMostDefault);
}
