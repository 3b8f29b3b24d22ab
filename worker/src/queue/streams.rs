//! The local commit queue: Redis Streams `ev:{E}:commits:{shard}` (field `msg`),
//! consumer group [`GROUP`] (<https://redis.io/docs/latest/develop/data-types/streams/>).
//!
//! - Receive: `XREADGROUP GROUP workers NAME COUNT n BLOCK ms STREAMS k... >...` over
//!   every stream of every event this worker consumes; Redis hands each entry to one
//!   consumer of the group and keeps it in the group's pending entries list (PEL)
//!   until `XACK`.
//! - Reclaim: every half visibility timeout a consumer runs `XAUTOCLAIM` on each
//!   stream for entries idle longer than the timeout (their consumer died or hangs)
//!   and reads their delivery counts from `XPENDING`, in one script ([`RECLAIM`]),
//!   which also removes consumers of dead processes once they hold nothing.
//! - Extend: `XCLAIM ... JUSTID` to itself resets an entry's idle time without
//!   counting a delivery.
//! - Ack: `XACK` and `XDEL`: a processed entry leaves the stream, so a stream's length
//!   is its backlog.
//! - Dead letters: [`DEAD_LETTER`] moves an entry to `ev:{E}:commits:dlq` with its
//!   reason and origin, and acks it, atomically (the keys share the event's hash tag).

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use codec::keys;
use tokio::sync::watch;

use super::{Consumer, Delivery};
use crate::{
    error::Error,
    now_ms,
    redis::{Conn, Frame, Pipeline, RedisConfig, RedisError, Script},
};

/// The consumer group every worker joins.
pub const GROUP: &str = "workers";

/// The reclaim script (`codec/lua/reclaim.lua`): claims idle entries, sweeps idle consumers.
pub use codec::store::scripts::RECLAIM;

/// Consumers idle this many visibility timeouts with nothing pending are removed.
const SWEEP_AFTER_VISIBILITIES: u32 = 10;

/// The dead-letter script (`codec/lua/dead_letter.lua`).
pub use codec::store::scripts::DEAD_LETTER;

/// The event of a commit stream key `ev:{E}:commits:...`.
pub fn event_of(stream: &str) -> Option<&str> {
    let rest = stream.strip_prefix("ev:{")?;
    let (event, tail) = rest.split_once('}')?;
    tail.starts_with(":commits:").then_some(event)
}

/// Creates the group on each stream (and the stream, `MKSTREAM`) where it is missing.
/// From id 0: entries the edge appended before the group existed are consumed too.
pub async fn ensure_groups(redis: &mut Conn, streams: &[String]) -> Result<(), Error> {
    if streams.is_empty() {
        return Ok(());
    }
    let mut pipeline = Pipeline::new();
    for key in streams {
        pipeline.push(&[
            b"XGROUP",
            b"CREATE",
            key.as_bytes(),
            GROUP.as_bytes(),
            b"0",
            b"MKSTREAM",
        ]);
    }
    for reply in redis.pipeline_replies(&pipeline).await? {
        if let Frame::Error(e) = reply {
            if !e.starts_with("BUSYGROUP") {
                return Err(RedisError::Server(e.to_string()).into());
            }
        }
    }
    Ok(())
}

/// One consumer of the group, with a connection of its own (`XREADGROUP BLOCK` holds
/// it while waiting).
pub struct StreamConsumer {
    config: RedisConfig,
    conn: Option<Conn>,
    /// This consumer's name in the group, unique per process and loop.
    name: String,
    /// The streams to read, kept current by `run`'s event refresher.
    streams: watch::Receiver<Arc<Vec<String>>>,
    count: usize,
    block: Duration,
    visibility: Duration,
    max_deliveries: u32,
    next_reclaim: Instant,
    reclaim: Script,
    dead_letter: Script,
}

impl StreamConsumer {
    pub fn new(
        config: RedisConfig,
        name: String,
        streams: watch::Receiver<Arc<Vec<String>>>,
        run: &crate::config::RunConfig,
    ) -> Self {
        Self {
            config,
            conn: None,
            name,
            streams,
            count: run.batch,
            block: run.block,
            visibility: run.visibility,
            max_deliveries: run.max_deliveries,
            next_reclaim: Instant::now(),
            reclaim: Script::new(RECLAIM),
            dead_letter: Script::new(DEAD_LETTER),
        }
    }

    /// The connection, made anew when the last one broke (a round trip that failed
    /// or timed out leaves it dead).
    async fn conn(&mut self) -> Result<&mut Conn, Error> {
        if self.conn.as_ref().is_none_or(Conn::is_dead) {
            self.conn = Some(Conn::connect(&self.config).await?);
        }
        Ok(self.conn.as_mut().expect("just connected"))
    }

    /// Entries idle past the visibility timeout, claimed from whichever consumer had them.
    async fn reclaim(&mut self, streams: &[String]) -> Result<Vec<Delivery>, Error> {
        let (script, name) = (self.reclaim.clone(), self.name.clone());
        let idle = self.visibility.as_millis().to_string();
        let count = self.count.to_string();
        let sweep = (self.visibility * SWEEP_AFTER_VISIBILITIES)
            .as_millis()
            .to_string();
        let mut pipeline = Pipeline::new();
        for key in streams {
            script.push(
                &mut pipeline,
                &[key.as_bytes()],
                &[
                    GROUP.as_bytes(),
                    name.as_bytes(),
                    idle.as_bytes(),
                    count.as_bytes(),
                    sweep.as_bytes(),
                ],
            );
        }
        let replies = match self.conn().await?.run_script(&script, &pipeline).await {
            Err(RedisError::Server(e)) if e.starts_with("NOGROUP") => {
                ensure_groups(self.conn().await?, streams).await?;
                return Ok(Vec::new());
            }
            other => other?,
        };
        let mut out = Vec::new();
        for (key, reply) in streams.iter().zip(replies) {
            let Frame::Array(entries) = reply else {
                continue;
            };
            for entry in entries {
                let Frame::Array(parts) = entry else { continue };
                let [id, fields, deliveries] = &parts[..] else {
                    continue;
                };
                let receives = match deliveries {
                    Frame::Integer(n) => *n as u32,
                    _ => 0,
                };
                out.push(delivery(key, id, fields, receives));
            }
        }
        Ok(out)
    }
}

/// A delivery from a stream entry's id and fields.
fn delivery(stream: &str, id: &Frame, fields: &Frame, receives: u32) -> Delivery {
    let body = match fields {
        Frame::Array(kv) => kv
            .chunks(2)
            .find(|pair| matches!(&pair[0], Frame::BulkString(f) if &f[..] == b"msg"))
            .and_then(|pair| match pair.get(1) {
                Some(Frame::BulkString(v)) => Some(v.to_vec()),
                _ => None,
            }),
        _ => None,
    };
    Delivery {
        body: body.unwrap_or_default(),
        receives,
        event_id: event_of(stream).map(str::to_owned),
        source: stream.to_owned(),
        receipt: text(id),
    }
}

fn text(frame: &Frame) -> String {
    match frame {
        Frame::BulkString(b) | Frame::SimpleString(b) => String::from_utf8_lossy(b).into_owned(),
        _ => String::new(),
    }
}

impl Consumer for StreamConsumer {
    async fn receive(&mut self) -> Result<Vec<Delivery>, Error> {
        let streams = Arc::clone(&self.streams.borrow());
        if streams.is_empty() {
            tokio::time::sleep(self.block).await;
            return Ok(Vec::new());
        }
        if Instant::now() >= self.next_reclaim {
            let every =
                (self.visibility / 2).clamp(Duration::from_millis(50), Duration::from_secs(5));
            self.next_reclaim = Instant::now() + every;
            let reclaimed = self.reclaim(&streams).await?;
            if !reclaimed.is_empty() {
                return Ok(reclaimed);
            }
        }
        let (count, block) = (self.count.to_string(), self.block.as_millis().to_string());
        let name = self.name.clone();
        let mut command: Vec<&[u8]> = vec![
            b"XREADGROUP",
            b"GROUP",
            GROUP.as_bytes(),
            name.as_bytes(),
            b"COUNT",
            count.as_bytes(),
            b"BLOCK",
            block.as_bytes(),
            b"STREAMS",
        ];
        command.extend(streams.iter().map(|k| k.as_bytes()));
        command.extend(streams.iter().map(|_| &b">"[..]));
        let reply = match self.conn().await?.query(&command).await {
            Err(RedisError::Server(e)) if e.starts_with("NOGROUP") => {
                // The stream (or its group) vanished: Redis lost its data.
                ensure_groups(self.conn().await?, &streams).await?;
                return Ok(Vec::new());
            }
            other => other?,
        };
        let mut out = Vec::new();
        let Frame::Array(per_stream) = reply else {
            return Ok(out); // Null: nothing within the block time.
        };
        for stream in per_stream {
            let Frame::Array(parts) = stream else {
                continue;
            };
            let [key, Frame::Array(entries)] = &parts[..] else {
                continue;
            };
            let key = text(key);
            for entry in entries {
                let Frame::Array(kv) = entry else { continue };
                if let [id, fields] = &kv[..] {
                    out.push(delivery(&key, id, fields, 1));
                }
            }
        }
        Ok(out)
    }

    async fn ack(&mut self, done: &[Delivery]) -> Result<(), Error> {
        if done.is_empty() {
            return Ok(());
        }
        let mut pipeline = Pipeline::new();
        for (key, ids) in by_stream(done) {
            let mut xack: Vec<&[u8]> = vec![b"XACK", key.as_bytes(), GROUP.as_bytes()];
            xack.extend(ids.iter().map(|id| id.as_bytes()));
            pipeline.push(&xack);
            let mut xdel: Vec<&[u8]> = vec![b"XDEL", key.as_bytes()];
            xdel.extend(ids.iter().map(|id| id.as_bytes()));
            pipeline.push(&xdel);
        }
        self.conn().await?.pipeline(&pipeline).await?;
        Ok(())
    }

    async fn dead_letter(&mut self, delivery: &Delivery, reason: &str) -> Result<(), Error> {
        let event = delivery
            .event_id
            .as_deref()
            .or_else(|| event_of(&delivery.source))
            .ok_or_else(|| Error::Invalid(format!("{} is not a commit stream", delivery.source)))?;
        let dlq = keys::commits_dlq(event);
        let (receives, at) = (delivery.receives.to_string(), now_ms().to_string());
        let script = self.dead_letter.clone();
        let mut pipeline = Pipeline::new();
        script.push(
            &mut pipeline,
            &[dlq.as_bytes(), delivery.source.as_bytes()],
            &[
                GROUP.as_bytes(),
                delivery.receipt.as_bytes(),
                &delivery.body,
                reason.as_bytes(),
                receives.as_bytes(),
                at.as_bytes(),
            ],
        );
        self.conn().await?.run_script(&script, &pipeline).await?;
        Ok(())
    }

    async fn extend(&mut self, held: &[Delivery]) -> Result<(), Error> {
        let name = self.name.clone();
        let mut pipeline = Pipeline::new();
        for (key, ids) in by_stream(held) {
            let mut xclaim: Vec<&[u8]> = vec![
                b"XCLAIM",
                key.as_bytes(),
                GROUP.as_bytes(),
                name.as_bytes(),
                b"0",
            ];
            xclaim.extend(ids.iter().map(|id| id.as_bytes()));
            xclaim.push(b"JUSTID");
            pipeline.push(&xclaim);
        }
        if pipeline.is_empty() {
            return Ok(());
        }
        self.conn().await?.pipeline(&pipeline).await?;
        Ok(())
    }

    fn max_receives(&self) -> Option<u32> {
        Some(self.max_deliveries)
    }
}

/// Deliveries' entry ids grouped by stream, in first-seen order.
fn by_stream(deliveries: &[Delivery]) -> Vec<(&str, Vec<&str>)> {
    let mut out: Vec<(&str, Vec<&str>)> = Vec::new();
    for d in deliveries {
        match out.iter_mut().find(|(k, _)| *k == d.source) {
            Some((_, ids)) => ids.push(&d.receipt),
            None => out.push((&d.source, vec![&d.receipt])),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_keys_name_their_event() {
        assert_eq!(event_of(&keys::commits("demo", 3)), Some("demo"));
        assert_eq!(event_of(&keys::commits_dlq("e_1")), Some("e_1"));
        assert_eq!(event_of("ev:{demo}:catalog"), None);
        assert_eq!(event_of("commits"), None);
    }
}
