//! API keys in the microsandbox server's format: `msb_` followed by an HS256 JWT with the claims
//! `exp`, `iat` and `namespace` (`*` for every namespace), signed with the server's key string.
//!
//! The functions take the server key as `&str`; callers keep it in a masked secret type
//! (`msbw_config::ApiKey`) and expose it only here.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::codes;

/// The prefix of every API key.
pub const KEY_PREFIX: &str = "msb_";

/// How far past `exp` a key is still accepted, as the real server does.
pub const LEEWAY: Duration = Duration::from_secs(60);

/// The claims of a key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Expiry, in seconds since the Unix epoch.
    pub exp: u64,
    /// Issue time, in seconds since the Unix epoch.
    pub iat: u64,
    /// The namespace the key is for, or `*` for all.
    pub namespace: String,
}

/// Why a key was refused; each maps to the real server's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// No header, or no `msb_` prefix: 401, code 1001.
    #[error("Invalid credentials")]
    InvalidCredentials,
    /// A bad signature, garbage, or an expired key: 401, code 1004.
    #[error("Invalid or expired token")]
    InvalidOrExpired,
    /// A namespace-scoped key used on another namespace: 403, code 3001.
    #[error("Access denied")]
    AccessDenied,
}

impl AuthError {
    /// The HTTP status of the answer.
    pub fn http_status(self) -> u16 {
        match self {
            AuthError::InvalidCredentials | AuthError::InvalidOrExpired => 401,
            AuthError::AccessDenied => 403,
        }
    }

    /// The code of the answer's body.
    pub fn code(self) -> u16 {
        match self {
            AuthError::InvalidCredentials => codes::INVALID_CREDENTIALS,
            AuthError::InvalidOrExpired => codes::INVALID_OR_EXPIRED,
            AuthError::AccessDenied => codes::ACCESS_DENIED,
        }
    }
}

/// Why a validity such as `7d` was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ValidityError {
    /// Not a number with a unit.
    #[error("{0:?} is not a duration like 30s, 15m, 1h or 7d")]
    NotADuration(String),
    /// A unit other than s, m, h, d.
    #[error("{0:?} has an unknown unit; use s, m, h or d")]
    UnknownUnit(String),
    /// More seconds than fit in a key's expiry.
    #[error("{0:?} is too long: the key would expire after the year 292277026596")]
    TooLong(String),
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn mac(server_key: &str) -> Hmac<Sha256> {
    // HMAC takes keys of any length: this cannot fail.
    <Hmac<Sha256> as Mac>::new_from_slice(server_key.as_bytes()).expect("HMAC accepts keys of any length")
}

/// Mints a key for `namespace` valid for `valid_for` (the expiry saturates at the largest time).
pub fn mint(server_key: &str, namespace: &str, valid_for: Duration) -> String {
    let iat = now();
    let claims = Claims {
        exp: iat.saturating_add(valid_for.as_secs()),
        iat,
        namespace: namespace.to_owned(),
    };
    mint_claims(server_key, &claims)
}

/// Mints a key with exactly these claims (tests use it for expired keys).
pub fn mint_claims(server_key: &str, claims: &Claims) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap_or_default());
    let signing_input = format!("{header}.{payload}");
    let mut mac = mac(server_key);
    mac.update(signing_input.as_bytes());
    let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{KEY_PREFIX}{signing_input}.{signature}")
}

/// Checks a header value (`Bearer msb_...` or the raw key) and returns the key's claims.
pub fn verify(server_key: &str, header: Option<&str>) -> Result<Claims, AuthError> {
    let value = header.ok_or(AuthError::InvalidCredentials)?.trim();
    let token = value.strip_prefix("Bearer ").map(str::trim).unwrap_or(value);
    let jwt = token.strip_prefix(KEY_PREFIX).ok_or(AuthError::InvalidCredentials)?;
    let mut parts = jwt.split('.');
    let (Some(header_b64), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(AuthError::InvalidOrExpired);
    };
    let decoded_header = URL_SAFE_NO_PAD
        .decode(header_b64)
        .map_err(|_| AuthError::InvalidOrExpired)?;
    #[derive(Deserialize)]
    struct Header {
        alg: String,
    }
    let header: Header = serde_json::from_slice(&decoded_header).map_err(|_| AuthError::InvalidOrExpired)?;
    if header.alg != "HS256" {
        return Err(AuthError::InvalidOrExpired);
    }
    let signature = URL_SAFE_NO_PAD
        .decode(signature)
        .map_err(|_| AuthError::InvalidOrExpired)?;
    let mut mac = mac(server_key);
    mac.update(format!("{header_b64}.{payload}").as_bytes());
    mac.verify_slice(&signature).map_err(|_| AuthError::InvalidOrExpired)?;
    let payload = URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| AuthError::InvalidOrExpired)?;
    let claims: Claims = serde_json::from_slice(&payload).map_err(|_| AuthError::InvalidOrExpired)?;
    if now() > claims.exp.saturating_add(LEEWAY.as_secs()) {
        return Err(AuthError::InvalidOrExpired);
    }
    Ok(claims)
}

/// Whether a key for `claims.namespace` may act on `namespace` (`*` keys may act on any; a
/// scoped key may not act on `*`).
pub fn allows(claims: &Claims, namespace: &str) -> bool {
    claims.namespace == "*" || claims.namespace == namespace
}

/// Parses a validity such as `30s`, `15m`, `1h`, `7d` (or plain seconds); a validity too long
/// to represent is a [`ValidityError::TooLong`], never an overflow.
pub fn parse_validity(text: &str) -> Result<Duration, ValidityError> {
    let text = text.trim();
    let (number, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len()));
    if number.is_empty() {
        return Err(ValidityError::NotADuration(text.to_owned()));
    }
    let multiplier: u64 = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(ValidityError::UnknownUnit(text.to_owned())),
    };
    let n: u64 = number.parse().map_err(|_| ValidityError::TooLong(text.to_owned()))?;
    let secs = n
        .checked_mul(multiplier)
        .filter(|s| now().checked_add(*s).is_some())
        .ok_or_else(|| ValidityError::TooLong(text.to_owned()))?;
    Ok(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn minted_keys_verify_and_carry_their_namespace() {
        let key = mint("server-secret", "team-a", Duration::from_secs(3600));
        assert!(key.starts_with("msb_"));
        let claims = verify("server-secret", Some(&format!("Bearer {key}"))).unwrap();
        assert_eq!(claims.namespace, "team-a");
        assert!(allows(&claims, "team-a"));
        assert!(!allows(&claims, "team-b"));
        assert!(!allows(&claims, "*"));
        assert_eq!(verify("server-secret", Some(&key)), Ok(claims), "the raw key works too");
    }

    #[test]
    fn bad_keys_get_the_real_servers_answers() {
        let key = mint("server-secret", "*", Duration::from_secs(3600));
        assert_eq!(verify("server-secret", None), Err(AuthError::InvalidCredentials));
        assert_eq!(
            verify("server-secret", Some("Bearer abc")),
            Err(AuthError::InvalidCredentials)
        );
        assert_eq!(verify("other-secret", Some(&key)), Err(AuthError::InvalidOrExpired));
        assert_eq!(
            verify("server-secret", Some("msb_garbage")),
            Err(AuthError::InvalidOrExpired)
        );
        let tampered = key.replace("msb_", "msb_x");
        assert_eq!(
            verify("server-secret", Some(&tampered)),
            Err(AuthError::InvalidOrExpired)
        );
        // A key for every namespace that expired `ago` seconds ago.
        let expired_ago = |ago: u64| {
            let exp = now() - ago;
            mint_claims(
                "server-secret",
                &Claims {
                    exp,
                    iat: exp - 10,
                    namespace: "*".into(),
                },
            )
        };
        assert_eq!(
            verify("server-secret", Some(&expired_ago(3600))),
            Err(AuthError::InvalidOrExpired)
        );
        assert!(
            verify("server-secret", Some(&expired_ago(30))).is_ok(),
            "60 s of leeway"
        );
        assert_eq!(
            (AuthError::AccessDenied.http_status(), AuthError::AccessDenied.code()),
            (403, 3001)
        );
    }

    #[test]
    fn validities_parse_and_absurd_ones_are_refused_without_overflow() {
        assert_eq!(parse_validity("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_validity("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_validity("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_validity("7d"), Ok(Duration::from_secs(604_800)));
        assert!(matches!(parse_validity("1y"), Err(ValidityError::UnknownUnit(_))));
        assert!(matches!(parse_validity("h"), Err(ValidityError::NotADuration(_))));
        assert!(matches!(parse_validity(""), Err(ValidityError::NotADuration(_))));
        for absurd in [
            "99999999999999999d",
            "18446744073709551615s",
            "99999999999999999999999",
            "213503982334601d",
        ] {
            assert!(
                matches!(parse_validity(absurd), Err(ValidityError::TooLong(_))),
                "{absurd}"
            );
        }
    }
}
