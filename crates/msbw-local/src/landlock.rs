//! The Landlock ruleset every program in a sandbox runs under (defence in depth on top of the
//! read-only mounts): read and execute everywhere, write only in the sandbox's writable places.

use std::path::Path;

use crate::child::LandlockPlan;

const EXECUTE: u64 = 1 << 0;
const WRITE_FILE: u64 = 1 << 1;
const READ_FILE: u64 = 1 << 2;
const READ_DIR: u64 = 1 << 3;
/// Everything of ABI 1 (execute .. make_sym).
const ABI1_ALL: u64 = (1 << 13) - 1;
const REFER: u64 = 1 << 13;
const TRUNCATE: u64 = 1 << 14;
const IOCTL_DEV: u64 = 1 << 15;
/// `LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET` (ABI 6).
const SCOPE_ABSTRACT_UNIX_SOCKET: u64 = 1 << 0;

/// The filesystem rights an ABI version knows.
fn handled(abi: u32) -> u64 {
    let mut rights = ABI1_ALL;
    if abi >= 2 {
        rights |= REFER;
    }
    if abi >= 3 {
        rights |= TRUNCATE;
    }
    if abi >= 5 {
        rights |= IOCTL_DEV;
    }
    rights
}

/// The ruleset for a sandbox: `writable` directories get every right, `/dev` may be read and
/// written (device files only), everything else may only be read and executed. When the sandbox
/// shares the host's network, abstract unix sockets outside the sandbox are out of reach too
/// (ABI 6), since they live in the network namespace.
pub(crate) fn plan(abi: u32, writable: &[&Path], shares_network: bool) -> Option<LandlockPlan> {
    let all = handled(abi);
    let read = EXECUTE | READ_FILE | READ_DIR;
    let mut rules = Vec::new();
    let mut rule = |path: &Path, rights: u64| -> Option<()> {
        rules.push((crate::sys::cstring(path).ok()?, rights & all));
        Some(())
    };
    rule(Path::new("/"), read)?;
    rule(Path::new("/dev"), read | WRITE_FILE | TRUNCATE | IOCTL_DEV)?;
    for dir in writable {
        rule(dir, all)?;
    }
    let scoped = if shares_network && abi >= 6 {
        SCOPE_ABSTRACT_UNIX_SOCKET
    } else {
        0
    };
    let attr_size = match abi {
        0..=3 => 8,
        4 | 5 => 16,
        _ => 24,
    };
    Some(LandlockPlan {
        handled_fs: all,
        file_rights: (EXECUTE | WRITE_FILE | READ_FILE | TRUNCATE | IOCTL_DEV) & all,
        rules,
        scoped,
        attr_size,
    })
}

/// The paths of a plan's rules, for tests and messages.
#[cfg(test)]
fn paths(plan: &LandlockPlan) -> Vec<&std::ffi::CString> {
    plan.rules.iter().map(|(p, _)| p).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rights_follow_the_abi() {
        assert_eq!(handled(1), ABI1_ALL);
        assert_eq!(handled(3) & TRUNCATE, TRUNCATE);
        assert_eq!(handled(4) & IOCTL_DEV, 0);
        assert_eq!(handled(7) & IOCTL_DEV, IOCTL_DEV);
    }

    #[test]
    fn only_the_writable_places_can_be_written() {
        let plan = plan(7, &[Path::new("/tmp"), Path::new("/workspace")], false).unwrap();
        assert_eq!(plan.attr_size, 24);
        assert_eq!(plan.scoped, 0);
        let rights = |p: &str| plan.rules.iter().find(|(c, _)| c.to_str() == Ok(p)).map(|(_, r)| *r);
        assert_eq!(rights("/").unwrap() & WRITE_FILE, 0);
        assert_eq!(rights("/tmp"), Some(handled(7)));
        assert_eq!(rights("/dev").unwrap() & (1 << 8), 0, "no new files in /dev");
        assert_eq!(paths(&plan).len(), 4);

        let old = super::plan(1, &[], true).unwrap();
        assert_eq!(old.attr_size, 8);
        assert_eq!(old.scoped, 0, "ABI 1 has no scopes");
        assert_eq!(super::plan(6, &[], true).unwrap().scoped, SCOPE_ABSTRACT_UNIX_SOCKET);
    }
}
