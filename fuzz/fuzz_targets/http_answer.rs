//! The HTTP backend's decoding of a server's answers: status, content type and body, then each
//! method's result shape and the output rule. Nothing a server sends makes it panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| msbw_http::fuzzing::decode_answer(data));
