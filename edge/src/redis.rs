//! The per-core Redis client, split like tokio-postgres: [`Client`] is a cheap handle
//! that encodes each command straight into the connection's write buffer and waits
//! on a slot; the driver task (`driver`) owns the socket, writes everything queued
//! with one write (commands issued while a write is in flight join the next one:
//! automatic pipelining, no timer), and hands replies to slots in FIFO order.
//! A [`BatchScript`] goes one step further: the calls made while a write is in flight
//! join one `EVALSHA`, so Redis pays a script call's fixed cost once for all of them.
//!
//! Failure is fast and typed: no connection, too many commands in flight, a deadline
//! passed, or the connection lost are each a [`RedisError`] at once; the HTTP layer
//! answers 503 with `Retry-After`. The driver reconnects with capped exponential
//! backoff and jitter.

mod cluster;
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

use codec::store::Call;
pub use codec::store::Frame;
pub use config::RedisConfig;
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
    /// Bytes that are not RESP, or a reply nobody waits for.
    #[error("redis: protocol error: {0}")]
    Protocol(String),
    /// The connection failed: connecting, reading or writing.
    #[error("redis: {0}")]
    Io(String),
    #[error("redis: TLS: {0}")]
    Tls(String),
    /// The server closed the connection.
    #[error("redis: connection closed by the server")]
    Closed,
}

/// Whether `rediss://` connections can be made with `config`'s trusted roots (its
/// `tls_ca_file` is readable and holds a certificate).
pub fn check_tls(config: &RedisConfig) -> Result<(), String> {
    driver::tls_connector(config).map(drop)
}

/// Counters of one client. `depth` counts writes by how many commands they carried:
/// bucket `i` holds writes of `2^i ..= 2^(i+1) - 1` commands. A batch of
/// [`Client::run_batched`] calls is one command, its calls are counted in `batched`.
/// The error counters of replies count callers (one counter for each way a command
/// fails); those of connections count connections.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Commands asked for, refused ones included (`written` counts those sent).
    pub commands: u64,
    pub batched: u64,
    pub replies: u64,
    pub writes: u64,
    /// Commands those writes carried.
    pub written: u64,
    pub server_errors: u64,
    /// Replies of the wrong shape, and connections dropped for bytes that are not RESP.
    pub protocol_errors: u64,
    /// Connections lost (or never made) by what happened: an I/O error, a TLS
    /// error, the server closing it.
    pub io_errors: u64,
    pub tls_errors: u64,
    pub closed_by_server: u64,
    pub timeouts: u64,
    pub overloaded: u64,
    /// Refused while disconnected, or failed in flight by a lost connection.
    pub disconnected: u64,
    pub reconnects: u64,
    pub noscript_retries: u64,
    /// Redis Cluster: `MOVED` and `ASK` redirections followed, `TRYAGAIN`s waited
    /// out, slot maps taken and refreshes that found no node to answer.
    pub moved: u64,
    pub asked: u64,
    pub tryagain: u64,
    pub refreshes: u64,
    pub refresh_errors: u64,
    pub depth: [u64; 16],
}

impl Stats {
    /// Mean commands per write.
    pub fn mean_depth(&self) -> f64 {
        self.written as f64 / self.writes.max(1) as f64
    }

    /// Adds `other`'s counts (a cluster's nodes).
    fn add(&mut self, other: &Stats) {
        let Stats {
            commands,
            batched,
            replies,
            writes,
            written,
            server_errors,
            protocol_errors,
            io_errors,
            tls_errors,
            closed_by_server,
            timeouts,
            overloaded,
            disconnected,
            reconnects,
            noscript_retries,
            moved,
            asked,
            tryagain,
            refreshes,
            refresh_errors,
            depth,
        } = other;
        self.commands += commands;
        self.batched += batched;
        self.replies += replies;
        self.writes += writes;
        self.written += written;
        self.server_errors += server_errors;
        self.protocol_errors += protocol_errors;
        self.io_errors += io_errors;
        self.tls_errors += tls_errors;
        self.closed_by_server += closed_by_server;
        self.timeouts += timeouts;
        self.overloaded += overloaded;
        self.disconnected += disconnected;
        self.reconnects += reconnects;
        self.noscript_retries += noscript_retries;
        self.moved += moved;
        self.asked += asked;
        self.tryagain += tryagain;
        self.refreshes += refreshes;
        self.refresh_errors += refresh_errors;
        for (mine, theirs) in self.depth.iter_mut().zip(depth) {
            *mine += theirs;
        }
    }

    fn record_write(&mut self, commands: u32) {
        self.writes += 1;
        self.written += u64::from(commands);
        let bucket = (u32::BITS - 1 - commands.max(1).leading_zeros()) as usize;
        self.depth[bucket.min(self.depth.len() - 1)] += 1;
    }
}

/// The edge's Redis: one node (`redis://`), or a Redis Cluster (`redis-cluster://`)
/// whose commands go to the primary of their first key's slot and follow its
/// redirections (`cluster`). Clones share the connections.
#[derive(Clone)]
pub struct Client {
    target: Target,
}

#[derive(Clone)]
enum Target {
    Node(Node),
    Cluster(Rc<cluster::Cluster>),
}

impl Client {
    /// Returns at once; connections are made in the background (see [`Node::connect`]).
    pub fn connect(config: RedisConfig) -> Client {
        let target = if config.url.cluster {
            Target::Cluster(cluster::Cluster::connect(config))
        } else {
            Target::Node(Node::connect(config))
        };
        Client { target }
    }

    /// Connected: to the node, or to a primary for every slot of the cluster.
    pub fn is_connected(&self) -> bool {
        match &self.target {
            Target::Node(node) => node.is_connected(),
            Target::Cluster(cluster) => cluster.is_connected(),
        }
    }

    /// Connected once and not now: Redis was lost (degraded mode), as opposed to not
    /// reached yet at start-up; in a cluster, a primary it had was lost.
    pub fn is_lost(&self) -> bool {
        match &self.target {
            Target::Node(node) => node.is_lost(),
            Target::Cluster(cluster) => cluster.is_lost(),
        }
    }

    /// Resolves once connected (immediately if already).
    pub async fn wait_connected(&self) {
        match &self.target {
            Target::Node(node) => node.wait_connected().await,
            Target::Cluster(cluster) => cluster.wait_connected().await,
        }
    }

    pub fn stats(&self) -> Stats {
        match &self.target {
            Target::Node(node) => node.stats(),
            Target::Cluster(cluster) => cluster.stats(),
        }
    }

    /// [`Node::query`]; in a cluster, on the node of `args[1]`'s slot (every command
    /// the edge sends has its key there).
    pub fn query(
        &self,
        args: &[&[u8]],
    ) -> impl Future<Output = Result<Frame, RedisError>> + 'static {
        self.query_parts(&[args])
    }

    /// [`Node::query_parts`]; in a cluster, see [`Client::query`].
    pub fn query_parts(
        &self,
        groups: &[&[&[u8]]],
    ) -> impl Future<Output = Result<Frame, RedisError>> + 'static {
        let sent = match &self.target {
            Target::Node(node) => Ok(node.query_parts(groups)),
            Target::Cluster(cluster) => {
                // Kept for a command sent again (a redirection); not the hot path.
                let args: Vec<Vec<u8>> = groups
                    .iter()
                    .flat_map(|g| g.iter().map(|a| a.to_vec()))
                    .collect();
                let send = move |node: &Node, asking: bool| {
                    if asking {
                        node.asking();
                    }
                    let args: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
                    node.query(&args)
                };
                let key = groups
                    .iter()
                    .flat_map(|g| g.iter())
                    .nth(1)
                    .copied()
                    .unwrap_or_default();
                let (slot, node) = cluster.node_for(key);
                let first = node.map(|node| send(&node, false));
                let cluster = cluster.clone();
                Err(boxed(
                    async move { cluster.follow(slot, first, send).await },
                ))
            }
        };
        async move {
            match sent {
                Ok(reply) => reply.await,
                Err(reply) => reply.await,
            }
        }
    }

    /// [`Node::transaction`]; in a cluster, on the node of `key`'s slot (every command
    /// of it must be on that slot), with no redirection followed: a transaction the
    /// slot's move aborts is an error, and its caller's next try finds the new map.
    pub fn transaction(
        &self,
        key: &[u8],
        commands: &[u8],
        count: usize,
    ) -> impl Future<Output = Result<Frame, RedisError>> + 'static {
        let node = match &self.target {
            Target::Node(node) => Some(node.clone()),
            Target::Cluster(cluster) => cluster.node_for(key).1,
        };
        let sent = node.map(|node| node.transaction(commands, count));
        async move {
            match sent {
                Some(reply) => reply.await,
                None => Err(RedisError::Disconnected),
            }
        }
    }

    /// [`Node::run`]; in a cluster, on the node of the call's first key's slot.
    pub fn run<'a>(
        &self,
        script: &'a Script,
        call: &'a Call,
    ) -> impl Future<Output = Result<Frame, RedisError>> + 'a {
        let sent = match &self.target {
            Target::Node(node) => Ok(node.run(script, call)),
            Target::Cluster(cluster) => {
                let send = move |node: &Node, asking: bool| {
                    if asking {
                        node.asking();
                    }
                    node.run_as(script, call, asking)
                };
                let (slot, node) = cluster.node_for(call.keys().next().unwrap_or_default());
                let first = node.map(|node| send(&node, false));
                let cluster = cluster.clone();
                Err(boxed(
                    async move { cluster.follow(slot, first, send).await },
                ))
            }
        };
        async move {
            match sent {
                Ok(reply) => reply.await,
                Err(reply) => reply.await,
            }
        }
    }

    /// [`Node::run_batched`]; in a cluster, batched on the node of the call's first
    /// key's slot (`group`, the keys' hash tag, keeps a batch on one slot).
    pub fn run_batched<'a>(
        &self,
        script: &'a Rc<BatchScript>,
        group: &'a [u8],
        call: &'a Call,
    ) -> impl Future<Output = Result<Frame, RedisError>> + 'a {
        let sent = match &self.target {
            Target::Node(node) => Ok(node.run_batched(script, group, call)),
            Target::Cluster(cluster) => {
                let send = move |node: &Node, asking: bool| {
                    if asking {
                        node.asking();
                        boxed(node.run_alone(script, call))
                    } else {
                        boxed(node.run_batched(script, group, call))
                    }
                };
                let (slot, node) = cluster.node_for(call.keys().next().unwrap_or_default());
                let first = node.map(|node| send(&node, false));
                let cluster = cluster.clone();
                Err(boxed(
                    async move { cluster.follow(slot, first, send).await },
                ))
            }
        };
        async move {
            match sent {
                Ok(reply) => reply.await,
                Err(reply) => reply.await,
            }
        }
    }
}

/// A cluster command's future, boxed: unboxed, its size (redirections, retries) would
/// be every single-node call's too, and the futures that hold it are moved by memcpy
/// (callgrind: a hold cost 45% more instructions, a summary 9%).
type Boxed<'a> = Pin<Box<dyn Future<Output = Result<Frame, RedisError>> + 'a>>;

fn boxed<'a>(f: impl Future<Output = Result<Frame, RedisError>> + 'a) -> Boxed<'a> {
    Box::pin(f)
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

/// A script that serves many callers in one `EVALSHA` (see [`Client::run_batched`]).
/// It gets the keys of every call, then `shared`, then the arguments of every call,
/// each call's in the order they were made, and must return an array of one reply a
/// call, in that order. Calls are told apart by counting: every call gives the same
/// number of keys and of arguments.
pub struct BatchScript {
    script: Script,
    shared: Vec<Vec<u8>>,
    /// The most calls in one batch: bounds how long one script blocks the server.
    max_calls: usize,
    /// Set by a `NOSCRIPT`: the next batch is sent whole (`EVAL`), which loads it.
    send_body: std::cell::Cell<bool>,
}

impl BatchScript {
    pub fn new(body: &'static str, shared: Vec<Vec<u8>>, max_calls: usize) -> Self {
        Self {
            script: Script::new(body),
            shared,
            max_calls: max_calls.max(1),
            send_body: std::cell::Cell::new(false),
        }
    }
}

/// Calls of one [`BatchScript`] waiting for the next write, their keys and arguments
/// already encoded as RESP bulk strings. Kept while it takes calls: its buffers serve
/// the next batch of its script and group.
struct OpenBatch {
    script: Rc<BatchScript>,
    group: Vec<u8>,
    /// Took a call since the last write.
    used: bool,
    keys: Vec<u8>,
    key_count: usize,
    args: Vec<u8>,
    arg_count: usize,
    slots: Vec<usize>,
}

/// Who waits for one reply: one command, or every call of a batch in order.
enum Waiters {
    One(usize),
    Batch(Vec<usize>),
}

impl Waiters {
    fn contains(&self, slot: usize) -> bool {
        match self {
            Self::One(s) => *s == slot,
            Self::Batch(slots) => slots.contains(&slot),
        }
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
    /// Connected at least once: losing the connection after that is degraded mode.
    was_connected: bool,
    /// Commands encoded since the last write, and how many.
    wbuf: Vec<u8>,
    unwritten: u32,
    /// Batches still taking calls; encoded into `wbuf` just before it is written.
    open: Vec<OpenBatch>,
    /// The waiters of the commands sent or queued, in reply order.
    fifo: VecDeque<Waiters>,
    slots: Slab<Slot>,
    /// Callers waiting for a reply (in `fifo` or in an open batch): the in-flight bound.
    waiting: usize,
    writer: Option<Waker>,
    on_connect: Vec<Waker>,
    /// Set when a reply is overdue with nothing answered since: the driver drops the
    /// connection and reconnects.
    stalled: bool,
    /// Set by [`Node::close`]: the driver drops the connection and ends.
    closed: bool,
    stats: Stats,
}

/// A handle to one core's connection to one Redis node; clones share it.
#[derive(Clone)]
pub struct Node {
    inner: Rc<RefCell<Inner>>,
}

impl Node {
    /// Returns at once; the driver task connects in the background, and until it has,
    /// commands fail with [`RedisError::Disconnected`]. Call inside a monoio runtime
    /// with timers enabled.
    pub fn connect(config: RedisConfig) -> Node {
        let inner = Rc::new(RefCell::new(Inner {
            config,
            connected: false,
            was_connected: false,
            wbuf: Vec::with_capacity(64 * 1024),
            unwritten: 0,
            open: Vec::new(),
            fifo: VecDeque::new(),
            slots: Slab::new(),
            waiting: 0,
            writer: None,
            on_connect: Vec::new(),
            stalled: false,
            closed: false,
            stats: Stats::default(),
        }));
        monoio::spawn(driver::run(inner.clone()));
        Node { inner }
    }

    /// The node's `host:port`.
    pub fn addr(&self) -> String {
        self.inner.borrow().config.url.addr.clone()
    }

    /// Drops the connection for good (a node that left the cluster's primaries): what
    /// waits fails with [`RedisError::Disconnected`], the driver task ends.
    pub fn close(&self) {
        let mut inner = self.inner.borrow_mut();
        inner.closed = true;
        inner.wake_writer();
    }

    /// Sends `ASKING` now, its reply dropped: the command sent next on this connection
    /// may use a slot being imported here (an `ASK` redirection).
    pub fn asking(&self) {
        drop(self.send_parts(&[&[b"ASKING"]]));
    }

    pub fn is_connected(&self) -> bool {
        self.inner.borrow().connected
    }

    /// Connected once and not now: Redis was lost (degraded mode), as opposed to not
    /// reached yet at start-up.
    pub fn is_lost(&self) -> bool {
        let inner = self.inner.borrow();
        inner.was_connected && !inner.connected
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

    /// Like [`Node::query`], the arguments being the concatenation of `groups`.
    pub fn query_parts(
        &self,
        groups: &[&[&[u8]]],
    ) -> impl Future<Output = Result<Frame, RedisError>> + 'static {
        let pending = self.send_parts(groups);
        within_deadline(self.inner.clone(), pending)
    }

    /// Runs `script`'s typed call (`codec::store`) by SHA: `EVALSHA` is sent now (like
    /// [`Node::query`]); on `NOSCRIPT` (after `SCRIPT FLUSH`, a failover or a restart)
    /// the script is sent whole once (`EVAL` also loads it into the server's cache).
    pub fn run<'a>(
        &self,
        script: &'a Script,
        call: &'a Call,
    ) -> impl Future<Output = Result<Frame, RedisError>> + 'a {
        self.run_as(script, call, false)
    }

    /// [`Node::run`], the script sent whole from the start when `whole`.
    fn run_as<'a>(
        &self,
        script: &'a Script,
        call: &'a Call,
        whole: bool,
    ) -> impl Future<Output = Result<Frame, RedisError>> + 'a {
        let first = self.send_script(script, call, whole);
        let first = within_deadline(self.inner.clone(), first);
        let client = self.clone();
        async move {
            match first.await {
                Err(RedisError::Server(msg)) if msg.starts_with("NOSCRIPT") => {
                    client.inner.borrow_mut().stats.noscript_retries += 1;
                    let again = client.send_script(script, call, true);
                    within_deadline(client.inner.clone(), again).await
                }
                reply => reply,
            }
        }
    }

    fn send_script(&self, script: &Script, call: &Call, whole: bool) -> Pending {
        self.send_with(|out| {
            let mut digits = [0u8; 20];
            let numkeys = decimal(call.key_count(), &mut digits);
            let (verb, id): (&[u8], &[u8]) = if whole {
                (b"EVAL", script.body.as_bytes())
            } else {
                (b"EVALSHA", script.sha.as_bytes())
            };
            codec::resp::write_array_header(out, 3 + call.key_count() + call.arg_count());
            codec::resp::write_bulks(out, &[verb, id, numkeys]);
            codec::resp::write_bulk_iter(out, call.keys());
            codec::resp::write_bulk_iter(out, call.args());
        })
    }

    /// Encodes the command into the write buffer now (so replies keep this order) and
    /// returns what waits for its reply, with no deadline.
    pub fn send_parts(&self, groups: &[&[&[u8]]]) -> Pending {
        self.send_with(|out| codec::resp::write_command(out, groups))
    }

    fn send_with(&self, encode: impl FnOnce(&mut Vec<u8>)) -> Pending {
        let mut inner = self.inner.borrow_mut();
        inner.stats.commands += 1;
        if let Err(error) = inner.admit() {
            return self.refused(error);
        }
        encode(&mut inner.wbuf);
        inner.unwritten += 1;
        let slot = inner.slots.insert(Slot::Waiting(None));
        inner.waiting += 1;
        inner.fifo.push_back(Waiters::One(slot));
        inner.wake_writer();
        self.pending(slot)
    }

    /// Sends the `count` commands RESP-encoded in `commands` between `MULTI` and `EXEC`,
    /// all or none: they are encoded together, so no other caller's command lands
    /// inside the transaction, and refused together when the in-flight bound has no room
    /// for them all. Resolves to `EXEC`'s reply (`Frame::Null` when aborted).
    pub fn transaction(
        &self,
        commands: &[u8],
        count: usize,
    ) -> impl Future<Output = Result<Frame, RedisError>> + 'static {
        let pending = self.send_transaction(commands, count);
        within_deadline(self.inner.clone(), pending)
    }

    fn send_transaction(&self, commands: &[u8], count: usize) -> Pending {
        let mut inner = self.inner.borrow_mut();
        inner.stats.commands += count as u64 + 2;
        if let Err(error) = inner.admit() {
            return self.refused(error);
        }
        if inner.waiting + count + 2 > inner.config.max_in_flight {
            inner.stats.overloaded += 1;
            return self.refused(RedisError::Overloaded);
        }
        codec::resp::write_command(&mut inner.wbuf, &[&[b"MULTI"]]);
        inner.wbuf.extend_from_slice(commands);
        codec::resp::write_command(&mut inner.wbuf, &[&[b"EXEC"]]);
        inner.unwritten += count as u32 + 2;
        // MULTI's `+OK` and each `+QUEUED` go to slots nobody waits on.
        for _ in 0..=count {
            let slot = inner.slots.insert(Slot::Abandoned);
            inner.waiting += 1;
            inner.fifo.push_back(Waiters::One(slot));
        }
        let slot = inner.slots.insert(Slot::Waiting(None));
        inner.waiting += 1;
        inner.fifo.push_back(Waiters::One(slot));
        inner.wake_writer();
        self.pending(slot)
    }

    /// Runs `script` for this call together with every other call of the same `group`
    /// made before the driver's next write: one `EVALSHA` for all, the reply being
    /// this call's element of the script's array. `group` is the keys' hash tag, so
    /// one batch stays on one Redis Cluster slot. Unlike [`Node::run`], the call
    /// does not keep its order among other commands (the batch is encoded when it is
    /// written); on `NOSCRIPT` the call joins the next batch, which is sent whole, once.
    pub fn run_batched<'a>(
        &self,
        script: &'a Rc<BatchScript>,
        group: &'a [u8],
        call: &'a Call,
    ) -> impl Future<Output = Result<Frame, RedisError>> + 'a {
        let client = self.clone();
        async move {
            let once = || {
                let pending =
                    client.join(script, group, call.key_count(), call.arg_count(), |k, a| {
                        codec::resp::write_bulk_iter(k, call.keys());
                        codec::resp::write_bulk_iter(a, call.args());
                    });
                within_deadline(client.inner.clone(), pending)
            };
            match once().await {
                Err(RedisError::Server(msg)) if msg.starts_with("NOSCRIPT") => {
                    client.inner.borrow_mut().stats.noscript_retries += 1;
                    script.send_body.set(true);
                    once().await
                }
                reply => reply,
            }
        }
    }

    /// `call` of `script` sent now as a batch of its own, the script whole (`EVAL`): it
    /// follows an `ASKING` (see [`Node::asking`]); the reply is the call's element.
    fn run_alone<'a>(
        &self,
        script: &BatchScript,
        call: &Call,
    ) -> impl Future<Output = Result<Frame, RedisError>> + 'a {
        let pending = self.send_alone(script, call);
        let inner = self.inner.clone();
        async move {
            match within_deadline(inner, pending).await? {
                Frame::Array(mut replies) if replies.len() == 1 => Ok(replies.remove(0)),
                _ => Err(RedisError::Protocol(
                    "a batch script must reply one element a call".into(),
                )),
            }
        }
    }

    /// `call` as a batch of one, the script sent whole.
    fn send_alone(&self, script: &BatchScript, call: &Call) -> Pending {
        self.send_with(|out| {
            let mut digits = [0u8; 20];
            let numkeys = decimal(call.key_count(), &mut digits);
            let count = 3 + call.key_count() + script.shared.len() + call.arg_count();
            codec::resp::write_array_header(out, count);
            codec::resp::write_bulks(out, &[b"EVAL", script.script.body.as_bytes(), numkeys]);
            codec::resp::write_bulk_iter(out, call.keys());
            for arg in &script.shared {
                codec::resp::write_bulks(out, &[arg]);
            }
            codec::resp::write_bulk_iter(out, call.args());
        })
    }

    /// Adds a call of `key_count` keys and `arg_count` arguments, which `encode`
    /// appends (as RESP bulk strings) to the batch's keys and arguments.
    fn join(
        &self,
        script: &Rc<BatchScript>,
        group: &[u8],
        key_count: usize,
        arg_count: usize,
        encode: impl FnOnce(&mut Vec<u8>, &mut Vec<u8>),
    ) -> Pending {
        let mut inner = self.inner.borrow_mut();
        inner.stats.batched += 1;
        if let Err(error) = inner.admit() {
            return self.refused(error);
        }
        let at = match inner
            .open
            .iter()
            .position(|b| Rc::ptr_eq(&b.script, script) && b.group == group)
        {
            Some(at) => at,
            None => {
                inner.open.push(OpenBatch {
                    script: script.clone(),
                    group: group.to_vec(),
                    used: false,
                    keys: Vec::new(),
                    key_count: 0,
                    args: Vec::new(),
                    arg_count: 0,
                    slots: Vec::new(),
                });
                inner.open.len() - 1
            }
        };
        let slot = inner.slots.insert(Slot::Waiting(None));
        inner.waiting += 1;
        let batch = &mut inner.open[at];
        batch.used = true;
        encode(&mut batch.keys, &mut batch.args);
        batch.key_count += key_count;
        batch.arg_count += arg_count;
        batch.slots.push(slot);
        if batch.slots.len() >= script.max_calls {
            inner.seal(at);
        }
        inner.wake_writer();
        self.pending(slot)
    }

    fn pending(&self, slot: usize) -> Pending {
        Pending {
            inner: self.inner.clone(),
            slot: Some(slot),
            refused: None,
        }
    }

    fn refused(&self, error: RedisError) -> Pending {
        Pending {
            inner: self.inner.clone(),
            slot: None,
            refused: Some(error),
        }
    }
}

/// Waits for a reply within the configured deadline.
async fn within_deadline(inner: Rc<RefCell<Inner>>, pending: Pending) -> Result<Frame, RedisError> {
    let slot = pending.slot;
    let deadline = inner.borrow().config.timeout;
    match monoio::time::timeout(deadline, pending).await {
        Ok(reply) => reply,
        Err(_elapsed) => {
            let mut inner = inner.borrow_mut();
            inner.stats.timeouts += 1;
            // Nothing answered since this command was sent: the connection (or the
            // server) is stuck, and every later reply waits behind it.
            let front = inner.fifo.front();
            if slot.is_some_and(|s| front.is_some_and(|w| w.contains(s))) {
                inner.stalled = true;
                inner.wake_writer();
            }
            Err(RedisError::Timeout)
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
    /// Whether one more caller may wait for a reply now.
    fn admit(&mut self) -> Result<(), RedisError> {
        if !self.connected {
            self.stats.disconnected += 1;
            Err(RedisError::Disconnected)
        } else if self.waiting >= self.config.max_in_flight {
            self.stats.overloaded += 1;
            Err(RedisError::Overloaded)
        } else {
            Ok(())
        }
    }

    /// Encodes open batch `at` into the write buffer as one `EVALSHA` (or `EVAL`).
    fn seal(&mut self, at: usize) {
        let batch = &mut self.open[at];
        if batch.slots.is_empty() {
            return;
        }
        let script = &batch.script;
        let mut digits = [0u8; 20];
        let numkeys = decimal(batch.key_count, &mut digits);
        let (verb, id): (&[u8], &[u8]) = if script.send_body.replace(false) {
            (b"EVAL", script.script.body.as_bytes())
        } else {
            (b"EVALSHA", script.script.sha.as_bytes())
        };
        let count = 3 + batch.key_count + script.shared.len() + batch.arg_count;
        codec::resp::write_array_header(&mut self.wbuf, count);
        codec::resp::write_bulks(&mut self.wbuf, &[verb, id, numkeys]);
        self.wbuf.extend_from_slice(&batch.keys);
        for arg in &script.shared {
            codec::resp::write_bulks(&mut self.wbuf, &[arg]);
        }
        self.wbuf.extend_from_slice(&batch.args);
        batch.keys.clear();
        batch.args.clear();
        (batch.key_count, batch.arg_count) = (0, 0);
        let slots = std::mem::take(&mut batch.slots);
        self.unwritten += 1;
        self.stats.commands += 1;
        self.fifo.push_back(Waiters::Batch(slots));
    }

    /// Encodes every open batch: called by the driver each time it looks for
    /// something to write.
    fn seal_open(&mut self) {
        for at in 0..self.open.len() {
            self.seal(at);
        }
        // When a write goes out, the groups that took no call since the previous one
        // give up their buffers; a look that finds nothing to write keeps them all.
        if !self.wbuf.is_empty() {
            self.open.retain_mut(|b| std::mem::take(&mut b.used));
        }
    }

    fn wake_writer(&mut self) {
        if let Some(writer) = self.writer.take() {
            writer.wake();
        }
    }

    /// Hands the next reply to the oldest waiting command (or batch).
    fn deliver(&mut self, frame: Frame) -> Result<(), RedisError> {
        let Some(waiters) = self.fifo.pop_front() else {
            return Err(RedisError::Protocol(
                "a reply with no command waiting".into(),
            ));
        };
        self.stats.replies += 1;
        let reply = match frame {
            Frame::Error(message) => {
                self.stats.server_errors += match &waiters {
                    Waiters::One(_) => 1,
                    Waiters::Batch(slots) => slots.len() as u64,
                };
                Err(RedisError::Server(message.to_string()))
            }
            frame => Ok(frame),
        };
        match waiters {
            Waiters::One(slot) => self.answer(slot, reply),
            Waiters::Batch(slots) => match reply {
                Ok(Frame::Array(replies)) if replies.len() == slots.len() => {
                    for (slot, reply) in slots.into_iter().zip(replies) {
                        self.answer(slot, Ok(reply));
                    }
                }
                Ok(_) => {
                    self.stats.protocol_errors += slots.len() as u64;
                    let error =
                        RedisError::Protocol("a batch script must reply one element a call".into());
                    slots
                        .into_iter()
                        .for_each(|slot| self.answer(slot, Err(error.clone())));
                }
                Err(error) => slots
                    .into_iter()
                    .for_each(|slot| self.answer(slot, Err(error.clone()))),
            },
        }
        Ok(())
    }

    fn answer(&mut self, slot: usize, reply: Result<Frame, RedisError>) {
        self.waiting -= 1;
        match std::mem::replace(&mut self.slots[slot], Slot::Done(reply)) {
            Slot::Waiting(waker) => waker.into_iter().for_each(Waker::wake),
            Slot::Abandoned => drop(self.slots.remove(slot)),
            Slot::Done(_) => unreachable!("a slot gets one reply"),
        }
    }

    fn on_connected(&mut self) {
        self.connected = true;
        self.was_connected = true;
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
        let open = self.open.iter_mut().flat_map(|b| {
            b.keys.clear();
            b.args.clear();
            (b.key_count, b.arg_count) = (0, 0);
            std::mem::take(&mut b.slots)
        });
        let sent = self.fifo.drain(..).flat_map(|w| match w {
            Waiters::One(slot) => vec![slot],
            Waiters::Batch(slots) => slots,
        });
        let failed: Vec<usize> = open.chain(sent).collect();
        self.stats.disconnected += failed.len() as u64;
        for slot in failed {
            self.answer(slot, Err(RedisError::Disconnected));
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
