//! The backend conformance suite (`msbw_backend::conformance`, unchanged) through `HttpBackend`
//! against the real server.
//!
//! The real agent (`portal` 0.2.6) has documented defects that no client can see or undo
//! (/work/krun-standin/NOTES.md, surprise 2): its Python REPL drops stderr lines that arrive
//! after its stdout end marker (the traceback of `1/0` came back in 8 of 30 calls), and
//! `sandbox.command.run` answers when the process exits, sometimes before the last output lines
//! were forwarded. A check that fails *with the symptom of one of these defects* is run again,
//! a bounded number of times, in a fresh sandbox; the report then says that it passed only
//! after retries, how often it failed first and why. Any other failure, or a failure that
//! persists, fails the suite. The shared suite itself is not weakened. Against `msbw serve`, which
//! does not run that agent, nothing is retried.

use std::future::Future;
use std::pin::Pin;
use std::time::Instant;

use msbw_backend::SandboxBackend;
use msbw_backend::conformance::{self, CheckResult, ConformanceOptions};

use crate::report::{Outcome, SuiteReport};
use crate::suites::no_sandbox_left;
use crate::target::Target;

/// A documented upstream defect that makes a check fail at random, and how often the check
/// may be run in all because of it.
#[derive(Debug)]
pub struct KnownDefect {
    /// The conformance check it affects.
    pub check: &'static str,
    /// The most attempts, the first included.
    pub attempts: u32,
    /// Whether a failure message shows the defect's symptom (only those are retried).
    pub symptom: fn(&str) -> bool,
    /// The defect, for the report.
    pub defect: &'static str,
}

const REPL_STDERR: &str = "portal 0.2.6's Python REPL drops stderr lines that arrive after its stdout end marker \
     (NOTES.md surprise 2: the traceback came back in 8 of 30 calls; measured here: the first call of a fresh \
     sandbox kept its stderr in 2 of 12)";
pub(crate) const COMMAND_OUTPUT: &str = "portal 0.2.6 answers sandbox.command.run when the process exits, sometimes before \
     the last output lines were forwarded (NOTES.md surprise 2; measured here: `sh -c 'echo out; echo err >&2'` lost a line in 17 of 40 calls)";

/// The checks that may be retried, and why. Measured on the real agent with the stand-in,
/// sending raw requests: the first REPL call in a fresh sandbox kept its stderr in 2 to 8 of
/// 10-15 tries, later calls in 60-75 %; a short command kept both its lines in 23 of 40.
/// `HttpBackend` ends every Python cell with its end-of-output statement (markers on both
/// streams, waiting for the agent to read stderr; see the defences suite's
/// `python_stderr_is_complete_at_the_end_of_every_cell`, which allows no retry); the retries
/// here stay as a safety net. It has no such help for commands, whose check needs retries in
/// about half of the runs. At the worst rates measured (15 % and 55 % success) 30 and 12
/// attempts all fail with a probability of 0.8 % and 0.007 %.
pub const KNOWN_DEFECTS: [KnownDefect; 6] = [
    KnownDefect {
        check: "stdout_and_stderr_are_separate",
        attempts: 30,
        symptom: |why| why.starts_with("stderr should hold only 'to-stderr'"),
        defect: REPL_STDERR,
    },
    KnownDefect {
        check: "exception_is_a_failed_execution",
        attempts: 30,
        // Without the traceback the execution looks completed, with an empty stderr.
        symptom: |why| why.starts_with("expected status Raised") || why.starts_with("stderr should name the exception"),
        defect: REPL_STDERR,
    },
    KnownDefect {
        check: "command_exit_code_is_returned",
        attempts: 12,
        symptom: |why| {
            why.starts_with("expected stdout \"out\" and stderr \"err\"") || why.starts_with("echo hello world")
        },
        defect: COMMAND_OUTPUT,
    },
    KnownDefect {
        check: "streamed_output_matches_buffered",
        attempts: 12,
        // Against a server without the streaming extension both runs are buffered calls, and
        // either may lose a line: a command's last lines, or a Python cell's stderr (the REPL
        // defect; the end-of-output statement makes it rare, not impossible), so the two differ.
        symptom: |why| {
            why.starts_with("command: the streamed result")
                || (why.starts_with("code: the streamed result") && why.contains("stderr: \"\""))
        },
        defect: COMMAND_OUTPUT,
    },
    KnownDefect {
        check: "files_round_trip_byte_for_byte",
        attempts: 12,
        // The command fallback reads with commands, whose last lines the portal may drop; its
        // end line and tail make that rare (msbw-backend's `command_files` test), and a read
        // asked for three times that still lost its end fails with "was cut short".
        symptom: |why| why.starts_with("the listing is") || why.contains("was cut short"),
        defect: COMMAND_OUTPUT,
    },
    KnownDefect {
        check: "output_is_verbatim",
        attempts: 30,
        // Its code's stdout is reliable; its code's stderr and its command's lines are not.
        symptom: |why| why.starts_with("code's stderr should be exactly") || why.starts_with("a command's std"),
        defect: COMMAND_OUTPUT,
    },
];

type CheckFuture<'a> = Pin<Box<dyn Future<Output = CheckResult> + 'a>>;

/// Runs one conformance check again, by name (only those of [`KNOWN_DEFECTS`]).
fn rerun<'a>(name: &str, backend: &'a dyn SandboxBackend, options: &'a ConformanceOptions) -> Option<CheckFuture<'a>> {
    Some(match name {
        "stdout_and_stderr_are_separate" => Box::pin(conformance::stdout_and_stderr_are_separate(backend, options)),
        "exception_is_a_failed_execution" => Box::pin(conformance::exception_is_a_failed_execution(backend, options)),
        "command_exit_code_is_returned" => Box::pin(conformance::command_exit_code_is_returned(backend, options)),
        "output_is_verbatim" => Box::pin(conformance::output_is_verbatim(backend, options)),
        "streamed_output_matches_buffered" => Box::pin(conformance::streamed_output_matches_buffered(backend, options)),
        "files_round_trip_byte_for_byte" => Box::pin(conformance::files_round_trip_byte_for_byte(backend, options)),
        _ => return None,
    })
}

/// The conformance suite against the target.
pub async fn run(target: &Target) -> SuiteReport {
    let mut report = SuiteReport::new("conformance", target.describe());
    let backend = match target.backend() {
        Ok(backend) => backend,
        Err(why) => {
            report.record("create_the_backend", None, Outcome::Failed(why));
            return report;
        }
    };
    let prefix = target.prefix("cf");
    let options = ConformanceOptions {
        namespace: target.namespace.clone(),
        name_prefix: prefix.clone(),
        ..ConformanceOptions::default()
    };
    let started = Instant::now();
    let results = conformance::run_all(&backend, &options).await;
    println!(
        "  (run_all: {} checks in {:.1} s; retries of known upstream defects follow it)",
        results.results.len(),
        started.elapsed().as_secs_f64()
    );
    for (name, result) in results.results {
        match result {
            // run_all does not time each check.
            Ok(()) => report.record(name, None, Outcome::Passed),
            // The defects are the real agent's: behind msbw serve a failure is a failure.
            Err(failure) if !target.runs_the_real_agent() => report.record(name, None, Outcome::Failed(failure.0)),
            Err(failure) => {
                let retrying = Instant::now();
                let outcome = retry_known_defect(&name, failure.0, &backend, &options).await;
                let retried = matches!(outcome, Outcome::PassedAfterRetries { .. } | Outcome::Failed(_));
                report.record(name, retried.then(|| retrying.elapsed()), outcome);
            }
        }
    }
    no_sandbox_left(&mut report, &backend, target, &prefix).await;
    report
}

/// Runs a failed check again while it fails with the symptom of its known defect.
async fn retry_known_defect(
    name: &str,
    first: String,
    backend: &dyn SandboxBackend,
    options: &ConformanceOptions,
) -> Outcome {
    let Some(known) = KNOWN_DEFECTS.iter().find(|k| k.check == name) else {
        return Outcome::Failed(first);
    };
    if !(known.symptom)(&first) {
        return Outcome::Failed(format!("{first} (not the symptom of the known defect, so not retried)"));
    }
    let mut earlier = vec![first];
    for attempt in 2..=known.attempts {
        let Some(check) = rerun(name, backend, options) else {
            return Outcome::Failed(earlier.join("; "));
        };
        match check.await {
            Ok(()) => {
                return Outcome::PassedAfterRetries {
                    attempt,
                    of: known.attempts,
                    earlier,
                    defect: known.defect,
                };
            }
            Err(failure) if (known.symptom)(&failure.0) => earlier.push(failure.0),
            Err(failure) => {
                return Outcome::Failed(format!(
                    "attempt {attempt} failed otherwise than the known defect: {}; earlier: {}",
                    failure.0,
                    earlier.join("; ")
                ));
            }
        }
    }
    Outcome::Failed(format!(
        "failed all {} attempts with the symptom of a known upstream defect ({}): {}",
        known.attempts,
        known.defect,
        earlier.last().map(String::as_str).unwrap_or_default()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_symptoms_of_the_defects_are_retried() {
        let stderr = &KNOWN_DEFECTS[0];
        assert!((stderr.symptom)("stderr should hold only 'to-stderr': \"\""));
        assert!(!(stderr.symptom)("stdout should hold only 'to-stdout': \"\""));
        let raised = &KNOWN_DEFECTS[1];
        assert!((raised.symptom)("expected status Raised: ExecOutput { .. }"));
        assert!(!(raised.symptom)("sandbox broken after an exception: ..."));
        let command = &KNOWN_DEFECTS[2];
        assert!((command.symptom)("expected stdout \"out\" and stderr \"err\": ..."));
        assert!(!(command.symptom)("expected exit code 3: ..."));
        let named = |name: &str| KNOWN_DEFECTS.iter().find(|k| k.check == name).expect(name);
        let streamed = named("streamed_output_matches_buffered");
        assert!((streamed.symptom)(
            "command: the streamed result ExecOutput { .. } differs from ..."
        ));
        assert!(!(streamed.symptom)(
            "code: the streamed result ExecOutput { .. } differs from ..."
        ));
        assert!((streamed.symptom)(
            "code: the streamed result ExecOutput { stdout: \"a\\n\", stderr: \"e\\n\", .. } differs from the buffered one ExecOutput { stdout: \"a\\n\", stderr: \"\", .. }"
        ));
        let files = named("files_round_trip_byte_for_byte");
        assert!((files.symptom)("the listing is []"));
        assert!((files.symptom)(
            "unexpected error: read file failed (protocol violation): the output of a file command on \"/x\" was cut short 3 times"
        ));
        assert!(!(files.symptom)("bin.dat read back differs"));
        let verbatim = named("output_is_verbatim");
        assert!((verbatim.symptom)("a command's stdout should be exactly \"x\": \"\""));
        assert!((verbatim.symptom)("code's stderr should be exactly \"e\\n\": \"\""));
        assert!(!(verbatim.symptom)(
            "code's stdout should be exactly \"a\\n  b\\n\": \"a\""
        ));
    }

    #[test]
    fn every_known_defect_can_be_rerun() {
        // The futures are only built, not run: the mock is never called.
        let backend = msbw_backend::MockSandboxBackend::new();
        let options = ConformanceOptions::default();
        for known in &KNOWN_DEFECTS {
            assert!(rerun(known.check, &backend, &options).is_some(), "{}", known.check);
            assert!(known.attempts >= 2);
        }
        assert!(rerun("repl_state_persists[python]", &backend, &options).is_none());
    }
}
