//! The local backend's driver protocol: frames from a hostile driver, in reads of any size.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| msbw_local::fuzzing::decode_frames(data));
