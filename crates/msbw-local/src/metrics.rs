//! Resource use of sandboxes, read from `/proc` (and the memory cgroup where there is one).

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::sys::Pid;

/// What `/proc/<pid>/stat` says about one process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProcStat {
    /// The parent's pid.
    pub(crate) ppid: Pid,
    /// User plus system CPU time, in clock ticks.
    pub(crate) ticks: u64,
    /// Resident set size, in pages.
    pub(crate) rss_pages: u64,
}

/// Parses the contents of `/proc/<pid>/stat`.
pub(crate) fn parse_stat(text: &str) -> Option<ProcStat> {
    // The command name is in parentheses and may contain anything, including ") ".
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state(3) ppid(4) ... utime(14) stime(15) ... rss(24), numbered from 1.
    let field = |n: usize| fields.get(n - 3);
    Some(ProcStat {
        ppid: field(4)?.parse().ok()?,
        ticks: field(14)?.parse::<u64>().ok()? + field(15)?.parse::<u64>().ok()?,
        rss_pages: field(24)?.parse().ok()?,
    })
}

/// Every process on the host, by pid.
#[derive(Debug, Default)]
pub(crate) struct ProcTable {
    stats: HashMap<Pid, ProcStat>,
    children: HashMap<Pid, Vec<Pid>>,
}

impl ProcTable {
    /// Reads `/proc` (what cannot be read, such as a process that has just exited, is left out).
    pub(crate) fn read() -> ProcTable {
        let mut table = ProcTable::default();
        let entries = std::fs::read_dir("/proc").into_iter().flatten().flatten();
        let processes = entries.filter_map(|e| Some((e.file_name().to_str()?.parse::<Pid>().ok()?, e.path())));
        for (pid, dir) in processes {
            if let Some(stat) = std::fs::read_to_string(dir.join("stat"))
                .ok()
                .as_deref()
                .and_then(parse_stat)
            {
                table.insert(pid, stat);
            }
        }
        table
    }

    fn insert(&mut self, pid: Pid, stat: ProcStat) {
        self.children.entry(stat.ppid).or_default().push(pid);
        self.stats.insert(pid, stat);
    }

    /// CPU ticks and resident pages of what runs in a sandbox: the descendants of its holder
    /// (processes orphaned inside it) and of each chain's first process from the program on
    /// (the program is three levels down; the levels above are copies of the host process).
    pub(crate) fn usage(&self, holder: Pid, chains: &[Pid], launcher: Option<Pid>) -> (u64, u64) {
        let mut ticks = 0;
        let mut pages = 0;
        let mut stack: Vec<(Pid, usize, usize)> = vec![(holder, 0, 1)];
        stack.extend(chains.iter().map(|&c| (c, 0, 3)));
        // The launcher's children are the chains' first processes.
        stack.extend(launcher.map(|l| (l, 0, 4)));
        while let Some((pid, depth, counted_from)) = stack.pop() {
            if depth >= counted_from
                && let Some(stat) = self.stats.get(&pid)
            {
                ticks += stat.ticks;
                pages += stat.rss_pages;
            }
            if depth > 64 {
                continue;
            }
            for &child in self.children.get(&pid).map(Vec::as_slice).unwrap_or_default() {
                stack.push((child, depth + 1, counted_from));
            }
        }
        (ticks, pages)
    }
}

/// Bytes of disk used below `dirs`, or `None` if there are more than `max_entries` entries
/// (counting would take too long).
pub(crate) fn disk_usage(dirs: &[&Path], max_entries: usize) -> Option<u64> {
    let mut total = 0u64;
    let mut seen = 0usize;
    let mut stack: Vec<std::path::PathBuf> = dirs.iter().map(|d| d.to_path_buf()).collect();
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            seen += 1;
            if seen > max_entries {
                return None;
            }
            let Ok(meta) = entry.path().symlink_metadata() else {
                continue;
            };
            total += meta.blocks() * 512;
            if meta.is_dir() {
                stack.push(entry.path());
            }
        }
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_parse_even_with_odd_names() {
        let line = "4242 (py (thon) x) S 17 4242 17 0 -1 4194304 100 0 0 0 25 5 0 0 20 0 1 0 1234 100000 321 18446744073709551615";
        assert_eq!(
            parse_stat(line),
            Some(ProcStat {
                ppid: 17,
                ticks: 30,
                rss_pages: 321
            })
        );
        assert_eq!(parse_stat("garbage"), None);
        assert_eq!(parse_stat("1 (x) S"), None);
    }

    #[test]
    fn usage_counts_the_program_and_below_but_not_the_chain() {
        let mut table = ProcTable::default();
        let stat = |ppid, ticks| ProcStat {
            ppid,
            ticks,
            rss_pages: ticks,
        };
        table.insert(100, stat(1, 1000)); // holder: a copy of the host process
        table.insert(101, stat(100, 1)); // orphan inside the sandbox
        table.insert(200, stat(1, 1000)); // chain level 1
        table.insert(201, stat(200, 1000)); // level 2
        table.insert(202, stat(201, 1000)); // level 3 (init)
        table.insert(203, stat(202, 10)); // the program
        table.insert(204, stat(203, 100)); // its child
        table.insert(300, stat(1, 5)); // unrelated
        assert_eq!(table.usage(100, &[200], None), (111, 111));
        assert_eq!(table.usage(100, &[], None), (1, 1));
    }

    #[test]
    fn disk_usage_counts_and_gives_up() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), vec![1u8; 10_000]).unwrap();
        std::fs::create_dir(dir.path().join("d")).unwrap();
        std::fs::write(dir.path().join("d/b"), vec![1u8; 10_000]).unwrap();
        assert!(disk_usage(&[dir.path()], 100).unwrap() >= 20_000);
        assert_eq!(disk_usage(&[dir.path()], 1), None);
    }
}
