//! From the attacker's side: a sandbox with a writable volume on the working directory plants
//! `./.env` to choose the isolation of the next run. The next `msbw exec` must not get it.

#![allow(clippy::unwrap_used)] // test helpers may unwrap

mod support;

use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;

use support::{is_root, msbw, run, volume_dir};

/// Code that tries to reach `port` on 127.0.0.1 and says whether it could.
fn probe(port: u16) -> String {
    format!(
        "import socket\ns = socket.socket()\ns.settimeout(5)\ntry:\n    s.connect(('127.0.0.1', {port}))\n    \
         print('connected')\nexcept OSError as e:\n    print('refused', e)\n"
    )
}

#[test]
fn a_planted_dot_env_does_not_give_the_next_run_the_hosts_loopback() {
    let dir = volume_dir();
    // A host service on loopback that a sandbox must not reach.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();

    // Run 1: the user maps the working directory in; the code plants ./.env.
    let plant = "open('/sandbox/work/.env', 'w').write('MSB_LOCAL_NETWORK=true\\nMSB_EXECUTION_TIMEOUT=3600\\n')";
    let (code, _, err) = run(msbw(dir.path())
        .env(
            "MSB_SHARED_VOLUME_PATH",
            format!(r#"["{}:/sandbox/work"]"#, dir.path().display()),
        )
        .args(["exec", plant]));
    assert_eq!(code, 0, "{err}");
    let planted = std::fs::read_to_string(dir.path().join(".env")).unwrap();
    assert!(
        planted.contains("MSB_LOCAL_NETWORK=true"),
        "the attack wrote the file: {planted}"
    );

    // Run 2, in the same directory: no loopback, and a warning naming what was ignored.
    let (code, out, err) = run(msbw(dir.path()).args(["exec", &probe(port)]));
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with("refused"),
        "the sandbox reached the host's loopback: {out}"
    );
    if is_root() {
        // Run as root, what the sandbox wrote belongs to the volume's (unprivileged) owner, so
        // the whole file is distrusted.
        assert!(
            err.contains(&format!("ignored ./.env: it belongs to uid {}", support::VOLUME_OWNER)),
            "{err}"
        );
    } else {
        assert!(
            err.contains("ignored MSB_LOCAL_NETWORK, MSB_EXECUTION_TIMEOUT from ./.env"),
            "{err}"
        );
    }
    let (_, out, _) = run(msbw(dir.path()).args(["--json", "config", "check"]));
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["local_network"], false);
    assert_eq!(json["default_execution_timeout"], 300);

    // The control: the same file, named by the user, is trusted, and the probe does see the
    // listener (so "refused" above is the .env rule, not a broken probe).
    let (code, out, err) = run(msbw(dir.path()).args(["--env-file", ".env", "exec", &probe(port)]));
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("connected"), "{out} {err}");
    drop(listener);
}

#[test]
fn a_dot_env_others_may_write_is_ignored_whole() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(".env");
    std::fs::write(&path, "MSB_MAX_SESSIONS=3\n").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
    let (code, out, err) = run(msbw(dir.path()).args(["--json", "config", "check"]));
    assert_eq!(code, 0, "{err}");
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["max_concurrent_sessions"], 10);
    assert!(
        json["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w.as_str().unwrap().contains("ignored ./.env: anyone may write it")),
        "{json}"
    );
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (_, out, _) = run(msbw(dir.path()).args(["--json", "config", "check"]));
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["max_concurrent_sessions"], 3, "lowering a limit is allowed");
}
