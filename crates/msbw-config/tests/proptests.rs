//! Property tests of every parser: no panics, every well-formed input accepted, round trips.

use std::time::Duration;

use msbw_config::{
    ConfigKey, LimitPolicy, LogLevel, SandboxFlavor, VolumeMapping, WrapperConfig, format_volume_mappings,
    parse_server_url, parse_volume_mappings, redact_url,
};
use proptest::prelude::*;

/// A normalised absolute path: `/` followed by 1-4 segments without `:`, `/`, `,` or control chars.
fn path() -> impl Strategy<Value = String> {
    prop::collection::vec("[A-Za-z0-9_]([A-Za-z0-9_ .@+-]{0,10}[A-Za-z0-9_])?", 1..5)
        .prop_filter("no dot segments", |segs| segs.iter().all(|s| s != "." && s != ".."))
        .prop_map(|segs| format!("/{}", segs.join("/")))
}

fn mapping() -> impl Strategy<Value = VolumeMapping> {
    (path(), path(), any::<bool>()).prop_map(|(host_path, container_path, read_only)| VolumeMapping {
        host_path,
        container_path,
        read_only,
    })
}

fn mappings() -> impl Strategy<Value = Vec<VolumeMapping>> {
    prop::collection::vec(mapping(), 0..6).prop_map(|mut list| {
        let mut seen = std::collections::HashSet::new();
        list.retain(|m| seen.insert(m.container_path.clone()));
        list
    })
}

fn config() -> impl Strategy<Value = WrapperConfig> {
    let timeouts = (
        60u64..=86_400,
        10u64..=3600,
        30_000u64..=600_000,
        10u64..=3600,
        30u64..=3600,
    );
    let limits = (
        1u32..=100,
        prop::option::of(4096u64..=1_000_000),
        1u32..=100,
        0u64..=3600,
        1u64..=3600,
    );
    let options = (
        prop::sample::select(SandboxFlavor::ALL),
        prop::sample::select(LogLevel::ALL),
        prop::sample::select(LimitPolicy::ALL),
        any::<bool>(),
        prop::option::of("[A-Za-z0-9_.-]{1,40}"),
    );
    (
        timeouts,
        limits,
        options,
        mappings(),
        "[a-z0-9][a-z0-9_-]{0,20}",
        "[a-zA-Z0-9]{1,16}",
    )
        .prop_map(
            |(
                (session, cleanup, start_ms, exec, orphan),
                (max, memory, starts, shutdown, wait),
                options,
                volumes,
                ns,
                owner,
            )| {
                let (flavor, level, policy, network, key) = options;
                let mut backend_settings = msbw_config::BackendSettings::default();
                backend_settings.set(ConfigKey::LocalNetwork, if network { "true" } else { "" });
                WrapperConfig {
                    session_timeout: Duration::from_secs(session),
                    cleanup_interval: Duration::from_secs(cleanup.min(session - 1)),
                    sandbox_start_timeout: Duration::from_millis(start_ms),
                    default_execution_timeout: Duration::from_secs(exec),
                    orphan_cleanup_interval: Duration::from_secs(orphan),
                    max_concurrent_sessions: max,
                    max_total_memory_mb: memory,
                    max_concurrent_starts: starts,
                    shutdown_timeout: Duration::from_secs(shutdown),
                    limit_wait_timeout: Duration::from_secs(wait),
                    default_flavor: flavor,
                    log_level: level,
                    limit_policy: policy,
                    backend_settings,
                    api_key: key.map(Into::into),
                    shared_volume_mappings: volumes,
                    namespace: ns,
                    owner_mark: owner,
                    ..Default::default()
                }
            },
        )
}

proptest! {
    #[test]
    fn volume_entry_parser_never_panics(s in "\\PC*") {
        let _ = s.parse::<VolumeMapping>();
    }

    #[test]
    fn volume_list_parser_never_panics(s in "\\PC*") {
        let _ = parse_volume_mappings(&s);
    }

    #[test]
    fn volume_list_parser_never_panics_on_near_json(entries in prop::collection::vec("[/a-z:.,\"\\[\\] ]{0,12}", 0..5)) {
        let _ = parse_volume_mappings(&format!("[{}]", entries.join(",")));
    }

    #[test]
    fn url_parser_never_panics(s in "\\PC*") {
        let _ = parse_server_url(&s);
        let _ = redact_url(&s);
    }

    #[test]
    fn from_vars_never_panics(values in prop::collection::vec("\\PC{0,30}", ConfigKey::ALL.len())) {
        let vars = ConfigKey::ALL.iter().zip(values.iter()).map(|(k, v)| (k.var_name(), v.as_str()));
        let _ = WrapperConfig::from_vars(vars);
    }

    #[test]
    fn every_well_formed_entry_is_accepted(m in mapping(), mode in prop::sample::select(vec!["", ":ro", ":rw", ":RO"])) {
        let entry = format!("{}:{}{}", m.host_path, m.container_path, mode);
        let parsed: VolumeMapping = entry.parse().unwrap();
        prop_assert_eq!(parsed.host_path, m.host_path);
        prop_assert_eq!(parsed.container_path, m.container_path);
        prop_assert_eq!(parsed.read_only, mode.eq_ignore_ascii_case(":ro"));
    }

    #[test]
    fn entries_round_trip(m in mapping()) {
        prop_assert_eq!(m.to_string().parse::<VolumeMapping>(), Ok(m));
    }

    #[test]
    fn lists_round_trip(list in mappings()) {
        prop_assert_eq!(parse_volume_mappings(&format_volume_mappings(&list)), Ok(list.clone()));
        if list.iter().all(|m| !m.host_path.contains(',') && !m.container_path.contains(',')) {
            let legacy: Vec<String> = list.iter().map(ToString::to_string).collect();
            prop_assert_eq!(parse_volume_mappings(&legacy.join(",")), Ok(list));
        }
    }

    #[test]
    fn well_formed_urls_are_accepted(
        scheme in prop::sample::select(vec!["http", "https", "HTTP"]),
        host in "[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?(\\.[a-z]{2,8}){0,3}",
        port in prop::option::of(1u16..),
        path in "(/[a-z0-9]{1,8}){0,3}",
    ) {
        let url = match port {
            Some(p) => format!("{scheme}://{host}:{p}{path}"),
            None => format!("{scheme}://{host}{path}"),
        };
        let parts = parse_server_url(&url).unwrap();
        prop_assert_eq!(parts.host, host);
        prop_assert_eq!(parts.port, port);
    }

    #[test]
    fn valid_configs_validate_and_round_trip_through_env_vars(c in config()) {
        c.validate().unwrap();
        let back = WrapperConfig::from_vars(c.to_env_vars()).unwrap();
        prop_assert_eq!(back, c);
    }

    #[test]
    fn every_value_in_range_is_accepted(session in 60u64..=86_400, max in 1u32..=100, start_ms in 30_000u64..=600_000) {
        let start = format!("{}.{:03}", start_ms / 1000, start_ms % 1000);
        let c = WrapperConfig::from_vars([
            ("MSB_SESSION_TIMEOUT", session.to_string()),
            ("MSB_CLEANUP_INTERVAL", "10".to_string()),
            ("MSB_MAX_SESSIONS", max.to_string()),
            ("MSB_SANDBOX_START_TIMEOUT", start),
        ]).unwrap();
        prop_assert_eq!(c.session_timeout, Duration::from_secs(session));
        prop_assert_eq!(c.max_concurrent_sessions, max);
        prop_assert_eq!(c.sandbox_start_timeout, Duration::from_millis(start_ms));
    }
}
