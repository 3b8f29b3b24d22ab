//! Starts the real `edge` binary on a free port and talks raw HTTP/1.1 to it.

#![allow(dead_code)]

pub mod moto;
pub mod redis_cluster;
pub mod redis_server;

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpStream},
    process::{Child, Command, ExitStatus, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

/// Upper bound for anything a test waits for; a hang fails instead of blocking CI.
pub const WAIT: Duration = Duration::from_secs(10);

pub struct Edge {
    child: Child,
    pub addr: SocketAddr,
    pub log: mpsc::Receiver<String>,
}

impl Edge {
    pub fn start(env: &[(&str, &str)]) -> Edge {
        let env: Vec<(&str, String)> = env.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
        Self::start_owned(&env)
    }

    pub fn start_owned(env: &[(&str, String)]) -> Edge {
        Self::start_command(Command::new(edge_bin()), env)
    }

    /// Starts `cmd`, which runs the edge binary (itself or through a launcher).
    pub fn start_command(mut cmd: Command, env: &[(&str, String)]) -> Edge {
        // Status look-ups in PostgreSQL are the end-to-end tests' (tests/): these run
        // against Redis alone, whatever `make test` exported.
        // Tests send many requests from one address: the abuse limits are off unless a
        // test turns them on (edge/tests/limits.rs).
        cmd.env("EDGE_ADDR", "127.0.0.1:0")
            .env("METRICS_ADDR", "127.0.0.1:0")
            .env("EDGE_THREADS", "2")
            .env("RATE_LIMITS", "off")
            .env_remove("DATABASE_URL");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.stderr(Stdio::piped()).spawn().expect("spawn edge");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, log) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[edge] {line}");
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let line = wait_for_line(&log, " listening ");
        let addr = line
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix("addr="))
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no addr in {line:?}"));
        Edge { child, addr, log }
    }

    pub fn connect(&self) -> Client {
        let stream = TcpStream::connect(self.addr).expect("connect");
        stream.set_read_timeout(Some(WAIT)).expect("timeout");
        stream.set_nodelay(true).expect("nodelay");
        Client::from(stream)
    }

    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args(["-s", signal, &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// Waits (bounded) for the process to exit.
    pub fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "edge did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Edge {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The edge binary under test: cargo's, or `EDGE_TEST_BIN` when set (a copy taken right
/// after the build, where several checkouts share one target directory and another
/// build may replace cargo's between the build and the run).
pub fn edge_bin() -> std::ffi::OsString {
    std::env::var_os("EDGE_TEST_BIN").unwrap_or_else(|| env!("CARGO_BIN_EXE_edge").into())
}

/// The first log line containing `needle`, waiting at most [`WAIT`].
pub fn wait_for_line(log: &mpsc::Receiver<String>, needle: &str) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match log.recv_timeout(left) {
            Ok(line) if line.contains(needle) => return line,
            Ok(_) => {}
            Err(e) => panic!("no log line with {needle:?}: {e}"),
        }
    }
}

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("JSON body")
    }

    pub fn error_code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .expect("error.code")
            .to_owned()
    }
}

pub struct Client {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl From<TcpStream> for Client {
    fn from(stream: TcpStream) -> Client {
        Client {
            stream,
            buf: Vec::new(),
        }
    }
}

impl Client {
    pub fn send(&mut self, raw: &[u8]) {
        self.stream.write_all(raw).expect("write");
    }

    /// Writes `raw` and returns once the edge has read all of it: the client's send
    /// queue is acknowledged (the bytes are in the edge's socket) and the edge's receive
    /// queue is empty (a read of its took them), as `/proc/net/tcp` shows. The next
    /// write then reaches a later read.
    pub fn send_and_wait_read(&mut self, raw: &[u8]) {
        self.send(raw);
        let me = self.stream.local_addr().expect("local addr");
        let edge = self.stream.peer_addr().expect("peer addr");
        let deadline = Instant::now() + WAIT;
        loop {
            let table = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp");
            let sent = tcp_queues(&table, me, edge).map(|(tx, _)| tx);
            let unread = tcp_queues(&table, edge, me).map(|(_, rx)| rx);
            if sent == Some(0) && unread == Some(0) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "edge did not read: {sent:?} unacked, {unread:?} unread"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Reads one response; `head_only` for answers to HEAD.
    pub fn read_response_to(&mut self, head_only: bool) -> Response {
        loop {
            let mut fields = [httparse::EMPTY_HEADER; 64];
            let mut res = httparse::Response::new(&mut fields);
            if let httparse::Status::Complete(len) = res.parse(&self.buf).expect("valid response") {
                let status = res.code.expect("status");
                let headers: Vec<(String, String)> = res
                    .headers
                    .iter()
                    .map(|h| {
                        (
                            h.name.to_owned(),
                            String::from_utf8_lossy(h.value).into_owned(),
                        )
                    })
                    .collect();
                let length = headers
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                    .map_or(0, |(_, v)| v.parse().expect("content-length"));
                let length = if head_only { 0 } else { length };
                while self.buf.len() < len + length {
                    self.fill();
                }
                let body = self.buf[len..len + length].to_vec();
                self.buf.drain(..len + length);
                return Response {
                    status,
                    headers,
                    body,
                };
            }
            self.fill();
        }
    }

    pub fn read_response(&mut self) -> Response {
        self.read_response_to(false)
    }

    pub fn request(&mut self, raw: &[u8]) -> Response {
        self.send(raw);
        self.read_response()
    }

    fn fill(&mut self) {
        let mut chunk = [0u8; 16 * 1024];
        let n = self.stream.read(&mut chunk).expect("read (timed out?)");
        assert!(n > 0, "connection closed before a whole response");
        self.buf.extend_from_slice(&chunk[..n]);
    }

    /// True when the server closed the connection (end of stream or reset) with no
    /// more bytes; panics if it sends anything or stays open past [`WAIT`].
    pub fn is_closed(&mut self) -> bool {
        assert!(
            self.buf.is_empty(),
            "unread bytes: {:?}",
            String::from_utf8_lossy(&self.buf)
        );
        let mut chunk = [0u8; 1024];
        match self.stream.read(&mut chunk) {
            Ok(0) => true,
            Ok(n) => panic!(
                "unexpected bytes: {:?}",
                String::from_utf8_lossy(&chunk[..n])
            ),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => true,
            Err(e) => panic!("connection still open: {e}"),
        }
    }
}

/// `(tx_queue, rx_queue)` of the IPv4 TCP socket `local` -> `remote` in a
/// `/proc/net/tcp` table (addresses as the kernel prints them: the 32-bit address in
/// memory order, then the port, both in hex).
fn tcp_queues(table: &str, local: SocketAddr, remote: SocketAddr) -> Option<(u64, u64)> {
    let key = |addr: SocketAddr| match addr {
        SocketAddr::V4(a) => format!(
            "{:08X}:{:04X}",
            u32::from_ne_bytes(a.ip().octets()),
            a.port()
        ),
        SocketAddr::V6(_) => panic!("IPv4 only"),
    };
    let (local, remote) = (key(local), key(remote));
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.get(1) != Some(&local.as_str()) || fields.get(2) != Some(&remote.as_str()) {
            return None;
        }
        let (tx, rx) = fields.get(4)?.split_once(':')?;
        Some((
            u64::from_str_radix(tx, 16).ok()?,
            u64::from_str_radix(rx, 16).ok()?,
        ))
    })
}

/// The bytes of `POST path` with a JSON body and optional room token.
pub fn post(path: &str, token: Option<&str>, body: &serde_json::Value) -> Vec<u8> {
    let body = body.to_string();
    let token = token
        .map(|t| format!("x-room-token: {t}\r\n"))
        .unwrap_or_default();
    format!(
        "POST {path} HTTP/1.1\r\nHost: t\r\n{token}content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

pub fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").into_bytes()
}

/// The shared Redis of `make services` (`REDIS_URL`), as `host:port`.
pub fn redis_addr() -> String {
    let url = std::env::var("REDIS_URL").expect("REDIS_URL: run the tests with `make test`");
    url.trim_start_matches("redis://")
        .trim_end_matches('/')
        .to_owned()
}

/// One command to the shared Redis; the raw RESP reply.
pub fn redis(args: &[&str]) -> String {
    redis_at(&redis_addr(), args)
}

/// One command to the Redis at `addr` (`host:port`); the raw RESP reply.
pub fn redis_at(addr: &str, args: &[&str]) -> String {
    let mut s = TcpStream::connect(addr).expect("connect to Redis");
    s.set_read_timeout(Some(WAIT)).expect("timeout");
    let mut cmd = format!("*{}\r\n", args.len());
    for a in args {
        cmd.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    s.write_all(cmd.as_bytes()).expect("write");
    let mut buf = vec![0u8; 1 << 16];
    let n = s.read(&mut buf).expect("read");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// A fresh event id, so tests never share Redis state.
pub fn unique_event(tag: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock");
    format!(
        "t{tag}{}x{}",
        std::process::id(),
        nanos.as_nanos() % 1_000_000_000_000
    )
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64
}

/// Writes an event into Redis the way `worker seed` projects it: catalog JSON and
/// admission hash. `sections`: (id, seats, price).
pub fn seed_event(event: &str, sections: &[(&str, u32, u64)], open_at_ms: u64, rate: u64) {
    seed_event_at(&redis_addr(), event, sections, open_at_ms, rate);
}

/// [`seed_event`] into the Redis at `addr`.
pub fn seed_event_at(
    addr: &str,
    event: &str,
    sections: &[(&str, u32, u64)],
    open_at_ms: u64,
    rate: u64,
) {
    let redis = |args: &[&str]| redis_at(addr, args);
    let sections: Vec<_> = sections
        .iter()
        .map(|(id, seats, price)| serde_json::json!({"id": id, "seats": seats, "price": price}))
        .collect();
    let catalog = serde_json::json!({"eventId": event, "currency": "KRW", "sections": sections});
    assert_eq!(
        redis(&[
            "SET",
            &format!("ev:{{{event}}}:catalog"),
            &catalog.to_string()
        ]),
        "+OK\r\n"
    );
    let adm = format!("ev:{{{event}}}:adm");
    redis(&["DEL", &adm]);
    redis(&[
        "HSET",
        &adm,
        "openAtMs",
        &open_at_ms.to_string(),
        "rate",
        &rate.to_string(),
    ]);
}

impl Client {
    /// `POST path` with a JSON body and optional room token.
    pub fn post(&mut self, path: &str, token: Option<&str>, body: &serde_json::Value) -> Response {
        self.request(&post(path, token, body))
    }

    /// `GET path` with extra header lines (each ending in \r\n).
    pub fn get_with(&mut self, path: &str, headers: &str) -> Response {
        self.request(format!("GET {path} HTTP/1.1\r\nHost: t\r\n{headers}\r\n").as_bytes())
    }

    /// Enters the room as `user`; returns the token.
    pub fn enter(&mut self, event: &str, user: &str) -> String {
        let r = self.post(
            "/public/enter",
            None,
            &serde_json::json!({"userId": user, "eventId": event}),
        );
        assert_eq!(r.status, 200, "{:?}", String::from_utf8_lossy(&r.body));
        r.json()["roomToken"]
            .as_str()
            .expect("roomToken")
            .to_owned()
    }
}

/// The address the edge's `/metrics` listens on, from its log.
pub fn metrics_addr(edge: &Edge) -> String {
    let line = wait_for_line(&edge.log, "serving metrics");
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix("addr="))
        .expect("addr=")
        .to_owned()
}

/// `GET /metrics` (with `Accept: accept`) on `addr`: the head and the body.
pub fn scrape(addr: &str, accept: Option<&str>) -> (String, String) {
    let mut s = TcpStream::connect(addr).expect("connect to metrics");
    s.set_read_timeout(Some(WAIT)).expect("timeout");
    let accept = accept.map_or(String::new(), |a| format!("Accept: {a}\r\n"));
    write!(s, "GET /metrics HTTP/1.1\r\nHost: m\r\n{accept}\r\n").expect("write");
    let mut raw = String::new();
    s.read_to_string(&mut raw).expect("read to the close");
    let (head, body) = raw.split_once("\r\n\r\n").expect("a head");
    (head.to_owned(), body.to_owned())
}

/// The value of the sample `series` (name and labels as rendered) in a scrape.
pub fn value(text: &str, series: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {series} in\n{text}"))
        .parse()
        .expect("a whole number")
}
