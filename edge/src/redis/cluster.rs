//! A Redis Cluster seen from one core: the slot map (`CLUSTER SLOTS`), one [`Node`]
//! (one pipelined connection) per primary, and the redirections of the cluster spec
//! (<https://redis.io/docs/latest/operate/oss_and_stack/reference/cluster-spec/>):
//!
//! - `MOVED slot addr`: the slot lives at `addr` now. The map points the slot there,
//!   the command is sent there, and a refresh of the whole map is asked for (a
//!   failover or a reshard moves more than one slot).
//! - `ASK slot addr`: the slot is being migrated and this key is already there: the
//!   command goes to `addr` once, after `ASKING`; the map does not change.
//! - `TRYAGAIN`: a multi-key command (a script) met a slot half migrated: sent again
//!   shortly, within the command's deadline.
//! - A lost connection or `CLUSTERDOWN`: the caller gets its error (a 503) and a
//!   refresh is asked for; once a replica is promoted, the next refresh points the
//!   slots at it and service resumes by itself.
//!
//! A refresher task asks a connected node for `CLUSTER SLOTS` when asked to (at most
//! every [`REFRESH_MIN`]) and every [`REFRESH_EVERY`] anyway.

use std::{
    cell::RefCell,
    future::{poll_fn, Future},
    rc::{Rc, Weak},
    task::{Poll, Waker},
    time::{Duration, Instant},
};

use codec::cluster::{key_slot, parse_slots, redirect, Redirect, SlotRange, SLOTS};
use tracing::{info, warn};

use super::{Frame, Node, RedisConfig, RedisError, Stats};

/// The least time between two refreshes of the slot map.
const REFRESH_MIN: Duration = Duration::from_millis(100);
/// A refresh at least this often, redirections or not.
const REFRESH_EVERY: Duration = Duration::from_secs(5);
/// Redirections followed for one command before it fails.
const MAX_REDIRECTS: usize = 5;
/// The pause before a command that met `TRYAGAIN` is sent again.
const TRYAGAIN_DELAY: Duration = Duration::from_millis(10);
/// A slot no node serves in [`State::slots`].
const NO_NODE: u16 = u16::MAX;

pub(super) struct Cluster {
    config: RedisConfig,
    state: RefCell<State>,
}

struct State {
    /// Each slot's primary, as an index into `nodes`.
    slots: Vec<u16>,
    /// The primaries (and, until the first map, the seeds), by `host:port`.
    nodes: Vec<(String, Node)>,
    /// Every slot has a node: the map is whole.
    whole: bool,
    on_whole: Vec<Waker>,
    refresh_asked: bool,
    refresher: Option<Waker>,
    stats: Stats,
}

impl Cluster {
    /// Connects to the seeds and starts the refresher, which makes the first map.
    pub(super) fn connect(config: RedisConfig) -> Rc<Cluster> {
        let cluster = Rc::new(Cluster {
            state: RefCell::new(State {
                slots: vec![NO_NODE; SLOTS],
                nodes: Vec::new(),
                whole: false,
                on_whole: Vec::new(),
                refresh_asked: false,
                refresher: None,
                stats: Stats::default(),
            }),
            config,
        });
        for seed in &cluster.config.url.seeds {
            cluster.node_at(seed);
        }
        monoio::spawn(refresher(Rc::downgrade(&cluster)));
        cluster
    }

    /// Every slot has a primary, and every primary is connected.
    pub(super) fn is_connected(&self) -> bool {
        let state = self.state.borrow();
        state.whole && state.nodes.iter().all(|(_, node)| node.is_connected())
    }

    /// Not connected now, and a primary it had is lost (not merely not reached yet).
    pub(super) fn is_lost(&self) -> bool {
        !self.is_connected()
            && self
                .state
                .borrow()
                .nodes
                .iter()
                .any(|(_, node)| node.is_lost())
    }

    /// Resolves once the slot map is whole and its primaries connected.
    pub(super) async fn wait_connected(&self) {
        poll_fn(|cx| {
            let mut state = self.state.borrow_mut();
            if state.whole {
                return Poll::Ready(());
            }
            state.on_whole.push(cx.waker().clone());
            Poll::Pending
        })
        .await;
        let nodes: Vec<Node> = self.primaries();
        for node in nodes {
            node.wait_connected().await;
        }
    }

    /// The counters of every node's connection, summed (those closed included, as
    /// they were at the close), and the cluster's own.
    pub(super) fn stats(&self) -> Stats {
        let state = self.state.borrow();
        let mut stats = state.stats;
        for (_, node) in &state.nodes {
            stats.add(&node.stats());
        }
        stats
    }

    /// The node that serves `key`'s slot now, if the map knows one.
    pub(super) fn node_for(&self, key: &[u8]) -> (u16, Option<Node>) {
        let slot = key_slot(key);
        (slot, self.node_of(slot))
    }

    fn node_of(&self, slot: u16) -> Option<Node> {
        let state = self.state.borrow();
        let node = state
            .nodes
            .get(usize::from(state.slots[usize::from(slot)]))
            .map(|(_, node)| node.clone());
        drop(state);
        if node.is_none() {
            self.ask_refresh();
        }
        node
    }

    fn primaries(&self) -> Vec<Node> {
        self.state
            .borrow()
            .nodes
            .iter()
            .map(|(_, n)| n.clone())
            .collect()
    }

    /// The node at `addr`, connected now if it was not known.
    fn node_at(&self, addr: &str) -> Node {
        self.node_index(addr).1
    }

    fn node_index(&self, addr: &str) -> (u16, Node) {
        let mut state = self.state.borrow_mut();
        if let Some(i) = state.nodes.iter().position(|(a, _)| a == addr) {
            return (i as u16, state.nodes[i].1.clone());
        }
        let mut config = self.config.clone();
        config.url.addr = addr.to_owned();
        let node = Node::connect(config);
        state.nodes.push((addr.to_owned(), node.clone()));
        ((state.nodes.len() - 1) as u16, node)
    }

    fn ask_refresh(&self) {
        let mut state = self.state.borrow_mut();
        state.refresh_asked = true;
        if let Some(waker) = state.refresher.take() {
            waker.wake();
        }
    }

    /// Takes `ranges` as the map: a node per primary (those known are kept), the
    /// others closed.
    fn apply(&self, ranges: &[SlotRange]) {
        let mut slots = vec![NO_NODE; SLOTS];
        let mut keep: Vec<(String, Node)> = Vec::new();
        for range in ranges {
            let at = match keep.iter().position(|(a, _)| *a == range.primary) {
                Some(at) => at,
                None => {
                    keep.push((range.primary.clone(), self.node_at(&range.primary)));
                    keep.len() - 1
                }
            };
            slots[usize::from(range.start)..=usize::from(range.end)].fill(at as u16);
        }
        let mut state = self.state.borrow_mut();
        let old = std::mem::replace(&mut state.nodes, keep);
        for (addr, node) in old {
            if !state.nodes.iter().any(|(a, _)| *a == addr) {
                info!(%addr, "redis cluster: node is no primary now, connection closed");
                node.close();
                // Its counts stay in the totals: counters never go back.
                let retired = node.stats();
                state.stats.add(&retired);
            }
        }
        state.whole = slots.iter().all(|&i| i != NO_NODE);
        state.slots = slots;
        state.stats.refreshes += 1;
        if state.whole {
            state.on_whole.drain(..).for_each(Waker::wake);
        }
    }

    /// Asks the connected primaries, then the others, then the seeds for `CLUSTER
    /// SLOTS` until one answers with a map.
    async fn refresh(&self) -> bool {
        let mut primaries = self.primaries();
        primaries.sort_by_key(|n| !n.is_connected());
        for node in &primaries {
            if self.map_from(node).await {
                return true;
            }
        }
        for seed in &self.config.url.seeds {
            if !primaries.iter().any(|n| n.addr() == *seed)
                && self.map_from(&self.node_at(seed)).await
            {
                return true;
            }
        }
        self.state.borrow_mut().stats.refresh_errors += 1;
        false
    }

    /// Takes `node`'s `CLUSTER SLOTS` as the map, if it answers one.
    async fn map_from(&self, node: &Node) -> bool {
        if !node.is_connected()
            && monoio::time::timeout(self.config.connect_timeout, node.wait_connected())
                .await
                .is_err()
        {
            return false;
        }
        let addr = node.addr();
        match node.query(&[b"CLUSTER", b"SLOTS"]).await {
            Ok(reply) => match parse_slots(&reply, codec::url::host(&addr)) {
                Ok(ranges) if !ranges.is_empty() => {
                    self.apply(&ranges);
                    return true;
                }
                Ok(_) => warn!(%addr, "redis cluster: CLUSTER SLOTS lists no slot"),
                Err(error) => warn!(%addr, error, "redis cluster: CLUSTER SLOTS unreadable"),
            },
            Err(error) => warn!(%addr, %error, "redis cluster: CLUSTER SLOTS failed"),
        }
        false
    }

    /// Sends a command with `send` to `slot`'s node (`first`, already sent) and follows
    /// the redirections: `send(node, asking)` sends it again, after `ASKING` when
    /// `asking`.
    pub(super) async fn follow<F, Fut>(
        &self,
        slot: u16,
        first: Option<Fut>,
        send: F,
    ) -> Result<Frame, RedisError>
    where
        F: Fn(&Node, bool) -> Fut,
        Fut: Future<Output = Result<Frame, RedisError>>,
    {
        let Some(first) = first else {
            return Err(RedisError::Disconnected);
        };
        let started = Instant::now();
        let mut reply = first.await;
        for _ in 0..MAX_REDIRECTS {
            let redirection = match &reply {
                Err(RedisError::Server(message)) => match redirect(message) {
                    Some(r) => r,
                    None => return reply,
                },
                Err(_) => {
                    self.ask_refresh();
                    return reply;
                }
                Ok(_) => return reply,
            };
            let again = match redirection {
                Redirect::Moved { slot, addr } => {
                    let (at, node) = self.node_index(addr);
                    let mut state = self.state.borrow_mut();
                    state.stats.moved += 1;
                    state.slots[usize::from(slot)] = at;
                    drop(state);
                    self.ask_refresh();
                    send(&node, false)
                }
                Redirect::Ask { addr, .. } => {
                    self.state.borrow_mut().stats.asked += 1;
                    send(&self.node_at(addr), true)
                }
                Redirect::TryAgain => {
                    self.state.borrow_mut().stats.tryagain += 1;
                    if started.elapsed() + TRYAGAIN_DELAY > self.config.timeout {
                        return reply;
                    }
                    monoio::time::sleep(TRYAGAIN_DELAY).await;
                    match self.node_of(slot) {
                        Some(node) => send(&node, false),
                        None => return Err(RedisError::Disconnected),
                    }
                }
                Redirect::ClusterDown => {
                    self.ask_refresh();
                    return reply;
                }
            };
            reply = again.await;
        }
        reply
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for (_, node) in self.state.get_mut().nodes.drain(..) {
            node.close();
        }
    }
}

/// Refreshes the map when asked, and every [`REFRESH_EVERY`]; ends with the cluster.
async fn refresher(cluster: Weak<Cluster>) {
    loop {
        let Some(c) = cluster.upgrade() else { return };
        let mapped = c.refresh().await;
        if !mapped {
            warn!("redis cluster: no node gave a slot map; trying again");
        }
        drop(c);
        monoio::time::sleep(REFRESH_MIN).await;
        let wait = if mapped { REFRESH_EVERY } else { REFRESH_MIN };
        let asked = poll_fn(|cx| {
            let Some(c) = cluster.upgrade() else {
                return Poll::Ready(());
            };
            let mut state = c.state.borrow_mut();
            if std::mem::take(&mut state.refresh_asked) {
                return Poll::Ready(());
            }
            state.refresher = Some(cx.waker().clone());
            Poll::Pending
        });
        monoio::select! {
            _ = monoio::time::sleep(wait) => {}
            _ = asked => {}
        }
    }
}
