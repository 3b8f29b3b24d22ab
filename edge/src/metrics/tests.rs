use super::*;

#[test]
fn routes_are_named_by_their_first_two_segments() {
    let name = |path| ROUTES[route_of(path)];
    assert_eq!(name("/public/hold"), "hold");
    assert_eq!(name("/public/summary/E/A"), "summary");
    assert_eq!(name("/public/seats/E"), "seats");
    assert_eq!(name("/public/room-status"), "room_status");
    assert_eq!(name("/confirm/payment-intent"), "payment_intent");
    assert_eq!(name("/confirm/status"), "status");
    assert_eq!(name("/admin/events/E/admission"), "admin");
    assert_eq!(name("/admin"), "admin");
    assert_eq!(name("/public/room-events"), "room_events");
    assert_eq!(name("/public/challenge"), "challenge");
    assert_eq!(name("/public/fairness/E"), "fairness");
    assert_eq!(name("/administrator"), "other");
    assert_eq!(name("/public/"), "other");
    assert_eq!(name("/confirm/commit"), "commit");
    assert_eq!(name("/confirm/payment-callback"), "payment_callback");
    assert_eq!(name("/public"), "other");
    assert_eq!(name("/public/holdx"), "other");
    assert_eq!(name("/x/hold"), "other");
    assert_eq!(name(""), "other");
}

#[test]
fn buckets_hold_what_is_faster_than_their_bound() {
    assert_eq!(bucket(0), 0);
    assert_eq!(bucket(31), 0);
    assert_eq!(bucket(32), 1);
    assert_eq!(bucket(63), 1);
    assert_eq!(bucket(1_000), 5); // < 1024 µs
    assert_eq!(bucket((1 << 23) - 1), BUCKETS - 2);
    assert_eq!(bucket(1 << 23), BUCKETS - 1);
    assert_eq!(bucket(u64::MAX), BUCKETS - 1);
}

fn two_cores() -> Registry {
    let registry = Registry::default();
    let (a, b) = (registry.core(), registry.core());
    a.request(4, 201, 100, None);
    a.request(4, 201, 5_000, None);
    b.request(4, 409, 40, Some(ErrorCode::SeatHeld));
    b.request(OTHER_ROUTE, 418, 10, None);
    a.opened();
    b.opened();
    b.closed();
    registry
}

fn line<'t>(text: &'t str, start: &str) -> &'t str {
    text.lines()
        .find(|l| l.starts_with(start))
        .unwrap_or_else(|| panic!("no line {start:?} in\n{text}"))
}

#[test]
fn a_scrape_sums_the_cores() {
    let text = two_cores().render(false);
    assert_eq!(line(&text, "maxtps_edge_cores "), "maxtps_edge_cores 2");
    assert_eq!(
        line(
            &text,
            "maxtps_edge_requests_total{route=\"hold\",status=\"201\"}"
        ),
        "maxtps_edge_requests_total{route=\"hold\",status=\"201\"} 2"
    );
    assert_eq!(
        line(
            &text,
            "maxtps_edge_requests_total{route=\"other\",status=\"other\"}"
        ),
        "maxtps_edge_requests_total{route=\"other\",status=\"other\"} 1"
    );
    assert_eq!(
        line(&text, "maxtps_edge_errors_total{code=\"SEAT_HELD\"}"),
        "maxtps_edge_errors_total{code=\"SEAT_HELD\"} 1"
    );
    // 40 and 100 µs are under 128 µs, 5 ms under 8.192 ms.
    let bucket = |le: &str| {
        let start =
            format!("maxtps_edge_request_duration_seconds_bucket{{route=\"hold\",le=\"{le}\"}}");
        line(&text, &start)
            .rsplit(' ')
            .next()
            .expect("a value")
            .to_owned()
    };
    assert_eq!(bucket("0.000064"), "1");
    assert_eq!(bucket("0.000128"), "2");
    assert_eq!(bucket("0.004096"), "2");
    assert_eq!(bucket("0.008192"), "3");
    assert_eq!(bucket("+Inf"), "3");
    assert_eq!(
        line(
            &text,
            "maxtps_edge_request_duration_seconds_count{route=\"hold\"}"
        ),
        "maxtps_edge_request_duration_seconds_count{route=\"hold\"} 3"
    );
    assert_eq!(
        line(
            &text,
            "maxtps_edge_request_duration_seconds_sum{route=\"hold\"}"
        ),
        "maxtps_edge_request_duration_seconds_sum{route=\"hold\"} 0.00514"
    );
    assert_eq!(
        line(&text, "maxtps_edge_connections_open "),
        "maxtps_edge_connections_open 1"
    );
    assert!(
        !text.contains("route=\"enter\""),
        "no series for a route never asked"
    );
    assert!(!text.contains("# EOF"));
}

#[test]
fn openmetrics_names_counter_families_without_total_and_ends_with_eof() {
    let text = two_cores().render(true);
    assert!(
        text.contains("# TYPE maxtps_edge_requests counter\n"),
        "{text}"
    );
    assert!(text.contains("maxtps_edge_requests_total{route=\"hold\",status=\"201\"} 2\n"));
    assert!(text.ends_with("# EOF\n"));
    let prometheus = two_cores().render(false);
    assert!(prometheus.contains("# TYPE maxtps_edge_requests_total counter\n"));
}

#[test]
fn emf_lines_send_what_changed_since_the_last_ones() {
    let registry = two_cores();
    let mut last = Totals::default();
    let lines = registry.emf(&mut last, 1_700_000_000_000);
    for l in &lines {
        assert_eq!(codec::emf::invalid(l), None, "{l}");
    }
    let parsed: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).expect("JSON"))
        .collect();
    let hold = parsed.iter().find(|v| v["Route"] == "hold").expect("hold");
    assert_eq!(hold["Requests"], 3.0);
    assert_eq!(hold["Errors4xx"], 1.0);
    assert_eq!(hold["Errors5xx"], 0.0);
    // 40, 100 and 5,000 µs: the median is in the bucket up to 128 µs, p99 up to 8.192 ms.
    assert_eq!(hold["LatencyP50"], 0.128);
    assert_eq!(hold["LatencyP99"], 8.192);
    let edge = parsed
        .iter()
        .find(|v| v.get("Route").is_none())
        .expect("totals");
    assert_eq!(edge["Requests"], 4.0);
    assert_eq!(edge["ConnectionsOpen"], 1.0);

    // Nothing new: no route line, zero totals.
    let again = registry.emf(&mut last, 1_700_000_060_000);
    assert_eq!(again.len(), 1, "{again:?}");
    let edge: serde_json::Value = serde_json::from_str(&again[0]).expect("JSON");
    assert_eq!(edge["Requests"], 0.0);
}
