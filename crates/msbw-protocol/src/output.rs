//! The output lines of a forwarded call, `[{"stream": "stdout"|"stderr", "text": LINE}, ...]`,
//! held as two texts: one allocation per stream instead of two strings and a JSON object per
//! line.
//!
//! Writing: each text is cut into lines as [`str::lines`] does (a final newline ends the last
//! line; `\r\n` counts as one), stdout lines first. Reading: each line of a stream is appended
//! followed by `\n` (the text verbatim, as a program printed it), in the order they came; any
//! stream but `stderr` counts as stdout. The order of
//! stdout versus stderr lines is not kept: the real server does not guarantee it either.

use std::fmt;

use serde::de::{SeqAccess, Visitor};
use serde::ser::SerializeSeq;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Which stream a line is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

impl Stream {
    /// The name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }

    /// Reads a wire name: `stderr` (any case) is stderr, anything else stdout.
    pub fn from_wire(name: &str) -> Stream {
        if name.eq_ignore_ascii_case("stderr") {
            Stream::Stderr
        } else {
            Stream::Stdout
        }
    }
}

/// The output of a call: its stdout and stderr texts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Output {
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Output {
    /// Output with these texts.
    pub fn new(stdout: impl Into<String>, stderr: impl Into<String>) -> Output {
        Output {
            stdout: stdout.into(),
            stderr: stderr.into(),
        }
    }

    /// The text of a stream.
    pub fn text(&self, stream: Stream) -> &str {
        match stream {
            Stream::Stdout => &self.stdout,
            Stream::Stderr => &self.stderr,
        }
    }

    /// Appends `line` as the last line of `stream` (after a newline unless the text is empty or
    /// already ends with one).
    pub fn push_line(&mut self, stream: Stream, line: &str) {
        let text = match stream {
            Stream::Stdout => &mut self.stdout,
            Stream::Stderr => &mut self.stderr,
        };
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(line);
    }

    /// The lines as written: stdout's, then stderr's.
    pub fn lines(&self) -> impl Iterator<Item = (Stream, &str)> {
        self.stdout
            .lines()
            .map(|l| (Stream::Stdout, l))
            .chain(self.stderr.lines().map(|l| (Stream::Stderr, l)))
    }

    /// The JSON array of lines in pieces of about `chunk_bytes` (at least one line each),
    /// written as they are asked for: their concatenation is exactly this output serialized.
    pub fn into_json_chunks(self, chunk_bytes: usize) -> OutputChunks {
        OutputChunks {
            output: self,
            stream: Some(Stream::Stdout),
            offset: 0,
            started: false,
            first: true,
            chunk_bytes: chunk_bytes.max(1),
        }
    }
}

#[derive(Serialize)]
struct LineOut<'a> {
    stream: &'static str,
    text: &'a str,
}

impl Serialize for Output {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(None)?;
        for (stream, text) in self.lines() {
            seq.serialize_element(&LineOut {
                stream: stream.as_str(),
                text,
            })?;
        }
        seq.end()
    }
}

#[derive(Deserialize)]
struct LineIn {
    stream: String,
    text: String,
}

struct OutputVisitor;

impl<'de> Visitor<'de> for OutputVisitor {
    type Value = Output;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of {\"stream\", \"text\"} lines")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Output, A::Error> {
        let mut output = Output::default();
        while let Some(line) = seq.next_element::<LineIn>()? {
            let text = match Stream::from_wire(&line.stream) {
                Stream::Stdout => &mut output.stdout,
                Stream::Stderr => &mut output.stderr,
            };
            text.push_str(&line.text);
            text.push('\n');
        }
        Ok(output)
    }
}

impl<'de> Deserialize<'de> for Output {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Output, D::Error> {
        deserializer.deserialize_seq(OutputVisitor)
    }
}

/// The pieces of [`Output::into_json_chunks`].
#[derive(Debug)]
pub struct OutputChunks {
    output: Output,
    /// The stream being written; `None` once the closing `]` is out.
    stream: Option<Stream>,
    /// Where in that stream's text the next line starts.
    offset: usize,
    started: bool,
    first: bool,
    chunk_bytes: usize,
}

impl OutputChunks {
    /// The next line of the current stream, moving on to stderr and then to the end.
    fn next_line(&mut self) -> Option<(Stream, usize, usize)> {
        loop {
            let stream = self.stream?;
            let text = self.output.text(stream);
            if self.offset < text.len() {
                let start = self.offset;
                let end = match text[start..].find('\n') {
                    Some(i) => {
                        self.offset = start + i + 1;
                        let end = start + i;
                        if text[start..end].ends_with('\r') { end - 1 } else { end }
                    }
                    None => {
                        self.offset = text.len();
                        text.len()
                    }
                };
                return Some((stream, start, end));
            }
            self.offset = 0;
            match stream {
                Stream::Stdout => self.stream = Some(Stream::Stderr),
                Stream::Stderr => return None,
            }
        }
    }
}

impl Iterator for OutputChunks {
    type Item = Vec<u8>;

    fn next(&mut self) -> Option<Vec<u8>> {
        self.stream?;
        let mut buf = Vec::with_capacity(self.chunk_bytes.min(1 << 20) + 64);
        if !self.started {
            self.started = true;
            buf.push(b'[');
        }
        while buf.len() < self.chunk_bytes {
            let Some((stream, start, end)) = self.next_line() else {
                buf.push(b']');
                self.stream = None;
                break;
            };
            if !self.first {
                buf.push(b',');
            }
            self.first = false;
            let line = LineOut {
                stream: stream.as_str(),
                text: &self.output.text(stream)[start..end],
            };
            // Writing a struct of two strings into a Vec cannot fail.
            let _ = serde_json::to_writer(&mut buf, &line);
        }
        Some(buf)
    }
}
