//! Sandbox names: unique per sandbox, valid on the server, and marked with the owner mark and the
//! id of the manager that made them.
//!
//! A name is `{mark}-{slug}-{owner}-{suffix}`: the owner mark (letters and digits only, so the
//! prefix `{mark}-` is unambiguous), a readable slug of the session id (letters, digits, `-` and
//! `_`, cut to fit), the owner id of the manager that made it (8 hex digits, fresh for every
//! manager, see [`crate::ownership`]), and ten random hex digits that make every sandbox's name
//! unique, even for session ids that slug to the same text. Orphan cleanup only ever touches names
//! of this shape with its own mark, and only those whose owner is itself or provably gone.

use msbw_backend::MAX_NAME_LEN;

const SUFFIX_LEN: usize = 10;

/// The length of an owner id.
pub const OWNER_ID_LEN: usize = 8;

/// A fresh owner id: 8 random hex digits.
pub fn owner_id() -> String {
    format!("{:08x}", fastrand::u32(..))
}

/// A fresh sandbox name for a session of the manager with owner id `owner` (see [`owner_id`]).
pub fn owned_sandbox_name(mark: &str, owner: &str, session_id: &str) -> String {
    let room = MAX_NAME_LEN - mark.len() - OWNER_ID_LEN - SUFFIX_LEN - 3;
    let mut slug = String::with_capacity(room);
    for c in session_id.chars() {
        if slug.len() >= room {
            break;
        }
        let c = if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
            c
        } else {
            '-'
        };
        if c == '-' && slug.ends_with('-') {
            continue;
        }
        slug.push(c);
    }
    let slug = slug.trim_matches('-');
    let slug = if slug.is_empty() { "s" } else { slug };
    format!("{mark}-{slug}-{owner}-{:010x}", fastrand::u64(..) & 0xff_ffff_ffff)
}

/// A fresh name for a warm-pool sandbox of the manager with owner id `owner`:
/// `{mark}-pool-{template}-{flavor}-{owner}-{suffix}`. It names no session (the session that
/// claims it is found through the registry, never through the name).
pub fn pooled_sandbox_name(
    mark: &str,
    owner: &str,
    template: msbw_backend::Template,
    flavor: msbw_config::SandboxFlavor,
) -> String {
    owned_sandbox_name(mark, owner, &format!("pool-{template}-{flavor}"))
}

/// A fresh sandbox name under a fresh owner id that no live manager holds: a name as a crashed
/// manager, or another host's manager, would have left it.
pub fn sandbox_name(mark: &str, session_id: &str) -> String {
    owned_sandbox_name(mark, &owner_id(), session_id)
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The owner id in `name`, if it is a sandbox name of this shape with mark `mark`.
pub fn owner_of<'a>(mark: &str, name: &'a str) -> Option<&'a str> {
    let rest = name.strip_prefix(mark)?.strip_prefix('-')?;
    let (rest, suffix) = rest.rsplit_once('-')?;
    let (slug, owner) = rest.rsplit_once('-')?;
    let ok = !slug.is_empty()
        && name.len() <= MAX_NAME_LEN
        && is_hex(suffix, SUFFIX_LEN)
        && is_hex(owner, OWNER_ID_LEN)
        && slug
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    ok.then_some(owner)
}

/// Whether `name` is a sandbox name of this shape with mark `mark` (whichever manager made it).
pub fn is_owned(mark: &str, name: &str) -> bool {
    owner_of(mark, name).is_some()
}

/// A fresh session id for a call that names none.
pub fn session_id() -> String {
    format!("session-{:016x}", fastrand::u64(..))
}

#[cfg(test)]
mod tests {
    use super::*;
    use msbw_backend::is_valid_name;
    use proptest::prelude::*;

    #[test]
    fn names_are_marked_valid_and_unique() {
        let a = owned_sandbox_name("msbw", "0123abcd", "user-abc-1");
        let b = owned_sandbox_name("msbw", "0123abcd", "user-abc-2");
        assert!(a.starts_with("msbw-user-abc-1-0123abcd-"), "{a}");
        assert_ne!(a, b);
        assert_eq!(owner_of("msbw", &a), Some("0123abcd"));
        assert!(!is_owned("msbwx", &a));
        assert!(!is_owned("msb", &a));
    }

    #[test]
    fn ids_that_slug_alike_still_get_different_names() {
        assert_ne!(sandbox_name("msbw", "a/b"), sandbox_name("msbw", "a b"));
        let long = "x".repeat(500);
        let name = sandbox_name("abcdefghijklmnop", &long);
        assert_eq!(name.len(), 63);
        assert!(is_owned("abcdefghijklmnop", &name));
    }

    #[test]
    fn foreign_and_old_style_names_are_not_ours() {
        for name in [
            "sandbox-1a2b3c4d",
            "msbw",
            "msbw-",
            "msbw-abc",
            "msbw--0123abcd-0123456789",
            "msbw-x-0123456789",
            "msbw-x-0123abcd-012345678g",
            "msbw-x-0123abc-0123456789",
            "other-x-0123abcd-0123456789",
        ] {
            assert!(!is_owned("msbw", name), "{name}");
        }
        assert_eq!(owner_of("msbw", "msbw-x-y-0123abcd-0123456789"), Some("0123abcd"));
    }

    #[test]
    fn pooled_names_are_owned_and_name_no_session() {
        use msbw_backend::Template;
        use msbw_config::SandboxFlavor;
        let name = pooled_sandbox_name("msbw", "0123abcd", Template::Node, SandboxFlavor::Large);
        assert!(name.starts_with("msbw-pool-node-large-0123abcd-"), "{name}");
        assert!(is_valid_name(&name));
        assert_eq!(owner_of("msbw", &name), Some("0123abcd"));
        let longest = pooled_sandbox_name("abcdefghijklmnop", "0123abcd", Template::Python, SandboxFlavor::Medium);
        assert!(
            is_valid_name(&longest) && is_owned("abcdefghijklmnop", &longest),
            "{longest}"
        );
    }

    proptest! {
        #[test]
        fn any_session_id_gives_a_valid_owned_name(id in "\\PC{0,100}", mark in "[a-zA-Z0-9]{1,16}") {
            let owner = owner_id();
            let name = owned_sandbox_name(&mark, &owner, &id);
            prop_assert!(is_valid_name(&name), "{}", name);
            prop_assert_eq!(owner_of(&mark, &name), Some(owner.as_str()), "{}", name);
        }
    }
}
