//! `POST /confirm/commit`: checks the intent and the holds, extends the holds to cover
//! processing, enqueues the commit message and records the order PENDING, in one
//! script. 202 with `Location: /confirm/status?idem=KEY`.
//!
//! The local queue is a Redis Stream per event shard, appended inside the script: the
//! order is accepted, recorded PENDING and enqueued atomically, or not at all. With
//! SQS, the script marks the key in flight and returns the message; the edge answers
//! 202 only once SQS has taken it, and frees the key when SQS refuses it.

use std::time::Duration;

use codec::{
    contract::{CommitMessage, CommitRequest, CommitResponse, Order, OrderState, StatusResponse},
    error_code::ErrorCode,
    rules,
    store::{Commit, Idempotent},
    url::percent_encode,
};

use super::{answer, csv, fingerprint, idempotency_key, keyed, refused, seats};
use crate::{
    api::request::{now_ms, parse},
    cache::fnv1a,
    core::Core,
    error::Error,
    http::{Head, Reply},
    side::SendError,
    token,
};

pub async fn commit(
    core: &Core,
    head: &Head<'_>,
    body: &[u8],
    reply: &mut Reply,
) -> Result<(), Error> {
    let key = idempotency_key(head)?;
    let req: CommitRequest<'_> = parse(body)?;
    let mut scratch = [0u8; token::SCRATCH_BYTES];
    let fp = fingerprint(
        &[&req.event_id, &req.user_id, &req.intent_id],
        &req.seat_ids,
    );
    let call = keyed(core, head, key, fp, &mut scratch).await?;
    let checked = async {
        if rules::intent_id(&req.intent_id).is_err() {
            // Not an id this system hands out, so there is no such intent.
            return Err(Error::request(ErrorCode::IntentNotFound, "no such intent"));
        }
        let event = call.caller(core, &req.user_id, &req.event_id).await?;
        let (seats, amount) = seats(&event, &req.seat_ids, core.config.hold_limit)?;
        Ok((event, seats, amount))
    };
    let (event, seats, amount) = match checked.await {
        Ok(checked) => checked,
        Err(e) => return Err(call.refuse(core, "commit", e).await),
    };
    let (key, token) = (call.key, &call.token);
    let seat_csv = csv(&seats);
    let event_id = event.catalog.event_id.as_str();
    let currency = event.catalog.currency.as_str();
    let pending = StatusResponse::pending(Order {
        idem: key.to_owned(),
        status: OrderState::Pending,
        event_id: event_id.to_owned(),
        seat_ids: seats.iter().map(|s| s.id.to_owned()).collect(),
        amount,
        currency: currency.to_owned(),
        reason: None,
        updated_at: now_ms(),
    });
    let response = serde_json::to_vec(&CommitResponse {
        idem: key.to_owned(),
        status: OrderState::Pending,
    })
    .unwrap_or_default();
    let sqs = core.side.as_ref().filter(|side| side.queues());
    let commit = Commit {
        event: event_id,
        user: token.user,
        idem: key,
        fingerprint: &call.fingerprint,
        intent_id: &req.intent_id,
        shard: (fnv1a(key.as_bytes()) % u64::from(core.config.commit_shards)) as u32,
        amount,
        currency,
        seat_csv: &seat_csv,
        seats: &seats,
        // Awaiting a provider's payment, the holds must outlive its timeout: the
        // worker frees them when it rejects the order.
        extend_ms: (core.config.commit_hold_extend
            + core
                .config
                .payment
                .as_ref()
                .map_or(Duration::ZERO, |p| p.timeout))
        .as_millis() as u64,
        ttl_ms: core.config.idempotency_ttl.as_millis() as u64,
        in_flight_ttl_ms: core.config.commit_in_flight.as_millis() as u64,
        status: &pending.record(),
        response: &response,
        begin: sqs.is_some(),
        purchase_limit: core.config.purchase_limit,
    };
    let begun = core
        .store
        .commit(&commit, |outcome| match outcome {
            Idempotent::Done(body) => {
                answer(reply, 202, false, body);
                Ok(None)
            }
            Idempotent::Replay(body) => {
                answer(reply, 202, true, body);
                Ok(None)
            }
            Idempotent::Begun(message) => Ok(Some(String::from_utf8_lossy(message).into_owned())),
            Idempotent::Refused(refusal) => Err(refused(refusal)),
        })
        .await??;
    if let (Some(message), Some(side)) = (begun, sqs) {
        let group = format!(
            "{event_id}#{}",
            fnv1a(key.as_bytes()) % u64::from(core.config.sqs_groups)
        );
        let dedup = CommitMessage::deduplication_id(event_id, token.user, key);
        let sent = side.send(group, dedup, message).await;
        if let Err(error) = sent.unwrap_or_else(|_| Err(SendError("side thread gone".into()))) {
            core.store.commit_abort(&commit).await?;
            return Err(Error::unavailable(
                "the commit queue is unavailable, retry",
                error,
            ));
        }
        core.store.commit_finish(&commit).await?;
        answer(reply, 202, false, &response);
    }
    let mut location = b"/confirm/status?idem=".to_vec();
    percent_encode(&mut location, key.as_bytes());
    reply.header("location", &location);
    Ok(())
}
