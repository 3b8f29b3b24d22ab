//! What operators see: `GET /metrics` on the edge's admin listener after a known set of
//! requests over real sockets, answered by two cores (exact counts, merged), and the
//! JSON logs.

mod support;

use std::{
    io::{Read, Write},
    net::TcpStream,
    time::{Duration, Instant},
};

use serde_json::json;
use support::{metrics_addr, scrape, seed_event, unique_event, value, Client, Edge};

#[test]
fn a_scrape_counts_every_request_by_route_status_and_code_across_two_cores() {
    let edge = Edge::start(&[
        ("ROOM_TOKEN_SECRET", "metrics-tests"),
        ("EDGE_THREADS", "2"),
    ]);
    let addr = metrics_addr(&edge);
    let event = unique_event("metrics");
    seed_event(&event, &[("A", 10, 100)], 0, 1_000_000);
    let mut sent_bytes = 0;
    let mut send = |c: &mut Client, raw: Vec<u8>| {
        sent_bytes += raw.len();
        c.request(&raw)
    };

    // 16 connections with 2 pings each: the kernel spreads them over both cores.
    let mut conns: Vec<Client> = (0..16).map(|_| edge.connect()).collect();
    for c in &mut conns {
        for _ in 0..2 {
            assert_eq!(send(c, support::get("/public/ping")).status, 200);
        }
    }
    let c = &mut conns[0];
    let mut enter = |c: &mut Client, user: &str| {
        let r = send(
            c,
            support::post(
                "/public/enter",
                None,
                &json!({"userId": user, "eventId": event}),
            ),
        );
        assert_eq!(r.status, 200);
        r.json()["roomToken"].as_str().expect("token").to_owned()
    };
    let (first, second) = (enter(c, "m1"), enter(c, "m2"));
    let hold = json!({"eventId": event, "seatId": "A-1"});
    let held = send(c, support::post("/public/hold", Some(&first), &hold));
    assert_eq!(held.status, 201);
    let taken = send(c, support::post("/public/hold", Some(&second), &hold));
    assert_eq!(
        (taken.status, taken.error_code().as_str()),
        (409, "SEAT_HELD")
    );
    for _ in 0..2 {
        assert_eq!(send(c, support::get("/nope")).status, 404);
    }
    let raw = b"POST /public/ping HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n".to_vec();
    assert_eq!(send(c, raw).status, 405);

    let (head, text) = scrape(&addr, None);
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(
        head.contains("content-type: text/plain; version=0.0.4"),
        "{head}"
    );
    let requests = |route: &str, status: u16| {
        value(
            &text,
            &format!("maxtps_edge_requests_total{{route=\"{route}\",status=\"{status}\"}}"),
        )
    };
    assert_eq!(requests("ping", 200), 32);
    assert_eq!(requests("ping", 405), 1);
    assert_eq!(requests("enter", 200), 2);
    assert_eq!(requests("hold", 201), 1);
    assert_eq!(requests("hold", 409), 1);
    assert_eq!(requests("other", 404), 2);
    let errors = |code: &str| {
        value(
            &text,
            &format!("maxtps_edge_errors_total{{code=\"{code}\"}}"),
        )
    };
    assert_eq!(errors("SEAT_HELD"), 1);
    assert_eq!(errors("NOT_FOUND"), 2);
    assert_eq!(errors("METHOD_NOT_ALLOWED"), 1);
    let ping = "{route=\"ping\"}";
    assert_eq!(
        value(
            &text,
            &format!("maxtps_edge_request_duration_seconds_count{ping}")
        ),
        33
    );
    assert_eq!(
        value(
            &text,
            "maxtps_edge_request_duration_seconds_bucket{route=\"ping\",le=\"+Inf\"}"
        ),
        33
    );
    let (core0, core1) = (
        value(&text, "maxtps_edge_core_requests_total{core=\"0\"}"),
        value(&text, "maxtps_edge_core_requests_total{core=\"1\"}"),
    );
    assert_eq!(core0 + core1, 39);
    assert!(
        core0 > 0 && core1 > 0,
        "both cores answered: {core0} + {core1}"
    );
    assert_eq!(
        value(&text, "maxtps_edge_received_bytes_total"),
        sent_bytes as u64
    );
    assert_eq!(value(&text, "maxtps_edge_connections_opened_total"), 16);
    assert_eq!(value(&text, "maxtps_edge_connections_open"), 16);

    // The Redis client's counters arrive within a second.
    let deadline = Instant::now() + support::WAIT;
    while value(&scrape(&addr, None).1, "maxtps_edge_redis_commands_total") == 0 {
        assert!(Instant::now() < deadline, "no Redis commands published");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_metrics_listener_speaks_openmetrics_when_asked_and_nothing_else() {
    let edge = Edge::start(&[]);
    let addr = metrics_addr(&edge);
    let (head, text) = scrape(&addr, Some("application/openmetrics-text; version=1.0.0"));
    assert!(
        head.contains("content-type: application/openmetrics-text; version=1.0.0"),
        "{head}"
    );
    assert!(text.contains("# TYPE maxtps_edge_connections_opened counter\n"));
    assert!(text.ends_with("# EOF\n"));

    let mut s = TcpStream::connect(&addr).expect("connect");
    s.write_all(b"GET /public/ping HTTP/1.1\r\nHost: m\r\n\r\n")
        .expect("write");
    let mut raw = String::new();
    s.read_to_string(&mut raw).expect("read");
    assert!(raw.starts_with("HTTP/1.1 404 "), "{raw}");

    // And the public port has no /metrics.
    let mut c = edge.connect();
    let r = c.request(&support::get("/metrics"));
    assert_eq!((r.status, r.error_code().as_str()), (404, "NOT_FOUND"));
}

/// `EDGE_LOG_FORMAT=json`: every line one JSON object; a failed request's line carries
/// the request id the client sent, the ALB's trace id, its error code and the cause; the
/// sampled access log (here every request) has the route, status and time.
#[test]
fn json_logs_carry_the_request_id_and_the_cause() {
    use std::io::BufRead;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_edge"))
        .env("EDGE_ADDR", "127.0.0.1:0")
        .env("METRICS_ADDR", "off")
        .env("EDGE_THREADS", "1")
        .env("EDGE_LOG_FORMAT", "json")
        .env("EDGE_ACCESS_LOG_SAMPLE", "1")
        .env("REDIS_URL", "redis://127.0.0.1:1")
        .env("REDIS_TIMEOUT_MS", "200")
        .env_remove("DATABASE_URL")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn edge");
    let mut lines = std::io::BufReader::new(child.stderr.take().expect("stderr")).lines();
    let mut next = || -> serde_json::Value {
        let line = lines.next().expect("a log line").expect("utf-8");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
    };
    let addr = loop {
        let line = next();
        if line["message"] == "listening" {
            break line["addr"].as_str().expect("addr").to_owned();
        }
    };
    let s = TcpStream::connect(&addr).expect("connect");
    s.set_read_timeout(Some(support::WAIT)).expect("timeout");
    let mut c = Client::from(s);
    let trace = "Root=1-67891233-abcdef012345678912345678;Sampled=1";
    let raw = format!(
        "GET /public/summary/e1/A HTTP/1.1\r\nHost: t\r\nx-request-id: req-json-42\r\nX-Amzn-Trace-Id: {trace}\r\n\r\n"
    );
    let r = c.request(raw.as_bytes());
    assert_eq!((r.status, r.error_code().as_str()), (503, "UNAVAILABLE"));
    let failed = loop {
        let line = next();
        if line["message"] == "request failed" {
            break line;
        }
    };
    let access = loop {
        let line = next();
        if line["message"] == "request" {
            break line;
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(failed["level"], "WARN");
    assert_eq!(failed["request_id"], "req-json-42");
    assert_eq!(failed["trace_id"], trace);
    assert_eq!(access["request_id"], "req-json-42");
    assert_eq!(access["trace_id"], trace);
    assert_eq!(access["route"], "summary");
    assert_eq!(access["status"], 503);
    assert!(access["micros"].is_u64(), "{access}");
    assert_eq!(failed["code"], "UNAVAILABLE");
    assert_eq!(failed["path"], "/public/summary/e1/A");
    assert!(
        failed["cause"].as_str().is_some_and(|c| !c.is_empty()),
        "{failed}"
    );
}

/// `METRICS_EMF=1`: valid CloudWatch EMF lines on stdout, whose per-route `Requests`
/// add up to the requests sent.
#[test]
fn emf_lines_on_stdout_count_the_requests() {
    use std::io::BufRead;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_edge"))
        .env("EDGE_ADDR", "127.0.0.1:0")
        .env("METRICS_ADDR", "off")
        .env("METRICS_EMF", "1")
        .env("METRICS_EMF_INTERVAL_MS", "100")
        .env("EDGE_THREADS", "2")
        .env_remove("DATABASE_URL")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn edge");
    let stderr = std::io::BufReader::new(child.stderr.take().expect("stderr"));
    let addr = stderr
        .lines()
        .map_while(Result::ok)
        .find(|l| l.contains(" listening ") && l.contains("drivers="))
        .and_then(|l| {
            l.split_whitespace()
                .find_map(|kv| kv.strip_prefix("addr=").map(str::to_owned))
        })
        .expect("the listening line");
    let mut c = Client::from(TcpStream::connect(&addr).expect("connect"));
    for _ in 0..5 {
        assert_eq!(c.request(&support::get("/public/ping")).status, 200);
    }
    let mut stdout = std::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
    let (mut pings, mut lines) = (0.0, 0);
    while pings < 5.0 {
        let line = stdout.next().expect("an EMF line").expect("utf-8");
        assert_eq!(codec::emf::invalid(&line), None, "{line}");
        let v: serde_json::Value = serde_json::from_str(&line).expect("JSON");
        if v["Route"] == "ping" {
            pings += v["Requests"].as_f64().expect("Requests");
        }
        lines += 1;
        assert!(lines < 1_000, "no ping lines");
    }
    assert_eq!(pings, 5.0);
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn cached_reads_count_hits_and_renderings_and_new_routes_have_names() {
    let edge = Edge::start(&[("EDGE_THREADS", "1"), ("PUBLIC_CACHE_MS", "60000")]);
    let addr = metrics_addr(&edge);
    let event = unique_event("mcache");
    seed_event(&event, &[("A", 10, 100), ("B", 10, 100)], 0, 1_000_000);
    let mut c = edge.connect();
    let get = |c: &mut Client, path: &str| c.request(&support::get(path)).status;
    for _ in 0..3 {
        assert_eq!(get(&mut c, &format!("/public/summary/{event}/A")), 200);
    }
    assert_eq!(get(&mut c, &format!("/public/summary/{event}/B")), 200);
    for _ in 0..2 {
        assert_eq!(get(&mut c, &format!("/public/seats/{event}")), 200);
    }
    assert_eq!(get(&mut c, &format!("/public/fairness/{event}")), 200);
    assert_eq!(
        get(&mut c, &format!("/public/challenge?eventId={event}")),
        200
    );

    let text = scrape(&addr, None).1;
    let cache = |route: &str, result: &str| {
        value(
            &text,
            &format!("maxtps_edge_cache_requests_total{{route=\"{route}\",result=\"{result}\"}}"),
        )
    };
    // One rendering per section (A, B) and per seat map; the rest from the cache.
    assert_eq!(cache("summary", "render"), 2);
    assert_eq!(cache("summary", "hit"), 2);
    assert_eq!(cache("seats", "render"), 1);
    assert_eq!(cache("seats", "hit"), 1);
    for route in ["fairness", "challenge"] {
        assert_eq!(
            value(
                &text,
                &format!("maxtps_edge_requests_total{{route=\"{route}\",status=\"200\"}}")
            ),
            1,
            "{route}"
        );
    }
}
