//! Authentication against a keyed server, through `HttpBackend`: every refused key is
//! `ErrorKind::Unauthorized` with a message that names the cause, for listing, starting and
//! running code alike, and a refused start creates nothing. Positive controls prove the setup:
//! the target's key, a key minted for the namespace, and a key the harness signed by hand (the
//! same way it signs the expired one) are all accepted.

use std::time::Duration;

use msbw_backend::{CodeRequest, ErrorKind, ListFilter, SandboxBackend, SandboxBackendExt, Template};
use msbw_http::HttpBackend;

use crate::report::{SuiteReport, ensure};
use crate::suites::{CHECK_LIMIT, expect_kind, no_sandbox_left};
use crate::target::{Mode, Target};

/// The namespace a foreign key is minted for.
const OTHER_NAMESPACE: &str = "msbw-it-other";

/// The auth suite against the target.
pub async fn run(target: &Target) -> SuiteReport {
    let mut report = SuiteReport::new("auth", target.describe());
    let Some(key) = target.api_key.as_deref() else {
        let why = match target.mode {
            Mode::Dev => "the server runs in dev mode, without authentication".to_owned(),
            _ => "no API key (MSB_API_KEY): the server is taken to run without authentication".to_owned(),
        };
        report.not_applicable("every_auth_check", why);
        return report;
    };
    let backend = match target.backend() {
        Ok(b) => b,
        Err(why) => {
            report.record("create_the_backend", None, crate::report::Outcome::Failed(why));
            return report;
        }
    };

    report
        .check("the_targets_key_is_accepted", CHECK_LIMIT, async {
            backend
                .list(&ListFilter::default())
                .await
                .map(drop)
                .map_err(|e| format!("listing with the target's key failed: {e}"))
        })
        .await;

    report
        .check("health_needs_no_key", CHECK_LIMIT, async {
            let anonymous = target.backend_with_key(None)?;
            anonymous
                .health()
                .await
                .map(drop)
                .map_err(|e| format!("health without a key failed: {e}"))
        })
        .await;

    let stripped = key.strip_prefix("msb_").unwrap_or(key);
    let wrong = tamper(key);
    // Keys the server must refuse: the check, the key, what it is, and what the refusal says.
    let refused_keys = [
        (
            "no_key_is_unauthorized_and_says_none_is_configured",
            None,
            "no key",
            ["requires an API key", "none is configured"],
        ),
        (
            "a_key_without_the_msb_prefix_is_unauthorized",
            Some(stripped),
            "a key without msb_",
            ["invalid credentials", "refused the API key"],
        ),
        (
            "a_wrong_key_is_unauthorized_and_says_why",
            Some(wrong.as_str()),
            "a key with a wrong signature",
            ["invalid or expired token", "not signed with this server's key"],
        ),
    ];
    for (name, refused_key, what, cause) in refused_keys {
        report
            .check(name, CHECK_LIMIT, async {
                let refused = target.backend_with_key(refused_key)?;
                refused_everywhere(target, &backend, &refused, what, &cause).await
            })
            .await;
    }

    let Some(control) = &target.control else {
        let why = "minting keys needs the server's key, which only the harness that runs the server has \
                   (run through `cargo xtask test-integration`)";
        for name in [
            "a_hand_signed_valid_key_is_accepted",
            "an_expired_key_is_unauthorized_and_says_expired",
            "a_key_for_another_namespace_is_unauthorized_and_names_the_namespace",
            "a_namespace_key_works_in_its_namespace_only",
        ] {
            report.not_applicable(name, why);
        }
        no_sandbox_left(&mut report, &backend, target, &target.prefix("auth")).await;
        return report;
    };

    report
        .check("a_hand_signed_valid_key_is_accepted", CHECK_LIMIT, async {
            // The positive control of the expired key: signed the same way, but valid.
            let valid = control.mint("*", 3600).await?;
            target
                .backend_with_key(Some(&valid))?
                .list(&ListFilter::default())
                .await
                .map(drop)
                .map_err(|e| {
                    format!("a valid hand-signed key was refused, so the expired-key check proves nothing: {e}")
                })
        })
        .await;

    report
        .check("an_expired_key_is_unauthorized_and_says_expired", CHECK_LIMIT, async {
            // Expired two minutes ago: past the server's 60 s leeway.
            let expired = control.mint("*", -120).await?;
            let other = target.backend_with_key(Some(&expired))?;
            refused_everywhere(
                target,
                &backend,
                &other,
                "an expired key",
                &["invalid or expired token", "expired"],
            )
            .await
        })
        .await;

    report
        .check(
            "a_key_for_another_namespace_is_unauthorized_and_names_the_namespace",
            CHECK_LIMIT,
            async {
                let foreign = control.keygen(Some(OTHER_NAMESPACE)).await?;
                let other = target.backend_with_key(Some(&foreign))?;
                let namespace = format!("access denied to namespace {:?}", target.namespace);
                refused_everywhere(target, &backend, &other, "a key for another namespace", &[&namespace]).await
            },
        )
        .await;

    report
        .check("a_namespace_key_works_in_its_namespace_only", CHECK_LIMIT, async {
            let own = control.keygen(Some(&target.namespace)).await?;
            let scoped = target.backend_with_key(Some(&own))?;
            scoped
                .list(&ListFilter::namespace(&target.namespace))
                .await
                .map_err(|e| format!("a key for {} was refused there: {e}", target.namespace))?;
            let all = expect_kind(
                "listing every namespace with a key for one",
                ErrorKind::Unauthorized,
                scoped.list(&ListFilter::default()).await,
            )?;
            ensure(all.message().contains("access denied"), || {
                format!("the message does not say access was denied: {all}")
            })
        })
        .await;

    no_sandbox_left(&mut report, &backend, target, &target.prefix("auth")).await;
    report
}

/// A key with a changed signature: still `msb_` and three JWT parts, so the server checks it
/// and refuses its signature.
fn tamper(key: &str) -> String {
    let mut chars: Vec<char> = key.chars().collect();
    if let Some(last) = chars.last_mut() {
        *last = if *last == 'A' { 'B' } else { 'A' };
    }
    if let Some(c) = chars.get_mut(key.len().saturating_sub(5)) {
        *c = if *c == 'x' { 'y' } else { 'x' };
    }
    chars.into_iter().collect()
}

/// Listing, starting and running code with `refused` all fail as `Unauthorized` with a
/// message containing every one of `cause`, and the refused start created nothing (checked with
/// `good`, the target's backend).
async fn refused_everywhere(
    target: &Target,
    good: &HttpBackend,
    refused: &HttpBackend,
    what: &str,
    cause: &[&str],
) -> Result<(), String> {
    let says_cause = |operation: &str, e: &msbw_backend::BackendError| -> Result<(), String> {
        let text = e.to_string();
        let missing: Vec<&&str> = cause.iter().filter(|c| !text.contains(**c)).collect();
        ensure(missing.is_empty(), || {
            format!("{operation} with {what}: the message does not name the cause {missing:?}: {text}")
        })
    };
    let list = expect_kind(
        &format!("listing with {what}"),
        ErrorKind::Unauthorized,
        refused.list(&ListFilter::namespace(&target.namespace)).await,
    )?;
    says_cause("listing", &list)?;

    let id = target.id("auth", &format!("refused-{}", what.len()))?;
    let spec = target.spec(id.clone(), Template::Python);
    let start = expect_kind(
        &format!("starting with {what}"),
        ErrorKind::Unauthorized,
        refused.start(&spec).await,
    )?;
    says_cause("starting", &start)?;
    let running = good
        .is_running(&id)
        .await
        .map_err(|e| format!("cannot check with the target's key that nothing started: {e}"))?;
    ensure(!running, || format!("the refused start of {id} started it anyway"))?;

    let request = CodeRequest {
        language: Template::Python,
        code: "print(1)".into(),
        timeout: Duration::from_secs(10),
    };
    let code = expect_kind(
        &format!("running code with {what}"),
        ErrorKind::Unauthorized,
        refused.run_code(&id, &request).await,
    )?;
    says_cause("running code", &code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tampered_key_keeps_its_shape_and_differs() {
        let key = "msb_aaaa.bbbb.ccccA";
        let t = tamper(key);
        assert_ne!(t, key);
        assert_eq!(t.len(), key.len());
        assert!(t.starts_with("msb_") && t.matches('.').count() == 2);
    }
}
