//! Abuse limits on the door: token buckets per client address and per buyer on
//! `enter`, `hold`, `payment-intent` and `commit`; over the limit, 429 `RATE_LIMITED`
//! with `Retry-After`.
//!
//! Each core has its own buckets (thread-per-core: no atomics or locks shared across
//! cores), in a fixed-size, 4-way set-associative table: memory is bounded whatever
//! the number of addresses an attacker uses. A key not in its set takes the slot of the
//! *fullest* bucket of the set (the smallest theoretical arrival time): a bucket that is
//! full again has forgotten nothing, so evicting it loses no information, and a client
//! that is being limited keeps its slot. The hash is SipHash with a random key per
//! core, so a client cannot aim its keys at another's set.
//!
//! A bucket is one number, GCRA's theoretical arrival time (ITU-T I.371, the "virtual
//! scheduling" form of a token bucket): `rate` a second, `burst` at once.
//!
//! The limits are per core: a client whose connections land on k cores (and edges) gets
//! up to k times the rate. What a buyer can take is bounded globally already, in Redis
//! (holds by `HOLD_LIMIT`, orders by `PURCHASE_LIMIT`, `enter` gives one place per
//! buyer), so these buckets bound the work a client makes each core do; README
//! "Abuse limits" says why no global per-buyer budget in Redis is kept.

use std::{
    cell::RefCell,
    hash::{BuildHasher, Hasher, RandomState},
    net::{IpAddr, Ipv6Addr},
    time::Instant,
};

use codec::error_code::ErrorCode;

use crate::error::Error;

/// One bucket's settings: `per_sec` requests a second on average, `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub per_sec: u32,
    pub burst: u32,
}

/// `RATE_LIMITS=on`: the buckets' settings (each per core).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimits {
    /// `RATE_ADDRESS_PER_SEC`, `RATE_ADDRESS_BURST`.
    pub address: Rate,
    /// `RATE_BUYER_PER_SEC`, `RATE_BUYER_BURST`.
    pub buyer: Rate,
    /// `RATE_TABLE_SLOTS`: buckets per core (a power of two).
    pub slots: usize,
}

/// Slots of a set: a key lives in one of these four.
const WAYS: usize = 4;

#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    /// The key's hash; 0: empty.
    tag: u64,
    /// GCRA's theoretical arrival time, µs since the table's epoch.
    tat_us: u64,
}

/// One core's buckets; `None` settings: limits off.
pub struct Limits {
    settings: Option<Settings>,
    table: RefCell<Box<[Slot]>>,
    hasher: RandomState,
    epoch: Instant,
}

#[derive(Debug, Clone, Copy)]
struct Settings {
    address: Gcra,
    buyer: Gcra,
    sets: usize,
}

/// A rate in GCRA's terms: the emission interval and the tolerance, in µs.
#[derive(Debug, Clone, Copy)]
struct Gcra {
    interval_us: u64,
    tolerance_us: u64,
}

impl Gcra {
    fn new(rate: Rate) -> Self {
        let interval_us = 1_000_000 / u64::from(rate.per_sec.max(1));
        Self {
            interval_us,
            tolerance_us: interval_us * u64::from(rate.burst.max(1) - 1),
        }
    }
}

/// Which bucket a request draws from.
#[derive(Debug, Clone, Copy)]
pub enum Key<'a> {
    Address(IpAddr),
    Buyer(&'a str),
}

impl Limits {
    pub fn new(limits: Option<RateLimits>) -> Self {
        let settings = limits.map(|l| Settings {
            address: Gcra::new(l.address),
            buyer: Gcra::new(l.buyer),
            sets: (l.slots / WAYS).max(1).next_power_of_two(),
        });
        let slots = settings.map_or(0, |s| s.sets * WAYS);
        Self {
            settings,
            table: RefCell::new(vec![Slot::default(); slots].into_boxed_slice()),
            hasher: RandomState::new(),
            epoch: Instant::now(),
        }
    }

    /// Takes one request from the client address's bucket.
    pub fn address(&self, addr: IpAddr) -> Result<(), Error> {
        self.take(Key::Address(addr))
    }

    /// Takes one request from the buyer's bucket.
    pub fn buyer(&self, user: &str) -> Result<(), Error> {
        self.take(Key::Buyer(user))
    }

    /// Takes one request from `key`'s bucket, else `RATE_LIMITED` with the seconds
    /// until one is free.
    pub fn take(&self, key: Key<'_>) -> Result<(), Error> {
        let Some(settings) = self.settings else {
            return Ok(());
        };
        let now_us = self.epoch.elapsed().as_micros() as u64 + 1;
        let (gcra, tag, message) = match key {
            Key::Address(addr) => (
                settings.address,
                self.tag(0, &address_bytes(addr)),
                "too many requests from this address",
            ),
            Key::Buyer(user) => (
                settings.buyer,
                self.tag(1, user.as_bytes()),
                "too many requests for this buyer",
            ),
        };
        match self.take_at(&settings, tag, gcra, now_us) {
            Ok(()) => Ok(()),
            Err(wait_us) => Err(Error::RetryLater {
                code: ErrorCode::RateLimited,
                message,
                retry_after_secs: wait_us.div_ceil(1_000_000).max(1) as u32,
            }),
        }
    }

    fn tag(&self, kind: u8, key: &[u8]) -> u64 {
        let mut h = self.hasher.build_hasher();
        h.write_u8(kind);
        h.write(key);
        h.finish() | 1
    }

    /// GCRA: allowed when the theoretical arrival time is at most the tolerance ahead
    /// of now; else `Err(µs until it is)`.
    fn take_at(&self, settings: &Settings, tag: u64, gcra: Gcra, now_us: u64) -> Result<(), u64> {
        let mut table = self.table.borrow_mut();
        let set = (tag as usize & (settings.sets - 1)) * WAYS;
        let ways = &mut table[set..set + WAYS];
        let i = match ways.iter().position(|s| s.tag == tag) {
            Some(i) => i,
            None => {
                // The fullest bucket (an empty slot is 0, the fullest of all).
                let i = (0..WAYS).min_by_key(|&i| ways[i].tat_us).unwrap_or(0);
                ways[i] = Slot { tag, tat_us: 0 };
                i
            }
        };
        let slot = &mut ways[i];
        let tat = slot.tat_us.max(now_us);
        let ahead = tat - now_us;
        if ahead > gcra.tolerance_us {
            return Err(ahead - gcra.tolerance_us);
        }
        slot.tat_us = tat + gcra.interval_us;
        Ok(())
    }
}

/// The bytes an address is counted by: an IPv4 address whole, an IPv6 address by its
/// /64 (one subscriber gets a /64 or more, so counting whole addresses would give each
/// client 2^64 buckets). An IPv4-mapped IPv6 address counts as its IPv4 address.
fn address_bytes(addr: IpAddr) -> [u8; 9] {
    let mut out = [0u8; 9];
    match addr {
        IpAddr::V4(v4) => out[1..5].copy_from_slice(&v4.octets()),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => out[1..5].copy_from_slice(&v4.octets()),
            None => {
                out[0] = 6;
                out[1..].copy_from_slice(&v6.octets()[..8]);
            }
        },
    }
    out
}

/// Longest `X-Forwarded-For` value looked at; a longer one counts as absent.
pub const MAX_FORWARDED_FOR_BYTES: usize = 1024;

/// The client's address: with `trusted_hops` proxies in front of the edge (each
/// appends the address it got the request from to `X-Forwarded-For`; the last one is
/// the socket's peer), the `trusted_hops`-th entry from the right, which the outermost
/// trusted proxy wrote. Entries to its left are what the client sent and may be
/// anything. With 0 hops, with no header, or when the entry there is no address (a
/// trusted proxy that did not append), the socket's peer.
///
/// Several `X-Forwarded-For` fields are one list in order (RFC 9110 section 5.3), and
/// proxies append to the last: `http` keeps the last field, which holds the right end.
pub fn client_addr(forwarded_for: Option<&[u8]>, peer: IpAddr, trusted_hops: u8) -> IpAddr {
    let hops = usize::from(trusted_hops);
    let Some(value) = forwarded_for.filter(|v| hops > 0 && v.len() <= MAX_FORWARDED_FOR_BYTES)
    else {
        return peer;
    };
    value
        .rsplit(|&b| b == b',')
        .nth(hops - 1)
        .and_then(parse_addr)
        .unwrap_or(peer)
}

/// An entry of `X-Forwarded-For`: an IP address, maybe with a port (`1.2.3.4:80`,
/// `[::1]:80`), around spaces.
fn parse_addr(entry: &[u8]) -> Option<IpAddr> {
    let text = std::str::from_utf8(entry.trim_ascii()).ok()?;
    if let Ok(addr) = text.parse::<IpAddr>() {
        return Some(addr);
    }
    if let Ok(addr) = text.parse::<std::net::SocketAddr>() {
        return Some(addr.ip());
    }
    // `[v6]` without a port.
    let v6 = text.strip_prefix('[')?.strip_suffix(']')?;
    v6.parse::<Ipv6Addr>().ok().map(IpAddr::V6)
}

#[cfg(test)]
mod tests;
