//! Templates: which interpreter a sandbox's REPL runs (`python`, `node`). Defined here, at the
//! bottom, so that settings (`MSB_WARM_POOL`) can name them; `msbw-backend` re-exports them.

use std::fmt;
use std::str::FromStr;

use serde::{Serialize, Serializer};

/// The kind of sandbox: which interpreter its REPL runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Template {
    /// Python 3 (`microsandbox/python`).
    Python,
    /// Node.js (`microsandbox/node`).
    Node,
}

impl Template {
    /// Both templates.
    pub const ALL: [Template; 2] = [Template::Python, Template::Node];

    /// The template's canonical name (`python`, `node`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Template::Python => "python",
            Template::Node => "node",
        }
    }

    /// The REPL language the microsandbox server expects (`python`, `nodejs`).
    pub const fn repl_language(self) -> &'static str {
        match self {
            Template::Python => "python",
            Template::Node => "nodejs",
        }
    }
}

impl Serialize for Template {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error of an unknown template name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown template {0:?}; expected python, or node (also nodejs, javascript)")]
pub struct UnknownTemplate(pub String);

impl FromStr for Template {
    type Err = UnknownTemplate;

    /// `python`, `python3`, `node`, `nodejs`, `javascript` or `js`, in any case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "python" | "python3" => Ok(Template::Python),
            "node" | "nodejs" | "javascript" | "js" => Ok(Template::Node),
            _ => Err(UnknownTemplate(s.to_owned())),
        }
    }
}
