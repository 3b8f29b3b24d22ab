//! Commit messages off the queue (`worker::commit::check`): any bytes, never a panic;
//! a message to sell has as many hold ids as seats, each seat split (one to reject,
//! `INVALID_SEAT_ID`, may have seat ids that do not split).
#![no_main]

use std::collections::HashMap;

use libfuzzer_sys::fuzz_target;
use worker::commit::{check, Checked};

fuzz_target!(|data: &[u8]| {
    let sections = HashMap::from([("A".to_owned(), 100u32), ("B".to_owned(), 5)]);
    let catalogs = HashMap::from([("demo".to_owned(), sections)]);
    if let Checked::Valid(commit) = check(data, &catalogs) {
        if commit.rejected.is_none() {
            assert_eq!(commit.msg.seat_ids.len(), commit.msg.hold_ids.len());
            assert_eq!(commit.msg.seat_ids.len(), commit.seats.len());
        }
    }
});
