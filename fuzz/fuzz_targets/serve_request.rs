//! Serve's decoding of a request body (msbw-protocol, shared with the HTTP backend): the
//! envelope, then each method's params, and the API key parser on the same bytes. Nothing a
//! client sends makes it panic; a decoded request re-reads its params the same way twice.
#![no_main]

use libfuzzer_sys::fuzz_target;
use msbw_protocol::params::{CommandParams, MetricsParams, ReplParams, StartParams, StopParams};

fuzz_target!(|data: &[u8]| {
    if let Ok(request) = msbw_protocol::decode_request(data) {
        let _ = request.params::<StartParams>();
        let _ = request.params::<StopParams>();
        let _ = request.params::<MetricsParams>();
        let _ = request.params::<CommandParams>();
        let first = request.params::<ReplParams>().map(|p| p.code);
        let second = request.params::<ReplParams>().map(|p| p.code);
        assert_eq!(first.ok(), second.ok());
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = msbw_protocol::key::verify("fuzz-server-key", Some(text));
    }
});
