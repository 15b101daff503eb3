//! `msbw serve` flags with hostile values: typed refusals (exit status 2), never a panic.

#![allow(clippy::unwrap_used)] // test helpers may unwrap

use std::process::Command;

fn msbw(args: &[&str]) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_msbw"));
    for (k, _) in std::env::vars() {
        if k.starts_with("MSB_") || k.starts_with("MSBW_") {
            cmd.env_remove(k);
        }
    }
    let out = cmd
        .env("MSB_BACKEND", "local")
        .current_dir(dir.path())
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn keygen_refuses_an_absurd_validity_without_panicking() {
    for absurd in ["99999999999999999d", "18446744073709551616", "9999999999999999999999h"] {
        let (code, out, err) = msbw(&["serve", "keygen", "--key", "k", "--expire", absurd]);
        assert_eq!(code, 2, "{absurd}: {err}");
        assert!(out.is_empty(), "no key printed: {out}");
        assert!(err.contains("too long") && !err.contains("panicked"), "{err}");
    }
    let (code, out, _) = msbw(&["serve", "keygen", "--key", "k", "--expire", "36500d"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("msb_"), "{out}");
}

#[test]
fn limits_out_of_range_are_usage_errors_and_the_key_is_never_printed() {
    for args in [
        &["serve", "--dev", "--max-connections", "0"][..],
        &["serve", "--dev", "--header-timeout", "0"],
        &["serve", "--dev", "--body-timeout", "99999"],
    ] {
        let (code, _, err) = msbw(args);
        assert_eq!(code, 2, "{args:?}: {err}");
    }
    let (code, _, err) = msbw(&["serve", "--key", "super-secret-server-key", "--host", "not-an-ip"]);
    assert_eq!(code, 2);
    assert!(!err.contains("super-secret-server-key"), "{err}");
}
