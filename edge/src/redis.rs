//! The per-core Redis client, split like tokio-postgres: [`Client`] is a cheap handle
//! that encodes each command straight into the connection's write buffer and waits
//! on a slot; the driver task (`driver`) owns the socket, writes everything queued
//! with one write (commands issued while a write is in flight join the next one:
//! automatic pipelining, no timer), and hands replies to slots in FIFO order.
//!
//! Failure is fast and typed: no connection, too many commands in flight, a deadline
//! passed, or the connection lost are each a [`RedisError`] at once; the HTTP layer
//! answers 503 with `Retry-After`. The driver reconnects with capped exponential
//! backoff and jitter.

mod config;
mod driver;
#[cfg(test)]
mod tests;

use std::{
    cell::RefCell,
    collections::VecDeque,
    future::{poll_fn, Future},
    pin::Pin,
    rc::Rc,
    task::{Context, Poll, Waker},
};

pub use config::RedisConfig;
pub use redis_protocol::resp2::types::BytesFrame as Frame;
use slab::Slab;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RedisError {
    #[error("redis: not connected")]
    Disconnected,
    #[error("redis: no reply within the deadline")]
    Timeout,
    #[error("redis: too many commands in flight")]
    Overloaded,
    /// An error reply (`-ERR ...`, `-WRONGTYPE ...`, `-NOSCRIPT ...`).
    #[error("redis: {0}")]
    Server(String),
    #[error("redis: protocol error: {0}")]
    Protocol(String),
}

impl RedisError {
    /// A label for counters and logs.
    pub const fn kind(&self) -> &'static str {
        match self {
            Self::Disconnected => "disconnected",
            Self::Timeout => "timeout",
            Self::Overloaded => "overloaded",
            Self::Server(_) => "server",
            Self::Protocol(_) => "protocol",
        }
    }
}

/// Counters of one client. `depth` counts writes by how many commands they carried:
/// bucket `i` holds writes of `2^i ..= 2^(i+1) - 1` commands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub commands: u64,
    pub replies: u64,
    pub writes: u64,
    pub server_errors: u64,
    pub timeouts: u64,
    pub overloaded: u64,
    pub disconnected: u64,
    pub reconnects: u64,
    pub noscript_retries: u64,
    pub depth: [u64; 16],
}

impl Stats {
    /// Mean commands per write.
    pub fn mean_depth(&self) -> f64 {
        self.commands
            .saturating_sub(self.disconnected + self.overloaded) as f64
            / self.writes.max(1) as f64
    }

    fn record_write(&mut self, commands: u32) {
        self.writes += 1;
        let bucket = (u32::BITS - 1 - commands.max(1).leading_zeros()) as usize;
        self.depth[bucket.min(self.depth.len() - 1)] += 1;
    }
}

/// A Lua script run by SHA1 (`EVALSHA`); on `NOSCRIPT` it is sent whole once
/// (`EVAL` also loads it into the server's script cache).
#[derive(Debug)]
pub struct Script {
    body: &'static str,
    sha: String,
}

impl Script {
    pub fn new(body: &'static str) -> Self {
        Self {
            body,
            sha: sha1_smol::Sha1::from(body).digest().to_string(),
        }
    }

    pub fn sha(&self) -> &str {
        &self.sha
    }
}

enum Slot {
    Waiting(Option<Waker>),
    Done(Result<Frame, RedisError>),
    /// Its caller stopped waiting (deadline); the reply is dropped when it comes.
    Abandoned,
}

struct Inner {
    config: RedisConfig,
    connected: bool,
    /// Commands encoded since the last write, and how many.
    wbuf: Vec<u8>,
    unwritten: u32,
    /// Slots of the commands sent or queued, in reply order.
    fifo: VecDeque<usize>,
    slots: Slab<Slot>,
    writer: Option<Waker>,
    on_connect: Vec<Waker>,
    /// Set when a reply is overdue with nothing answered since: the driver drops the
    /// connection and reconnects.
    stalled: bool,
    stats: Stats,
}

/// A handle to one core's Redis connection; clones share it.
#[derive(Clone)]
pub struct Client {
    inner: Rc<RefCell<Inner>>,
}

impl Client {
    /// Returns at once; the driver task connects in the background, and until it has,
    /// commands fail with [`RedisError::Disconnected`]. Call inside a monoio runtime
    /// with timers enabled.
    pub fn connect(config: RedisConfig) -> Client {
        let inner = Rc::new(RefCell::new(Inner {
            config,
            connected: false,
            wbuf: Vec::with_capacity(64 * 1024),
            unwritten: 0,
            fifo: VecDeque::new(),
            slots: Slab::new(),
            writer: None,
            on_connect: Vec::new(),
            stalled: false,
            stats: Stats::default(),
        }));
        monoio::spawn(driver::run(inner.clone()));
        Client { inner }
    }

    pub fn is_connected(&self) -> bool {
        self.inner.borrow().connected
    }

    /// Resolves once connected (immediately if already).
    pub async fn wait_connected(&self) {
        poll_fn(|cx| {
            let mut inner = self.inner.borrow_mut();
            if inner.connected {
                return Poll::Ready(());
            }
            inner.on_connect.push(cx.waker().clone());
            Poll::Pending
        })
        .await;
    }

    pub fn stats(&self) -> Stats {
        self.inner.borrow().stats
    }

    /// Sends one command now (it is encoded before this returns, so commands keep
    /// the order of the calls) and waits for its reply within the configured deadline.
    pub fn query(
        &self,
        args: &[&[u8]],
    ) -> impl Future<Output = Result<Frame, RedisError>> + 'static {
        self.query_parts(&[args])
    }

    /// Like [`Client::query`], the arguments being the concatenation of `groups`.
    pub fn query_parts(
        &self,
        groups: &[&[&[u8]]],
    ) -> impl Future<Output = Result<Frame, RedisError>> + 'static {
        let pending = self.send_parts(groups);
        let inner = self.inner.clone();
        async move {
            let slot = pending.slot;
            let deadline = inner.borrow().config.timeout;
            match monoio::time::timeout(deadline, pending).await {
                Ok(reply) => reply,
                Err(_elapsed) => {
                    let mut inner = inner.borrow_mut();
                    inner.stats.timeouts += 1;
                    // Nothing answered since this command was sent: the connection
                    // (or the server) is stuck, and every later reply waits behind it.
                    if slot.is_some() && inner.fifo.front().copied() == slot {
                        inner.stalled = true;
                        inner.wake_writer();
                    }
                    Err(RedisError::Timeout)
                }
            }
        }
    }

    /// Runs `script` by SHA: `EVALSHA` is sent now (like [`Client::query`]); on
    /// `NOSCRIPT` (after `SCRIPT FLUSH`, a failover or a restart) the script is sent
    /// whole once (`EVAL` also loads it into the server's cache).
    pub fn eval<'a>(
        &self,
        script: &'a Script,
        keys: &'a [&'a [u8]],
        args: &'a [&'a [u8]],
    ) -> impl Future<Output = Result<Frame, RedisError>> + 'a {
        let mut digits = [0u8; 20];
        let numkeys = decimal(keys.len(), &mut digits);
        let first = self.query_parts(&[&[b"EVALSHA", script.sha.as_bytes(), numkeys], keys, args]);
        let client = self.clone();
        async move {
            match first.await {
                Err(RedisError::Server(msg)) if msg.starts_with("NOSCRIPT") => {
                    client.inner.borrow_mut().stats.noscript_retries += 1;
                    let mut digits = [0u8; 20];
                    let numkeys = decimal(keys.len(), &mut digits);
                    let body = script.body.as_bytes();
                    client
                        .query_parts(&[&[b"EVAL", body, numkeys], keys, args])
                        .await
                }
                reply => reply,
            }
        }
    }

    /// Encodes the command into the write buffer now (so replies keep this order) and
    /// returns what waits for its reply, with no deadline.
    pub fn send_parts(&self, groups: &[&[&[u8]]]) -> Pending {
        let mut inner = self.inner.borrow_mut();
        inner.stats.commands += 1;
        let refused = if !inner.connected {
            inner.stats.disconnected += 1;
            Some(RedisError::Disconnected)
        } else if inner.fifo.len() >= inner.config.max_in_flight {
            inner.stats.overloaded += 1;
            Some(RedisError::Overloaded)
        } else {
            None
        };
        if let Some(error) = refused {
            return Pending {
                inner: self.inner.clone(),
                slot: None,
                refused: Some(error),
            };
        }
        codec::resp::write_command(&mut inner.wbuf, groups);
        inner.unwritten += 1;
        let slot = inner.slots.insert(Slot::Waiting(None));
        inner.fifo.push_back(slot);
        inner.wake_writer();
        Pending {
            inner: self.inner.clone(),
            slot: Some(slot),
            refused: None,
        }
    }
}

/// `n` in decimal, written into `buf`.
fn decimal(n: usize, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    let mut n = n;
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[i..];
        }
    }
}

impl Inner {
    fn wake_writer(&mut self) {
        if let Some(writer) = self.writer.take() {
            writer.wake();
        }
    }

    /// Hands the next reply to the oldest waiting command.
    fn deliver(&mut self, frame: Frame) -> Result<(), RedisError> {
        let Some(slot) = self.fifo.pop_front() else {
            return Err(RedisError::Protocol(
                "a reply with no command waiting".into(),
            ));
        };
        self.stats.replies += 1;
        let reply = match frame {
            Frame::Error(message) => {
                self.stats.server_errors += 1;
                Err(RedisError::Server(message.to_string()))
            }
            frame => Ok(frame),
        };
        match std::mem::replace(&mut self.slots[slot], Slot::Done(reply)) {
            Slot::Waiting(waker) => waker.into_iter().for_each(Waker::wake),
            Slot::Abandoned => drop(self.slots.remove(slot)),
            Slot::Done(_) => unreachable!("a slot gets one reply"),
        }
        Ok(())
    }

    fn on_connected(&mut self) {
        self.connected = true;
        self.stalled = false;
        self.on_connect.drain(..).for_each(Waker::wake);
    }

    /// Fails every command sent or queued: their replies can no longer come.
    fn on_disconnected(&mut self) {
        self.connected = false;
        self.wbuf.clear();
        self.unwritten = 0;
        self.writer = None;
        self.stats.reconnects += 1;
        while let Some(slot) = self.fifo.pop_front() {
            match std::mem::replace(
                &mut self.slots[slot],
                Slot::Done(Err(RedisError::Disconnected)),
            ) {
                Slot::Waiting(waker) => waker.into_iter().for_each(Waker::wake),
                Slot::Abandoned | Slot::Done(_) => drop(self.slots.remove(slot)),
            }
        }
    }
}

/// Waits for one command's reply.
pub struct Pending {
    inner: Rc<RefCell<Inner>>,
    slot: Option<usize>,
    refused: Option<RedisError>,
}

impl Future for Pending {
    type Output = Result<Frame, RedisError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let Some(slot) = self.slot else {
            return Poll::Ready(Err(self.refused.take().unwrap_or(RedisError::Disconnected)));
        };
        let mut inner = self.inner.borrow_mut();
        match &mut inner.slots[slot] {
            Slot::Waiting(waker) => {
                *waker = Some(cx.waker().clone());
                Poll::Pending
            }
            Slot::Done(_) => {
                let Slot::Done(reply) = inner.slots.remove(slot) else {
                    unreachable!()
                };
                drop(inner);
                self.slot = None;
                Poll::Ready(reply)
            }
            Slot::Abandoned => unreachable!("only a dropped Pending abandons its slot"),
        }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        let Some(slot) = self.slot else { return };
        let mut inner = self.inner.borrow_mut();
        match inner.slots.get(slot) {
            Some(Slot::Waiting(_)) => inner.slots[slot] = Slot::Abandoned,
            Some(Slot::Done(_)) => drop(inner.slots.remove(slot)),
            Some(Slot::Abandoned) | None => {}
        }
    }
}
