//! Host uids for sandboxes when the backend runs as root: each sandbox gets its own
//! unprivileged uid (and gid of the same number), so that nothing in it is host root and its
//! processes can be told apart from everyone else's.

use std::collections::{BTreeSet, HashSet};
use std::os::unix::fs::MetadataExt;
use std::sync::Mutex;

use crate::error::LocalError;

/// The uids this process has handed out.
static LEASED: Mutex<BTreeSet<u32>> = Mutex::new(BTreeSet::new());

/// A uid reserved for one sandbox until dropped.
#[derive(Debug)]
pub(crate) struct UidLease(u32);

impl UidLease {
    /// The uid (also used as the gid).
    pub(crate) fn uid(&self) -> u32 {
        self.0
    }
}

impl Drop for UidLease {
    fn drop(&mut self) {
        LEASED.lock().unwrap_or_else(|p| p.into_inner()).remove(&self.0);
    }
}

/// The uids of all processes on the host.
fn uids_in_use() -> HashSet<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return HashSet::new();
    };
    entries
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
        })
        .filter_map(|e| e.metadata().ok().map(|m| m.uid()))
        .collect()
}

/// Reserves a uid from `first..first + count` that no process on the host runs as and no other
/// sandbox of this process has.
pub(crate) fn lease(first: u32, count: u32) -> Result<UidLease, LocalError> {
    let busy = uids_in_use();
    let mut leased = LEASED.lock().unwrap_or_else(|p| p.into_inner());
    let start = fastrand::u32(0..count.max(1));
    for i in 0..count.min(65_536) {
        let uid = first + (start.wrapping_add(i) % count);
        if !busy.contains(&uid) && !leased.contains(&uid) {
            leased.insert(uid);
            return Ok(UidLease(uid));
        }
    }
    Err(LocalError::Unsupported(format!(
        "no free sandbox uid in {first}..{}",
        u64::from(first) + u64::from(count)
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leases_are_unique_and_returned() {
        let a = lease(0x6100_0000, 2).unwrap();
        let b = lease(0x6100_0000, 2).unwrap();
        assert_ne!(a.uid(), b.uid());
        assert!(lease(0x6100_0000, 2).is_err(), "the range is exhausted");
        let freed = a.uid();
        drop(a);
        assert_eq!(lease(0x6100_0000, 2).unwrap().uid(), freed);
    }
}
