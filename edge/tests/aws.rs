//! The aws profile against moto's server: commits through SQS FIFO (batches, group and
//! deduplication ids, a queue failure freeing the key) and the DynamoDB hold mirror
//! (written behind, bounded when DynamoDB is away).

mod support;

use std::{
    collections::HashSet,
    time::{Duration, Instant},
};

use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType,
    ScalarAttributeType,
};
use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName};
use codec::contract::CommitMessage;
use serde_json::json;
use support::{moto::Moto, seed_event, unique_event, Client, Edge, Response};

const TABLE: &str = "seat-holds";

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(f)
}

async fn create_queue(moto: &Moto, name: &str) -> String {
    let sqs = aws_sdk_sqs::Client::new(&moto.sdk_config().await);
    let out = sqs
        .create_queue()
        .queue_name(name)
        .attributes(QueueAttributeName::FifoQueue, "true")
        .send()
        .await
        .expect("create queue");
    out.queue_url().expect("url").to_owned()
}

async fn create_table(moto: &Moto) {
    let dynamo = aws_sdk_dynamodb::Client::new(&moto.sdk_config().await);
    dynamo
        .create_table()
        .table_name(TABLE)
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("pk")
                .key_type(KeyType::Hash)
                .build()
                .expect("key"),
        )
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("pk")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .expect("attr"),
        )
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .expect("create table");
}

fn aws_edge(moto: &Moto, queue_url: &str, extra: &[(&'static str, &str)]) -> Edge {
    let mut env = moto.env();
    env.extend([
        ("PROFILE", "aws".to_owned()),
        ("SQS_QUEUE_URL", queue_url.to_owned()),
        ("HOLD_MIRROR_TABLE", TABLE.to_owned()),
        ("ROOM_TOKEN_SECRET", "aws-tests".to_owned()),
    ]);
    env.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
    Edge::start_owned(&env)
}

/// A buyer who holds `seat` and has an intent for it: (token, intentId).
fn ready_to_commit(c: &mut Client, event: &str, user: &str, seat: &str) -> (String, String) {
    let token = c.enter(event, user);
    let r = c.post(
        "/public/hold",
        Some(&token),
        &json!({"eventId": event, "seatId": seat}),
    );
    assert_eq!(r.status, 201);
    let body = json!({"userId": user, "eventId": event, "seatIds": [seat]}).to_string();
    let raw = format!(
        "POST /confirm/payment-intent HTTP/1.1\r\nHost: t\r\nx-room-token: {token}\r\nIdempotency-Key: i-{user}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let intent = c.request(raw.as_bytes());
    assert_eq!(intent.status, 201);
    (
        token,
        intent.json()["intentId"].as_str().expect("id").to_owned(),
    )
}

fn commit(
    c: &mut Client,
    token: &str,
    key: &str,
    user: &str,
    event: &str,
    intent: &str,
    seat: &str,
) -> Response {
    let body = json!({"intentId": intent, "eventId": event, "seatIds": [seat], "userId": user})
        .to_string();
    let raw = format!(
        "POST /confirm/commit HTTP/1.1\r\nHost: t\r\nx-room-token: {token}\r\nIdempotency-Key: {key}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    c.request(raw.as_bytes())
}

/// Receives (and deletes, or FIFO holds back the rest of each group) until `count`
/// messages arrived or the wait is over.
async fn receive(moto: &Moto, url: &str, count: usize) -> Vec<aws_sdk_sqs::types::Message> {
    let sqs = aws_sdk_sqs::Client::new(&moto.sdk_config().await);
    let deadline = Instant::now() + support::WAIT;
    let mut got = Vec::new();
    while got.len() < count && Instant::now() < deadline {
        let out = sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .wait_time_seconds(1)
            .send()
            .await
            .expect("receive");
        for m in out.messages() {
            let receipt = m.receipt_handle().expect("receipt");
            sqs.delete_message()
                .queue_url(url)
                .receipt_handle(receipt)
                .send()
                .await
                .expect("delete");
            got.push(m.clone());
        }
    }
    got
}

#[test]
fn commits_go_to_sqs_fifo_in_batches_with_group_and_deduplication_ids() {
    let moto = Moto::start();
    let url = block_on(create_queue(&moto, "commits.fifo"));
    block_on(create_table(&moto));
    let edge = aws_edge(&moto, &url, &[("SQS_LINGER_MS", "50")]);
    let event = unique_event("sqs");
    seed_event(&event, &[("A", 100, 10_000)], 0, 1_000_000);
    let buyers: Vec<_> = (0..25)
        .map(|i| {
            let mut c = edge.connect();
            let user = format!("sqs-buyer-{i}");
            let (token, intent) = ready_to_commit(&mut c, &event, &user, &format!("A-{}", i + 1));
            (c, user, token, intent, i)
        })
        .collect();
    // All at once, so the side thread has several to put in each batch.
    let threads: Vec<_> = buyers
        .into_iter()
        .map(|(mut c, user, token, intent, i)| {
            let event = event.clone();
            std::thread::spawn(move || {
                let r = commit(
                    &mut c,
                    &token,
                    &format!("order-{i}"),
                    &user,
                    &event,
                    &intent,
                    &format!("A-{}", i + 1),
                );
                assert_eq!(r.status, 202, "{:?}", String::from_utf8_lossy(&r.body));
                let status = c.get_with(
                    &format!("/confirm/status?idem=order-{i}"),
                    &format!("x-room-token: {token}\r\n"),
                );
                assert_eq!(status.json()["order"]["status"], "PENDING");
            })
        })
        .collect();
    threads.into_iter().for_each(|t| t.join().expect("commit"));

    let messages = block_on(receive(&moto, &url, 25));
    assert_eq!(messages.len(), 25);
    let mut idems = HashSet::new();
    let mut dedups = HashSet::new();
    for m in &messages {
        let body: CommitMessage =
            serde_json::from_str(m.body().expect("body")).expect("a CommitMessage");
        assert_eq!(
            (body.v, body.event_id.as_str(), body.amount),
            (1, event.as_str(), 10_000)
        );
        idems.insert(body.idem);
        let attrs = m.attributes().expect("attributes");
        let group = &attrs[&MessageSystemAttributeName::MessageGroupId];
        assert!(group.starts_with(&format!("{event}#")), "{group}");
        let dedup = attrs[&MessageSystemAttributeName::MessageDeduplicationId].clone();
        assert!(
            dedup.len() <= 128 && dedup.bytes().all(|b| b.is_ascii_hexdigit()),
            "{dedup}"
        );
        dedups.insert(dedup);
    }
    assert_eq!(idems.len(), 25);
    assert_eq!(dedups.len(), 25);

    edge.signal("TERM");
    let totals = support::wait_for_line(&edge.log, "side thread totals");
    let number = |name: &str| -> u64 {
        let field = totals
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix(name))
            .expect(name);
        field.parse().expect("number")
    };
    assert_eq!(number("sqs_messages="), 25);
    assert!(
        number("sqs_batches=") < 25,
        "messages share SendMessageBatch calls: {totals}"
    );
}

#[test]
fn a_queue_failure_answers_503_and_frees_the_key() {
    let moto = Moto::start();
    block_on(create_table(&moto));
    // The queue does not exist yet: every send fails until it does.
    let url = format!("{}/123456789012/later.fifo", moto.endpoint());
    let edge = aws_edge(&moto, &url, &[]);
    let event = unique_event("sqsdown");
    seed_event(&event, &[("A", 10, 10_000)], 0, 1_000_000);
    let mut c = edge.connect();
    let (token, intent) = ready_to_commit(&mut c, &event, "u1", "A-1");
    let r = commit(&mut c, &token, "k", "u1", &event, &intent, "A-1");
    assert_eq!((r.status, r.error_code().as_str()), (503, "UNAVAILABLE"));
    assert_eq!(r.header("retry-after"), Some("1"));
    let status = c.get_with(
        "/confirm/status?idem=k",
        &format!("x-room-token: {token}\r\n"),
    );
    assert_eq!(status.status, 404, "nothing recorded");

    assert_eq!(block_on(create_queue(&moto, "later.fifo")), url);
    let retry = commit(&mut c, &token, "k", "u1", &event, &intent, "A-1");
    assert_eq!(
        (retry.status, retry.header("x-idempotent-replay")),
        (202, None)
    );
    assert_eq!(block_on(receive(&moto, &url, 1)).len(), 1);
}

async fn mirrored(
    moto: &Moto,
    pk: &str,
) -> Option<std::collections::HashMap<String, AttributeValue>> {
    let dynamo = aws_sdk_dynamodb::Client::new(&moto.sdk_config().await);
    let out = dynamo
        .get_item()
        .table_name(TABLE)
        .key("pk", AttributeValue::S(pk.into()))
        .send()
        .await;
    out.expect("get item").item().cloned()
}

#[test]
fn holds_and_releases_are_mirrored_to_dynamodb() {
    let moto = Moto::start();
    let url = block_on(create_queue(&moto, "commits.fifo"));
    block_on(create_table(&moto));
    let edge = aws_edge(&moto, &url, &[]);
    let event = unique_event("mirror");
    seed_event(&event, &[("A", 10, 10_000)], 0, 1_000_000);
    let mut c = edge.connect();
    let token = c.enter(&event, "m1");
    let hold = c
        .post(
            "/public/hold",
            Some(&token),
            &json!({"eventId": event, "seatId": "A-4"}),
        )
        .json();
    let pk = format!("{event}#A-4");
    let deadline = Instant::now() + support::WAIT;
    let item = loop {
        if let Some(item) = block_on(mirrored(&moto, &pk)) {
            break item;
        }
        assert!(Instant::now() < deadline, "hold never mirrored");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(item["holder"], AttributeValue::S("m1".into()));
    assert_eq!(
        item["holdId"],
        AttributeValue::S(hold["holdId"].as_str().expect("id").into())
    );
    let exp = hold["expiresAt"].as_u64().expect("exp").div_ceil(1000);
    assert_eq!(item["exp"], AttributeValue::N(exp.to_string()));

    let body = json!({"eventId": event, "seatId": "A-4", "holdId": hold["holdId"]});
    assert_eq!(
        c.post("/public/release", Some(&token), &body).json()["released"],
        true
    );
    while block_on(mirrored(&moto, &pk)).is_some() {
        assert!(Instant::now() < deadline, "release never mirrored");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn holds_keep_working_when_dynamodb_is_away_and_drops_are_counted() {
    let moto = Moto::start();
    let url = block_on(create_queue(&moto, "commits.fifo"));
    // A listener that never accepts: every DynamoDB call hangs, so the first writes stay
    // in flight for the whole test and the backlog of 3 stays full. Exactly holds 4 to
    // 10 are dropped, however slow the machine (a refused port fails the writes after
    // retries whose length decides how many get dropped).
    let black_hole = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let dynamo = format!("http://{}", black_hole.local_addr().expect("addr"));
    let env = [
        ("MIRROR_BACKLOG", "3"),
        ("AWS_ENDPOINT_URL_DYNAMODB", dynamo.as_str()),
    ];
    let edge = aws_edge(&moto, &url, &env);
    let metrics = support::metrics_addr(&edge);
    let event = unique_event("nodynamo");
    seed_event(&event, &[("A", 40, 10_000)], 0, 1_000_000);
    let mut c = edge.connect();
    for i in 1..=10 {
        let token = c.enter(&event, &format!("d{i}"));
        let r = c.post(
            "/public/hold",
            Some(&token),
            &json!({"eventId": event, "seatId": format!("A-{i}")}),
        );
        assert_eq!(r.status, 201, "hold {i} despite DynamoDB");
    }
    support::wait_for_line(&edge.log, "hold mirror backlog full, dropping");
    let (_, scraped) = support::scrape(&metrics, None);
    assert_eq!(
        support::value(&scraped, "maxtps_edge_side_mirror_dropped_total"),
        7
    );
    assert_eq!(
        support::value(&scraped, "maxtps_edge_side_mirror_backlog"),
        3
    );
    // The drain waits for open connections; then the counters come out.
    drop(c);
    edge.signal("TERM");
    let totals = support::wait_for_line(&edge.log, "side thread totals");
    let number = |name: &str| -> u64 {
        let field = totals
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix(name))
            .unwrap_or_else(|| panic!("no {name} in {totals}"));
        field.parse().expect("number")
    };
    assert_eq!(
        [
            number("mirror_dropped="),
            number("mirror_written="),
            number("mirror_failed=")
        ],
        [7, 0, 0],
        "{totals}"
    );
    drop(black_hole);
}

/// A peer that takes every connection and never answers: an SQS endpoint that hangs.
fn black_hole() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming() {
            held.extend(stream.ok());
        }
    });
    format!("http://{addr}")
}

async fn queued(moto: &Moto, url: &str) -> String {
    let sqs = aws_sdk_sqs::Client::new(&moto.sdk_config().await);
    let out = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .send()
        .await
        .expect("attributes");
    out.attributes()
        .and_then(|a| a.get(&QueueAttributeName::ApproximateNumberOfMessages))
        .cloned()
        .unwrap_or_default()
}

/// The aws profile answers 202 only once SQS took the message. An SQS that never
/// answers costs a bounded wait and a 503; an edge killed between the commit's script
/// and SQS's answer gave no 202 and sent nothing, and the buyer's retry with the same
/// key, once the key's in-flight mark has expired, is sent exactly once.
#[test]
fn an_edge_killed_between_accept_and_send_loses_no_accepted_commit() {
    let moto = Moto::start();
    let url = block_on(create_queue(&moto, "killed.fifo"));
    block_on(create_table(&moto));
    let hole = black_hole();
    let in_flight = [
        ("AWS_ENDPOINT_URL", hole.as_str()),
        ("COMMIT_IN_FLIGHT_MS", "2000"),
    ];
    let mut edge = aws_edge(&moto, &url, &in_flight);
    let event = unique_event("sqskill");
    seed_event(&event, &[("A", 10, 10_000)], 0, 1_000_000);

    // SQS never answers: each attempt has a deadline, so the buyer gets a 503.
    let mut c = edge.connect();
    c.stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let (token, intent) = ready_to_commit(&mut c, &event, "u1", "A-1");
    let r = commit(&mut c, &token, "k1", "u1", &event, &intent, "A-1");
    assert_eq!((r.status, r.error_code().as_str()), (503, "UNAVAILABLE"));
    assert_eq!(r.header("retry-after"), Some("1"));

    // Killed while SQS is being asked: the key is in flight, the client's request open.
    let mut c = edge.connect();
    let (token, intent) = ready_to_commit(&mut c, &event, "u2", "A-2");
    let body = json!({"intentId": intent, "eventId": event, "seatIds": ["A-2"], "userId": "u2"})
        .to_string();
    c.send(
        format!(
            "POST /confirm/commit HTTP/1.1\r\nHost: t\r\nx-room-token: {token}\r\nIdempotency-Key: k2\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    let key = codec::keys::idempotency(&event, "commit", "u2", "k2");
    let deadline = Instant::now() + support::WAIT;
    while !support::redis(&["GET", &key]).contains("inflight|") {
        assert!(Instant::now() < deadline, "the commit never went in flight");
        std::thread::sleep(Duration::from_millis(5));
    }
    edge.signal("KILL");
    assert!(!edge.wait_exit().success());
    assert!(c.is_closed(), "no answer, so no 202");
    assert_eq!(block_on(queued(&moto, &url)), "0", "nothing reached SQS");

    // The buyer retries on an edge whose SQS answers: 409 while the mark lasts, then
    // accepted, once.
    let edge = aws_edge(&moto, &url, &[("COMMIT_IN_FLIGHT_MS", "2000")]);
    let mut c = edge.connect();
    let status = c.get_with(
        "/confirm/status?idem=k2",
        &format!("x-room-token: {token}\r\n"),
    );
    assert_eq!(
        status.status, 404,
        "nothing recorded for a commit never answered"
    );
    let deadline = Instant::now() + support::WAIT;
    let accepted = loop {
        let r = commit(&mut c, &token, "k2", "u2", &event, &intent, "A-2");
        if r.status != 409 {
            break r;
        }
        assert_eq!(r.error_code(), "IDEMPOTENCY_IN_FLIGHT");
        assert!(
            Instant::now() < deadline,
            "the in-flight mark never expired"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(
        (accepted.status, accepted.header("x-idempotent-replay")),
        (202, None)
    );
    let messages = block_on(receive(&moto, &url, 1));
    let sent: Vec<CommitMessage> = messages
        .iter()
        .map(|m| serde_json::from_str(m.body().expect("body")).expect("message"))
        .collect();
    assert_eq!(sent.len(), 1);
    assert_eq!(
        (sent[0].idem.as_str(), sent[0].seat_ids.as_slice()),
        ("k2", &["A-2".to_owned()][..])
    );
    assert_eq!(block_on(queued(&moto, &url)), "0", "sent once");
}
