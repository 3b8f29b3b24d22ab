//! HTTP/1.1 request heads (`edge::http::parse_head`): any bytes, never a panic; a head
//! that parses lies within the bytes and within the limits, and its fields are the
//! ones the rules allow (request id visible ASCII, at most 128 bytes).
#![no_main]

use edge::http::{parse_head, MAX_HEAD_BYTES, MAX_REQUEST_ID_BYTES};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(Some(head)) = parse_head(data) {
        assert!(head.len <= data.len() && head.len <= MAX_HEAD_BYTES);
        assert!(head.path.starts_with('/'));
        if let Some(id) = head.request_id {
            assert!((1..=MAX_REQUEST_ID_BYTES).contains(&id.len()));
            assert!(id.iter().all(u8::is_ascii_graphic));
        }
    }
});
