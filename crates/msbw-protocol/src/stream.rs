//! The streaming extension of `msbw serve` (not part of the microsandbox 0.2 protocol).
//!
//! A client that sends the request header [`STREAM_HEADER`]`: `[`STREAM_NDJSON`] on
//! `sandbox.repl.run` or `sandbox.command.run` gets `200` with content type
//! [`NDJSON_CONTENT_TYPE`]: one JSON object per line, as the output happens:
//!
//! - chunks: `{"event":"stdout","data":"..."}` or `{"event":"stderr","data":"..."}`; a chunk that
//!   is not valid UTF-8 is `{"event":"stdout","data_base64":"..."}` instead;
//! - then one last line: the ordinary JSON-RPC response (`{"jsonrpc":"2.0","id":...,"result":...}`
//!   or `{..., "error": ...}`), exactly the body the buffered call would have had.
//!
//! A server announces the extension in its health answer (`capabilities.streaming: true`);
//! upstream clients never send the header, so they never see it. A chunk line is at most
//! [`MAX_LINE_BYTES`] long (a server splits larger chunks); the final line is as long as the
//! buffered answer would be.

use base64::Engine;
use serde::{Deserialize, Serialize};

/// The request header asking for a streamed answer.
pub const STREAM_HEADER: &str = "x-msbw-stream";
/// Its value.
pub const STREAM_NDJSON: &str = "ndjson";
/// The content type of a streamed answer.
pub const NDJSON_CONTENT_TYPE: &str = "application/x-ndjson";
/// The longest line a server sends (a chunk is split to fit) and a client accepts.
pub const MAX_LINE_BYTES: usize = 1 << 20;
/// The largest chunk a server puts on one line (its base64 or JSON escaping stays below the line
/// limit).
pub const MAX_CHUNK_BYTES: usize = 128 * 1024;

/// One chunk line of a streamed answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChunkLine {
    /// `stdout` or `stderr`.
    pub event: ChunkStream,
    /// The bytes, when they are valid UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    /// The bytes in base64, when they are not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_base64: Option<String>,
}

/// Which stream a chunk belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChunkStream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

impl ChunkLine {
    /// The line for `bytes` (text when it is UTF-8, base64 otherwise).
    pub fn new(event: ChunkStream, bytes: &[u8]) -> ChunkLine {
        match std::str::from_utf8(bytes) {
            Ok(text) => ChunkLine {
                event,
                data: Some(text.to_owned()),
                data_base64: None,
            },
            Err(_) => ChunkLine {
                event,
                data: None,
                data_base64: Some(base64::engine::general_purpose::STANDARD.encode(bytes)),
            },
        }
    }

    /// The line as JSON followed by `\n`.
    pub fn encode(&self) -> Vec<u8> {
        let mut line = serde_json::to_vec(self).unwrap_or_default();
        line.push(b'\n');
        line
    }

    /// The chunk's bytes; `None` when it has neither or both forms, or bad base64.
    pub fn bytes(&self) -> Option<Vec<u8>> {
        match (&self.data, &self.data_base64) {
            (Some(text), None) => Some(text.as_bytes().to_vec()),
            (None, Some(b64)) => base64::engine::general_purpose::STANDARD.decode(b64).ok(),
            _ => None,
        }
    }
}

/// What one line of a streamed answer is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamLine {
    /// A chunk of output.
    Chunk(ChunkStream, Vec<u8>),
    /// The final JSON-RPC response (the line as it came).
    Response(Vec<u8>),
}

/// Why a line of a streamed answer is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StreamLineError {
    /// Longer than [`MAX_LINE_BYTES`].
    #[error("a streamed line is longer than {MAX_LINE_BYTES} bytes")]
    TooLong,
    /// Not a chunk and not a JSON-RPC response.
    #[error("a streamed line is neither a chunk nor a JSON-RPC response: {0}")]
    Malformed(String),
}

/// Reads one line (without its `\n`): a chunk line of at most [`MAX_LINE_BYTES`], or the final
/// response (which holds the whole output, so the reader bounds it as it bounds a buffered
/// answer). Pure: never panics, whatever the bytes.
pub fn decode_line(line: &[u8]) -> Result<StreamLine, StreamLineError> {
    #[derive(Deserialize)]
    struct Probe {
        #[serde(default)]
        event: Option<serde::de::IgnoredAny>,
        #[serde(default)]
        jsonrpc: Option<serde::de::IgnoredAny>,
    }
    let probe: Probe = serde_json::from_slice(line).map_err(|e| StreamLineError::Malformed(e.to_string()))?;
    match (probe.event, probe.jsonrpc) {
        (Some(_), None) => {
            if line.len() > MAX_LINE_BYTES {
                return Err(StreamLineError::TooLong);
            }
            let chunk: ChunkLine =
                serde_json::from_slice(line).map_err(|e| StreamLineError::Malformed(e.to_string()))?;
            let bytes = chunk
                .bytes()
                .ok_or_else(|| StreamLineError::Malformed("a chunk needs exactly one of data, data_base64".into()))?;
            Ok(StreamLine::Chunk(chunk.event, bytes))
        }
        (None, Some(_)) => Ok(StreamLine::Response(line.to_vec())),
        _ => Err(StreamLineError::Malformed("neither `event` nor `jsonrpc`".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_round_trip_as_text_or_base64() {
        for bytes in [&b"a\n"[..], b"\xff\x00", b""] {
            let line = ChunkLine::new(ChunkStream::Stderr, bytes).encode();
            assert!(line.ends_with(b"\n"));
            let decoded = decode_line(&line[..line.len() - 1]).unwrap();
            assert_eq!(decoded, StreamLine::Chunk(ChunkStream::Stderr, bytes.to_vec()));
        }
        assert_eq!(
            String::from_utf8(ChunkLine::new(ChunkStream::Stdout, b"hi").encode()).unwrap(),
            "{\"event\":\"stdout\",\"data\":\"hi\"}\n"
        );
    }

    #[test]
    fn hostile_lines_are_typed_errors() {
        let response = br#"{"jsonrpc":"2.0","id":"1","result":{}}"#;
        assert_eq!(decode_line(response).unwrap(), StreamLine::Response(response.to_vec()));
        for bad in [
            &b"not json"[..],
            b"{}",
            br#"{"event":"stdout"}"#,
            br#"{"event":"stdin","data":"x"}"#,
            br#"{"event":"stdout","data":"x","data_base64":"eA=="}"#,
            br#"{"event":"stdout","data_base64":"!!"}"#,
            br#"{"event":"stdout","jsonrpc":"2.0"}"#,
            b"[1,2]",
        ] {
            assert!(
                matches!(decode_line(bad), Err(StreamLineError::Malformed(_))),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let mut long = br#"{"event":"stdout","data":""#.to_vec();
        long.resize(MAX_LINE_BYTES, b'x');
        long.extend_from_slice(br#""}"#);
        assert_eq!(decode_line(&long), Err(StreamLineError::TooLong));
    }
}
