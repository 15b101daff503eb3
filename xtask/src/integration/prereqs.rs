//! The programs the local server needs, checked up front so a missing one is named at once
//! instead of failing deep inside a build or a sandbox.

use std::process::{Command, Stdio};

/// A program the run needs, why, and how to get it on Debian 12.
struct Needed {
    program: &'static str,
    why: &'static str,
    debian: &'static str,
}

const LOCAL_SERVER: [Needed; 4] = [
    Needed {
        program: "cc",
        why: "compiles the libkrun stand-in and the C parts of the server's dependencies",
        debian: "build-essential",
    },
    Needed {
        program: "python3",
        why: "the agent's Python REPL, and minting test API keys",
        debian: "python3",
    },
    Needed {
        program: "node",
        why: "the agent's JavaScript REPL",
        debian: "nodejs",
    },
    Needed {
        program: "ldd",
        why: "checks that msbrun loads the stand-in",
        debian: "libc-bin",
    },
];

/// Whether `program` can be run (`--version` is enough: only starting it matters).
fn runs(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// What building `microsandbox-cli` needs besides a C compiler: its TLS stack links the
/// system's OpenSSL, found with pkg-config.
const SERVER_BUILD: [Needed; 2] = [
    Needed {
        program: "pkg-config",
        why: "finds OpenSSL for the build of microsandbox-cli",
        debian: "pkg-config",
    },
    Needed {
        program: "openssl headers",
        why: "microsandbox-cli links OpenSSL (openssl-sys)",
        debian: "libssl-dev",
    },
];

/// Whether pkg-config knows OpenSSL's development files.
fn openssl_dev() -> bool {
    Command::new("pkg-config")
        .args(["--exists", "openssl"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Checks everything a local server needs (and, with `building_server`, what building
/// microsandbox-cli needs); the error names every missing program, what it is for, and the
/// Debian package that has it.
pub(crate) fn check_local_server(building_server: bool) -> Result<(), String> {
    let cc = std::env::var("CC").ok().filter(|c| !c.trim().is_empty());
    let build: &[Needed] = if building_server { &SERVER_BUILD } else { &[] };
    let missing: Vec<&Needed> = LOCAL_SERVER
        .iter()
        .chain(build)
        .filter(|n| match n.program {
            "cc" => !runs(cc.as_deref().unwrap_or("cc")),
            "openssl headers" => !openssl_dev(),
            program => !runs(program),
        })
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let lines: Vec<String> = missing
        .iter()
        .map(|n| format!("  - {} ({}): Debian package {}", n.program, n.why, n.debian))
        .collect();
    let packages: Vec<&str> = missing.iter().map(|n| n.debian).collect();
    Err(format!(
        "missing prerequisites of the local microsandbox server:\n{}\ninstall them (apt-get install {}), or point \
         the suites at another server with MSB_SERVER_URL (and MSB_API_KEY)",
        lines.join("\n"),
        packages.join(" ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_program_is_detected() {
        assert!(!runs("msbw-no-such-program-xyz"));
        assert!(runs("sh") || runs("true"));
    }
}
