//! `MSB_WARM_POOL`: how many sandboxes of each template and flavor the manager keeps started
//! ahead of the sessions that will claim them, written `python:small=2,node:medium=1`.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

use crate::{SandboxFlavor, Template};

/// The most pooled sandboxes of one template and flavor (the total is bounded by
/// `MSB_MAX_SESSIONS` too, since pooled sandboxes count against it).
pub const MAX_POOLED_PER_KEY: u32 = 100;

/// One entry of the warm pool: keep `count` sandboxes of `template` and `flavor` started ahead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct PoolEntry {
    /// Their template.
    pub template: Template,
    /// Their flavor.
    pub flavor: SandboxFlavor,
    /// How many to keep ready (1 to [`MAX_POOLED_PER_KEY`]).
    pub count: u32,
}

impl fmt::Display for PoolEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}={}", self.template, self.flavor, self.count)
    }
}

/// The warm pool's targets, in the order given; empty (the default) for no pool.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct WarmPool {
    /// One entry per template and flavor.
    pub entries: Vec<PoolEntry>,
}

impl WarmPool {
    /// Whether no sandbox is pooled.
    pub fn is_empty(&self) -> bool {
        self.total() == 0
    }

    /// How many sandboxes the pool keeps in all.
    pub fn total(&self) -> u64 {
        self.entries.iter().map(|e| u64::from(e.count)).sum()
    }

    /// The memory the full pool reserves, in MB.
    pub fn memory_mb(&self) -> u64 {
        self.entries
            .iter()
            .map(|e| u64::from(e.count) * u64::from(e.flavor.memory_mb()))
            .sum()
    }

    /// The target for one template and flavor (0 when it has no entry).
    pub fn target(&self, template: Template, flavor: SandboxFlavor) -> u32 {
        self.entries
            .iter()
            .find(|e| e.template == template && e.flavor == flavor)
            .map_or(0, |e| e.count)
    }

    /// What is wrong with the entries on their own (a count out of range, a template and flavor
    /// named twice), if anything.
    pub fn problem(&self) -> Option<String> {
        for (i, e) in self.entries.iter().enumerate() {
            if e.count == 0 || e.count > MAX_POOLED_PER_KEY {
                return Some(format!(
                    "asks for {} {}:{} sandboxes; each count is from 1 to {MAX_POOLED_PER_KEY}",
                    e.count, e.template, e.flavor
                ));
            }
            if self.entries[..i]
                .iter()
                .any(|d| d.template == e.template && d.flavor == e.flavor)
            {
                return Some(format!("names {}:{} more than once", e.template, e.flavor));
            }
        }
        None
    }
}

impl fmt::Display for WarmPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.entries.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl FromStr for WarmPool {
    type Err = String;

    /// `template:flavor=count` entries separated by commas (white space around each part is
    /// ignored); empty for no pool. The error says what is wrong, for a [`crate::ConfigProblem`].
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut pool = WarmPool::default();
        for part in text.split(',').map(str::trim) {
            if part.is_empty() {
                continue;
            }
            // Six distinct entries exist (2 templates, 3 flavors): more can only repeat one.
            if pool.entries.len() >= Template::ALL.len() * 3 {
                return Err("has more entries than there are templates and flavors".into());
            }
            let shown: String = part.chars().take(40).collect();
            let (key, count) = part
                .split_once('=')
                .ok_or_else(|| format!("entry {shown:?} has no '=count'"))?;
            let (template, flavor) = key
                .split_once(':')
                .ok_or_else(|| format!("entry {shown:?} has no ':flavor'"))?;
            let template: Template = template
                .trim()
                .parse()
                .map_err(|_| format!("entry {shown:?} names an unknown template"))?;
            let flavor: SandboxFlavor = flavor
                .trim()
                .parse()
                .map_err(|_| format!("entry {shown:?} names an unknown flavor"))?;
            let count: u32 = count
                .trim()
                .parse()
                .map_err(|_| format!("entry {shown:?} has a count that is not a whole number"))?;
            pool.entries.push(PoolEntry {
                template,
                flavor,
                count,
            });
        }
        match pool.problem() {
            Some(why) => Err(why),
            None => Ok(pool),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_parse_print_and_read_back() {
        let pool: WarmPool = " python:small=2 , nodejs:MEDIUM=1,".parse().unwrap();
        assert_eq!(pool.to_string(), "python:small=2,node:medium=1");
        assert_eq!(pool.to_string().parse::<WarmPool>().unwrap(), pool);
        assert_eq!(pool.total(), 3);
        assert_eq!(pool.memory_mb(), 2 * 1024 + 2048);
        assert_eq!(pool.target(Template::Python, SandboxFlavor::Small), 2);
        assert_eq!(pool.target(Template::Python, SandboxFlavor::Large), 0);
        assert!("".parse::<WarmPool>().unwrap().is_empty());
    }

    #[test]
    fn bad_entries_say_what_is_wrong() {
        for (text, says) in [
            ("python", "no '=count'"),
            ("python=2", "no ':flavor'"),
            ("ruby:small=1", "unknown template"),
            ("python:huge=1", "unknown flavor"),
            ("python:small=-1", "not a whole number"),
            ("python:small=0", "from 1 to 100"),
            ("python:small=101", "from 1 to 100"),
            ("python:small=1,python3:small=2", "more than once"),
            (&"python:small=1,".repeat(7), "more entries"),
        ] {
            let err = text.parse::<WarmPool>().unwrap_err();
            assert!(err.contains(says), "{text:?}: {err}");
        }
    }
}
