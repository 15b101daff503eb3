//! What a row measured, the goal it is held to, and the table and JSON of a run.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use serde::Serialize;

use crate::machine::Machine;
use crate::rows::Def;

/// One side of a row: its median and p99.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Side {
    pub(crate) label: String,
    pub(crate) median: f64,
    pub(crate) p99: f64,
    /// The unit of `median`.
    pub(crate) unit: &'static str,
    /// The unit of `p99` (a throughput side gives its per-operation latency there).
    pub(crate) p99_unit: &'static str,
}

impl Side {
    pub(crate) fn new(label: impl Into<String>, median: f64, p99: f64, unit: &'static str) -> Side {
        Side {
            label: label.into(),
            median,
            p99,
            unit,
            p99_unit: unit,
        }
    }

    /// The same side with `p99` in another unit.
    pub(crate) fn p99_in(mut self, unit: &'static str) -> Side {
        self.p99_unit = unit;
        self
    }

    fn cell(&self) -> String {
        format!(
            "{} {} {}, p99 {} {}",
            self.label,
            fmt_num(self.median),
            self.unit,
            fmt_num(self.p99),
            self.p99_unit
        )
    }
}

/// What a row's ratio must be.
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub(crate) enum Goal {
    /// The ratio is at least this.
    AtLeast(f64),
    /// The ratio is at most this.
    AtMost(f64),
}

impl Goal {
    fn met(self, ratio: f64) -> bool {
        match self {
            Goal::AtLeast(x) => ratio >= x,
            Goal::AtMost(x) => ratio <= x,
        }
    }

    fn text(self) -> String {
        match self {
            Goal::AtLeast(x) => format!(">= {}", fmt_num(x)),
            Goal::AtMost(x) => format!("<= {}", fmt_num(x)),
        }
    }
}

/// A measured row.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Row {
    pub(crate) ours: Side,
    pub(crate) theirs: Side,
    /// The compared quantity, e.g. `ours/theirs ops/s`.
    pub(crate) ratio_of: &'static str,
    pub(crate) ratio: f64,
    pub(crate) goal: Goal,
    /// Anything a reader needs to interpret the figures.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub(crate) note: String,
}

impl Row {
    /// A row whose ratio is `ours / theirs` of the sides' medians.
    pub(crate) fn ours_over_theirs(ours: Side, theirs: Side, ratio_of: &'static str, goal: Goal) -> Row {
        let ratio = ours.median / theirs.median.max(f64::MIN_POSITIVE);
        Row::with_ratio(ours, theirs, ratio_of, ratio, goal)
    }

    /// A row whose ratio is `theirs / ours` of the sides' medians (how many times faster).
    pub(crate) fn theirs_over_ours(ours: Side, theirs: Side, ratio_of: &'static str, goal: Goal) -> Row {
        let ratio = theirs.median / ours.median.max(f64::MIN_POSITIVE);
        Row::with_ratio(ours, theirs, ratio_of, ratio, goal)
    }

    fn with_ratio(ours: Side, theirs: Side, ratio_of: &'static str, ratio: f64, goal: Goal) -> Row {
        Row {
            ours,
            theirs,
            ratio_of,
            ratio,
            goal,
            note: String::new(),
        }
    }

    pub(crate) fn note(mut self, note: impl Into<String>) -> Row {
        self.note = note.into();
        self
    }
}

/// What became of a row.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub(crate) enum Outcome {
    /// Measured.
    Measured(Row),
    /// Not measured here, on purpose (the reason says why).
    Skipped { reason: String },
    /// Could not be measured.
    Error { error: String },
}

/// A row of the report.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Entry {
    pub(crate) id: &'static str,
    pub(crate) group: &'static str,
    pub(crate) title: &'static str,
    #[serde(flatten)]
    pub(crate) outcome: Outcome,
    /// Whether the goal is met (`null` unless measured).
    pub(crate) pass: Option<bool>,
}

impl Entry {
    pub(crate) fn new(def: &Def, result: Result<Outcome, String>) -> Entry {
        let outcome = result.unwrap_or_else(|error| Outcome::Error { error });
        let pass = match &outcome {
            Outcome::Measured(row) => Some(row.goal.met(row.ratio)),
            _ => None,
        };
        Entry {
            id: def.id,
            group: def.group(),
            title: def.title,
            outcome,
            pass,
        }
    }
}

/// A whole run.
#[derive(Debug, Serialize)]
pub(crate) struct Report {
    machine: Machine,
    quick: bool,
    seconds: f64,
    entries: Vec<Entry>,
}

impl Report {
    /// The report of a run on `machine` that took `took` and measured `entries`.
    pub(crate) fn new(machine: Machine, quick: bool, took: Duration, entries: Vec<Entry>) -> Report {
        Report {
            machine,
            quick,
            seconds: took.as_secs_f64(),
            entries,
        }
    }

    /// How long the run took, in seconds.
    pub(crate) fn seconds(&self) -> f64 {
        self.seconds
    }

    /// Rows that could not be measured.
    pub(crate) fn errors(&self) -> usize {
        self.entries
            .iter()
            .filter(|e| matches!(e.outcome, Outcome::Error { .. }))
            .count()
    }

    /// The table: one line per row (a markdown table, so docs/benchmarks.md can hold it as is).
    pub(crate) fn table(&self) -> String {
        let mut out = String::new();
        out.push_str("| Row | Ours (median, p99) | Reference (median, p99) | Ratio | Goal | Pass |\n");
        out.push_str("|---|---|---|---|---|---|\n");
        let mut notes = Vec::new();
        for entry in &self.entries {
            let _ = match &entry.outcome {
                Outcome::Measured(row) => {
                    if !row.note.is_empty() {
                        notes.push(format!("- {}: {}", entry.id, row.note));
                    }
                    writeln!(
                        out,
                        "| {} | {} | {} | {} ({}) | {} | {} |",
                        entry.title,
                        row.ours.cell(),
                        row.theirs.cell(),
                        fmt_num(row.ratio),
                        row.ratio_of,
                        row.goal.text(),
                        if entry.pass == Some(true) { "pass" } else { "FAIL" }
                    )
                }
                Outcome::Skipped { reason } => writeln!(out, "| {} | skipped: {reason} | | | | |", entry.title),
                Outcome::Error { error } => writeln!(out, "| {} | ERROR: {error} | | | | |", entry.title),
            };
        }
        if !notes.is_empty() {
            out.push('\n');
            for note in notes {
                out.push_str(&note);
                out.push('\n');
            }
        }
        out
    }

    /// Writes the JSON report, creating its folder.
    pub(crate) fn write(&self, path: &Path) -> std::io::Result<()> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let json = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        std::fs::write(path, json)
    }
}

/// An earlier run's report, read back: our side's median per row id.
pub(crate) struct Baseline(std::collections::HashMap<String, (f64, String)>);

impl Baseline {
    pub(crate) fn read(path: &Path) -> std::io::Result<Baseline> {
        let value: serde_json::Value = serde_json::from_slice(&std::fs::read(path)?).map_err(std::io::Error::other)?;
        let mut rows = std::collections::HashMap::new();
        for entry in value["entries"].as_array().into_iter().flatten() {
            let (Some(id), Some(median), Some(unit)) = (
                entry["id"].as_str(),
                entry["ours"]["median"].as_f64(),
                entry["ours"]["unit"].as_str(),
            ) else {
                continue;
            };
            rows.insert(id.to_owned(), (median, unit.to_owned()));
        }
        Ok(Baseline(rows))
    }
}

impl Report {
    /// Each measured row's change of our side against `base` (issue 13's "no benchmark gets
    /// slower by more than 5%"): slower by more than 5% is flagged.
    pub(crate) fn compare(&self, base: &Baseline) -> String {
        let mut out = String::from("| Row | Baseline | Now | Change | |\n|---|---|---|---|---|\n");
        for entry in &self.entries {
            let Outcome::Measured(row) = &entry.outcome else {
                continue;
            };
            let Some((before, unit)) = base.0.get(entry.id) else {
                continue;
            };
            if unit != row.ours.unit || *before == 0.0 {
                continue;
            }
            // Throughputs are better higher; everything else (times, CPU) lower.
            let higher_is_better = unit == "ops/s";
            let slower = if higher_is_better {
                before / row.ours.median.max(f64::MIN_POSITIVE) - 1.0
            } else {
                row.ours.median / before - 1.0
            };
            let _ = writeln!(
                out,
                "| {} | {} {unit} | {} {unit} | {:+.1}% slower | {} |",
                entry.id,
                fmt_num(*before),
                fmt_num(row.ours.median),
                slower * 100.0,
                if slower > 0.05 { "REGRESSION" } else { "ok" }
            );
        }
        out
    }
}

/// A number with about three significant digits.
pub(crate) fn fmt_num(x: f64) -> String {
    let a = x.abs();
    if a >= 1000.0 {
        format!("{x:.0}")
    } else if a >= 100.0 {
        format!("{x:.1}")
    } else if a >= 10.0 {
        format!("{x:.2}")
    } else if a >= 0.01 || a == 0.0 {
        format!("{x:.3}")
    } else {
        format!("{x:.2e}")
    }
}
