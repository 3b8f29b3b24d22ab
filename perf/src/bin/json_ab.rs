//! `json_ab MODE KIND N`: parses one body of KIND (the edge's `enter`, `hold`, `intent`,
//! `commit` request bodies, or the worker's commit `message`) N times into its `codec`
//! type with serde_json (MODE `serde`) or simd-json (MODE `simd`), or only copies it
//! (MODE `copy`: simd-json parses in place, so every parse gets a fresh copy, and the
//! copy is the baseline both modes pay). `perf/json-ab.sh` runs it under callgrind and
//! subtracts the baseline: instructions per parse, with no clock involved.

use std::hint::black_box;

use codec::contract::{
    CommitMessage, CommitRequest, EnterRequest, HoldRequest, PaymentIntentRequest,
};

const ENTER: &str = r#"{"userId":"u-000123","eventId":"demo"}"#;
const HOLD: &str = r#"{"eventId":"demo","seatId":"A-17"}"#;
const INTENT: &str = r#"{"userId":"u-000123","eventId":"demo","seatIds":["A-17","A-18"]}"#;
const COMMIT: &str = r#"{"intentId":"pi-0c9e4f7a2b3d4e51","eventId":"demo","seatIds":["A-17","A-18"],"userId":"u-000123"}"#;
const MESSAGE: &str = r#"{"v":1,"idem":"k-7f3a","intentId":"pi-0c9e4f7a2b3d4e51","eventId":"demo","userId":"u-000123","seatIds":["A-17","A-18"],"holdIds":["h-1a2b3c","h-4d5e6f"],"amount":300000,"currency":"KRW","acceptedAt":1796119260000}"#;

fn parse<T: for<'a> serde::Deserialize<'a>>(mode: &str, body: &mut [u8]) -> bool {
    match mode {
        "serde" => serde_json::from_slice::<T>(body).is_ok(),
        "simd" => simd_json::serde::from_slice::<T>(body).is_ok(),
        _ => true,
    }
}

/// Borrowing request types: parsed, checked, dropped before the buffer is reused.
macro_rules! borrowed {
    ($mode:expr, $body:expr, $t:ty) => {
        match $mode {
            "serde" => serde_json::from_slice::<$t>($body).is_ok(),
            "simd" => simd_json::serde::from_slice::<$t>($body).is_ok(),
            _ => true,
        }
    };
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, mode, kind, n] = &args[..] else {
        eprintln!("usage: json_ab serde|simd|copy enter|hold|intent|commit|message N");
        std::process::exit(2);
    };
    let n: usize = n.parse().expect("N");
    let body = match kind.as_str() {
        "enter" => ENTER,
        "hold" => HOLD,
        "intent" => INTENT,
        "commit" => COMMIT,
        "message" => MESSAGE,
        other => panic!("unknown kind {other}"),
    };
    let mut buf = Vec::with_capacity(body.len());
    let mut ok = 0usize;
    for _ in 0..n {
        buf.clear();
        buf.extend_from_slice(body.as_bytes());
        let b = black_box(&mut buf[..]);
        let parsed = match kind.as_str() {
            "enter" => borrowed!(mode.as_str(), b, EnterRequest<'_>),
            "hold" => borrowed!(mode.as_str(), b, HoldRequest<'_>),
            "intent" => borrowed!(mode.as_str(), b, PaymentIntentRequest<'_>),
            "commit" => borrowed!(mode.as_str(), b, CommitRequest<'_>),
            _ => parse::<CommitMessage>(mode, b),
        };
        ok += usize::from(parsed);
    }
    assert_eq!(ok, n, "{mode} failed to parse {kind}");
    println!("{mode} {kind} {n}");
}
