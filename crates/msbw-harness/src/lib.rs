//! What the integration harness (`xtask/src/integration`) and the suites (`msbw-integration`)
//! share, written once: the reading of their command lines and the making of server keys.
//!
//! It has no dependencies, so that `cargo xtask` stays quick to build.

use std::fs::File;
use std::io::Read;
use std::slice::Iter;

/// A command line read flag by flag: `--name value` and `--name=value` alike.
///
/// ```
/// let args: Vec<String> = ["--mode=keyed", "--suite", "auth", "--keep"].map(String::from).into();
/// let mut flags = msbw_harness::Flags::new(&args);
/// assert_eq!(flags.next_flag(), Some("--mode"));
/// assert_eq!(flags.value().as_deref(), Ok("keyed"));
/// assert_eq!(flags.next_flag(), Some("--suite"));
/// assert_eq!(flags.value().as_deref(), Ok("auth"));
/// assert_eq!(flags.next_flag(), Some("--keep"));
/// assert_eq!(flags.next_flag(), None);
/// ```
#[derive(Debug)]
pub struct Flags<'a> {
    args: Iter<'a, String>,
    flag: &'a str,
    inline: Option<&'a str>,
}

impl<'a> Flags<'a> {
    /// Reads `args` (without the program's name).
    pub fn new(args: &'a [String]) -> Self {
        Flags {
            args: args.iter(),
            flag: "",
            inline: None,
        }
    }

    /// The next flag's name (for `--name=value`, the part before `=`); `None` at the end.
    pub fn next_flag(&mut self) -> Option<&'a str> {
        let arg = self.args.next()?;
        (self.flag, self.inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v)),
            _ => (arg.as_str(), None),
        };
        Some(self.flag)
    }

    /// The value of the flag [`next_flag`](Self::next_flag) gave: the part after `=`, or else
    /// the next argument; an error naming the flag when there is none.
    pub fn value(&mut self) -> Result<String, String> {
        match self.inline.take() {
            Some(v) => Ok(v.to_owned()),
            None => self
                .args
                .next()
                .cloned()
                .ok_or_else(|| format!("{} needs a value", self.flag)),
        }
    }
}

/// 32 random letters and digits, from the kernel's random source: a server key.
pub fn random_key() -> Result<String, String> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut bytes = [0u8; 32];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| format!("cannot read /dev/urandom for a server key: {e}"))?;
    Ok(bytes
        .iter()
        .map(|b| char::from(ALPHABET[usize::from(*b) % ALPHABET.len()]))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_come_inline_or_next() {
        let args = ["--a=1", "--b", "2", "-x", "--c=", "--d=e=f"].map(String::from);
        let mut flags = Flags::new(&args);
        assert_eq!(flags.next_flag(), Some("--a"));
        assert_eq!(flags.value(), Ok("1".to_owned()));
        assert_eq!(flags.next_flag(), Some("--b"));
        assert_eq!(flags.value(), Ok("2".to_owned()));
        assert_eq!(flags.next_flag(), Some("-x"));
        assert_eq!(flags.next_flag(), Some("--c"));
        assert_eq!(flags.value(), Ok(String::new()));
        assert_eq!(flags.next_flag(), Some("--d"));
        assert_eq!(flags.value(), Ok("e=f".to_owned()));
        assert_eq!(flags.next_flag(), None);
    }

    #[test]
    fn a_missing_value_names_the_flag() {
        let args = ["--mode"].map(String::from);
        let mut flags = Flags::new(&args);
        assert_eq!(flags.next_flag(), Some("--mode"));
        assert_eq!(flags.value(), Err("--mode needs a value".to_owned()));
    }

    #[test]
    fn an_unused_inline_value_does_not_leak_into_the_next_flag() {
        let args = ["--keep=yes", "--mode"].map(String::from);
        let mut flags = Flags::new(&args);
        assert_eq!(flags.next_flag(), Some("--keep"));
        assert_eq!(flags.next_flag(), Some("--mode"));
        assert_eq!(flags.value(), Err("--mode needs a value".to_owned()));
    }

    #[test]
    fn keys_are_32_letters_and_digits_and_differ() {
        let (a, b) = (random_key().unwrap(), random_key().unwrap());
        assert_eq!(a.len(), 32);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a, b);
    }
}
