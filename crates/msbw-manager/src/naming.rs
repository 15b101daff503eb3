//! Sandbox names: unique per sandbox, valid on the server, and marked as this manager's.
//!
//! A name is `{owner}-{slug}-{suffix}`: the owner mark (letters and digits only, so the prefix
//! `{owner}-` is unambiguous), a readable slug of the session id (letters, digits, `-` and `_`,
//! cut to fit), and ten random hex digits that make every sandbox's name unique, even for session
//! ids that slug to the same text. Orphan cleanup only ever touches names of this shape with this
//! manager's owner mark.

use msbw_backend::MAX_NAME_LEN;

const SUFFIX_LEN: usize = 10;

/// A fresh sandbox name for a session.
pub fn sandbox_name(owner: &str, session_id: &str) -> String {
    let room = MAX_NAME_LEN - owner.len() - SUFFIX_LEN - 2;
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
    format!("{owner}-{slug}-{:010x}", fastrand::u64(..) & 0xff_ffff_ffff)
}

/// Whether `name` is a sandbox name this manager (with this owner mark) makes.
pub fn is_owned(owner: &str, name: &str) -> bool {
    let Some(rest) = name.strip_prefix(owner).and_then(|r| r.strip_prefix('-')) else {
        return false;
    };
    let Some((slug, suffix)) = rest.rsplit_once('-') else {
        return false;
    };
    !slug.is_empty()
        && name.len() <= MAX_NAME_LEN
        && suffix.len() == SUFFIX_LEN
        && suffix.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        && slug
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
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
        let a = sandbox_name("msbw", "user-abc-1");
        let b = sandbox_name("msbw", "user-abc-2");
        assert!(a.starts_with("msbw-user-abc-1-"), "{a}");
        assert_ne!(a, b);
        assert!(is_owned("msbw", &a));
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
    fn foreign_names_are_not_ours() {
        for name in [
            "sandbox-1a2b3c4d",
            "msbw",
            "msbw-",
            "msbw-abc",
            "msbw--0123456789",
            "msbw-x-012345678g",
            "other-x-0123456789",
        ] {
            assert!(!is_owned("msbw", name), "{name}");
        }
        assert!(is_owned("msbw", "msbw-x-0123456789"));
    }

    proptest! {
        #[test]
        fn any_session_id_gives_a_valid_owned_name(id in "\\PC{0,100}", owner in "[a-zA-Z0-9]{1,16}") {
            let name = sandbox_name(&owner, &id);
            prop_assert!(is_valid_name(&name), "{}", name);
            prop_assert!(is_owned(&owner, &name), "{}", name);
        }
    }
}
