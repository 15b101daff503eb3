//! Each check's outcome, printed as it happens, and each suite's counts for the summary.
//!
//! Nothing passes quietly: a check that passed only after retries says so, how often it
//! failed first and why it was retried; a check that does not apply to the target says why;
//! a suite whose crate or binary does not exist yet is "not yet available", which fails the
//! run unless `--allow-missing` is given.

use std::fmt;
use std::future::Future;
use std::time::{Duration, Instant};

/// How one check ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// It passed the first time.
    Passed,
    /// It failed first and passed on a later attempt; retried only because of a documented
    /// upstream defect, named here.
    PassedAfterRetries {
        /// The attempt that passed (2 or more).
        attempt: u32,
        /// The most attempts allowed.
        of: u32,
        /// Why the earlier attempts failed.
        earlier: Vec<String>,
        /// The upstream defect that justified the retries.
        defect: &'static str,
    },
    /// It failed, with the reason.
    Failed(String),
    /// It cannot run against this target, with the reason (never because something is
    /// missing that should exist: that is a failure or "not yet available").
    NotApplicable(String),
}

/// One check: its name, how long it took and how it ended.
#[derive(Debug, Clone)]
pub struct Check {
    /// The check's name (a function name).
    pub name: String,
    /// How long it took, retries included; `None` when it was not measured (the conformance
    /// suite's `run_all` does not time each check).
    pub took: Option<Duration>,
    /// How it ended.
    pub outcome: Outcome,
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = match self.took {
            Some(took) => format!(" ({:.1} s)", took.as_secs_f64()),
            None => String::new(),
        };
        match &self.outcome {
            Outcome::Passed => write!(f, "  ok      {}{secs}", self.name),
            Outcome::PassedAfterRetries {
                attempt,
                of,
                earlier,
                defect,
            } => {
                write!(
                    f,
                    "  ok*     {}{secs}: PASSED ONLY ON ATTEMPT {attempt} OF AT MOST {of}; retried because of \
                     a known upstream defect: {defect}",
                    self.name
                )?;
                for (i, why) in earlier.iter().enumerate() {
                    write!(f, "\n            attempt {} failed: {why}", i + 1)?;
                }
                Ok(())
            }
            Outcome::Failed(why) => write!(f, "  FAILED  {}{secs}: {why}", self.name),
            Outcome::NotApplicable(why) => write!(f, "  n/a     {}: {why}", self.name),
        }
    }
}

/// How a suite as a whole ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Every check passed (some possibly after retries) or did not apply, and at least one
    /// passed.
    Passed,
    /// At least one check failed.
    Failed,
    /// The suite's crate or binary does not exist yet.
    NotYetAvailable,
    /// No check applies to the target.
    NotApplicable,
}

impl Status {
    /// The name in the summary file.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Passed => "passed",
            Status::Failed => "failed",
            Status::NotYetAvailable => "not-yet-available",
            Status::NotApplicable => "not-applicable",
        }
    }
}

/// The outcome of one suite against one target.
#[derive(Debug, Clone)]
pub struct SuiteReport {
    /// The suite's name.
    pub suite: &'static str,
    /// What it ran against (see [`Target::describe`](crate::target::Target::describe)).
    pub against: String,
    /// The checks, in order.
    pub checks: Vec<Check>,
    /// Why the suite could not run at all because its crate or binary is missing.
    pub not_yet_available: Option<String>,
}

impl SuiteReport {
    /// An empty report; prints the suite's heading.
    pub fn new(suite: &'static str, against: impl Into<String>) -> Self {
        let against = against.into();
        println!("\n== suite {suite} against {against}");
        SuiteReport {
            suite,
            against,
            checks: Vec::new(),
            not_yet_available: None,
        }
    }

    /// A suite that cannot run because its crate or binary is missing.
    pub fn not_yet_available(suite: &'static str, against: impl Into<String>, why: impl Into<String>) -> Self {
        let mut report = SuiteReport::new(suite, against);
        let why = why.into();
        println!("  NOT YET AVAILABLE: {why}");
        report.not_yet_available = Some(why);
        report
    }

    /// Records (and prints) a check.
    pub fn record(&mut self, name: impl Into<String>, took: Option<Duration>, outcome: Outcome) {
        let check = Check {
            name: name.into(),
            took,
            outcome,
        };
        println!("{check}");
        self.checks.push(check);
    }

    /// Runs a check that fails with a reason, times it (bounded by `limit`), and records it.
    pub async fn check<F>(&mut self, name: &str, limit: Duration, check: F)
    where
        F: Future<Output = Result<(), String>>,
    {
        let started = Instant::now();
        let outcome = match tokio::time::timeout(limit, check).await {
            Ok(Ok(())) => Outcome::Passed,
            Ok(Err(why)) => Outcome::Failed(why),
            Err(_) => Outcome::Failed(format!("did not finish within {limit:?}")),
        };
        self.record(name, Some(started.elapsed()), outcome);
    }

    /// Records a check that does not apply to the target.
    pub fn not_applicable(&mut self, name: &str, why: impl Into<String>) {
        self.record(name, None, Outcome::NotApplicable(why.into()));
    }

    fn count(&self, wanted: impl Fn(&Outcome) -> bool) -> u32 {
        u32::try_from(self.checks.iter().filter(|c| wanted(&c.outcome)).count()).unwrap_or(u32::MAX)
    }

    /// Checks that passed, retried ones included.
    pub fn passed(&self) -> u32 {
        self.count(|o| matches!(o, Outcome::Passed | Outcome::PassedAfterRetries { .. }))
    }

    /// Checks that passed only after retries.
    pub fn retried(&self) -> u32 {
        self.count(|o| matches!(o, Outcome::PassedAfterRetries { .. }))
    }

    /// Checks that failed.
    pub fn failed(&self) -> u32 {
        self.count(|o| matches!(o, Outcome::Failed(_)))
    }

    /// Checks that did not apply.
    pub fn not_applicable_count(&self) -> u32 {
        self.count(|o| matches!(o, Outcome::NotApplicable(_)))
    }

    /// How the suite ended.
    pub fn status(&self) -> Status {
        if self.not_yet_available.is_some() {
            Status::NotYetAvailable
        } else if self.failed() > 0 {
            Status::Failed
        } else if self.passed() == 0 {
            if self.checks.is_empty() {
                // A suite that ran no check at all proves nothing.
                Status::Failed
            } else {
                Status::NotApplicable
            }
        } else {
            Status::Passed
        }
    }

    /// One line of the summary file read by xtask: tab-separated
    /// `against, suite, status, passed, retried, failed, not applicable, detail`.
    pub fn summary_line(&self) -> String {
        let detail = match (&self.not_yet_available, self.status()) {
            (Some(why), _) => why.clone(),
            (None, Status::Failed) if self.checks.is_empty() => "no check ran".into(),
            (None, _) => {
                let failed: Vec<&str> = self
                    .checks
                    .iter()
                    .filter(|c| matches!(c.outcome, Outcome::Failed(_)))
                    .map(|c| c.name.as_str())
                    .collect();
                let retried: Vec<&str> = self
                    .checks
                    .iter()
                    .filter(|c| matches!(c.outcome, Outcome::PassedAfterRetries { .. }))
                    .map(|c| c.name.as_str())
                    .collect();
                let mut parts = Vec::new();
                if !failed.is_empty() {
                    parts.push(format!("failed: {}", failed.join(", ")));
                }
                if !retried.is_empty() {
                    parts.push(format!("retried: {}", retried.join(", ")));
                }
                parts.join("; ")
            }
        };
        let clean = |s: &str| s.replace(['\t', '\n'], " ");
        format!(
            "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
            clean(&self.against),
            self.suite,
            self.status().as_str(),
            self.passed(),
            self.retried(),
            self.failed(),
            self.not_applicable_count(),
            clean(&detail)
        )
    }
}

/// `Ok` if `condition`, else the reason.
pub fn ensure(condition: bool, why: impl FnOnce() -> String) -> Result<(), String> {
    if condition { Ok(()) } else { Err(why()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_counts_follow_the_checks() {
        let mut r = SuiteReport::new("demo", "nowhere");
        assert_eq!(r.status(), Status::Failed, "a suite without checks proves nothing");
        r.not_applicable("a", "needs the stand-in");
        assert_eq!(r.status(), Status::NotApplicable);
        r.record("b", Some(Duration::from_millis(5)), Outcome::Passed);
        r.record(
            "c",
            None,
            Outcome::PassedAfterRetries {
                attempt: 3,
                of: 10,
                earlier: vec!["lost".into(), "lost".into()],
                defect: "upstream",
            },
        );
        assert_eq!((r.passed(), r.retried(), r.failed()), (2, 1, 0));
        assert_eq!(r.status(), Status::Passed);
        assert_eq!(r.summary_line(), "nowhere\tdemo\tpassed\t2\t1\t0\t1\tretried: c");
        r.record("d", None, Outcome::Failed("boom\tx".into()));
        assert_eq!(r.status(), Status::Failed);
        assert!(
            r.summary_line().ends_with("failed: d; retried: c"),
            "{}",
            r.summary_line()
        );
    }

    #[test]
    fn missing_suites_are_not_yet_available_and_say_why() {
        let r = SuiteReport::not_yet_available("serve", "msbw serve", "msbw has no serve");
        assert_eq!(r.status(), Status::NotYetAvailable);
        assert!(
            r.summary_line()
                .ends_with("not-yet-available\t0\t0\t0\t0\tmsbw has no serve")
        );
    }

    #[test]
    fn retried_checks_say_so_loudly() {
        let check = Check {
            name: "x".into(),
            took: Some(Duration::from_secs(1)),
            outcome: Outcome::PassedAfterRetries {
                attempt: 2,
                of: 5,
                earlier: vec!["stderr lost".into()],
                defect: "portal drops stderr",
            },
        };
        let text = check.to_string();
        assert!(text.contains("PASSED ONLY ON ATTEMPT 2 OF AT MOST 5"), "{text}");
        assert!(text.contains("attempt 1 failed: stderr lost"), "{text}");
    }

    #[tokio::test]
    async fn slow_checks_fail_instead_of_hanging() {
        let mut r = SuiteReport::new("demo", "nowhere");
        r.check("slow", Duration::from_millis(20), async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            Ok(())
        })
        .await;
        assert!(matches!(&r.checks[0].outcome, Outcome::Failed(why) if why.contains("did not finish")));
    }
}
