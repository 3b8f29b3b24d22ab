//! The open-loop clock corrects coordinated omission: against a server that stalls for
//! one second once, the p99 loadgen reports shows the stall, while the service time (what
//! a closed-loop tool such as wrk measures: from each send) hides it.

use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use perf::{
    run::{run, Driver, RunSpec, Target},
    scenario::{Kind, Plan},
    schedule::Stage,
};

const STALL: Duration = Duration::from_secs(1);
/// The stall starts when this request arrives.
const STALL_AT: u64 = 1000;

/// A keep-alive HTTP/1.1 server, a thread per connection, answering every request with
/// a 200; when request STALL_AT arrives, every answer waits until one second later.
fn stalling_server() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let seen = Arc::new(AtomicU64::new(0));
    let stall_until: Arc<Mutex<Option<Instant>>> = Arc::new(Mutex::new(None));
    std::thread::spawn(move || {
        for stream in listener.incoming().map_while(Result::ok) {
            let (seen, stall_until) = (seen.clone(), stall_until.clone());
            std::thread::spawn(move || serve(stream, &seen, &stall_until));
        }
    });
    addr
}

fn serve(mut stream: TcpStream, seen: &AtomicU64, stall_until: &Mutex<Option<Instant>>) {
    let _ = stream.set_nodelay(true);
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            buf.drain(..end + 4);
            if seen.fetch_add(1, Ordering::SeqCst) + 1 == STALL_AT {
                *stall_until.lock().expect("lock") = Some(Instant::now() + STALL);
            }
            let until = *stall_until.lock().expect("lock");
            if let Some(until) = until {
                // The behaviour under test: the server stops answering for a second.
                std::thread::sleep(until.saturating_duration_since(Instant::now()));
            }
            if stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                .is_err()
            {
                return;
            }
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

#[test]
fn a_one_second_stall_shows_in_the_p99() {
    let addr = stalling_server();
    let target = Target {
        name: "stalling".into(),
        addr,
        cpu: Vec::new(),
    };
    let plan = Arc::new(Plan {
        kind: Kind::Ping,
        event: "none".into(),
        sections: vec!["A".into()],
        seats_per_section: 1,
        run_id: "test".into(),
        ping_path: "/".into(),
        poll: Duration::from_millis(100),
        journey_timeout: Duration::from_secs(1),
        addresses: None,
        abusers: 0,
        abuse_pct: 0,
        read_headers: String::new(),
    });
    let spec = RunSpec {
        label: "stall".into(),
        stages: vec![Stage {
            name: "1000/s".into(),
            rate: 1000.0,
            duration: Duration::from_secs(4),
            measured: true,
        }],
        connections: 16,
        threads: 1,
        timeout: Duration::from_secs(5),
        drop_after: Duration::from_secs(5),
        driver: Driver::Epoll,
        progress: false,
        trace: true,
        watch: Vec::new(),
        sample_every: Duration::from_secs(1),
    };
    let outcome = run(&target, &plan, &spec, &[]);
    let stage = outcome.report.measured().expect("a measured stage");
    let ping = &stage.endpoints[0];
    assert_eq!((ping.count, ping.errors), (4000, 0), "{:?}", ping.statuses);
    // About a quarter of the requests were due during the stall, waiting up to a second:
    // the slowest 1% all waited most of it.
    assert!(
        ping.latency.p99 >= 800_000,
        "corrected p99 {} µs should show the 1 s stall",
        ping.latency.p99
    );
    // Only the 16 requests in flight when it began saw the stall from their send: a
    // closed-loop tool's p99 would hide it.
    assert!(
        ping.service.p99 < 100_000,
        "service-time p99 {} µs",
        ping.service.p99
    );
    assert!(ping.service.max >= 800_000, "the in-flight requests waited");
    // The trace holds every request, by send time, in 100 ms buckets: the stall shows
    // as its slowest answer, sent before it began.
    let sent: u64 = outcome.trace.values().map(|b| b.sent).sum();
    let ok: u64 = outcome.trace.values().map(|b| b.ok).sum();
    assert_eq!((sent, ok), (4000, 4000));
    assert!(outcome.trace.keys().all(|ms| ms % 100 == 0));
    let slowest = outcome.trace.values().map(|b| b.max_service_us).max();
    assert!(slowest >= Some(800_000), "{slowest:?}");
}
