//! Volume mappings (`host:container[:ro|:rw]`) and the `MSB_SHARED_VOLUME_PATH` list format.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

/// A host folder mapped into every sandbox at `container_path`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct VolumeMapping {
    /// Absolute path on the host, normalised (no `.`, no repeated or trailing `/`).
    pub host_path: String,
    /// Absolute path inside the sandbox, normalised the same way.
    pub container_path: String,
    /// Whether the sandbox may only read the folder.
    pub read_only: bool,
}

/// Why a volume mapping entry was refused; it quotes the entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid volume mapping {entry:?}: {reason}")]
pub struct VolumeError {
    /// The entry as it was given.
    pub entry: String,
    /// What is wrong with it.
    pub reason: String,
}

impl VolumeMapping {
    /// A read-write mapping; the paths are checked and normalised.
    pub fn new(host_path: &str, container_path: &str) -> Result<Self, VolumeError> {
        format!("{host_path}:{container_path}").parse()
    }

    /// A read-only mapping; the paths are checked and normalised.
    pub fn read_only(host_path: &str, container_path: &str) -> Result<Self, VolumeError> {
        format!("{host_path}:{container_path}:ro").parse()
    }

    /// The `host:guest` form the microsandbox server takes (it has no read-only flag).
    pub fn to_server_string(&self) -> String {
        format!("{}:{}", self.host_path, self.container_path)
    }
}

impl fmt::Display for VolumeMapping {
    /// `host:container`, with `:ro` appended for read-only mappings; parses back to itself.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host_path, self.container_path)?;
        if self.read_only {
            f.write_str(":ro")?;
        }
        Ok(())
    }
}

impl FromStr for VolumeMapping {
    type Err = VolumeError;

    /// Parses `host:container`, `host:container:ro` or `host:container:rw`.
    fn from_str(entry: &str) -> Result<Self, Self::Err> {
        let fail = |reason: &str| VolumeError {
            entry: entry.to_owned(),
            reason: reason.to_owned(),
        };
        let trimmed = entry.trim();
        let parts: Vec<&str> = trimmed.split(':').collect();
        let (host, container, read_only) = match parts.as_slice() {
            [host, container] => (*host, *container, false),
            [host, container, mode] => match mode.to_ascii_lowercase().as_str() {
                "ro" => (*host, *container, true),
                "rw" => (*host, *container, false),
                _ => {
                    return Err(fail(&format!(
                        "unknown mode {mode:?}; the third part must be \"ro\" or \"rw\""
                    )));
                }
            },
            [_] => {
                return Err(fail(
                    "expected \"host_path:container_path\" with an optional \":ro\" or \":rw\"",
                ));
            }
            _ => return Err(fail("too many ':'; paths may not contain ':'")),
        };
        let host_path = normalise(host).map_err(|why| fail(&format!("host path {why}")))?;
        let container_path = normalise(container).map_err(|why| fail(&format!("container path {why}")))?;
        if container_path == "/" {
            return Err(fail(
                "container path may not be \"/\" (it would hide the sandbox's own root)",
            ));
        }
        Ok(VolumeMapping {
            host_path,
            container_path,
            read_only,
        })
    }
}

/// Checks one path and returns it normalised, or says why it is refused.
fn normalise(path: &str) -> Result<String, String> {
    if path.is_empty() {
        return Err("is empty".into());
    }
    if !path.starts_with('/') {
        return Err(format!("{path:?} is not absolute (it must start with '/')"));
    }
    if path.trim() != path {
        return Err(format!("{path:?} begins or ends with white space"));
    }
    if path.chars().any(char::is_control) {
        return Err(format!("{path:?} contains a control character"));
    }
    let mut parts = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err(format!("{path:?} contains '..'")),
            other => parts.push(other),
        }
    }
    let normalised = format!("/{}", parts.join("/"));
    // `/a /` normalises to `/a `: the white space would then end the path (and be trimmed away
    // when the mapping is read back).
    if normalised.trim_end() != normalised {
        return Err(format!("{path:?} has a last part that ends with white space"));
    }
    Ok(normalised)
}

/// Parses `MSB_SHARED_VOLUME_PATH`: a JSON array of entries (over one or several lines), or the
/// legacy comma-separated list. Empty text is an empty list. Reports every bad entry.
pub fn parse_volume_mappings(text: &str) -> Result<Vec<VolumeMapping>, Vec<VolumeError>> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Ok(Vec::new());
    }
    let entries: Vec<String> = if trimmed.starts_with('[') {
        match serde_json::from_str::<Vec<String>>(trimmed) {
            Ok(entries) => entries,
            Err(e) => {
                return Err(vec![VolumeError {
                    entry: text.to_owned(),
                    reason: format!("not a JSON array of strings ({e})"),
                }]);
            }
        }
    } else {
        trimmed
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .map(str::to_owned)
            .collect()
    };
    let mut mappings: Vec<VolumeMapping> = Vec::with_capacity(entries.len());
    let mut errors = Vec::new();
    for entry in &entries {
        match entry.parse::<VolumeMapping>() {
            Ok(mapping) => mappings.push(mapping),
            Err(e) => errors.push(e),
        }
    }
    errors.extend(duplicate_container_paths(&mappings));
    if errors.is_empty() { Ok(mappings) } else { Err(errors) }
}

/// One error for every mapping whose container path an earlier mapping already uses.
pub(crate) fn duplicate_container_paths(mappings: &[VolumeMapping]) -> Vec<VolumeError> {
    let mut errors = Vec::new();
    for (i, m) in mappings.iter().enumerate() {
        if let Some(first) = mappings[..i].iter().find(|o| o.container_path == m.container_path) {
            errors.push(VolumeError {
                entry: m.to_string(),
                reason: format!(
                    "container path {:?} is already mapped by {:?}",
                    m.container_path,
                    first.to_string()
                ),
            });
        }
    }
    errors
}

/// Formats mappings as the JSON array that [`parse_volume_mappings`] reads back.
pub fn format_volume_mappings(mappings: &[VolumeMapping]) -> String {
    let entries: Vec<String> = mappings.iter().map(ToString::to_string).collect();
    serde_json::to_string(&entries).unwrap_or_else(|_| "[]".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vm(host: &str, container: &str, read_only: bool) -> VolumeMapping {
        VolumeMapping {
            host_path: host.into(),
            container_path: container.into(),
            read_only,
        }
    }

    #[test]
    fn the_three_entry_forms_parse() {
        assert_eq!("/h:/c".parse(), Ok(vm("/h", "/c", false)));
        assert_eq!("/h:/c:ro".parse(), Ok(vm("/h", "/c", true)));
        assert_eq!("/h:/c:RW".parse(), Ok(vm("/h", "/c", false)));
        assert_eq!(
            " /project/src:/sandbox/src:ro ".parse(),
            Ok(vm("/project/src", "/sandbox/src", true))
        );
    }

    #[test]
    fn paths_are_normalised() {
        assert_eq!(
            "//data//in/./:/sandbox/in/".parse(),
            Ok(vm("/data/in", "/sandbox/in", false))
        );
    }

    #[test]
    fn bad_entries_are_refused_with_the_entry_quoted() {
        let cases = [
            ("/only-one-path", "expected \"host_path:container_path\""),
            ("relative:/c", "host path \"relative\" is not absolute"),
            ("/h:relative", "container path \"relative\" is not absolute"),
            ("/h/../etc:/c", "host path \"/h/../etc\" contains '..'"),
            ("/h:/c/..", "container path \"/c/..\" contains '..'"),
            ("/h:/c:rx", "unknown mode \"rx\""),
            ("/h:/c:ro:x", "too many ':'"),
            (":/c", "host path is empty"),
            ("/h:", "container path is empty"),
            ("/h :/c", "host path \"/h \" begins or ends with white space"),
            ("/h:/", "container path may not be \"/\""),
        ];
        for (entry, why) in cases {
            let err = entry.parse::<VolumeMapping>().unwrap_err();
            let text = err.to_string();
            assert!(
                text.starts_with(&format!("invalid volume mapping {entry:?}: ")),
                "{text}"
            );
            assert!(text.contains(why), "{entry}: {text}");
        }
    }

    #[test]
    fn lists_parse_in_json_and_legacy_forms() {
        let json = r#"["/host/input:/sandbox/input", "/host/output:/sandbox/output"]"#;
        let want = vec![
            vm("/host/input", "/sandbox/input", false),
            vm("/host/output", "/sandbox/output", false),
        ];
        assert_eq!(parse_volume_mappings(json), Ok(want));
        let legacy = "/host/data:/sandbox/data,/host/logs:/sandbox/logs";
        assert_eq!(parse_volume_mappings(legacy).unwrap().len(), 2);
        let multiline = "[\n  \"/p/src:/sandbox/src:ro\",\n  \"/p/data:/sandbox/data\"\n]";
        assert_eq!(
            parse_volume_mappings(multiline).unwrap()[0],
            vm("/p/src", "/sandbox/src", true)
        );
        assert_eq!(parse_volume_mappings(""), Ok(vec![]));
        assert_eq!(parse_volume_mappings("[]"), Ok(vec![]));
        assert_eq!(parse_volume_mappings(" /a:/b, "), Ok(vec![vm("/a", "/b", false)]));
    }

    #[test]
    fn list_errors_report_every_bad_entry_and_duplicates() {
        let errs = parse_volume_mappings(r#"["bad", "/a:/x", "/b:/x/", "worse:/y"]"#).unwrap_err();
        assert_eq!(errs.len(), 3, "{errs:?}");
        assert!(errs.iter().any(|e| e.reason.contains("already mapped by \"/a:/x\"")));
        let errs = parse_volume_mappings("[\"/a:/b\",").unwrap_err();
        assert!(errs[0].reason.starts_with("not a JSON array of strings"), "{errs:?}");
        let errs = parse_volume_mappings("[1, 2]").unwrap_err();
        assert!(errs[0].reason.starts_with("not a JSON array of strings"), "{errs:?}");
    }

    #[test]
    fn format_round_trips() {
        let list = vec![vm("/a", "/b", true), vm("/c,d", "/e", false)];
        assert_eq!(parse_volume_mappings(&format_volume_mappings(&list)), Ok(list));
        assert_eq!(vm("/a", "/b", true).to_server_string(), "/a:/b");
    }
}
