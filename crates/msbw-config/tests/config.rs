//! Defaults, ranges, messages and the guide's own examples.

use std::time::Duration;

use msbw_config::{
    BackendKind, ConfigError, ConfigKey, LimitPolicy, LogLevel, SandboxFlavor, VolumeMapping, WrapperConfig,
};

fn problems(result: Result<WrapperConfig, ConfigError>) -> Vec<String> {
    match result {
        Ok(c) => panic!("expected an error, got {c:?}"),
        Err(e) => e.problems().iter().map(ToString::to_string).collect(),
    }
}

fn load(vars: &[(&str, &str)]) -> WrapperConfig {
    WrapperConfig::from_vars(vars.iter().copied()).unwrap_or_else(|e| panic!("{e}"))
}

mod defaults {
    use super::*;

    #[test]
    fn are_the_guides() {
        let c = WrapperConfig::default();
        assert_eq!(c.server_url, "http://127.0.0.1:5555");
        assert_eq!(c.api_key, None);
        assert_eq!(c.session_timeout, Duration::from_secs(1800));
        assert_eq!(c.max_concurrent_sessions, 10);
        assert_eq!(c.cleanup_interval, Duration::from_secs(60));
        assert_eq!(c.default_flavor, SandboxFlavor::Small);
        assert_eq!(c.sandbox_start_timeout, Duration::from_secs(180));
        assert_eq!(c.default_execution_timeout, Duration::from_secs(300));
        assert_eq!(c.max_total_memory_mb, None);
        assert!(c.shared_volume_mappings.is_empty());
        assert_eq!(c.orphan_cleanup_interval, Duration::from_secs(600));
        assert_eq!(c.log_level, LogLevel::Info);
    }

    #[test]
    fn of_the_extensions() {
        let c = WrapperConfig::default();
        assert_eq!(c.backend, BackendKind::Auto);
        assert_eq!(c.namespace, "default");
        assert_eq!(c.owner_mark, "msbw");
        assert_eq!(c.limit_policy, LimitPolicy::Reject);
        assert_eq!(c.limit_wait_timeout, Duration::from_secs(30));
        assert_eq!(c.max_concurrent_starts, 4);
        assert_eq!(c.shutdown_timeout, Duration::from_secs(30));
        // Backend settings are text here; their backends parse them (msbw-http, msbw-local).
        assert_eq!(c.backend_settings.text(ConfigKey::PythonImage), "microsandbox/python");
        assert_eq!(c.backend_settings.text(ConfigKey::NodeImage), "microsandbox/node");
        assert_eq!(c.backend_settings.text(ConfigKey::LocalNetwork), "false");
        assert_eq!(c.backend_settings, Default::default());
    }

    #[test]
    fn are_one_set_whatever_the_construction_path() {
        let empty: [(&str, &str); 0] = [];
        let from_env = WrapperConfig::from_vars(empty).unwrap();
        let built = WrapperConfig::builder().build().unwrap();
        assert_eq!(from_env, WrapperConfig::default());
        assert_eq!(built, WrapperConfig::default());
        WrapperConfig::default().validate().unwrap();
    }

    #[test]
    fn empty_variables_mean_the_default() {
        let vars: Vec<(&str, &str)> = ConfigKey::ALL.iter().map(|k| (k.var_name(), "")).collect();
        assert_eq!(load(&vars), WrapperConfig::default());
        let vars: Vec<(&str, &str)> = ConfigKey::ALL.iter().map(|k| (k.var_name(), "   ")).collect();
        assert_eq!(load(&vars), WrapperConfig::default());
    }

    #[test]
    fn every_default_value_text_loads_to_the_default() {
        for key in ConfigKey::ALL {
            let c = load(&[(key.var_name(), key.default_value())]);
            assert_eq!(c, WrapperConfig::default(), "{key}");
        }
    }
}

mod ranges {
    use super::*;

    /// (variable, lowest allowed, highest allowed) for every integer range.
    const INTEGER_RANGES: [(&str, u64, u64); 9] = [
        ("MSB_SESSION_TIMEOUT", 60, 86_400),
        ("MSB_MAX_SESSIONS", 1, 100),
        ("MSB_CLEANUP_INTERVAL", 10, 3600),
        ("MSB_EXECUTION_TIMEOUT", 10, 3600),
        ("MSB_ORPHAN_CLEANUP_INTERVAL", 30, 3600),
        ("MSB_LIMIT_WAIT_TIMEOUT", 1, 3600),
        ("MSB_MAX_CONCURRENT_STARTS", 1, 100),
        ("MSB_SHUTDOWN_TIMEOUT", 0, 3600),
        ("MSB_MAX_TOTAL_MEMORY_MB", 1024, 16_777_216),
    ];

    /// Other settings that must move so an edge value of `var` is judged on its own.
    fn companions(var: &str, value: u64) -> Vec<(&'static str, String)> {
        match var {
            // The cleanup interval must stay below the session timeout.
            "MSB_SESSION_TIMEOUT" => vec![("MSB_CLEANUP_INTERVAL", "10".into())],
            "MSB_CLEANUP_INTERVAL" => vec![("MSB_SESSION_TIMEOUT", (value + 1).clamp(60, 86_400).to_string())],
            _ => vec![],
        }
    }

    #[test]
    fn both_edges_are_accepted() {
        for (var, min, max) in INTEGER_RANGES {
            for value in [min, max] {
                let mut vars = companions(var, value);
                vars.push((var, value.to_string()));
                let c = WrapperConfig::from_vars(vars.clone());
                assert!(c.is_ok(), "{vars:?} should load: {}", c.unwrap_err());
            }
        }
        load(&[("MSB_SANDBOX_START_TIMEOUT", "30.0")]);
        load(&[("MSB_SANDBOX_START_TIMEOUT", "600.0")]);
        load(&[("MSB_SANDBOX_START_TIMEOUT", "600")]);
    }

    #[test]
    fn one_past_either_edge_is_refused_naming_variable_value_and_range() {
        for (var, min, max) in INTEGER_RANGES {
            let mut outside = vec![max + 1];
            if min > 0 {
                outside.push(min - 1);
            }
            for value in outside {
                let mut vars = companions(var, value);
                vars.push((var, value.to_string()));
                let found = problems(WrapperConfig::from_vars(vars));
                let mine: Vec<&String> = found.iter().filter(|p| p.starts_with(var)).collect();
                assert_eq!(mine.len(), 1, "{var}={value}: {found:?}");
                let text = mine[0];
                assert!(text.contains(&format!("= \"{value}\"")), "{text}");
                assert!(text.contains("is out of range"), "{text}");
                assert!(text.contains(&format!("from {min} to {max}")), "{text}");
            }
        }
        for value in ["29.9", "600.1", "0"] {
            let found = problems(WrapperConfig::from_vars([("MSB_SANDBOX_START_TIMEOUT", value)]));
            assert_eq!(
                found,
                [format!(
                    "MSB_SANDBOX_START_TIMEOUT (sandbox_start_timeout) = \"{value}\": is out of range; allowed: a number from 30.0 to 600.0 seconds"
                )]
            );
        }
    }

    #[test]
    fn the_exact_message_names_variable_field_value_and_what_is_allowed() {
        let found = problems(WrapperConfig::from_vars([("MSB_SESSION_TIMEOUT", "59")]));
        assert_eq!(
            found,
            [
                "MSB_SESSION_TIMEOUT (session_timeout) = \"59\": is out of range; allowed: a whole number from 60 to 86400 seconds"
            ]
        );
        let found = problems(WrapperConfig::from_vars([("MSB_MAX_SESSIONS", "0")]));
        assert_eq!(
            found,
            [
                "MSB_MAX_SESSIONS (max_concurrent_sessions) = \"0\": is out of range; allowed: a whole number from 1 to 100"
            ]
        );
    }

    #[test]
    fn programmatic_values_are_held_to_the_same_ranges() {
        let err = WrapperConfig::builder()
            .session_timeout(Duration::from_secs(59))
            .max_concurrent_sessions(101)
            .sandbox_start_timeout(Duration::from_secs(601))
            .build()
            .unwrap_err();
        let found: Vec<ConfigKey> = err.problems().iter().map(|p| p.key).collect();
        assert_eq!(
            found,
            [
                ConfigKey::SessionTimeout,
                ConfigKey::MaxSessions,
                ConfigKey::SandboxStartTimeout
            ]
        );

        let mut config = WrapperConfig {
            max_concurrent_sessions: 0,
            ..Default::default()
        };
        assert!(config.validate().is_err());
        config.max_concurrent_sessions = 15;
        config.validate().unwrap();
    }

    #[test]
    fn fractional_seconds_are_refused_where_the_guide_says_whole_seconds() {
        let found = problems(WrapperConfig::from_vars([("MSB_SESSION_TIMEOUT", "60.5")]));
        assert_eq!(
            found,
            [
                "MSB_SESSION_TIMEOUT (session_timeout) = \"60.5\": is not a whole number of seconds; allowed: a whole number from 60 to 86400 seconds"
            ]
        );
        let err = WrapperConfig::builder()
            .session_timeout(Duration::from_millis(60_500))
            .build()
            .unwrap_err();
        assert!(err.to_string().contains("is not a whole number of seconds"), "{err}");
        let c = load(&[("MSB_SANDBOX_START_TIMEOUT", "45.5")]);
        assert_eq!(c.sandbox_start_timeout, Duration::from_millis(45_500));
    }
}

mod messages {
    use super::*;

    #[test]
    fn all_problems_are_reported_at_once_in_guide_order() {
        let err = WrapperConfig::from_vars([
            ("MSB_LOG_LEVEL", "LOUD"),
            ("MSB_SERVER_URL", "ftp://host"),
            ("MSB_MAX_SESSIONS", "lots"),
            ("MSB_DEFAULT_FLAVOR", "huge"),
            ("MSB_SHARED_VOLUME_PATH", "relative:/x"),
        ])
        .unwrap_err();
        let keys: Vec<ConfigKey> = err.problems().iter().map(|p| p.key).collect();
        assert_eq!(
            keys,
            [
                ConfigKey::ServerUrl,
                ConfigKey::MaxSessions,
                ConfigKey::DefaultFlavor,
                ConfigKey::SharedVolumePath,
                ConfigKey::LogLevel
            ]
        );
        let text = err.to_string();
        assert!(text.starts_with("invalid configuration (5 problems):"), "{text}");
        for needle in [
            "MSB_SERVER_URL (server_url) = \"ftp://host\": has scheme \"ftp\"; only http and https are supported",
            "MSB_MAX_SESSIONS (max_concurrent_sessions) = \"lots\": is not a whole number",
            "MSB_DEFAULT_FLAVOR (default_flavor) = \"huge\": is not a known flavor; allowed: one of small, medium, large (any case)",
            "MSB_SHARED_VOLUME_PATH (shared_volume_mappings) = \"relative:/x\": invalid volume mapping \"relative:/x\": host path \"relative\" is not absolute",
            "MSB_LOG_LEVEL (log_level) = \"LOUD\": is not a known log level; allowed: one of DEBUG, INFO, WARNING, ERROR, CRITICAL (any case)",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
        }
        assert_eq!(err.code(), "CONFIGURATION_ERROR");
    }

    #[test]
    fn options_are_case_insensitive() {
        let c = load(&[
            ("MSB_DEFAULT_FLAVOR", "LARGE"),
            ("MSB_LOG_LEVEL", "debug"),
            ("MSB_BACKEND", "Local"),
        ]);
        assert_eq!(c.default_flavor, SandboxFlavor::Large);
        assert_eq!(c.log_level, LogLevel::Debug);
        assert_eq!(c.backend, BackendKind::Local);
        for level in ["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL", "Warning", "critical"] {
            load(&[("MSB_LOG_LEVEL", level)]);
        }
    }

    #[test]
    fn cleanup_must_be_shorter_than_the_session_timeout() {
        let found = problems(WrapperConfig::from_vars([
            ("MSB_SESSION_TIMEOUT", "60"),
            ("MSB_CLEANUP_INTERVAL", "60"),
        ]));
        assert_eq!(
            found,
            [
                "MSB_CLEANUP_INTERVAL (cleanup_interval) = \"60\": must be shorter than the session timeout (60 s), or idle sessions outlive their timeout; allowed: a whole number from 10 to 3600 seconds"
            ]
        );
    }

    #[test]
    fn the_memory_limit_must_fit_one_sandbox_of_the_default_flavor() {
        let found = problems(WrapperConfig::from_vars([
            ("MSB_DEFAULT_FLAVOR", "medium"),
            ("MSB_MAX_TOTAL_MEMORY_MB", "2047"),
        ]));
        assert_eq!(found.len(), 1);
        assert!(
            found[0].contains(
                "= \"2047\": is less than the default flavor's memory (medium = 2048 MB), so no session could start"
            ),
            "{found:?}"
        );
        load(&[("MSB_DEFAULT_FLAVOR", "medium"), ("MSB_MAX_TOTAL_MEMORY_MB", "2048")]);
        let found = problems(WrapperConfig::from_vars([("MSB_MAX_TOTAL_MEMORY_MB", "8GB")]));
        assert!(found[0].contains("is not a whole number"), "{found:?}");
    }

    #[test]
    fn urls_must_be_http_or_https_with_a_host() {
        for bad in [
            "localhost:5555",
            "http://",
            "https://host:70000",
            "unix:///run/msb.sock",
        ] {
            let found = problems(WrapperConfig::from_vars([("MSB_SERVER_URL", bad)]));
            assert!(
                found[0].starts_with(&format!("MSB_SERVER_URL (server_url) = {bad:?}: ")),
                "{found:?}"
            );
        }
        load(&[("MSB_SERVER_URL", "https://microsandbox.example.com:5555")]);
    }

    #[test]
    fn names_of_namespace_and_owner_mark_follow_the_servers_rule() {
        let found = problems(WrapperConfig::from_vars([
            ("MSB_NAMESPACE", "my namespace"),
            ("MSB_OWNER_MARK", "a-b"),
        ]));
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found[0].contains("is not a valid namespace name"));
        assert!(found[1].contains("is not a valid owner mark; allowed: 1 to 16 letters or digits"));
    }

    #[test]
    fn booleans_and_policies_parse() {
        // MSB_LOCAL_NETWORK belongs to the local backend, which parses it (msbw-local's config
        // tests check "maybe" is refused); here it is kept as text.
        let c = load(&[("MSB_LOCAL_NETWORK", "yes"), ("MSB_LIMIT_POLICY", "Wait")]);
        assert_eq!(c.backend_settings.get(ConfigKey::LocalNetwork), Some("yes"));
        assert_eq!(c.limit_policy, LimitPolicy::Wait);
        assert_eq!(msbw_config::value::boolean("On"), Ok(true));
        assert_eq!(msbw_config::value::boolean("maybe"), Err("is not a boolean".into()));
    }

    #[test]
    fn unknown_variables_are_found_with_suggestions() {
        let unknown =
            WrapperConfig::unknown_variables([("MSB_MAX_SESSION", "1"), ("PATH", "/bin"), ("MSB_SERVER_URL", "x")]);
        assert_eq!(unknown.len(), 1);
        assert_eq!(unknown[0].name, "MSB_MAX_SESSION");
        assert_eq!(unknown[0].suggestion, Some(ConfigKey::MaxSessions));
    }

    #[test]
    fn later_values_override_earlier_ones_and_other_variables_are_ignored() {
        let c = load(&[("MSB_MAX_SESSIONS", "3"), ("HOME", "/root"), ("MSB_MAX_SESSIONS", "4")]);
        assert_eq!(c.max_concurrent_sessions, 4);
    }
}

mod secrets {
    use super::*;

    #[test]
    fn the_api_key_never_appears_in_debug_display_errors_or_json() {
        let secret = "msb_eyJhbGciOiJIUzI1NiJ9.secret-part";
        let c = load(&[("MSB_API_KEY", secret), ("MSB_SERVER_URL", "https://server.example")]);
        assert_eq!(c.api_key.as_ref().map(|k| k.expose()), Some(secret));
        for printed in [
            format!("{c:?}"),
            format!("{c:#?}"),
            serde_json::to_string(&c).unwrap(),
            c.get(ConfigKey::ApiKey),
            format!("{:?}", c.warnings()),
        ] {
            assert!(!printed.contains("secret-part"), "leaked in {printed}");
        }
        assert_eq!(c.get(ConfigKey::ApiKey), "***");

        let err = WrapperConfig::builder().api_key(" \t").build().unwrap_err();
        assert!(!err.to_string().contains('\t'));
        assert!(
            err.to_string().contains("MSB_API_KEY (api_key) = \"***\": is blank"),
            "{err}"
        );
        let err = WrapperConfig::builder()
            .api_key("secret-part\nX-Injected: 1")
            .build()
            .unwrap_err();
        assert!(!err.to_string().contains("secret-part"), "{err}");
    }

    #[test]
    fn a_bad_env_file_line_is_not_quoted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".env");
        std::fs::write(&path, "MSB_API_KEY=\"secret-part\nMSB_MAX_SESSIONS=2 x y\n").unwrap();
        let err = WrapperConfig::from_env_file(&path).unwrap_err();
        assert!(!err.to_string().contains("secret-part"), "{err}");
        assert!(err.to_string().starts_with("cannot load env file"), "{err}");
    }

    #[test]
    fn urls_with_credentials_print_redacted() {
        let c = load(&[("MSB_SERVER_URL", "https://user:hunter2@server.example")]);
        let json = serde_json::to_string(&c).unwrap();
        assert!(!json.contains("hunter2"), "{json}");
        assert!(
            c.warnings()
                .iter()
                .any(|w| w.message.contains("credentials in the URL"))
        );
    }
}

mod json {
    use super::*;

    #[test]
    fn every_field_is_serialised_under_its_field_name() {
        let c = load(&[
            ("MSB_SHARED_VOLUME_PATH", "[\"/data/in:/sandbox/in:ro\"]"),
            ("MSB_API_KEY", "k"),
            ("MSB_SANDBOX_START_TIMEOUT", "45.5"),
        ]);
        let json = serde_json::to_value(&c).unwrap();
        for key in ConfigKey::ALL {
            assert!(
                json.get(key.field_name()).is_some(),
                "{} missing from {json}",
                key.field_name()
            );
        }
        assert_eq!(json["session_timeout"], 1800);
        assert_eq!(json["sandbox_start_timeout"], 45.5);
        assert_eq!(json["default_flavor"], "small");
        assert_eq!(json["log_level"], "info");
        assert_eq!(json["api_key"], "***");
        assert_eq!(json["max_total_memory_mb"], serde_json::Value::Null);
        assert_eq!(json["local_network"], false, "a backend's switch is still a boolean");
        assert_eq!(json["python_image"], "microsandbox/python");
        assert_eq!(
            json["shared_volume_mappings"],
            serde_json::json!([{"host_path": "/data/in", "container_path": "/sandbox/in", "read_only": true}])
        );
    }

    #[test]
    fn to_env_vars_round_trips() {
        let c = load(&[
            ("MSB_API_KEY", "k"),
            ("MSB_MAX_TOTAL_MEMORY_MB", "8192"),
            ("MSB_SHARED_VOLUME_PATH", "/a:/b:ro,/c:/d"),
            ("MSB_SANDBOX_START_TIMEOUT", "45.25"),
            ("MSB_LOG_LEVEL", "critical"),
        ]);
        assert_eq!(WrapperConfig::from_vars(c.to_env_vars()).unwrap(), c);
    }
}

mod warnings {
    use super::*;

    fn messages(c: &WrapperConfig) -> Vec<String> {
        c.warnings().iter().map(ToString::to_string).collect()
    }

    #[test]
    fn the_default_configuration_has_none() {
        assert!(WrapperConfig::default().warnings().is_empty());
    }

    #[test]
    fn cover_the_guides_validation_script() {
        let c = load(&[
            ("MSB_SERVER_URL", "http://remote.example:5555"),
            ("MSB_EXECUTION_TIMEOUT", "3600"),
            ("MSB_SESSION_TIMEOUT", "600"),
            ("MSB_SHARED_VOLUME_PATH", "[\"/definitely/not/here:/sandbox/x\"]"),
        ]);
        let found = messages(&c);
        assert_eq!(found.len(), 3, "{found:?}");
        assert!(found[0].starts_with("MSB_SERVER_URL (server_url): uses plain http to a remote host"));
        assert_eq!(
            found[1],
            "MSB_EXECUTION_TIMEOUT (default_execution_timeout): (3600 s) is longer than the session timeout (600 s)"
        );
        assert_eq!(
            found[2],
            "MSB_SHARED_VOLUME_PATH (shared_volume_mappings): host path /definitely/not/here does not exist"
        );
    }

    #[test]
    fn a_missing_host_path_is_a_warning_not_an_error() {
        let c = load(&[("MSB_SHARED_VOLUME_PATH", "/nope/nowhere:/sandbox/data")]);
        assert_eq!(c.shared_volume_mappings.len(), 1);
        assert!(!c.warnings().is_empty());
    }

    #[test]
    fn more_findings() {
        let c = load(&[
            ("MSB_ORPHAN_CLEANUP_INTERVAL", "30"),
            ("MSB_MAX_TOTAL_MEMORY_MB", "4096"),
            ("MSB_SHARED_VOLUME_PATH", "/etc:/sandbox/etc:ro"),
            ("MSB_BACKEND", "microsandbox"),
        ]);
        let found = messages(&c).join("\n");
        assert!(
            found.contains("below the guide's documented minimum of 60 s"),
            "{found}"
        );
        assert!(
            found.contains(
                "allows only 4 sessions of the default flavor (small = 1024 MB), fewer than MSB_MAX_SESSIONS = 10"
            ),
            "{found}"
        );
        assert!(found.contains("/etc is a sensitive system directory"), "{found}");
        assert!(found.contains("cannot mount"), "{found}");
    }
}

mod construction {
    use super::*;

    #[test]
    fn builder_sets_everything_and_reports_bad_text_values() {
        let c = WrapperConfig::builder()
            .server_url("http://localhost:5555")
            .session_timeout(Duration::from_secs(3600))
            .max_concurrent_sessions(5)
            .default_flavor(SandboxFlavor::Medium)
            .default_execution_timeout(Duration::from_secs(600))
            .volume("/data/input:/sandbox/input")
            .volume("/data/output:/sandbox/output:rw")
            .set(ConfigKey::LogLevel, "debug")
            .build()
            .unwrap();
        assert_eq!(c.session_timeout, Duration::from_secs(3600));
        assert_eq!(c.shared_volume_mappings.len(), 2);
        assert_eq!(c.log_level, LogLevel::Debug);

        let err = WrapperConfig::builder()
            .volume("nope")
            .set(ConfigKey::DefaultFlavor, "tiny")
            .build()
            .unwrap_err();
        assert_eq!(err.problems().len(), 2, "{err}");
    }

    #[test]
    fn overrides_after_loading_are_validated_again() {
        let mut c = load(&[("MSB_MAX_SESSIONS", "10")]);
        c.max_concurrent_sessions = 15;
        c.default_flavor = SandboxFlavor::Large;
        c.shared_volume_mappings
            .push("/custom/path:/sandbox/custom".parse().unwrap());
        c.validate().unwrap();
        c.shared_volume_mappings.push(VolumeMapping {
            host_path: "/other".into(),
            container_path: "/sandbox/custom".into(),
            read_only: false,
        });
        c.shared_volume_mappings.push(VolumeMapping {
            host_path: "relative".into(),
            container_path: "/x/".into(),
            read_only: false,
        });
        let err = c.validate().unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("is already mapped by \"/custom/path:/sandbox/custom\""),
            "{text}"
        );
        assert!(text.contains("host path \"relative\" is not absolute"), "{text}");
        let c2 = c.clone().into_builder().volumes(vec![]).build().unwrap();
        assert!(c2.shared_volume_mappings.is_empty());
    }

    #[test]
    fn server_is_configured_when_the_url_or_key_is_set() {
        assert!(!WrapperConfig::default().server_is_configured());
        assert!(load(&[("MSB_SERVER_URL", "http://10.0.0.5:5555")]).server_is_configured());
        assert!(load(&[("MSB_API_KEY", "k")]).server_is_configured());
    }
}

mod report {
    use super::*;

    #[test]
    fn reports_keep_the_valid_values_and_list_every_problem_warning_and_unknown_variable() {
        let report = WrapperConfig::report_from_vars([
            ("MSB_MAX_SESSIONS", "20"),
            ("MSB_SESSION_TIMEOUT", "5"),
            ("MSB_DEFAULT_FLAVR", "large"),
            ("MSB_EXECUTION_TIMEOUT", "3600"),
        ]);
        assert!(!report.is_valid());
        assert_eq!(report.config.max_concurrent_sessions, 20, "valid values are kept");
        assert_eq!(
            report.config.session_timeout,
            Duration::from_secs(5),
            "out-of-range values are shown as given"
        );
        assert_eq!(report.problems.len(), 1);
        assert_eq!(report.problems[0].key, ConfigKey::SessionTimeout);
        assert_eq!(report.unknown.len(), 1);
        assert_eq!(report.unknown[0].suggestion, Some(ConfigKey::DefaultFlavor));
        assert!(report.warnings.iter().any(|w| w.key == ConfigKey::ExecutionTimeout));
        let valid = WrapperConfig::report_from_vars([("MSB_MAX_SESSIONS", "20")]);
        assert!(valid.is_valid());
        assert_eq!(
            WrapperConfig::from_vars([("MSB_MAX_SESSIONS", "20")]).unwrap(),
            valid.config
        );
    }
}
