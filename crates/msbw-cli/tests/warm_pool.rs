//! `msbw config check` shows `MSB_WARM_POOL`, and refuses a bad one naming the variable, the
//! value and what is allowed; `msbw exec` with a pool serves its call and leaves nothing behind.

#![allow(clippy::unwrap_used)] // test helpers may unwrap

mod support;

use serde_json::Value;
use support::{msbw, run};

#[test]
fn config_check_shows_the_pool() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, _) = run(msbw(dir.path())
        .args(["config", "check"])
        .env("MSB_WARM_POOL", "python:small=2,node:medium=1"));
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("Warm pool:         python:small=2,node:medium=1 (3 sandboxes)"),
        "{out}"
    );
    let (code, out, _) = run(msbw(dir.path())
        .args(["config", "check", "--json"])
        .env("MSB_WARM_POOL", "python:small=2"));
    assert_eq!(code, 0, "{out}");
    let json: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["warm_pool"], "python:small=2");
    let (_, out, _) = run(msbw(dir.path()).args(["config", "check"]));
    assert!(out.contains("Warm pool:         none"), "{out}");
}

#[test]
fn config_check_refuses_a_bad_pool_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, _) = run(msbw(dir.path())
        .args(["config", "check"])
        .env("MSB_WARM_POOL", "ruby:small=1"));
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("MSB_WARM_POOL") && out.contains("\"ruby:small=1\"") && out.contains("unknown template"),
        "{out}"
    );
    assert!(out.contains("template:flavor=count"), "{out}");
}

#[test]
fn exec_with_a_pool_runs_and_stops_everything() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) = run(msbw(dir.path())
        .args(["exec", "print(6 * 7)"])
        .env("MSB_WARM_POOL", "python:small=1"));
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("42"), "{out}{err}");
}
