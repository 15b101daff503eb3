//! Entry points for the fuzz targets in `fuzz/` (feature `fuzzing`; not a public API).

use crate::protocol::{ExecRequest, FrameReader, encode};

/// Feeds `data` to the driver-protocol frame reader as the socket would, in reads of a size
/// taken from the first byte, and takes every message out: whatever a hostile driver sends, the
/// reader answers with messages or a typed error and never panics. Must never panic.
pub fn decode_frames(data: &[u8]) {
    let Some((&step, rest)) = data.split_first() else {
        return;
    };
    let mut reader = FrameReader::default();
    for chunk in rest.chunks(usize::from(step).max(1)) {
        reader.push(chunk);
        loop {
            match reader.next_message() {
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
    // Whatever code text the data makes, a request frame encodes to length + JSON.
    let code = String::from_utf8_lossy(rest);
    if let Ok(frame) = encode(&ExecRequest::new(u64::from(step), &code)) {
        assert_eq!(
            frame.len() - 4,
            u32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]) as usize
        );
    }
}
