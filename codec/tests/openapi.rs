//! `openapi/ticketing.yaml` is the normative contract: every example in it must parse
//! into the `codec` type of its body and serialize back to the same JSON (so neither
//! side has a field the other lacks), and its error-code table must match `ErrorCode`.

use codec::{
    contract::*,
    error_code::ErrorCode,
    payment::{PaymentCallback, PaymentCallbackResponse},
};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use serde_json::Value;

fn spec() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../openapi/ticketing.yaml");
    let text = std::fs::read_to_string(path).expect("read the spec");
    let yaml: serde_yaml::Value = serde_yaml::from_str(&text).expect("valid YAML");
    serde_json::to_value(yaml).expect("YAML is JSON-shaped")
}

/// Follows a local `$ref` (`#/components/...`).
fn resolve<'a>(spec: &'a Value, node: &'a Value) -> &'a Value {
    match node.get("$ref").and_then(Value::as_str) {
        Some(r) => spec
            .pointer(r.trim_start_matches('#'))
            .unwrap_or_else(|| panic!("dangling {r}")),
        None => node,
    }
}

fn round_trip<T: DeserializeOwned + Serialize>(example: &Value, what: &str) {
    let typed: T =
        serde_json::from_value(example.clone()).unwrap_or_else(|e| panic!("{what}: {e}"));
    let back = serde_json::to_value(&typed).expect("serialize");
    assert_eq!(
        &back, example,
        "{what}: the codec type and the spec disagree"
    );
}

/// A request type borrows from the body it is parsed from, as the edge parses it.
fn round_trip_body<'b, T: Deserialize<'b> + Serialize>(body: &'b str, example: &Value, what: &str) {
    let typed: T = serde_json::from_str(body).unwrap_or_else(|e| panic!("{what}: {e}"));
    let back = serde_json::to_value(&typed).expect("serialize");
    assert_eq!(
        &back, example,
        "{what}: the codec type and the spec disagree"
    );
}

fn check_request(op: &str, example: &Value) {
    let what = format!("{op} request");
    let body = example.to_string();
    match op {
        "enter" => round_trip_body::<EnterRequest<'_>>(&body, example, &what),
        "hold" => round_trip_body::<HoldRequest<'_>>(&body, example, &what),
        "release" => round_trip_body::<ReleaseRequest<'_>>(&body, example, &what),
        "paymentIntent" => round_trip_body::<PaymentIntentRequest<'_>>(&body, example, &what),
        "commit" => round_trip_body::<CommitRequest<'_>>(&body, example, &what),
        "setAdmission" => round_trip::<AdmissionRequest>(example, &what),
        "revokeBuyer" => round_trip_body::<RevokeRequest<'_>>(&body, example, &what),
        "paymentCallback" => round_trip_body::<PaymentCallback<'_>>(&body, example, &what),
        _ => panic!("{op} has a request body the test does not know"),
    }
}

fn check_success(op: &str, example: &Value) {
    let what = format!("{op} response");
    match op {
        "ping" | "health" => round_trip::<Status>(example, &what),
        "enter" => round_trip::<EnterResponse>(example, &what),
        "roomStatus" => round_trip::<RoomStatus>(example, &what),
        "summary" => round_trip::<Summary>(example, &what),
        "seats" => round_trip::<SeatMap>(example, &what),
        "hold" => round_trip::<HoldResponse>(example, &what),
        "release" => round_trip::<ReleaseResponse>(example, &what),
        "paymentIntent" => round_trip::<PaymentIntentResponse>(example, &what),
        "commit" => round_trip::<CommitResponse>(example, &what),
        "status" => round_trip::<StatusResponse>(example, &what),
        "setAdmission" => round_trip::<AdmissionState>(example, &what),
        "challenge" => round_trip::<ChallengeResponse>(example, &what),
        "revokeBuyer" => round_trip::<RevokeResponse>(example, &what),
        "fairness" => round_trip::<Fairness>(example, &what),
        "paymentCallback" => round_trip::<PaymentCallbackResponse>(example, &what),
        _ => panic!("unknown operation {op}"),
    }
}

#[test]
fn every_example_round_trips_through_its_codec_type() {
    let spec = spec();
    let mut checked = 0;
    for (path, item) in spec["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("path item") {
            let Some(id) = op.get("operationId").and_then(Value::as_str) else {
                continue;
            };
            if let Some(example) = op.pointer("/requestBody/content/application~1json/example") {
                check_request(id, example);
                checked += 1;
            }
            for (status, response) in op["responses"].as_object().expect("responses") {
                let response = resolve(&spec, response);
                let Some(example) = response.pointer("/content/application~1json/example") else {
                    continue;
                };
                if status.starts_with('2') {
                    check_success(id, example);
                } else {
                    round_trip::<ErrorBody>(example, &format!("{method} {path} {status}"));
                }
                checked += 1;
            }
        }
    }
    let message = spec
        .pointer("/components/schemas/CommitMessage/example")
        .expect("example");
    round_trip::<CommitMessage>(message, "CommitMessage");
    assert!(
        checked >= 30,
        "only {checked} examples found: did the spec's layout change?"
    );
}

#[test]
fn the_error_code_table_matches_the_codes_the_edge_answers_with() {
    let spec = spec();
    let table = spec
        .pointer("/components/schemas/Error/description")
        .and_then(Value::as_str);
    let mut documented: Vec<(String, u16)> = table
        .expect("Error description")
        .lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let status = cells.get(2)?.parse().ok()?;
            Some((cells[1].to_owned(), status))
        })
        .collect();
    let mut ours: Vec<(String, u16)> = ErrorCode::ALL
        .iter()
        .map(|c| (c.as_str().to_owned(), c.status()))
        .collect();
    documented.sort();
    ours.sort();
    assert_eq!(documented, ours);
    let enumerated = spec
        .pointer("/components/schemas/ErrorCode/enum")
        .and_then(Value::as_array);
    assert_eq!(
        enumerated.expect("ErrorCode enum").len(),
        ErrorCode::ALL.len()
    );
}
