//! The end of a Python cell's output, made deterministic for the agent's REPL.
//!
//! The agent 0.2.6 runs `python3 -u -i` with stdout and stderr on two pipes, each read by its own
//! thread, and ends an execution when its stdout thread reads its own end marker (a `print` it
//! appends to the code); stderr lines its other thread has not passed on by then are dropped,
//! tracebacks included. So every Python cell gets one more statement, after a blank line (which
//! ends any block the code left open): it flushes `sys.stdout` and `sys.stderr`, writes a random
//! marker ([`EndMarker`], new for each call) to descriptor 2, waits until the agent has read
//! that pipe empty (`FIONREAD`, at most the configured bound), writes the marker to descriptor 2
//! again and waits for that too, then writes the marker to descriptor 1. The agent's stderr
//! thread reads through a line buffer: it reads the pipe again only once it has passed on every
//! line it read before, so the second read proves that the cell's lines and the first marker
//! were passed on (the first read alone does not: under load the thread was seen to lose the
//! last traceback line between its read and its send). The agent's own end marker comes after
//! the stdout marker, so by the time the agent ends the execution its stderr thread has passed
//! on everything the cell wrote. The statement is one `exec`
//! call in a namespace of its own: it returns `None`, so the REPL prints nothing, and the
//! user's variables and `_` are untouched.
//!
//! The markers are cut from the answer ([`EndMarker::cut`]): the marker is matched only at the
//! end of a line, so text the cell wrote without a final newline stays (as the line it is), and
//! a stream whose marker is missing (the cell closed descriptor 2, or the agent lost a line) is
//! reported as possibly incomplete. The marker is 128 random bits, so code cannot print it by
//! accident, and printing marker-like text (`msbw-end-` and other digits) is kept as output.

use std::sync::LazyLock;
use std::time::Duration;

use msbw_protocol::Output;

/// The prefix of every marker.
const PREFIX: &str = "msbw-end-";

/// One call's end marker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EndMarker(String);

/// Which streams of an answer carried their marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Complete {
    /// The stdout marker was there.
    pub(crate) stdout: bool,
    /// The stderr marker was there: every line the cell wrote to stderr arrived.
    pub(crate) stderr: bool,
}

/// The end-of-output statement's source around its two values, the marker and the wait, its
/// lines joined once by `\n` escapes. Only ASCII, with no double quotes and no backslashes but
/// those: it goes into a double-quoted Python literal as it is.
static STATEMENT: LazyLock<[String; 3]> = LazyLock::new(|| {
    let lines = |lines: &[&str]| lines.join("\\n");
    let head = "import os, sys, time\\nline = b'".to_owned();
    let middle = lines(&[
        "' + bytes((10,))",
        "for s in (sys.stdout, sys.stderr):",
        "    try:",
        "        s.flush()",
        "    except Exception:",
        "        pass",
        "def put(fd, data):",
        "    while data:",
        "        try:",
        "            data = data[os.write(fd, data):]",
        "        except OSError:",
        "            return False",
        "    return True",
        "end = time.monotonic() + ",
    ]);
    let tail = lines(&[
        "",
        "def drained():",
        "    try:",
        "        import array, fcntl, termios",
        "        left = array.array('i', [0])",
        "        while True:",
        "            fcntl.ioctl(2, termios.FIONREAD, left, True)",
        "            if left[0] == 0 or time.monotonic() > end:",
        "                return",
        "            time.sleep(0.0002)",
        "    except Exception:",
        "        pass",
        "if put(2, line):",
        "    drained()",
        "    if put(2, line):",
        "        drained()",
        "put(1, line)",
    ]);
    [head, middle, tail]
});

impl EndMarker {
    /// A fresh random marker.
    pub(crate) fn new() -> EndMarker {
        EndMarker(format!("{PREFIX}{:032x}", fastrand::u128(..)))
    }

    /// `code` with the end-of-output statement appended; `wait` bounds how long it waits for
    /// the agent to read stderr.
    pub(crate) fn append_to(&self, code: &str, wait: Duration) -> String {
        let [head, middle, tail] = &*STATEMENT;
        let code = code.trim_end_matches(['\n', '\r']);
        let wait = wait.as_secs_f64();
        format!("{code}\n\nexec(\"{head}{}{middle}{wait:.3}{tail}\", {{}})", self.0)
    }

    /// Cuts the markers from `output` (its last occurrence at the end of a line, per stream)
    /// and says which streams had theirs.
    /// stderr carries the marker twice; the second copy may be missing (it is only the proof
    /// that the first was passed on), and either way the first says the stream is complete.
    pub(crate) fn cut(&self, output: &mut Output) -> Complete {
        let stderr = cut_from(&mut output.stderr, &self.0);
        if stderr {
            cut_from(&mut output.stderr, &self.0);
        }
        Complete {
            stdout: cut_from(&mut output.stdout, &self.0),
            stderr,
        }
    }
}

/// Removes the last `marker` that ends a line of `text`: the whole line if the marker is all of
/// it, else only the marker (the line is text the cell wrote without a newline).
fn cut_from(text: &mut String, marker: &str) -> bool {
    let line_end = format!("{marker}\n");
    let Some(at) = text.rfind(&line_end) else {
        return false;
    };
    let whole_line = at == 0 || text.as_bytes()[at - 1] == b'\n';
    let end = if whole_line {
        at + line_end.len()
    } else {
        at + marker.len()
    };
    text.replace_range(at..end, "");
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn marker() -> EndMarker {
        EndMarker(format!("{PREFIX}{}", "0".repeat(32)))
    }

    #[test]
    fn markers_are_random_and_look_alike() {
        let (a, b) = (EndMarker::new(), EndMarker::new());
        assert_ne!(a, b);
        assert_eq!(a.0.len(), PREFIX.len() + 32);
        assert!(a.0.starts_with(PREFIX));
    }

    #[test]
    fn the_statement_follows_a_blank_line_and_writes_the_marker_on_both_streams() {
        let m = marker();
        let code = m.append_to("for i in range(2):\n    print(i)\n\n", Duration::from_millis(500));
        let (user, statement) = code.split_once("\n\n").unwrap();
        assert_eq!(user, "for i in range(2):\n    print(i)");
        assert!(statement.starts_with("exec(\"") && statement.ends_with("\", {})"));
        assert!(!statement.contains('\n'), "one line: {statement}");
        assert_eq!(statement.matches(&m.0).count(), 1);
        let (stderr_first, stderr_again, stdout_last) = (
            statement.find("put(2, line)").unwrap(),
            statement.rfind("put(2, line)").unwrap(),
            statement.rfind("put(1, line)").unwrap(),
        );
        assert!(stderr_first < stderr_again && stderr_again < stdout_last);
        assert!(
            !statement.replace("\\n", "").contains('\\'),
            "backslashes only in the line breaks"
        );
        assert!(statement.contains("+ 0.500"));
    }

    #[test]
    fn cutting_keeps_everything_the_cell_wrote() {
        let m = marker();
        let mk = &m.0;
        let both = Complete {
            stdout: true,
            stderr: true,
        };
        let cases = [
            // Whole marker lines go.
            (
                (format!("1\n{mk}\n"), format!("Traceback\nE: x\n{mk}\n")),
                ("1\n", "Traceback\nE: x\n"),
            ),
            // Written without a newline: the text stays, as its own line.
            ((format!("no newline{mk}\n"), format!("{mk}\n")), ("no newline\n", "")),
            // stderr's second marker, the proof that the first was passed on, goes too.
            (
                (format!("1\n{mk}\n"), format!("Traceback\nE: x\n{mk}\n{mk}\n")),
                ("1\n", "Traceback\nE: x\n"),
            ),
            (
                (format!("{mk}\n"), format!("no newline{mk}\n{mk}\n")),
                ("", "no newline\n"),
            ),
        ];
        for ((stdout, stderr), (want_out, want_err)) in cases {
            let mut out = Output::new(stdout, stderr);
            assert_eq!(m.cut(&mut out), both);
            assert_eq!(out, Output::new(want_out, want_err));
        }
    }

    #[test]
    fn a_missing_or_lookalike_marker_leaves_the_output_alone() {
        let m = marker();
        let lookalike = format!("{PREFIX}{}\n", "1".repeat(32));
        let mut out = Output::new(lookalike.clone(), format!("{}x\n", m.0));
        assert_eq!(
            m.cut(&mut out),
            Complete {
                stdout: false,
                stderr: false
            }
        );
        assert_eq!(out, Output::new(lookalike, format!("{}x\n", m.0)));
    }

    #[test]
    fn only_the_last_marker_is_cut() {
        let m = marker();
        let mk = &m.0;
        let mut out = Output::new(format!("{mk}\nbetween\n{mk}\n"), String::new());
        assert!(m.cut(&mut out).stdout);
        assert_eq!(out.stdout, format!("{mk}\nbetween\n"));
    }
}
