//! The driver protocol between the backend and the interpreter driver (`driver.py`,
//! `driver.js`) running inside the sandbox, over a Unix socket that is the driver's
//! descriptor 3.
//!
//! Every message is a frame: a 4-byte big-endian length, then that many bytes of UTF-8 JSON.
//!
//! - driver → backend, once at start: `{"type":"ready","language":"python","version":"3.11.2"}`
//! - backend → driver: `{"type":"exec","id":7,"nonce":1234,"code":"print(1)"}`. For Python, two descriptors
//!   travel with the frame's first byte (`SCM_RIGHTS`): fresh pipes for this execution's stdout
//!   and stderr, which the driver puts on its descriptors 1 and 2 for the duration, so output of
//!   child processes is captured too and nothing written later lands in another execution.
//!   Node.js cannot take descriptors, so its stdout and stderr are long-lived pipes and the
//!   driver drops writes that do not come from the running execution.
//! - driver → backend, when the code has finished and its output is flushed:
//!   `{"type":"result","id":7,"nonce":1234,"status":"ok"}` or `"status":"raised"` (the
//!   traceback has been written to stderr).
//!
//! The code runs in the driver's process and can write on its descriptor too, so nothing the
//! driver sends is trusted: the backend reads at most [`MAX_DRIVER_FRAME`] bytes per frame,
//! accepts a result only with the id *and* the nonce of the running execution (a random number
//! below 2^53, new for each execution, which code of another execution or a forked process
//! cannot know), ignores other well-formed results, and treats anything malformed as a broken
//! driver (the interpreter is restarted).

use serde::{Deserialize, Serialize};

/// The largest frame the backend sends (the code of an execution).
pub(crate) const MAX_FRAME: usize = 64 << 20;

/// The largest frame the backend accepts from a driver: its messages are small.
pub(crate) const MAX_DRIVER_FRAME: usize = 4096;

/// A request to run code.
#[derive(Debug, Serialize)]
pub(crate) struct ExecRequest<'a> {
    /// Always `exec`.
    #[serde(rename = "type")]
    pub(crate) kind: &'static str,
    /// Matches the result to the request.
    pub(crate) id: u64,
    /// Must come back with the result (below 2^53, so that JavaScript keeps it exact).
    pub(crate) nonce: u64,
    /// The source code.
    pub(crate) code: &'a str,
}

impl<'a> ExecRequest<'a> {
    /// A request with id `id` and a fresh nonce.
    pub(crate) fn new(id: u64, code: &'a str) -> Self {
        ExecRequest {
            kind: "exec",
            id,
            nonce: fastrand::u64(..1 << 53),
            code,
        }
    }

    /// Whether `message` is the result of this request.
    pub(crate) fn answered_by(&self, message: &DriverMessage) -> Option<DriverStatus> {
        match *message {
            DriverMessage::Result { id, nonce, status } if id == self.id && nonce == self.nonce => Some(status),
            _ => None,
        }
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
        /// The request's nonce.
        nonce: u64,
        /// How it ended.
        status: DriverStatus,
    },
}

/// Why a frame could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum FrameError {
    /// The length prefix is larger than [`MAX_DRIVER_FRAME`].
    #[error("the driver announced a frame of {0} bytes, more than the limit of {MAX_DRIVER_FRAME}")]
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

    /// Forgets everything read so far, complete frames and a partial one alike.
    pub(crate) fn clear(&mut self) {
        self.buf.clear();
    }

    /// The next complete message, if one has arrived.
    pub(crate) fn next_message(&mut self) -> Result<Option<DriverMessage>, FrameError> {
        if self.buf.len() < 4 {
            return Ok(None);
        }
        let len = u32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]) as usize;
        if len > MAX_DRIVER_FRAME {
            return Err(FrameError::TooLarge(len));
        }
        // Every message is a JSON object: catch a stray prefix before waiting for its length.
        if self.buf.len() > 4 && self.buf[4] != b'{' {
            return Err(FrameError::Invalid(format!(
                "a frame that is not a JSON object: {}",
                String::from_utf8_lossy(&self.buf[4..self.buf.len().min(64)])
            )));
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
        let request = ExecRequest::new(7, "print('é')");
        let f = encode(&request).unwrap();
        let len = u32::from_be_bytes([f[0], f[1], f[2], f[3]]) as usize;
        assert_eq!(len, f.len() - 4);
        let body: serde_json::Value = serde_json::from_slice(&f[4..]).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"type": "exec", "id": 7, "nonce": request.nonce, "code": "print('é')"})
        );
        assert!(request.nonce < 1 << 53);
        assert_ne!(request.nonce, ExecRequest::new(7, "").nonce, "nonces are fresh");
    }

    #[test]
    fn messages_are_read_across_partial_reads() {
        let bytes = frame(r#"{"type":"result","id":3,"nonce":9,"status":"raised"}"#);
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
                nonce: 9,
                status: DriverStatus::Raised
            }))
        );
        assert_eq!(reader.next_message(), Ok(None));
    }

    #[test]
    fn several_messages_in_one_read_come_out_in_order() {
        let mut bytes = frame(r#"{"type":"ready","language":"python","version":"3.11"}"#);
        bytes.extend(frame(r#"{"type":"result","id":1,"nonce":1,"status":"ok"}"#));
        bytes.extend(&frame(r#"{"type":"result","id":2,"nonce":2,"status":"ok"}"#)[..5]);
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

        // A stray prefix is noticed before its announced length has arrived.
        let mut reader = FrameReader::default();
        reader.push(&[0, 0, 16, 0, 0, 0, 0, 9]);
        assert!(matches!(reader.next_message(), Err(FrameError::Invalid(_))));
    }

    #[test]
    fn frames_of_a_driver_are_small() {
        let mut reader = FrameReader::default();
        reader.push(&((MAX_DRIVER_FRAME + 1) as u32).to_be_bytes());
        assert_eq!(reader.next_message(), Err(FrameError::TooLarge(MAX_DRIVER_FRAME + 1)));
    }

    #[test]
    fn only_the_right_id_and_nonce_answer_a_request() {
        let request = ExecRequest::new(4, "");
        let result = |id, nonce| DriverMessage::Result {
            id,
            nonce,
            status: DriverStatus::Ok,
        };
        assert_eq!(request.answered_by(&result(4, request.nonce)), Some(DriverStatus::Ok));
        assert_eq!(request.answered_by(&result(4, request.nonce ^ 1)), None);
        assert_eq!(request.answered_by(&result(5, request.nonce)), None);
        let ready = DriverMessage::Ready {
            language: "python".into(),
            version: "3".into(),
        };
        assert_eq!(request.answered_by(&ready), None);
    }

    #[test]
    fn unknown_statuses_are_refused() {
        let mut reader = FrameReader::default();
        reader.push(&frame(r#"{"type":"result","id":1,"nonce":1,"status":"maybe"}"#));
        assert!(reader.next_message().is_err());
    }
}
