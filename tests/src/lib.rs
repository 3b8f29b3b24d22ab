//! End-to-end tests of the whole system: the real `edge` and `worker run` binaries
//! against the local stack's Redis and PostgreSQL (`make test` exports `REDIS_URL` and
//! `DATABASE_URL`), and moto's server for the aws profile. The tests live in
//! `tests/tests/`; this library is their harness.
//!
//! # Layout
//! - [`bin`]: where the binaries are (`target/debug/{edge,worker}`, or under
//!   `CARGO_TARGET_DIR`, which `cargo test --workspace` builds before any test runs).
//! - [`Proc`]: a running binary; its stderr is echoed and watched for a readiness line;
//!   killed when dropped.
//! - [`Http`]: one request per connection to the edge, raw HTTP/1.1; [`scrape`]: a
//!   `GET /metrics` of an edge or a worker.
//! - [`Moto`]: a private moto server (SQS queue with its DLQ, the DynamoDB hold table).
//! - [`unique_event`], [`seed`], [`drop_event`]: an event of the test's own;
//!   [`worker_cli`]: a one-off `worker` command against a Redis of the test's choice.

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    path::PathBuf,
    process::{Child, Command, ExitStatus, Stdio},
    sync::mpsc,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

/// Upper bound for anything a test waits for; a hang fails instead of blocking CI.
pub const WAIT: Duration = Duration::from_secs(20);

/// The variable's value; panics with what to do when the stack's environment is missing.
pub fn env(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!(
            "{var} is not set. The end-to-end tests need the local Redis and PostgreSQL: run \
             `make test`, or `make services` and then `set -a; eval \"$(infra/local/stack.sh env)\"; \
             cargo test --workspace`"
        )
    })
}

/// A workspace binary built in debug mode; panics with what to do when it is missing.
pub fn bin(name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"),
        PathBuf::from,
    );
    let dir = std::env::var_os("E2E_BIN_DIR").map_or_else(|| target.join("debug"), PathBuf::from);
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "{} is missing: the end-to-end tests run the workspace's binaries. Build them with \
         `cargo build -p edge -p worker` (`cargo test --workspace` builds them first), or \
         point E2E_BIN_DIR at them",
        path.display()
    );
    path
}

/// A fresh event id, so tests never share state.
pub fn unique_event(tag: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "e2e_{tag}_{}_{}",
        std::process::id(),
        nanos % 1_000_000_000_000
    )
}

/// `worker migrate`, then `worker seed EVENT ...`, with the stack's environment; panics
/// when either fails. Migrating first keeps a test independent of which test (or `make
/// run`) touched the database before: on a fresh machine nothing has.
pub fn seed(event: &str, args: &[&str]) {
    let redis = env("REDIS_URL");
    worker_cli(&redis, &["migrate"]);
    worker_cli(&redis, &[&["seed", event][..], args].concat());
}

/// [`seed`] an event of ten seats in section A at 50,000, open since a minute and
/// admitting everyone, with `extra` flags after those (a later flag wins).
pub fn seed_open(event: &str, extra: &[&str]) {
    let base = [
        "--sections",
        "A",
        "--seats-per-section",
        "10",
        "--price",
        "50000",
        "--open-in-secs",
        "-60",
        "--rate",
        "1000000",
    ];
    seed(event, &[&base[..], extra].concat());
}

/// `worker ARGS` (a one-off command: `seed`, `rebuild-redis`, ...) against the Redis at
/// `redis_url` and the stack's PostgreSQL; panics when it fails.
pub fn worker_cli(redis_url: &str, args: &[&str]) {
    let out = Command::new(bin("worker"))
        .args(args)
        .env("DATABASE_URL", env("DATABASE_URL"))
        .env("REDIS_URL", redis_url)
        .output()
        .expect("run worker");
    assert!(
        out.status.success(),
        "worker {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Removes the event from PostgreSQL (payment callbacks, orders, seats, payments,
/// catalog) and its keys from Redis.
pub async fn drop_event(event: &str) {
    let config: tokio_postgres::Config = env("DATABASE_URL").parse().expect("DATABASE_URL");
    let pg = worker::db::connect(&config).await.expect("PostgreSQL");
    for sql in [
        "DELETE FROM payment_callbacks WHERE event_id = $1",
        "DELETE FROM sold_seats WHERE event_id = $1",
        "DELETE FROM payments p USING orders o WHERE p.order_id = o.order_id AND o.event_id = $1",
        "DELETE FROM orders WHERE event_id = $1",
        "DELETE FROM events WHERE event_id = $1",
    ] {
        pg.execute(sql, &[&event]).await.expect(sql);
    }
    let config = worker::redis::RedisConfig::from_url(&env("REDIS_URL")).expect("REDIS_URL");
    let mut redis = worker::redis::Conn::connect(&config).await.expect("Redis");
    let pattern = format!("ev:{{{event}}}:*");
    let reply = redis
        .query(&[b"KEYS", pattern.as_bytes()])
        .await
        .expect("KEYS");
    if let worker::redis::Frame::Array(found) = reply {
        for key in found {
            if let worker::redis::Frame::BulkString(key) = key {
                redis.query(&[b"DEL", &key]).await.expect("DEL");
            }
        }
    }
}

/// A running binary, killed (and reaped) when dropped.
pub struct Proc {
    name: &'static str,
    child: Child,
    log: mpsc::Receiver<String>,
}

impl Proc {
    /// Starts `bin(name) args` with `env` and waits (bounded) for a stderr line holding
    /// `ready`; returns the process and that line.
    pub fn start(
        name: &'static str,
        args: &[&str],
        env: &[(&str, String)],
        ready: &str,
    ) -> (Proc, String) {
        let mut command = Command::new(bin(name));
        // Several edges and workers run at once here; each scrape on a port of its own.
        command
            .env("METRICS_ADDR", "127.0.0.1:0")
            .env("WORKER_METRICS_ADDR", "127.0.0.1:0");
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        if name == "edge" {
            // Tests send many requests from one address: abuse limits off unless asked.
            command.env("RATE_LIMITS", "off");
        }
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        let stderr = child.stderr.take().expect("stderr");
        let (tx, log) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[{name}] {line}");
                // The test may have stopped listening; keep echoing.
                let _ = tx.send(line);
            }
        });
        let mut proc = Proc { name, child, log };
        let line = proc.wait_for_line(ready);
        (proc, line)
    }

    /// The first stderr line from now holding `needle`, waiting at most [`WAIT`].
    pub fn wait_for_line(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.log.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(e) => panic!("{}: no log line with {needle:?}: {e}", self.name),
            }
        }
    }

    /// Sends `signal` (`STOP`, `CONT`, `TERM`, ...).
    pub fn signal(&self, signal: &str) {
        let sent = Command::new("kill")
            .args(["-s", signal, &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(sent.success(), "kill -s {signal} {}", self.name);
    }

    /// SIGTERM, then waits (bounded) for the exit.
    pub fn terminate(&mut self) -> ExitStatus {
        self.signal("TERM");
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "{} did not exit", self.name);
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The address in an edge's `listening addr=...` line.
pub fn listening_addr(line: &str) -> SocketAddr {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix("addr="))
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no addr= in {line:?}"))
}

/// `GET /metrics` of the process whose `serving metrics addr=...` line this is: the
/// body of its 200 answer.
pub fn scrape(proc_line: &str) -> String {
    let addr = listening_addr(proc_line);
    let mut s = TcpStream::connect(addr).expect("connect to metrics");
    s.set_read_timeout(Some(WAIT)).expect("timeout");
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: m\r\n\r\n")
        .expect("write");
    let mut raw = String::new();
    s.read_to_string(&mut raw).expect("read to the close");
    let (head, body) = raw.split_once("\r\n\r\n").expect("a head");
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    body.to_owned()
}

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "{e}: status {}, body {:?}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// The edge, one request per connection (`Connection: close`).
#[derive(Debug, Clone, Copy)]
pub struct Http {
    pub addr: SocketAddr,
}

impl Http {
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&serde_json::Value>,
    ) -> Response {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let mut raw = format!("{method} {path} HTTP/1.1\r\nHost: e2e\r\nConnection: close\r\n");
        for (k, v) in headers {
            raw.push_str(&format!("{k}: {v}\r\n"));
        }
        if !body.is_empty() {
            raw.push_str("Content-Type: application/json\r\n");
        }
        raw.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
        let mut stream = TcpStream::connect(self.addr).expect("connect to the edge");
        stream.set_read_timeout(Some(WAIT)).expect("timeout");
        stream.write_all(raw.as_bytes()).expect("write");
        let mut bytes = Vec::new();
        stream.read_to_end(&mut bytes).expect("read the response");
        let split = bytes
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or_else(|| panic!("no response head: {:?}", String::from_utf8_lossy(&bytes)));
        let head = String::from_utf8_lossy(&bytes[..split]).into_owned();
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line in {head:?}"));
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
            .collect();
        Response {
            status,
            headers,
            body: bytes[split + 4..].to_vec(),
        }
    }
}

pub const REGION: &str = "ap-northeast-2";
/// The DynamoDB table the aws edge mirrors holds into.
pub const HOLD_TABLE: &str = "seat-holds";

/// A private moto server (PyPI `moto[server]` in `.run/venv`, from `make deps`).
pub struct Moto {
    child: Child,
    pub port: u16,
}

impl Moto {
    pub fn start() -> Moto {
        let bin = concat!(env!("CARGO_MANIFEST_DIR"), "/../.run/venv/bin/moto_server");
        let port = TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port();
        let child = Command::new(bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{bin}: {e} (run `make deps` to install moto)"));
        let deadline = Instant::now() + WAIT;
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "moto_server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Moto { child, port }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// What the AWS SDK in the edge and the worker reads to talk to this server.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint()),
            ("AWS_REGION", REGION.into()),
            ("AWS_ACCESS_KEY_ID", "test".into()),
            ("AWS_SECRET_ACCESS_KEY", "test".into()),
            ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ]
    }

    async fn sdk(&self) -> aws_config::SdkConfig {
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(self.endpoint())
            .region(aws_config::Region::new(REGION))
            .credentials_provider(aws_sdk_sqs::config::Credentials::new(
                "test", "test", None, None, "test",
            ))
            .load()
            .await
    }

    /// The commit queue (FIFO, dead letters to a FIFO DLQ after 5 receives) and the
    /// hold mirror table, as `infra/` makes them; returns the queue's URL.
    pub async fn create_resources(&self) -> String {
        use aws_sdk_dynamodb::types::{
            AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
        };
        use aws_sdk_sqs::types::QueueAttributeName;
        let sdk = self.sdk().await;
        let sqs = aws_sdk_sqs::Client::new(&sdk);
        let dlq = sqs
            .create_queue()
            .queue_name("commits-dlq.fifo")
            .attributes(QueueAttributeName::FifoQueue, "true")
            .send()
            .await
            .expect("create the DLQ");
        let arn = sqs
            .get_queue_attributes()
            .queue_url(dlq.queue_url().expect("url"))
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .expect("DLQ attributes")
            .attributes()
            .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
            .expect("DLQ arn");
        let redrive = serde_json::json!({"deadLetterTargetArn": arn, "maxReceiveCount": 5});
        let queue = sqs
            .create_queue()
            .queue_name("commits.fifo")
            .attributes(QueueAttributeName::FifoQueue, "true")
            .attributes(QueueAttributeName::RedrivePolicy, redrive.to_string())
            .send()
            .await
            .expect("create the queue");
        let dynamo = aws_sdk_dynamodb::Client::new(&sdk);
        dynamo
            .create_table()
            .table_name(HOLD_TABLE)
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
                    .expect("attribute"),
            )
            .billing_mode(BillingMode::PayPerRequest)
            .send()
            .await
            .expect("create the hold table");
        queue.queue_url().expect("url").to_owned()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
