//! Every example configuration of the configuration guide loads without error.
//!
//! The shell and `.env` blocks are copied verbatim from `configuration-guide.md` into
//! `guide_examples.md`; the Python blocks are written as struct literals, keyword for keyword.

use std::time::Duration;

use msbw_config::{LogLevel, SandboxFlavor, VolumeMapping, WrapperConfig};

/// Reads the `export NAME="value"` / `export NAME='multi-line value'` lines of a shell block.
fn exports(block: &str) -> Vec<(String, String)> {
    let mut vars = Vec::new();
    let mut rest = block;
    while let Some(start) = rest.find("export ") {
        rest = &rest[start + "export ".len()..];
        let (name, after) = rest.split_once('=').expect("export NAME=");
        let quote = after.chars().next().expect("a value");
        let (value, after) = if quote == '"' || quote == '\'' {
            let body = &after[1..];
            let end = body.find(quote).expect("closing quote");
            (&body[..end], &body[end + 1..])
        } else {
            let end = after.find(char::is_whitespace).unwrap_or(after.len());
            (&after[..end], &after[end..])
        };
        let value = value.replace("${MICROSANDBOX_API_KEY}", "msb_prod-key");
        vars.push((name.trim().to_owned(), value));
        rest = after;
    }
    vars
}

/// The guide's blocks, one under a heading each.
const GUIDE: &str = include_str!("guide_examples.md");

/// The fenced block under the heading `## title` of [`GUIDE`].
fn guide_block(title: &str) -> &'static str {
    let heading = format!("\n## {title}\n");
    let at = GUIDE
        .find(&heading)
        .unwrap_or_else(|| panic!("no block {title:?} in guide_examples.md"));
    let rest = &GUIDE[at + heading.len()..];
    let open = rest.find("```").expect("a fenced block");
    let body = &rest[open..];
    let body = &body[body.find('\n').expect("a fence line") + 1..];
    &body[..body.find("\n```").expect("a closing fence") + 1]
}

fn load(block: &str) -> WrapperConfig {
    let vars = exports(block);
    assert!(!vars.is_empty(), "no exports found in {block}");
    WrapperConfig::from_vars(vars).unwrap_or_else(|e| panic!("guide example failed to load: {e}\n{block}"))
}

#[test]
fn the_per_variable_examples_load() {
    let c = load(guide_block("per-variable examples"));
    assert_eq!(c.server_url, "http://microsandbox.example.com:5555");
    assert_eq!(c.session_timeout, Duration::from_secs(3600));
    assert_eq!(c.sandbox_start_timeout, Duration::from_secs(300));
    assert_eq!(c.max_total_memory_mb, Some(8192));
    assert_eq!(c.log_level, LogLevel::Debug);

    for block in [
        r#"export MSB_SHARED_VOLUME_PATH='["/host/data:/sandbox/data"]'"#,
        r#"export MSB_SHARED_VOLUME_PATH='["/host/input:/sandbox/input", "/host/output:/sandbox/output"]'"#,
        r#"export MSB_SHARED_VOLUME_PATH="/host/data:/sandbox/data,/host/logs:/sandbox/logs""#,
    ] {
        assert!(!load(block).shared_volume_mappings.is_empty());
    }
}

#[test]
fn the_development_environment_loads() {
    let c = load(guide_block("development"));
    assert_eq!(c.max_concurrent_sessions, 5);
    assert_eq!(c.shared_volume_mappings[0].container_path, "/sandbox/data");
}

#[test]
fn the_production_environment_loads() {
    let c = load(guide_block("production"));
    assert_eq!(c.max_concurrent_sessions, 50);
    assert_eq!(c.default_flavor, SandboxFlavor::Medium);
}

#[test]
fn the_testing_environment_loads_with_its_30_second_orphan_interval() {
    let c = load(guide_block("testing"));
    assert_eq!(c.orphan_cleanup_interval, Duration::from_secs(30));
}

#[test]
fn the_high_performance_environment_loads() {
    let c = load(guide_block("high performance"));
    assert_eq!(c.max_concurrent_sessions, 100);
    assert_eq!(c.sandbox_start_timeout, Duration::from_secs(600));
}

#[test]
fn the_volume_mapping_patterns_load() {
    let c = load(guide_block("volumes: input and output"));
    assert_eq!(c.shared_volume_mappings.len(), 2);
    let c = load(guide_block("volumes: a pipeline"));
    assert_eq!(c.shared_volume_mappings.len(), 5);
    let c = load(guide_block("volumes: read-only source"));
    let src = &c.shared_volume_mappings[0];
    assert_eq!((src.container_path.as_str(), src.read_only), ("/sandbox/src", true));
    assert!(!c.shared_volume_mappings[1].read_only);
}

#[test]
fn the_env_file_template_loads() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(".env");
    std::fs::write(&path, guide_block("env file template")).unwrap();
    // The process environment wins over the file, so compare against what it adds.
    let from_file = WrapperConfig::from_env_file(&path).unwrap();
    let from_env = WrapperConfig::from_env().unwrap();
    let file_only = WrapperConfig::from_vars(
        dotenv_pairs(&path)
            .into_iter()
            .chain(std::env::vars().filter(|(k, _)| k.starts_with("MSB_"))),
    )
    .unwrap();
    assert_eq!(from_file, file_only);
    if std::env::vars().all(|(k, _)| !k.starts_with("MSB_")) {
        assert_eq!(from_file, WrapperConfig::default());
        assert_eq!(from_env, WrapperConfig::default());
    }
}

#[test]
fn an_env_file_with_a_multi_line_volume_list_loads() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("prod.env");
    std::fs::write(
        &path,
        "MSB_MAX_SESSIONS=7\nMSB_SHARED_VOLUME_PATH='[\n  \"/data/in:/sandbox/in:ro\",\n  \"/data/out:/sandbox/out\"\n]'\n",
    )
    .unwrap();
    let pairs = dotenv_pairs(&path);
    let c = WrapperConfig::from_vars(pairs).unwrap();
    assert_eq!(c.max_concurrent_sessions, 7);
    assert_eq!(c.shared_volume_mappings.len(), 2);
    assert!(c.shared_volume_mappings[0].read_only);
    assert!(WrapperConfig::from_env_file(dir.path().join("missing.env")).is_err());
}

fn dotenv_pairs(path: &std::path::Path) -> Vec<(String, String)> {
    dotenvy::from_path_iter(path)
        .expect("readable")
        .map(|r| r.expect("parsable"))
        .collect()
}

/// Parses `host:container[:ro|rw]` volume mappings.
fn volumes(mappings: &[&str]) -> Vec<VolumeMapping> {
    mappings.iter().map(|m| m.parse().expect("a valid mapping")).collect()
}

#[test]
fn the_basic_and_advanced_programmatic_examples_build() {
    let secs = Duration::from_secs;
    let basic = WrapperConfig {
        server_url: "http://localhost:5555".into(),
        session_timeout: secs(3600),
        max_concurrent_sessions: 5,
        default_flavor: SandboxFlavor::Medium,
        default_execution_timeout: secs(600),
        ..Default::default()
    };
    basic.validate().unwrap();
    let advanced = WrapperConfig {
        server_url: "http://production-microsandbox:5555".into(),
        api_key: Some("prod-api-key-123".into()),
        session_timeout: secs(7200),
        max_concurrent_sessions: 20,
        cleanup_interval: secs(30),
        default_flavor: SandboxFlavor::Large,
        sandbox_start_timeout: secs(300),
        default_execution_timeout: secs(1800),
        max_total_memory_mb: Some(16384),
        shared_volume_mappings: volumes(&[
            "/data/input:/sandbox/input",
            "/data/output:/sandbox/output",
            "/data/shared:/sandbox/shared",
            "/logs:/sandbox/logs",
        ]),
        orphan_cleanup_interval: secs(180),
        ..Default::default()
    };
    advanced.validate().unwrap();
}

#[test]
fn the_override_example_works_by_struct_update() {
    let mut c = WrapperConfig::from_vars([("MSB_MAX_SESSIONS", "10")]).unwrap();
    c.max_concurrent_sessions = 15;
    c.default_flavor = SandboxFlavor::Large;
    c.shared_volume_mappings
        .push("/custom/path:/sandbox/custom".parse().unwrap());
    c.validate().unwrap();
}

#[test]
fn the_resource_and_security_examples_build() {
    let secs = Duration::from_secs;
    let examples = [
        (
            "memory-constrained",
            WrapperConfig {
                max_concurrent_sessions: 5,
                default_flavor: SandboxFlavor::Small,
                max_total_memory_mb: Some(4096),
                session_timeout: secs(900),
                cleanup_interval: secs(30),
                ..Default::default()
            },
        ),
        (
            "cpu-intensive",
            WrapperConfig {
                max_concurrent_sessions: 8,
                default_flavor: SandboxFlavor::Large,
                session_timeout: secs(3600),
                default_execution_timeout: secs(1800),
                ..Default::default()
            },
        ),
        (
            "high-throughput",
            WrapperConfig {
                max_concurrent_sessions: 50,
                default_flavor: SandboxFlavor::Small,
                session_timeout: secs(600),
                cleanup_interval: secs(15),
                orphan_cleanup_interval: secs(60),
                ..Default::default()
            },
        ),
        (
            "restricted",
            WrapperConfig {
                shared_volume_mappings: vec![],
                session_timeout: secs(600),
                default_execution_timeout: secs(300),
                max_concurrent_sessions: 5,
                default_flavor: SandboxFlavor::Small,
                max_total_memory_mb: Some(2048),
                ..Default::default()
            },
        ),
        (
            "audit-friendly",
            WrapperConfig {
                session_timeout: secs(1800),
                cleanup_interval: secs(60),
                max_concurrent_sessions: 10,
                max_total_memory_mb: Some(8192),
                ..Default::default()
            },
        ),
    ];
    for (name, example) in examples {
        if let Err(e) = example.validated() {
            panic!("the {name} example is refused: {e}");
        }
    }
}
