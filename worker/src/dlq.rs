//! `worker dlq list | redrive`: the local profile's dead-letter streams
//! (`ev:{E}:commits:dlq`, written by `queue::streams`). On the aws profile the
//! dead-letter queue is an SQS queue of its own (the redrive policy's target): redrive
//! it with `aws sqs start-message-move-task`.

use codec::keys;

use crate::{
    error::Error,
    queue::streams::event_of,
    redis::{Conn, Frame, Pipeline, Script},
};

/// Dead letters read per `XRANGE`.
const PAGE: usize = 1_000;

/// The redrive script (`codec/lua/redrive.lua`).
use codec::store::scripts::REDRIVE;

/// One entry of a dead-letter stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// The dead-letter entry's id.
    pub id: String,
    pub reason: String,
    /// The stream and entry id it came from.
    pub stream: String,
    pub origin_id: String,
    pub deliveries: u32,
    /// When it was dead-lettered, epoch milliseconds.
    pub at_ms: u64,
    pub msg: Vec<u8>,
}

/// Every dead letter of `event_id`, oldest first.
pub async fn list(redis: &mut Conn, event_id: &str) -> Result<Vec<DeadLetter>, Error> {
    let key = keys::commits_dlq(event_id);
    let page = PAGE.to_string();
    let mut start = "-".to_owned();
    let mut out = Vec::new();
    loop {
        let reply = redis
            .query(&[
                b"XRANGE",
                key.as_bytes(),
                start.as_bytes(),
                b"+",
                b"COUNT",
                page.as_bytes(),
            ])
            .await?;
        let Frame::Array(entries) = reply else {
            return Ok(out);
        };
        let n = entries.len();
        for entry in entries {
            let Frame::Array(parts) = entry else { continue };
            let [Frame::BulkString(id), Frame::Array(fields)] = &parts[..] else {
                continue;
            };
            let field = |name: &str| -> Vec<u8> {
                fields
                    .chunks(2)
                    .find(|kv| matches!(&kv[0], Frame::BulkString(f) if &f[..] == name.as_bytes()))
                    .and_then(|kv| match kv.get(1) {
                        Some(Frame::BulkString(v)) => Some(v.to_vec()),
                        _ => None,
                    })
                    .unwrap_or_default()
            };
            let text = |name: &str| String::from_utf8_lossy(&field(name)).into_owned();
            out.push(DeadLetter {
                id: String::from_utf8_lossy(id).into_owned(),
                reason: text("reason"),
                stream: text("stream"),
                origin_id: text("id"),
                deliveries: text("deliveries").parse().unwrap_or(0),
                at_ms: text("at").parse().unwrap_or(0),
                msg: field("msg"),
            });
        }
        match out.last() {
            // Exclusive range start (Redis 6.2+): the entry after the last one seen.
            Some(last) if n == PAGE => start = format!("({}", last.id),
            _ => return Ok(out),
        }
    }
}

/// Puts every dead letter of `event_id` back on the stream it came from (shard 0 if
/// that is not one of the event's commit streams); returns how many moved.
pub async fn redrive(redis: &mut Conn, event_id: &str) -> Result<usize, Error> {
    let letters = list(redis, event_id).await?;
    let dlq = keys::commits_dlq(event_id);
    let script = Script::new(REDRIVE);
    let mut moved = 0;
    for chunk in letters.chunks(PAGE) {
        let mut pipeline = Pipeline::new();
        for letter in chunk {
            let target = if event_of(&letter.stream) == Some(event_id) && letter.stream != dlq {
                letter.stream.clone()
            } else {
                keys::commits(event_id, 0)
            };
            script.push(
                &mut pipeline,
                &[dlq.as_bytes(), target.as_bytes()],
                &[letter.id.as_bytes(), &letter.msg],
            );
        }
        for reply in redis.run_script(&script, &pipeline).await? {
            if matches!(reply, Frame::Integer(1)) {
                moved += 1;
            }
        }
    }
    Ok(moved)
}
