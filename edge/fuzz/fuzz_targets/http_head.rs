//! HTTP/1.1 request heads (`edge::http::parse_head`): any bytes, never a panic; a head
//! that parses lies within the bytes and within the limits, and its fields are the
//! ones the rules allow (request id visible ASCII, at most 128 bytes); the
//! Idempotency-Key rule (`codec::rules::idempotency_key`) takes whatever header value
//! came and passes only 1..255 visible ASCII.
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
        if let Some(key) = head.idempotency_key {
            if let Ok(text) = codec::rules::idempotency_key(key) {
                assert!((1..=codec::rules::IDEMPOTENCY_KEY_MAX_BYTES).contains(&text.len()));
                assert!(text.bytes().all(|b| b.is_ascii_graphic()));
            }
        }
    }
});
