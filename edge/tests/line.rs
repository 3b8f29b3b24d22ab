//! The fair line (README "Fair admission") through HTTP against the real edge and the
//! shared Redis: queueing modes, the pre-queue's gate and commitment, an active limit
//! that abandonment moves on, `POSITION_EXPIRED` and re-entry at the back. The draw at
//! the opening and a confirmed order freeing its slot are end-to-end tests
//! (`tests/tests/line.rs`), since they need the worker.

mod support;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{now_ms, seed_event, unique_event, Client, Edge, Response};

const ADMIN: &str = "op-secret";

fn edge(extra: &[(&str, &str)]) -> Edge {
    let mut env = vec![
        ("ROOM_TOKEN_SECRET", "line-tests"),
        ("ADMIN_TOKEN", ADMIN),
        // One core: every request sees the same copy of the event.
        ("EDGE_THREADS", "1"),
        ("EVENT_REFRESH_MS", "50"),
    ];
    env.extend_from_slice(extra);
    Edge::start(&env)
}

fn admission(c: &mut Client, event: &str, body: &Value) -> Response {
    let path = format!("/admin/events/{event}/admission");
    let body = body.to_string();
    let raw = format!(
        "POST {path} HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {ADMIN}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    c.request(raw.as_bytes())
}

fn enter(c: &mut Client, event: &str, user: &str) -> Response {
    c.post(
        "/public/enter",
        None,
        &json!({"userId": user, "eventId": event}),
    )
}

fn status(c: &mut Client, token: &str) -> Response {
    c.get_with(&format!("/public/room-status?token={token}"), "")
}

fn token(r: &Response) -> String {
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    r.json()["roomToken"]
        .as_str()
        .expect("roomToken")
        .to_owned()
}

fn code(r: &Response) -> (u16, String) {
    (r.status, r.error_code())
}

/// Polls `check` until it holds; panics after `within`.
fn until(within: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !check() {
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn reject_refuses_entries_and_passthrough_admits_at_once() {
    let edge = edge(&[]);
    let event = unique_event("modes");
    seed_event(&event, &[("A", 10, 1)], now_ms() + 3_600_000, 100);
    let mut c = edge.connect();
    let waiting = token(&enter(&mut c, &event, "early"));

    let r = admission(&mut c, &event, &json!({"queueing": "reject"}));
    assert_eq!(
        (r.status, r.json()["queueing"].as_str()),
        (200, Some("reject"))
    );
    until(Duration::from_secs(2), "reject in force", || {
        enter(&mut c, &event, "late").status == 403
    });
    assert_eq!(
        code(&enter(&mut c, &event, "late")),
        (403, "ROOM_CLOSED".into())
    );
    // Those in line keep their place.
    let r = status(&mut c, &waiting);
    assert_eq!((r.status, r.json()["position"].as_u64()), (200, Some(1)));
    assert_eq!(r.json()["ready"], false);

    let r = admission(&mut c, &event, &json!({"queueing": "passthrough"}));
    assert_eq!(r.status, 200);
    until(Duration::from_secs(2), "passthrough in force", || {
        status(&mut c, &waiting).json()["ready"] == true
    });
    let late = enter(&mut c, &event, "late");
    assert_eq!(
        (
            late.json()["position"].as_u64(),
            late.json()["etaSec"].as_u64()
        ),
        (Some(2), Some(0))
    );
    let r = c.post(
        "/public/hold",
        Some(&token(&late)),
        &json!({"eventId": event, "seatId": "A-1"}),
    );
    assert_eq!(r.status, 201, "admitted before the opening, by passthrough");

    let r = admission(&mut c, &event, &json!({"queueing": "lottery"}));
    assert_eq!(code(&r), (400, "INVALID_FIELD".into()));
}

#[test]
fn an_active_limit_admits_that_many_and_abandonment_moves_the_line_on() {
    let edge = edge(&[("ABANDON_AFTER_MS", "1500")]);
    let event = unique_event("active");
    seed_event(&event, &[("A", 10, 1)], 0, 1_000_000);
    let mut c = edge.connect();
    let r = admission(&mut c, &event, &json!({"activeLimit": 2}));
    assert_eq!((r.status, r.json()["activeLimit"].as_u64()), (200, Some(2)));
    until(
        Duration::from_secs(2),
        "the core's copy has the limit",
        || c.get_with(&format!("/public/fairness/{event}"), "").json()["activeLimit"] == 2,
    );
    let tokens: Vec<String> = ["u1", "u2", "u3"]
        .iter()
        .map(|u| token(&enter(&mut c, &event, u)))
        .collect();
    let ready = |c: &mut Client, t: &str| {
        let r = status(c, t);
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        r.json()["ready"].as_bool().expect("ready")
    };
    until(Duration::from_secs(2), "the first two admitted", || {
        ready(&mut c, &tokens[0]) && ready(&mut c, &tokens[1])
    });
    assert!(!ready(&mut c, &tokens[2]), "a third past a limit of two");
    let r = c.post(
        "/public/hold",
        Some(&tokens[2]),
        &json!({"eventId": event, "seatId": "A-1"}),
    );
    assert_eq!(code(&r), (403, "NOT_ADMITTED".into()));

    // u1 stops polling; u2 and u3 keep polling. Once u1 has not been seen for
    // ABANDON_AFTER_MS, its slot goes to u3.
    let started = Instant::now();
    until(Duration::from_secs(6), "u3 admitted after u1 left", || {
        assert!(ready(&mut c, &tokens[1]), "u2 stays admitted while polling");
        ready(&mut c, &tokens[2])
    });
    assert!(
        started.elapsed() >= Duration::from_millis(1_000),
        "u3 admitted before u1 could have been abandoned"
    );

    // u1 comes back: the place is gone; entering again puts u1 at the back.
    assert_eq!(
        code(&status(&mut c, &tokens[0])),
        (410, "POSITION_EXPIRED".into())
    );
    let again = enter(&mut c, &event, "u1");
    assert_eq!(again.json()["position"].as_u64(), Some(4));
    let fresh = token(&again);
    assert!(!ready(&mut c, &fresh), "at the back, behind the limit");
    // The old token stays expired; the new one is the place.
    assert_eq!(
        code(&status(&mut c, &tokens[0])),
        (410, "POSITION_EXPIRED".into())
    );
}

#[test]
fn a_pre_queue_is_committed_before_it_opens_and_locked_while_open() {
    let edge = edge(&[]);
    let event = unique_event("prequeue");
    let open = now_ms() + 3_600_000;
    seed_event(&event, &[("A", 10, 1)], open, 100);
    let mut c = edge.connect();

    let r = admission(&mut c, &event, &json!({"prequeueAtMs": open}));
    assert_eq!(
        code(&r),
        (400, "INVALID_FIELD".into()),
        "not before the opening"
    );
    let prequeue = now_ms() + 1_500;
    let r = admission(
        &mut c,
        &event,
        &json!({"prequeueAtMs": prequeue, "queueing": "random"}),
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let committed = r.json()["seedHash"].as_str().expect("seedHash").to_owned();
    assert_eq!(committed.len(), 64);

    // Published before anyone can enter; the seed itself is not.
    let mut fairness = Value::Null;
    until(Duration::from_secs(2), "the commitment published", || {
        fairness = c.get_with(&format!("/public/fairness/{event}"), "").json();
        fairness["seedHash"] == committed.as_str()
    });
    assert_eq!(fairness["seed"], Value::Null);
    assert_eq!(fairness["queueing"], "random");
    assert_eq!(fairness["prequeueAtMs"].as_u64(), Some(prequeue));

    // The commitment is made once: a later change keeps it.
    let r = admission(&mut c, &event, &json!({"prequeueAtMs": prequeue + 1}));
    assert_eq!(r.json()["seedHash"].as_str(), Some(committed.as_str()));

    let r = enter(&mut c, &event, "too-early");
    assert_eq!(code(&r), (403, "ROOM_CLOSED".into()));
    until(Duration::from_secs(5), "the pre-queue open", || {
        enter(&mut c, &event, "u1").status == 200
    });
    let r = enter(&mut c, &event, "u1");
    assert_eq!(
        r.json()["position"].as_u64(),
        Some(0),
        "drawn at the opening"
    );
    assert!(r.json()["etaSec"].as_u64().expect("eta") >= 3_590);
    let t = token(&r);
    let s = status(&mut c, &t);
    assert_eq!(
        (s.json()["position"].as_u64(), &s.json()["ready"]),
        (Some(0), &json!(false))
    );
    let r = c.post(
        "/public/hold",
        Some(&t),
        &json!({"eventId": event, "seatId": "A-1"}),
    );
    assert_eq!(code(&r), (403, "NOT_ADMITTED".into()));

    // Open and not drawn: neither the pre-queue nor the queueing may change.
    let r = admission(&mut c, &event, &json!({"prequeueAtMs": prequeue + 10}));
    assert_eq!(code(&r), (409, "FAIRNESS_LOCKED".into()));
    let r = admission(&mut c, &event, &json!({"queueing": "fifo"}));
    assert_eq!(code(&r), (409, "FAIRNESS_LOCKED".into()));
    let r = admission(&mut c, &event, &json!({"rate": 5}));
    assert_eq!(r.status, 200, "the rate may change");
}

/// An event stream's head and the events read from it, raw.
struct Events {
    stream: std::net::TcpStream,
    buf: Vec<u8>,
}

impl Events {
    fn open(edge: &Edge, token: &str, last_event_id: Option<u64>) -> (String, Events) {
        use std::io::Write;
        let c = edge.connect();
        let mut stream = c.stream;
        let last = last_event_id
            .map(|id| format!("Last-Event-ID: {id}\r\n"))
            .unwrap_or_default();
        write!(
            stream,
            "GET /public/room-events?token={token} HTTP/1.1\r\nHost: t\r\nAccept: text/event-stream\r\n{last}\r\n"
        )
        .expect("write");
        let mut events = Events {
            stream,
            buf: Vec::new(),
        };
        let head = events.until(b"\r\n\r\n");
        (head, events)
    }

    /// The bytes up to and including `end`; panics if the stream ends first.
    fn until(&mut self, end: &[u8]) -> String {
        use std::io::Read;
        loop {
            if let Some(i) = self.buf.windows(end.len()).position(|w| w == end) {
                let part: Vec<u8> = self.buf.drain(..i + end.len()).collect();
                return String::from_utf8(part).expect("UTF-8");
            }
            let mut chunk = [0u8; 4096];
            let n = self.stream.read(&mut chunk).expect("read (timed out?)");
            assert!(
                n > 0,
                "stream ended: {:?}",
                String::from_utf8_lossy(&self.buf)
            );
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// The next event (comments skipped): its id and data.
    fn next(&mut self) -> (u64, Value) {
        loop {
            let block = self.until(b"\n\n");
            let (mut id, mut data) = (None, None);
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("id: ") {
                    id = v.parse().ok();
                } else if let Some(v) = line.strip_prefix("data: ") {
                    data = serde_json::from_str(v).ok();
                }
            }
            if let (Some(id), Some(data)) = (id, data) {
                return (id, data);
            }
        }
    }

    fn is_closed(&mut self) -> bool {
        use std::io::Read;
        let mut chunk = [0u8; 64];
        matches!(self.stream.read(&mut chunk), Ok(0))
    }
}

#[test]
fn an_event_stream_delivers_ready_without_polling() {
    let edge = edge(&[]);
    let event = unique_event("sse");
    // Opens in a second and a half: the stream's own timer sends `ready`.
    seed_event(&event, &[("A", 10, 1)], now_ms() + 1_500, 1_000_000);
    let mut c = edge.connect();
    let t = token(&enter(&mut c, &event, "streamer"));

    let (head, mut events) = Events::open(&edge, &t, None);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/event-stream"),
        "{head}"
    );
    assert_eq!(events.until(b"\n\n"), "retry: 3000\n\n");
    let (id, first) = events.next();
    assert_eq!(
        (id, &first["ready"], &first["position"]),
        (1, &json!(false), &json!(1))
    );
    assert!(first["etaSec"].as_u64().expect("etaSec") >= 1);
    let (id, ready) = events.next();
    assert_eq!(
        (id, &ready["ready"], &ready["etaSec"]),
        (2, &json!(true), &json!(0))
    );
    assert!(
        events.is_closed(),
        "ready is sent once, then the stream ends"
    );

    // A reconnection goes on from Last-Event-ID.
    let (_, mut again) = Events::open(&edge, &t, Some(41));
    assert_eq!(again.until(b"\n\n"), "retry: 3000\n\n");
    let (id, state) = again.next();
    assert_eq!((id, &state["ready"]), (42, &json!(true)));

    let r = c.get_with("/public/room-events?token=forged", "");
    assert_eq!(code(&r), (401, "TOKEN_INVALID".into()));
}

#[test]
fn an_admission_change_is_pushed_to_the_streams() {
    let edge = edge(&[]);
    let event = unique_event("push");
    seed_event(&event, &[("A", 10, 1)], now_ms() + 3_600_000, 100);
    let mut c = edge.connect();
    let streams: Vec<Events> = (0..20)
        .map(|i| {
            let t = token(&enter(&mut c, &event, &format!("s{i}")));
            let (_, mut events) = Events::open(&edge, &t, None);
            let (_, first) = events.next();
            assert_eq!(first["ready"], false);
            assert!(first["etaSec"].as_u64().expect("etaSec") >= 3_590);
            events
        })
        .collect();
    let r = admission(
        &mut c,
        &event,
        &json!({"openAtMs": now_ms(), "rate": 1_000_000}),
    );
    assert_eq!(r.status, 200);
    for mut events in streams {
        let (_, pushed) = events.next();
        assert_eq!(pushed["ready"], true, "pushed without a poll");
    }
}

/// `count` buyers of `event`, each with its stream open and its first event read.
fn open_streams(edge: &Edge, c: &mut Client, event: &str, count: usize) -> Vec<Events> {
    (0..count)
        .map(|i| {
            let t = token(&enter(c, event, &format!("s{i}")));
            let (_, mut events) = Events::open(edge, &t, None);
            assert_eq!(events.next().1["ready"], false);
            events
        })
        .collect()
}

#[test]
fn a_push_larger_than_a_batch_reaches_every_stream() {
    // 150 streams: three of the push's batches (`rooms::PUSH_BATCH`, 64), a tick apart.
    let edge = edge(&[]);
    let event = unique_event("batches");
    seed_event(&event, &[("A", 10, 1)], now_ms() + 3_600_000, 100);
    let mut c = edge.connect();
    let streams = open_streams(&edge, &mut c, &event, 150);
    let later = now_ms() + 7_200_000;
    let r = admission(&mut c, &event, &json!({"openAtMs": later}));
    assert_eq!(r.status, 200);
    for mut events in streams {
        let (id, pushed) = events.next();
        assert_eq!(id, 2);
        assert!(pushed["etaSec"].as_u64().expect("etaSec") >= 7_190);
    }
}

#[test]
fn streams_whose_clients_all_leave_at_once_all_end() {
    // 200 clients gone at once: their ends are paced (`rooms::Ends`, 64 a tick), and
    // every one of them ends, none left waiting for a turn.
    let edge = edge(&[]);
    let metrics = support::metrics_addr(&edge);
    let event = unique_event("leave");
    seed_event(&event, &[("A", 10, 1)], now_ms() + 3_600_000, 100);
    let mut c = edge.connect();
    let open = |text: &str| support::value(text, "maxtps_edge_connections_open");
    let streams = open_streams(&edge, &mut c, &event, 200);
    assert_eq!(open(&support::scrape(&metrics, None).1), 201);
    drop(streams);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now_open = open(&support::scrape(&metrics, None).1);
        if now_open == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{now_open} connections still open, 1 expected (the control connection)"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // The core still answers, and new streams still open and end.
    let again = open_streams(&edge, &mut c, &event, 3);
    drop(again);
    assert_eq!(enter(&mut c, &event, "s0").status, 200);
}

#[test]
fn sigterm_ends_the_open_streams_and_the_edge_exits() {
    // A drain shuts every idle stream down; their ends take turns (`rooms::Ends`), and
    // the edge still exits once the last has ended: within `wait_exit`'s 10 s, half
    // the grace (`EDGE_SHUTDOWN_GRACE_MS`, 20 s) after which it would exit anyway.
    let mut edge = edge(&[]);
    let event = unique_event("drain");
    seed_event(&event, &[("A", 10, 1)], now_ms() + 3_600_000, 100);
    let mut c = edge.connect();
    let mut streams = open_streams(&edge, &mut c, &event, 150);
    drop(c);
    edge.signal("TERM");
    assert_eq!(edge.wait_exit().code(), Some(0));
    for events in &mut streams {
        assert!(events.is_closed(), "a stream left open by the drain");
    }
}
