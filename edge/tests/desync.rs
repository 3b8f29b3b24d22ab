//! Request smuggling: the request corpus of AWS's http_desync_guardian (the library
//! behind ALB's desync mitigation; `tests/desync/`, Apache-2.0, from crates.io
//! `http_desync_guardian` 0.1.3) against the edge. Each case is sent with a valid `Host`
//! (the corpus has none and HTTP/1.1 requires one), the body its one valid
//! `Content-Length` announces, then a `GET /public/ping` on the same connection.
//!
//! - `Severe` (the corpus: "MUST be treated as irrecoverable error (400 + closing the
//!   connection)"): a 4xx and the connection closed, the ping never answered, so
//!   nothing behind the request can be read as a second request.
//! - `Ambiguous`: refused the same way, or answered and the connection closed: the
//!   edge never keeps reading a connection whose framing a proxy may read otherwise.
//! - `Compliant` and `Acceptable`: answered, and the ping too, or refused with a 4xx
//!   and the connection closed where the edge is stricter than ALB on purpose: control
//!   bytes in fields, HTTP/0.9 and HTTP/1.2 (400), chunked bodies (411), bodies over
//!   `EDGE_MAX_BODY_BYTES` (413). Never kept open after a refusal, never a 5xx.

mod support;

use std::{io::Write, net::Shutdown};

use serde::Deserialize;
use support::{get, Client, Edge};

#[derive(Deserialize)]
struct Case {
    name: String,
    uri: String,
    method: String,
    version: String,
    #[serde(default)]
    headers: Vec<Header>,
    expected: Expected,
}

#[derive(Deserialize)]
struct Header {
    name: String,
    value: serde_yaml::Value,
}

#[derive(Deserialize)]
struct Expected {
    tier: String,
}

/// The corpus writes raw bytes as `\xNN` escapes, which YAML reads as U+00NN: back
/// to one byte each (Latin-1), as the library's own tests do.
fn bytes(s: &str) -> Vec<u8> {
    s.chars()
        .map(|c| u8::try_from(u32::from(c)).unwrap_or(b'?'))
        .collect()
}

fn text(v: &serde_yaml::Value) -> String {
    match v {
        serde_yaml::Value::String(s) => s.clone(),
        serde_yaml::Value::Number(n) => n.to_string(),
        serde_yaml::Value::Bool(b) => b.to_string(),
        _ => String::new(),
    }
}

fn cases() -> Vec<(String, Case)> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/desync");
    let mut all = Vec::new();
    for file in [
        "severe",
        "ambiguous",
        "acceptable",
        "rfc-compliant",
        "more-compliant-tests",
        "edge-cases",
        "bad-header-characters",
        "uri-specific-test-cases",
        "real-life-test-cases",
    ] {
        let yaml = std::fs::read_to_string(format!("{dir}/{file}.yaml")).expect("corpus file");
        let cases: Vec<Case> = serde_yaml::from_str(&yaml).expect("corpus parses");
        all.extend(cases.into_iter().map(|c| (file.to_owned(), c)));
    }
    all
}

/// The case as bytes: request line, headers (plus `Host` when it has none), the body
/// its single well-formed `Content-Length` asks for.
fn request(case: &Case) -> Vec<u8> {
    let mut out = bytes(&case.method);
    out.push(b' ');
    out.extend(bytes(&case.uri));
    if !case.version.is_empty() {
        out.push(b' ');
        out.extend(bytes(&case.version));
    }
    out.extend_from_slice(b"\r\n");
    let mut lengths = Vec::new();
    for h in &case.headers {
        let value = text(&h.value);
        if h.name.eq_ignore_ascii_case("content-length") {
            lengths.push(value.clone());
        }
        out.extend(bytes(&h.name));
        out.extend_from_slice(b": ");
        out.extend(bytes(&value));
        out.extend_from_slice(b"\r\n");
    }
    if !case
        .headers
        .iter()
        .any(|h| h.name.eq_ignore_ascii_case("host"))
    {
        out.extend_from_slice(b"Host: t\r\n");
    }
    out.extend_from_slice(b"\r\n");
    if let [one] = &lengths[..] {
        if let Ok(n) = one.trim().parse::<usize>() {
            out.extend(std::iter::repeat_n(b'a', n.min(64 * 1024)));
        }
    }
    out
}

struct Outcome {
    /// The status of the case's answer, if any came.
    status: Option<u16>,
    /// The ping behind it was answered: the connection stayed usable.
    ping: bool,
}

fn send(edge: &Edge, case: &Case) -> Outcome {
    let mut c: Client = edge.connect();
    let mut raw = request(case);
    raw.extend(get("/public/ping"));
    c.stream.write_all(&raw).expect("write");
    // End of input: a refused request's lingering close ends at once.
    let _ = c.stream.shutdown(Shutdown::Write);
    let mut all = Vec::new();
    let _ = std::io::Read::read_to_end(&mut c.stream, &mut all);
    let statuses = statuses(&all);
    Outcome {
        status: statuses.first().copied(),
        ping: statuses.len() >= 2 && statuses[1] == 200,
    }
}

/// The statuses of the responses in `raw`, in order, up to the first that does not parse.
fn statuses(mut raw: &[u8]) -> Vec<u16> {
    let mut out = Vec::new();
    loop {
        let mut fields = [httparse::EMPTY_HEADER; 32];
        let mut res = httparse::Response::new(&mut fields);
        let Ok(httparse::Status::Complete(head)) = res.parse(raw) else {
            return out;
        };
        let length: usize = res
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("content-length"))
            .and_then(|h| std::str::from_utf8(h.value).ok()?.parse().ok())
            .unwrap_or(0);
        out.extend(res.code);
        raw = raw.get(head + length..).unwrap_or_default();
    }
}

#[test]
fn the_desync_corpus_is_refused_where_it_must_be() {
    let edge = Edge::start(&[]);
    let cases = cases();
    assert!(cases.len() > 150, "the corpus has {} cases", cases.len());
    let mut failures = Vec::new();
    let mut served = 0;
    let mut refusals = Vec::new();
    let mut tiers = std::collections::BTreeMap::<String, usize>::new();
    for (file, case) in &cases {
        *tiers.entry(case.expected.tier.clone()).or_default() += 1;
        let o = send(&edge, case);
        let refused = o.status.is_some_and(|s| (400..500).contains(&s)) && !o.ping;
        let ok = match case.expected.tier.as_str() {
            "Severe" => refused || (o.status.is_none() && !o.ping),
            "Ambiguous" => !o.ping,
            _ => {
                if o.ping {
                    served += 1;
                } else {
                    refusals.push(format!("{} ({:?})", case.name, o.status));
                }
                o.ping || refused
            }
        };
        if !ok {
            failures.push(format!(
                "{file}: {} ({}): status {:?}, connection {}",
                case.name,
                case.expected.tier,
                o.status,
                if o.ping { "kept" } else { "closed" }
            ));
        }
    }
    assert!(failures.is_empty(), "{tiers:?}\n{}", failures.join("\n"));
    // The refusals above are the edge's deliberate ones (bytes httparse refuses, HTTP/0.9
    // and 1.2, chunked bodies, bodies over EDGE_MAX_BODY_BYTES); most well-formed
    // requests must still be served with the connection kept.
    assert!(
        served >= 15,
        "only {served} compliant or acceptable requests served; refused: {}",
        refusals.join("; ")
    );
}
