//! The line's settings from `worker seed` (pre-queue, queueing, active limit), applied
//! through the same script as the admin endpoint (`codec/lua/admission.lua`), and
//! `worker verify-shuffle EVENT`: the pre-queue's draw recomputed from what Redis holds
//! and the edge publishes (`codec::fairness`).

use codec::{
    contract::{AdmissionState, Queueing},
    fairness, keys,
    store::{scripts, AdmissionRefusal, Call, Frame, SetAdmission},
};

use crate::{
    error::Error,
    redis::{Conn, Pipeline, Script},
};

/// The line's settings of a seed; `None` keeps what the event has.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LineSpec {
    pub prequeue_at_ms: Option<u64>,
    pub queueing: Option<Queueing>,
    pub active_limit: Option<u64>,
}

impl LineSpec {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

fn keys_and_args(call: &Call) -> (Vec<&[u8]>, Vec<&[u8]>) {
    (call.keys().collect(), call.args().collect())
}

/// Applies `line` to `event_id` with a seed drawn from the operating system now (kept
/// only if the event needs its first one).
pub async fn apply(
    redis: &mut Conn,
    event_id: &str,
    line: &LineSpec,
) -> Result<AdmissionState, Error> {
    let mut bytes = [0u8; fairness::SEED_BYTES];
    getrandom::getrandom(&mut bytes)
        .map_err(|e| Error::Invalid(format!("no randomness for the seed: {e}")))?;
    let seed = fairness::seed_hex(&bytes);
    let seed_hash = fairness::commitment(&seed);
    let set = SetAdmission {
        event: event_id,
        open_at_ms: None,
        rate: None,
        prequeue_at_ms: line.prequeue_at_ms,
        queueing: line.queueing,
        active_limit: line.active_limit,
        seed: &seed,
        seed_hash: &seed_hash,
    };
    let mut call = Call::default();
    set.call(&mut call);
    let (k, a) = keys_and_args(&call);
    let mut pipeline = Pipeline::new();
    let script = Script::new(scripts::ADMISSION);
    script.push(&mut pipeline, &k, &a);
    let reply = redis.run_script(&script, &pipeline).await?;
    let reply = reply
        .first()
        .ok_or_else(|| Error::Invalid("no reply".into()))?;
    match SetAdmission::decode(reply).map_err(|e| Error::Invalid(e.to_string()))? {
        Ok(state) => Ok(state),
        Err(AdmissionRefusal::PrequeueNotBeforeOpening) => Err(Error::Invalid(
            "the pre-queue must open before the opening (--prequeue-in-secs < --open-in-secs)"
                .into(),
        )),
        Err(AdmissionRefusal::PrequeueOpen) => Err(Error::Invalid(
            "the pre-queue is open: it cannot move, nor the queueing change, until the draw".into(),
        )),
    }
}

/// What `verify-shuffle` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub prequeued: usize,
    /// Places that match the recomputed draw.
    pub matching: usize,
    /// Buyers who left their drawn place and entered again (a position after the draw's).
    pub reentered: usize,
    /// What does not hold, one line each; empty when the draw checks out.
    pub problems: Vec<String>,
}

fn text(frame: Option<&Frame>) -> Option<String> {
    match frame {
        Some(Frame::BulkString(b)) => String::from_utf8(b.to_vec()).ok(),
        _ => None,
    }
}

/// Recomputes the draw of `event_id` from Redis: the seed against its published
/// commitment, the pre-queued list against its digest, and every drawn place.
pub async fn verify_shuffle(redis: &mut Conn, event_id: &str) -> Result<Verdict, Error> {
    let adm = keys::admission(event_id);
    let fields = redis
        .query(&[
            b"HMGET",
            adm.as_bytes(),
            b"seed",
            b"seedHash",
            b"drawn",
            b"drawBase",
            b"listDigest",
            b"prequeued",
        ])
        .await?;
    let Frame::Array(f) = fields else {
        return Err(Error::Invalid("HMGET answered no array".into()));
    };
    let (seed, seed_hash, drawn) = (text(f.first()), text(f.get(1)), text(f.get(2)));
    let (Some(seed), Some(seed_hash), Some(_)) = (seed, seed_hash, drawn) else {
        return Err(Error::Invalid(format!(
            "event {event_id} has no drawn pre-queue (no seed, or not opened yet)"
        )));
    };
    let base: u64 = text(f.get(3)).and_then(|s| s.parse().ok()).unwrap_or(0);
    let list_digest = text(f.get(4)).unwrap_or_default();
    let count: Option<usize> = text(f.get(5)).and_then(|s| s.parse().ok());
    let pre = keys::prequeue(event_id);
    let Frame::Array(ids) = redis
        .query(&[b"ZRANGE", pre.as_bytes(), b"0", b"-1"])
        .await?
    else {
        return Err(Error::Invalid("ZRANGE answered no array".into()));
    };
    let ids: Vec<String> = ids.iter().filter_map(|id| text(Some(id))).collect();
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();

    let mut problems = Vec::new();
    if fairness::commitment(&seed) != seed_hash {
        problems.push(format!(
            "SHA-256(seed) is not the published seedHash {seed_hash}"
        ));
    }
    let (order, digest) = fairness::draw(&seed, &ids);
    if digest != list_digest {
        problems.push(format!(
            "the list's digest is {digest}, published {list_digest}"
        ));
    }
    if count != Some(order.len()) {
        problems.push(format!("{} pre-queued, published {count:?}", order.len()));
    }
    let pos = keys::positions(event_id);
    let (mut matching, mut reentered) = (0, 0);
    for chunk in order.chunks(1000).enumerate() {
        let (c, ids) = chunk;
        let mut args: Vec<&[u8]> = vec![b"HMGET", pos.as_bytes()];
        args.extend(ids.iter().map(|id| id.as_bytes()));
        let Frame::Array(places) = redis.query(&args).await? else {
            return Err(Error::Invalid("HMGET answered no array".into()));
        };
        for (i, (id, place)) in ids.iter().zip(&places).enumerate() {
            let expected = base + (c * 1000 + i) as u64 + 1;
            match text(Some(place)).and_then(|s| s.parse::<u64>().ok()) {
                Some(p) if p == expected => matching += 1,
                Some(p) if p > base + order.len() as u64 => reentered += 1,
                other => problems.push(format!("{id}: drawn place {expected}, holds {other:?}")),
            }
        }
    }
    Ok(Verdict {
        prequeued: order.len(),
        matching,
        reentered,
        problems,
    })
}
