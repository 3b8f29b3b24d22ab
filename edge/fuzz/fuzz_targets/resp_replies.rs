//! RESP replies from Redis, decoded as the edge's client decodes them and read by every
//! typed outcome of `codec::store`: never a panic, whatever a server sends.
#![no_main]

use codec::store::{Commit, Enter, Hold, Intent, Release, Section, SetAdmission};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut buf = bytes::BytesMut::from(data);
    while let Ok(Some((frame, _, _))) = redis_protocol::resp2::decode::decode_bytes_mut(&mut buf) {
        let _ = Enter::decode(&frame);
        let _ = Hold::decode(&frame);
        let _ = Release::decode(&frame);
        let _ = Section::decode_counts(&frame);
        if let Ok(Some(states)) = Section::decode_states(&frame) {
            let _ = states.held().count();
            let _ = (0..64).filter(|&n| states.is_sold(n)).count();
        }
        let _ = SetAdmission::decode(&frame);
        let _ = Intent::decode(&frame);
        let _ = Commit::decode(&frame);
    }
});
