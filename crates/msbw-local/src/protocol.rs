//! The driver protocol between the backend and the interpreter driver (`driver.py`,
//! `driver.js`) running inside the sandbox, over a Unix socket that is the driver's
//! descriptor 3.
//!
//! Every message is a frame: a 4-byte big-endian length, then that many bytes of UTF-8 JSON.
//!
//! - driver → backend, once at start: `{"type":"ready","language":"python","version":"3.11.2"}`
//! - backend → driver: `{"type":"exec","id":7,"code":"print(1)"}`. For Python, two descriptors
//!   travel with the frame's first byte (`SCM_RIGHTS`): fresh pipes for this execution's stdout
//!   and stderr, which the driver puts on its descriptors 1 and 2 for the duration, so output of
//!   child processes is captured too and nothing written later lands in another execution.
//!   Node.js cannot take descriptors, so its stdout and stderr are long-lived pipes and the
//!   driver drops writes that do not come from the running execution.
//! - driver → backend, when the code has finished and its output is flushed:
//!   `{"type":"result","id":7,"status":"ok"}` or `"status":"raised"` (the traceback has been
//!   written to stderr).

use serde::{Deserialize, Serialize};

/// The largest frame either side accepts.
pub(crate) const MAX_FRAME: usize = 64 << 20;

/// A request to run code.
#[derive(Debug, Serialize)]
pub(crate) struct ExecRequest<'a> {
    /// Always `exec`.
    #[serde(rename = "type")]
    pub(crate) kind: &'static str,
    /// Matches the result to the request.
    pub(crate) id: u64,
    /// The source code.
    pub(crate) code: &'a str,
}

impl<'a> ExecRequest<'a> {
    /// A request with id `id`.
    pub(crate) fn new(id: u64, code: &'a str) -> Self {
        ExecRequest { kind: "exec", id, code }
    }
}

/// How an execution ended, according to the driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum DriverStatus {
    /// The code ran to the end.
    Ok,
    /// The code raised an exception (or a promise was rejected) that nothing caught.
    Raised,
}

/// A message from the driver.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub(crate) enum DriverMessage {
    /// The driver is ready for requests.
    Ready {
        /// `python` or `node`.
        language: String,
        /// The interpreter's version.
        version: String,
    },
    /// An execution finished.
    Result {
        /// The request's id.
        id: u64,
        /// How it ended.
        status: DriverStatus,
    },
}

/// Why a frame could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum FrameError {
    /// The length prefix is larger than [`MAX_FRAME`].
    #[error("the driver announced a frame of {0} bytes, more than the limit of {MAX_FRAME}")]
    TooLarge(usize),
    /// The frame is not a message the backend understands.
    #[error("the driver sent a message that is not valid: {0}")]
    Invalid(String),
}

/// A frame: the length prefix and the JSON body of `message`.
pub(crate) fn encode(message: &impl Serialize) -> Result<Vec<u8>, FrameError> {
    let body = serde_json::to_vec(message).map_err(|e| FrameError::Invalid(e.to_string()))?;
    if body.len() > MAX_FRAME {
        return Err(FrameError::TooLarge(body.len()));
    }
    let mut frame = Vec::with_capacity(4 + body.len());
    frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
    frame.extend_from_slice(&body);
    Ok(frame)
}

/// Collects bytes from the socket and cuts them into frames. Feeding it partial reads is fine,
/// so reading can be cancelled between reads without losing data.
#[derive(Debug, Default)]
pub(crate) struct FrameReader {
    buf: Vec<u8>,
}

impl FrameReader {
    /// Adds bytes read from the socket.
    pub(crate) fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The next complete message, if one has arrived.
    pub(crate) fn next_message(&mut self) -> Result<Option<DriverMessage>, FrameError> {
        if self.buf.len() < 4 {
            return Ok(None);
        }
        let len = u32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]) as usize;
        if len > MAX_FRAME {
            return Err(FrameError::TooLarge(len));
        }
        if self.buf.len() < 4 + len {
            return Ok(None);
        }
        let body: Vec<u8> = self.buf.drain(..4 + len).skip(4).collect();
        serde_json::from_slice(&body).map(Some).map_err(|e| {
            FrameError::Invalid(format!(
                "{e}: {}",
                String::from_utf8_lossy(&body[..body.len().min(200)])
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(json: &str) -> Vec<u8> {
        let mut f = (json.len() as u32).to_be_bytes().to_vec();
        f.extend_from_slice(json.as_bytes());
        f
    }

    #[test]
    fn requests_are_length_prefixed_json() {
        let f = encode(&ExecRequest::new(7, "print('é')")).unwrap();
        let len = u32::from_be_bytes([f[0], f[1], f[2], f[3]]) as usize;
        assert_eq!(len, f.len() - 4);
        let body: serde_json::Value = serde_json::from_slice(&f[4..]).unwrap();
        assert_eq!(body, serde_json::json!({"type": "exec", "id": 7, "code": "print('é')"}));
    }

    #[test]
    fn messages_are_read_across_partial_reads() {
        let bytes = frame(r#"{"type":"result","id":3,"status":"raised"}"#);
        let mut reader = FrameReader::default();
        for byte in &bytes[..bytes.len() - 1] {
            reader.push(std::slice::from_ref(byte));
            assert_eq!(reader.next_message(), Ok(None));
        }
        reader.push(&bytes[bytes.len() - 1..]);
        assert_eq!(
            reader.next_message(),
            Ok(Some(DriverMessage::Result {
                id: 3,
                status: DriverStatus::Raised
            }))
        );
        assert_eq!(reader.next_message(), Ok(None));
    }

    #[test]
    fn several_messages_in_one_read_come_out_in_order() {
        let mut bytes = frame(r#"{"type":"ready","language":"python","version":"3.11"}"#);
        bytes.extend(frame(r#"{"type":"result","id":1,"status":"ok"}"#));
        bytes.extend(&frame(r#"{"type":"result","id":2,"status":"ok"}"#)[..5]);
        let mut reader = FrameReader::default();
        reader.push(&bytes);
        assert!(matches!(reader.next_message(), Ok(Some(DriverMessage::Ready { .. }))));
        assert!(matches!(
            reader.next_message(),
            Ok(Some(DriverMessage::Result { id: 1, .. }))
        ));
        assert_eq!(reader.next_message(), Ok(None));
    }

    #[test]
    fn oversized_and_malformed_frames_are_errors() {
        let mut reader = FrameReader::default();
        reader.push(&u32::MAX.to_be_bytes());
        assert_eq!(reader.next_message(), Err(FrameError::TooLarge(u32::MAX as usize)));

        let mut reader = FrameReader::default();
        reader.push(&frame(r#"{"type":"result","id":"x"}"#));
        assert!(matches!(reader.next_message(), Err(FrameError::Invalid(_))));

        let mut reader = FrameReader::default();
        reader.push(&frame("not json"));
        let err = reader.next_message().unwrap_err();
        assert!(err.to_string().contains("not json"), "{err}");
    }

    #[test]
    fn unknown_statuses_are_refused() {
        let mut reader = FrameReader::default();
        reader.push(&frame(r#"{"type":"result","id":1,"status":"maybe"}"#));
        assert!(reader.next_message().is_err());
    }
}
