//! Tidy checks: repository rules that are cheap to check as ordinary tests.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_owned()
}

/// Every file under `dir` whose name ends with `ext`, skipping `target` and hidden folders.
fn files(dir: &Path, ext: &str, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("readable folder") {
        let path = entry.expect("readable entry").path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if path.is_dir() {
            if name != "target" && !name.starts_with('.') {
                files(&path, ext, out);
            }
        } else if name.ends_with(ext) {
            out.push(path);
        }
    }
}

#[test]
fn no_test_is_ignored() {
    let needle = ["#[", "ignore"].concat();
    let mut rs = Vec::new();
    files(&root(), ".rs", &mut rs);
    assert!(rs.len() > 5, "found too few Rust files: {rs:?}");
    let offenders: Vec<String> = rs
        .iter()
        .filter(|p| std::fs::read_to_string(p).expect("readable").contains(&needle))
        .map(|p| p.display().to_string())
        .collect();
    assert!(offenders.is_empty(), "ignored tests hide failures: {offenders:?}");
}

#[test]
fn the_configuration_doc_lists_every_variable_with_its_default() {
    let doc = std::fs::read_to_string(root().join("docs/configuration.md")).expect("docs/configuration.md");
    for key in msbw_config::ConfigKey::ALL {
        let row = doc
            .lines()
            .find(|l| l.starts_with(&format!("| `{}` |", key.var_name())))
            .unwrap_or_else(|| panic!("docs/configuration.md has no table row for {key}"));
        assert!(
            row.contains(&format!("`{}`", key.field_name())),
            "{key}: field missing in {row}"
        );
        let default = key.default_value();
        if !default.is_empty() {
            assert!(
                row.contains(&format!("`{default}`")),
                "{key}: default {default} missing in {row}"
            );
        }
    }
}

#[test]
fn every_crate_folder_is_named_after_its_crate_and_uses_the_workspace_lints() {
    let mut manifests = vec![root().join("xtask/Cargo.toml"), root().join("tests/Cargo.toml")];
    for entry in std::fs::read_dir(root().join("crates")).expect("crates/") {
        let dir = entry.expect("entry").path();
        let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).expect("Cargo.toml");
        let folder = dir.file_name().and_then(|n| n.to_str()).expect("utf-8 name");
        assert!(
            manifest.contains(&format!("name = \"{folder}\"")),
            "crates/{folder} is not named {folder}"
        );
        manifests.push(dir.join("Cargo.toml"));
    }
    for path in manifests {
        let manifest = std::fs::read_to_string(&path).expect("Cargo.toml");
        assert!(
            manifest.contains("[lints]\nworkspace = true"),
            "{} does not use the workspace lints",
            path.display()
        );
        for line in manifest.lines() {
            let line = line.trim();
            let declares_version = line.contains("version = \"") && !line.starts_with("version");
            assert!(
                !declares_version || line.contains("path = "),
                "{}: declare versions once in [workspace.dependencies]: {line}",
                path.display()
            );
        }
    }
}

/// `cargo ARGS` at the workspace root, which must succeed (else the test fails with `advice`
/// and what cargo printed): its stdout.
fn cargo(args: &[&str], advice: &str) -> String {
    let command = format!("cargo {}", args.join(" "));
    let out = std::process::Command::new(env!("CARGO"))
        .args(args)
        .current_dir(root())
        .output()
        .unwrap_or_else(|e| panic!("{command} does not run: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{command} failed{advice}\n{stdout}{stderr}");
    stdout
}

#[test]
fn the_code_is_formatted() {
    cargo(
        &["fmt", "--all", "--", "--check"],
        " (unformatted code: run cargo fmt --all; rustfmt: rustup component add rustfmt)",
    );
}

#[test]
fn ci_runs_the_readmes_test_command() {
    let readme = std::fs::read_to_string(root().join("README.md")).expect("README.md");
    let ci = std::fs::read_to_string(root().join(".ci/run")).expect(".ci/run");
    let first_screen: String = readme.lines().take(30).collect::<Vec<_>>().join("\n");
    let test_line = first_screen
        .lines()
        .find(|l| l.contains("# run the tests"))
        .expect("the README's first screen names the test command");
    let command = test_line.split('#').next().expect("a command").trim();
    assert!(
        ci.lines().any(|l| l.trim() == command),
        ".ci/run does not run the README's test command {command:?}"
    );
    assert!(
        first_screen.contains("# run code in a sandbox"),
        "the README's first screen names the run command"
    );
}

#[test]
fn the_config_crate_stays_free_of_async_runtimes_and_http() {
    let tree = normal_dependency_tree("msbw-config", &[]);
    assert!(tree.contains("msbw-config"), "{tree}");
    for heavy in ["tokio ", "reqwest ", "hyper ", "async-std "] {
        assert!(
            !tree.lines().any(|l| l.starts_with(heavy)),
            "msbw-config depends on {heavy}:\n{tree}"
        );
    }
}

#[test]
fn ci_builds_the_facade_with_each_backend_alone() {
    let ci = std::fs::read_to_string(root().join(".ci/run")).expect(".ci/run");
    let manifest = std::fs::read_to_string(root().join("crates/microsandbox-wrapper/Cargo.toml")).expect("Cargo.toml");
    for feature in ["local", "http"] {
        assert!(
            manifest.contains(&format!("\n{feature} = [\"dep:msbw-")),
            "microsandbox-wrapper has no optional backend feature {feature}"
        );
        let line = format!("cargo check -p microsandbox-wrapper --no-default-features --features {feature}");
        assert!(
            ci.lines().any(|l| l.trim() == line),
            ".ci/run does not check the facade with only the {feature} backend: add `{line}`"
        );
    }
}

/// The features of the `tokio = { ... }` line in `text` (the first one), sorted.
fn tokio_features(text: &str) -> Vec<String> {
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("tokio = {"))
        .expect("a tokio dependency line");
    let list = line
        .split_once("features = [")
        .and_then(|(_, rest)| rest.split_once(']'))
        .map(|(list, _)| list)
        .unwrap_or_default();
    let mut features: Vec<String> = list
        .split(',')
        .map(|f| f.trim().trim_matches('"').to_owned())
        .filter(|f| !f.is_empty())
        .collect();
    features.sort();
    features
}

#[test]
fn the_readmes_dependency_lines_are_what_its_compiled_example_uses() {
    let readme = std::fs::read_to_string(root().join("README.md")).expect("README.md");
    let library = readme
        .split_once("## Library")
        .and_then(|(_, rest)| rest.split_once("```toml"))
        .map(|(_, rest)| rest.split_once("```").map(|(toml, _)| toml).unwrap_or(rest))
        .expect("the README's Library section has a ```toml block");
    let manifest = std::fs::read_to_string(root().join("tests/Cargo.toml")).expect("tests/Cargo.toml");
    let dev = manifest
        .split_once("[dev-dependencies]")
        .map(|(_, rest)| rest)
        .expect("tests/Cargo.toml has dev-dependencies");
    assert_eq!(
        tokio_features(library),
        tokio_features(dev),
        "the README's tokio line and the doctest's (tests/Cargo.toml) must ask for the same features"
    );
    let workspace = std::fs::read_to_string(root().join("Cargo.toml")).expect("Cargo.toml");
    let repository = workspace
        .lines()
        .find_map(|l| l.strip_prefix("repository = "))
        .expect("workspace.package.repository")
        .trim()
        .trim_matches('"');
    assert!(
        library.contains(&format!("microsandbox-wrapper = {{ git = \"{repository}\" }}")),
        "the README's dependency line points at the repository {repository}:\n{library}"
    );
    assert!(dev.contains("microsandbox-wrapper.workspace = true"), "{dev}");
    assert!(
        readme.contains("cargo install --path crates/msbw-cli"),
        "the README says how to install msbw"
    );
}

/// `cargo tree` of one package's normal dependencies, with `more` arguments, one package per
/// line (the package itself first).
fn normal_dependency_tree(package: &str, more: &[&str]) -> String {
    let mut args = vec!["tree", "-p", package, "-e", "normal", "--prefix", "none", "--offline"];
    args.extend_from_slice(more);
    cargo(&args, "")
}

/// `cargo tree` of one package's direct normal dependencies, one name per line.
fn direct_dependencies(package: &str) -> Vec<String> {
    normal_dependency_tree(package, &["--depth", "1"])
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect()
}

#[test]
fn the_protocol_is_shared_and_the_cli_keeps_only_flags_and_signals() {
    for package in ["msbw-http", "msbw-serve"] {
        assert!(
            direct_dependencies(package).iter().any(|d| d == "msbw-protocol"),
            "{package} must speak the protocol through msbw-protocol"
        );
    }
    let cli = direct_dependencies("msbw-cli");
    for server_side in ["axum", "hmac", "hyper", "sha2"] {
        assert!(
            !cli.iter().any(|d| d == server_side),
            "msbw-cli depends on {server_side}: {cli:?}"
        );
    }
}
