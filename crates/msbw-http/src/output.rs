//! Turning the agent's output lines into an [`ExecOutput`], and deciding how an execution ended.
//!
//! The server's REPL `status` is always `success`, so it decides nothing. The rule, applied to
//! the lines as they came back:
//!
//! 1. **Timed out** if a stderr line is the agent's own report `Error: Execution timed out after
//!    N seconds` (or `Error: Evaluation timeout after N seconds`). The aftermath is
//!    [`Aftermath::Unusable`]: the agent 0.2.6 only stops *waiting*; the interpreter keeps
//!    running the code, so the next call would queue behind it and could receive its late
//!    output. The sandbox should be replaced.
//! 2. **Agent failure** (an error, not a result) if a stderr line is the agent reporting its
//!    own engine broken: `Error: Evaluation error: ...`, `Error: Engine unavailable: ...`,
//!    `Error: Failed to initialize engine: ...`.
//! 3. **Raised** ([`ExecStatus::Raised`]):
//!    - Python: a stderr line `Traceback (most recent call last):`, or a stderr line that starts
//!      with an exception name and a colon, as Python's final report line does:
//!      `NameError: ...`, `mod.CustomError: ...`, `KeyboardInterrupt` (the name ends in `Error`
//!      or `Exception`, or is a built-in like `SystemExit`). A `SyntaxError` report has no
//!      traceback header and is caught by its last line.
//!    - Node: a line starting with `Uncaught ` on either stream (Node's REPL writes uncaught
//!      errors to *stdout* as `Uncaught ReferenceError: x is not defined`), or on stderr an
//!      error line `TypeError: ...` / `Error: ...` directly followed by a stack line
//!      (`    at ...`), which is how an error report looks as opposed to a message.
//! 4. Otherwise **completed**. Anything else on stderr (a warning such as
//!    `<stdin>:1: DeprecationWarning: ...`, a log line, `console.error("oops")`) does not make an
//!    execution fail (reference bug 13).
//!
//! The rule reads text, so code that prints something looking exactly like an exception
//! report is taken for one; and the agent 0.2.6 occasionally loses lines (an exception can
//! come back with no output at all), which no client can see.
//!
//! Output, verbatim (the output contract of `SandboxBackend`: the manager normalises): each line
//! the server sent followed by `\n`, per stream, nothing trimmed. From REPL output, a stray end marker of the agent (`eoe_` and 20 letters or digits,
//! which 0.2.6 lets through into the call after a timeout) is dropped. A command's output is
//! joined the same way; its status is always completed (a non-zero exit code is a result) and
//! its exit code is kept.

use std::time::Duration;

use msbw_backend::{Aftermath, ExecOutput, ExecStatus, Template};
use msbw_protocol::Output;
use msbw_protocol::results::CommandResult;

/// What the REPL's lines say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ReplOutcome {
    /// A result: completed, raised or timed out.
    Output(ExecOutput),
    /// The agent's REPL engine itself failed; the text is its report.
    AgentFailure(String),
}

/// Reads the lines of `sandbox.repl.run` for code of `language` that was given `timeout`.
pub(crate) fn repl_outcome(language: Template, output: Output, timeout: Duration) -> ReplOutcome {
    let status = {
        let mut err_lines = output.stderr.lines();
        if err_lines.clone().any(is_timeout_report) {
            Some(ExecStatus::TimedOut {
                after: timeout,
                aftermath: Aftermath::Unusable,
            })
        } else if let Some(failure) = err_lines.find(|l| is_engine_failure(l)) {
            return ReplOutcome::AgentFailure(failure.to_owned());
        } else {
            None
        }
    };
    let status = status.unwrap_or_else(|| {
        let mut err_lines = output.stderr.lines();
        let raised = match language {
            Template::Python => {
                err_lines.any(|l| l.trim_end() == "Traceback (most recent call last):" || is_python_exception_line(l))
            }
            Template::Node => {
                output
                    .stdout
                    .lines()
                    .chain(output.stderr.lines())
                    .any(|l| l.starts_with("Uncaught "))
                    || err_lines
                        .clone()
                        .zip(output.stderr.lines().skip(1))
                        .any(|(error, next)| is_js_error_line(error) && is_stack_line(next))
            }
        };
        if raised {
            ExecStatus::Raised
        } else {
            ExecStatus::Completed
        }
    });
    let Output { stdout, stderr } = output;
    ReplOutcome::Output(ExecOutput {
        stdout: without_stray_markers(stdout),
        stderr,
        status,
        exit_code: None,
    })
}

/// A command's result: completed with its exit code, whatever the code.
pub(crate) fn command_output(result: CommandResult) -> ExecOutput {
    let Output { stdout, stderr } = result.output;
    ExecOutput::completed(stdout, stderr, Some(result.exit_code))
}

/// Whether a line is the agent's end-of-execution marker (`eoe_` and 20 letters or digits). The
/// agent 0.2.6 lets the marker of a timed-out execution through into the next call's stdout.
fn is_stray_marker(line: &str) -> bool {
    line.strip_prefix("eoe_")
        .is_some_and(|rest| rest.len() == 20 && rest.bytes().all(|b| b.is_ascii_alphanumeric()))
}

/// REPL stdout without the agent's stray end markers, otherwise verbatim (each kept line with
/// its newline).
fn without_stray_markers(stdout: String) -> String {
    if !stdout.lines().any(is_stray_marker) {
        return stdout;
    }
    let mut kept = String::with_capacity(stdout.len());
    for line in stdout.lines().filter(|l| !is_stray_marker(l)) {
        kept.push_str(line);
        kept.push('\n');
    }
    kept
}

fn is_timeout_report(line: &str) -> bool {
    let line = line.trim();
    ["Error: Execution timed out after ", "Error: Evaluation timeout after "]
        .iter()
        .any(|prefix| {
            line.strip_prefix(prefix)
                .and_then(|rest| rest.strip_suffix(" seconds"))
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        })
}

fn is_engine_failure(line: &str) -> bool {
    line.strip_prefix("Error: ").is_some_and(|rest| {
        [
            "Evaluation error: ",
            "Engine unavailable: ",
            "Failed to initialize engine: ",
        ]
        .iter()
        .any(|p| rest.starts_with(p))
    })
}

/// `Name: message` or `Name` alone at the start of the line, where `Name` is a (dotted)
/// identifier; returns the last part of the name.
fn leading_exception_name(line: &str) -> Option<&str> {
    let (name, rest) = match line.split_once(':') {
        Some((name, rest)) => (name, Some(rest)),
        None => (line.trim_end(), None),
    };
    if rest.is_some_and(|r| !r.is_empty() && !r.starts_with(' ')) {
        return None;
    }
    let identifier = |part: &str| {
        let mut chars = part.chars();
        chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == '$')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
    };
    if name.is_empty() || !name.split('.').all(identifier) {
        return None;
    }
    name.rsplit('.').next()
}

fn is_python_exception_line(line: &str) -> bool {
    // Python has no exception called just `Error`: such a line is a message (the agent's own
    // reports start that way too).
    if line.starts_with("Error:") {
        return false;
    }
    leading_exception_name(line).is_some_and(|name| {
        name.ends_with("Error")
            || name.ends_with("Exception")
            || matches!(
                name,
                "KeyboardInterrupt"
                    | "SystemExit"
                    | "StopIteration"
                    | "StopAsyncIteration"
                    | "GeneratorExit"
                    | "ExceptionGroup"
                    | "BaseExceptionGroup"
            )
    })
}

fn is_js_error_line(line: &str) -> bool {
    leading_exception_name(line).is_some_and(|name| name.ends_with("Error") || name.ends_with("Exception"))
}

fn is_stack_line(line: &str) -> bool {
    line.starts_with(char::is_whitespace) && line.trim_start().starts_with("at ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The output as the server would send these (stream, text) lines.
    fn lines(spec: &[(&str, &str)]) -> Output {
        let wire: Vec<serde_json::Value> = spec
            .iter()
            .map(|(s, t)| serde_json::json!({"stream": s, "text": t}))
            .collect();
        serde_json::from_value(serde_json::Value::Array(wire)).unwrap()
    }

    /// The output of a REPL call that sent these (stream, text) lines, with `timeout`.
    fn output(language: Template, spec: &[(&str, &str)], timeout: Duration) -> ExecOutput {
        match repl_outcome(language, lines(spec), timeout) {
            ReplOutcome::Output(out) => out,
            ReplOutcome::AgentFailure(f) => panic!("agent failure {f}"),
        }
    }

    fn status(language: Template, spec: &[(&str, &str)]) -> ExecStatus {
        output(language, spec, Duration::from_secs(5)).status
    }

    const PY: Template = Template::Python;
    const JS: Template = Template::Node;

    #[test]
    fn output_is_joined_per_stream_verbatim() {
        let out = output(
            PY,
            &[
                ("stdout", "a"),
                ("stderr", "e1"),
                ("stdout", "b  "),
                ("stderr", "e2"),
                ("stdout", ""),
            ],
            Duration::from_secs(1),
        );
        // Verbatim (the manager normalises): each line with its newline, nothing trimmed.
        assert_eq!(out.stdout, "a\nb  \n\n");
        assert_eq!(out.stderr, "e1\ne2\n");
        assert_eq!(out.exit_code, None);
        assert_eq!(out.status, ExecStatus::Completed);
    }

    #[test]
    fn the_end_marker_of_a_timed_out_execution_is_dropped() {
        // Verbatim from the real agent 0.2.6, the call after a timeout.
        let out = output(
            PY,
            &[
                ("stdout", "eoe_EX6pYL2lP6oe7aTmy7Uw"),
                ("stdout", "after"),
                ("stdout", "eoe_short"),
            ],
            Duration::from_secs(1),
        );
        assert_eq!(out.stdout, "after\neoe_short\n");
    }

    #[test]
    fn python_tracebacks_and_final_exception_lines_are_raised() {
        // Verbatim from the real agent 0.2.6.
        let real = [
            ("stderr", "Traceback (most recent call last):"),
            ("stderr", "  File \"<stdin>\", line 1, in <module>"),
            ("stderr", "ZeroDivisionError: division by zero"),
        ];
        assert_eq!(status(PY, &real), ExecStatus::Raised);
        assert_eq!(
            status(PY, &[("stderr", "NameError: name 'y' is not defined")]),
            ExecStatus::Raised
        );
        assert_eq!(status(PY, &[("stderr", "mymod.CustomError: bad")]), ExecStatus::Raised);
        assert_eq!(status(PY, &[("stderr", "KeyboardInterrupt")]), ExecStatus::Raised);
        let syntax = [
            ("stderr", "  File \"<stdin>\", line 1"),
            ("stderr", "    x = = 1"),
            ("stderr", "        ^"),
            ("stderr", "SyntaxError: invalid syntax"),
        ];
        assert_eq!(status(PY, &syntax), ExecStatus::Raised);
    }

    #[test]
    fn warnings_and_messages_on_stderr_are_not_failures() {
        for spec in [
            vec![
                ("stderr", "<stdin>:1: DeprecationWarning: old"),
                ("stderr", "  warnings.warn('old', DeprecationWarning)"),
            ],
            vec![("stderr", "UserWarning: careful")],
            vec![("stderr", "to-stderr")],
            vec![("stderr", "error: something went wrong, retrying")],
            vec![("stderr", "Note: this is fine")],
            vec![("stderr", "ValueError:no-space is not python's format")],
            vec![("stderr", "Error: printed by the code")],
        ] {
            assert_eq!(status(PY, &spec), ExecStatus::Completed, "{spec:?}");
        }
        assert_eq!(
            status(JS, &[("stderr", "Error: just a message")]),
            ExecStatus::Completed
        );
        assert_eq!(status(JS, &[("stderr", "warn")]), ExecStatus::Completed);
    }

    #[test]
    fn node_uncaught_errors_are_raised_on_either_stream() {
        assert_eq!(
            status(JS, &[("stdout", "Uncaught ReferenceError: foo is not defined")]),
            ExecStatus::Raised
        );
        assert_eq!(status(JS, &[("stdout", "Uncaught 'a string'")]), ExecStatus::Raised);
        assert_eq!(
            status(
                JS,
                &[
                    ("stderr", "TypeError: x is not a function"),
                    ("stderr", "    at REPL1:1:1")
                ]
            ),
            ExecStatus::Raised
        );
        assert_eq!(
            status(
                JS,
                &[
                    ("stderr", "Error: boom"),
                    ("stderr", "    at Timeout._onTimeout (REPL2:1:30)")
                ]
            ),
            ExecStatus::Raised
        );
        // A Python-style traceback means nothing to the node rule.
        assert_eq!(
            status(JS, &[("stderr", "Traceback (most recent call last):")]),
            ExecStatus::Completed
        );
    }

    #[test]
    fn the_agents_timeout_report_is_a_timeout_that_leaves_the_sandbox_unusable() {
        for language in [PY, JS] {
            assert_eq!(
                status(
                    language,
                    &[
                        ("stdout", "partial"),
                        ("stderr", "Error: Execution timed out after 2 seconds")
                    ]
                ),
                ExecStatus::TimedOut {
                    after: Duration::from_secs(5),
                    aftermath: Aftermath::Unusable
                }
            );
        }
        assert!(matches!(
            status(PY, &[("stderr", "Error: Evaluation timeout after 2 seconds")]),
            ExecStatus::TimedOut { .. }
        ));
        assert_eq!(
            status(PY, &[("stderr", "Error: Execution timed out after many seconds")]),
            ExecStatus::Completed
        );
    }

    #[test]
    fn engine_failures_are_reported_as_such() {
        let out = repl_outcome(
            PY,
            lines(&[("stderr", "Error: Engine unavailable: Python process channel closed")]),
            Duration::from_secs(1),
        );
        assert_eq!(
            out,
            ReplOutcome::AgentFailure("Error: Engine unavailable: Python process channel closed".into())
        );
    }

    #[test]
    fn commands_keep_their_exit_code() {
        let result = CommandResult {
            command: "sh".into(),
            args: Vec::new(),
            exit_code: 3,
            success: false,
            output: lines(&[("stdout", "out"), ("stderr", "err"), ("stdout", "more")]),
        };
        let out = command_output(result);
        assert_eq!(
            (out.stdout.as_str(), out.stderr.as_str(), out.exit_code),
            ("out\nmore\n", "err\n", Some(3))
        );
        assert_eq!(out.status, ExecStatus::Completed);
        assert!(!out.success());
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn line() -> impl Strategy<Value = (&'static str, String)> {
            (
                prop_oneof![Just("stdout"), Just("stderr"), Just("other")],
                prop_oneof![
                    any::<String>(),
                    Just("Traceback (most recent call last):".to_owned()),
                    Just("Uncaught Error: x".to_owned()),
                    Just("Error: Execution timed out after 3 seconds".to_owned()),
                    Just("eoe_abcdefghij0123456789".to_owned()),
                    "[A-Za-z.]{0,12}(Error|Warning)?: ?[ -~]{0,10}",
                    "\\s+at [ -~]{0,10}",
                ],
            )
                .prop_map(|(stream, text)| (stream, text))
        }

        proptest! {
            #[test]
            fn reading_output_never_panics_and_keeps_every_line(
                lines in proptest::collection::vec(line(), 0..12),
                node in any::<bool>(),
            ) {
                let language = if node { Template::Node } else { Template::Python };
                let spec: Vec<(&str, &str)> = lines.iter().map(|(s, t)| (*s, t.as_str())).collect();
                if let ReplOutcome::Output(out) = repl_outcome(language, super::lines(&spec), Duration::from_secs(1)) {
                    // Verbatim: nothing but whole lines, each with its newline.
                    for text in [&out.stdout, &out.stderr] {
                        prop_assert!(text.is_empty() || text.ends_with('\n'), "{:?}", text);
                    }
                    // Every line (a text holding newlines is several lines) is kept.
                    for (stream, text) in &lines {
                        for line in text.lines() {
                            let line = line.trim_end();
                            if !line.is_empty() && !is_stray_marker(line) {
                                let kept = if *stream == "stderr" { &out.stderr } else { &out.stdout };
                                prop_assert!(kept.contains(line), "{:?} lost from {:?}", line, kept);
                            }
                        }
                    }
                }
            }

            #[test]
            fn stdout_alone_never_makes_python_code_fail(texts in proptest::collection::vec(any::<String>(), 0..8)) {
                let spec: Vec<(&str, &str)> = texts.iter().map(|t| ("stdout", t.as_str())).collect();
                let outcome = repl_outcome(Template::Python, super::lines(&spec), Duration::from_secs(1));
                let completed = matches!(outcome, ReplOutcome::Output(ExecOutput { status: ExecStatus::Completed, .. }));
                prop_assert!(completed, "{:?}", outcome);
            }
        }
    }
}
