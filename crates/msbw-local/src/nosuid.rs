//! The seccomp filter that keeps set-user-ID and set-group-ID bits off every file a sandbox
//! creates or changes (in particular in volumes, where the file stays on the host after the
//! sandbox is gone). `nosuid` on the mounts only stops such a file from working *inside*; on
//! the host it would be a live set-uid file of the volume's owner. The kernel lets a file's owner
//! set these bits, so they are refused at the system call:
//!
//! | System call | Refused (`EPERM`) when |
//! |---|---|
//! | `chmod`, `fchmod`, `fchmodat`, `fchmodat2` | the mode has `S_ISUID` or `S_ISGID` |
//! | `open`, `openat`, `creat` | `O_CREAT` or `O_TMPFILE` with such a mode |
//! | `mknod`, `mknodat` | such a mode |
//! | `openat2` | always (`ENOSYS`: its mode is in memory a filter cannot read; libc falls back to `openat`) |
//! | `io_uring_setup` | always (`ENOSYS`: io_uring's open bypasses seccomp; callers fall back) |
//!
//! `mkdir` needs no rule: the kernel ignores those bits in its mode. Writing to a set-uid file
//! clears the bits (the sandbox has no `CAP_FSETID`); `chown`, `setxattr` of file capabilities and
//! `mknod` of devices need capabilities the sandbox does not have. On x86-64 the same rules are
//! repeated for the x32 numbers; other architectures' calls are killed by seccompiler's
//! architecture check.
//!
//! The filter is built with `seccompiler` once per backend and installed right before `execve`,
//! after `no_new_privs`.

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule, TargetArch,
};

const S_ISUID: u64 = 0o4000;
const S_ISGID: u64 = 0o2000;
/// `__O_TMPFILE` (without `O_DIRECTORY`).
const O_TMPFILE_BIT: u64 = 0o20_000_000;
/// `fchmodat2`, the same number on every architecture (Linux 6.6).
const SYS_FCHMODAT2: i64 = 452;
/// The x32 system call bit on x86-64.
#[cfg(target_arch = "x86_64")]
const X32: i64 = 0x4000_0000;

/// The two compiled filters: set-id modes (`EPERM`) and unfilterable calls (`ENOSYS`).
#[derive(Clone)]
pub(crate) struct NoSuidFilter {
    /// Refuses set-id modes with `EPERM`.
    pub(crate) modes: BpfProgram,
    /// Refuses `openat2` and `io_uring_setup` with `ENOSYS`.
    pub(crate) unfilterable: BpfProgram,
}

impl std::fmt::Debug for NoSuidFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NoSuidFilter")
            .field("modes", &self.modes.len())
            .field("unfilterable", &self.unfilterable.len())
            .finish()
    }
}

fn masked(arg: u8, bit: u64) -> Result<SeccompCondition, seccompiler::BackendError> {
    SeccompCondition::new(arg, SeccompCmpArgLen::Dword, SeccompCmpOp::MaskedEq(bit), bit)
}

/// Rules matching a set-id bit in argument `mode`, and (if given) a creating flag in `flags`.
fn set_id_rules(mode: u8, flags: Option<u8>) -> Result<Vec<SeccompRule>, seccompiler::BackendError> {
    let mut rules = Vec::new();
    for bit in [S_ISUID, S_ISGID] {
        match flags {
            None => rules.push(SeccompRule::new(vec![masked(mode, bit)?])?),
            Some(flags) => {
                for create in [libc::O_CREAT as u64, O_TMPFILE_BIT] {
                    rules.push(SeccompRule::new(vec![masked(flags, create)?, masked(mode, bit)?])?);
                }
            }
        }
    }
    Ok(rules)
}

fn arch() -> Result<TargetArch, seccompiler::BackendError> {
    std::env::consts::ARCH.try_into()
}

/// Adds `rules` for `nr` (and its x32 twin on x86-64).
fn insert(map: &mut BTreeMap<i64, Vec<SeccompRule>>, nr: i64, rules: Vec<SeccompRule>) {
    #[cfg(target_arch = "x86_64")]
    map.insert(nr | X32, rules.clone());
    map.insert(nr, rules);
}

/// Builds the filters for this architecture.
pub(crate) fn build() -> Result<NoSuidFilter, seccompiler::BackendError> {
    let mut modes = BTreeMap::new();
    insert(&mut modes, libc::SYS_fchmod, set_id_rules(1, None)?);
    insert(&mut modes, libc::SYS_fchmodat, set_id_rules(2, None)?);
    insert(&mut modes, SYS_FCHMODAT2, set_id_rules(2, None)?);
    insert(&mut modes, libc::SYS_openat, set_id_rules(3, Some(2))?);
    insert(&mut modes, libc::SYS_mknodat, set_id_rules(2, None)?);
    #[cfg(target_arch = "x86_64")]
    {
        insert(&mut modes, libc::SYS_chmod, set_id_rules(1, None)?);
        insert(&mut modes, libc::SYS_open, set_id_rules(2, Some(1))?);
        insert(&mut modes, libc::SYS_creat, set_id_rules(1, None)?);
        insert(&mut modes, libc::SYS_mknod, set_id_rules(1, None)?);
    }
    let mut unfilterable = BTreeMap::new();
    insert(&mut unfilterable, libc::SYS_openat2, Vec::new());
    insert(&mut unfilterable, libc::SYS_io_uring_setup, Vec::new());
    Ok(NoSuidFilter {
        modes: compile(modes, libc::EPERM)?,
        unfilterable: compile(unfilterable, libc::ENOSYS)?,
    })
}

/// A BPF program that fails the calls `rules` match with `errno` and allows everything else.
fn compile(rules: BTreeMap<i64, Vec<SeccompRule>>, errno: i32) -> Result<BpfProgram, seccompiler::BackendError> {
    let filter = SeccompFilter::new(rules, SeccompAction::Allow, SeccompAction::Errno(errno as u32), arch()?)?;
    filter.try_into()
}

/// The filters, built once per process (`None`, with the reason logged, if that failed).
pub(crate) fn filter() -> Option<&'static NoSuidFilter> {
    static FILTER: std::sync::OnceLock<Option<NoSuidFilter>> = std::sync::OnceLock::new();
    FILTER
        .get_or_init(|| match build() {
            Ok(filter) => Some(filter),
            Err(e) => {
                tracing::warn!(error = %e, "cannot build the seccomp filter against set-uid files");
                None
            }
        })
        .as_ref()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_filters_build_for_this_architecture() {
        let filter = build().unwrap();
        assert!(filter.modes.len() > 20, "{filter:?}");
        assert!(!filter.unfilterable.is_empty());
    }
}
