//! Every JSON request body, parsed as the edge parses it (`api::request::parse` into
//! codec's borrowed types): never a panic, and an accepted body serializes back.
#![no_main]

use codec::contract::{
    AdmissionRequest, CommitRequest, EnterRequest, HoldRequest, PaymentIntentRequest,
    ReleaseRequest,
};
use edge::api::request::parse;
use libfuzzer_sys::fuzz_target;

fn round_trip<'b, T: serde::Deserialize<'b> + serde::Serialize>(data: &'b [u8]) {
    if let Ok(value) = parse::<T>(data) {
        serde_json::to_vec(&value).expect("an accepted body serializes");
    }
}

fuzz_target!(|data: &[u8]| {
    round_trip::<EnterRequest<'_>>(data);
    round_trip::<HoldRequest<'_>>(data);
    round_trip::<ReleaseRequest<'_>>(data);
    round_trip::<PaymentIntentRequest<'_>>(data);
    round_trip::<CommitRequest<'_>>(data);
    round_trip::<AdmissionRequest>(data);
});
