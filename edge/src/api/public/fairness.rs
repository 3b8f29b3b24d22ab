//! `GET /public/fairness/{eventId}`: what anyone needs to check the pre-queue's draw
//! (`codec::fairness`): the commitment from the moment a pre-queue is set, the seed,
//! the list's digest and the count once the draw is done. From this core's copy of the
//! event (at most `EVENT_REFRESH_MS` old); the seed is never in that copy before the
//! draw (`advance.lua` returns it only after).

use codec::contract::Fairness;

use crate::{api::request::valid_event, core::Core, error::Error, http::Reply};

pub async fn fairness(core: &Core, event_id: &str, reply: &mut Reply) -> Result<(), Error> {
    valid_event(event_id)?;
    let event = core.events.get(&core.redis, event_id).await?;
    let (a, f) = (&event.admission, &event.fairness);
    let body = Fairness {
        event_id: event_id.to_owned(),
        queueing: a.queueing,
        prequeue_at_ms: f.prequeue_at_ms,
        open_at_ms: a.open_at_ms,
        rate: a.rate,
        active_limit: a.active_limit,
        seed_hash: f.seed_hash.clone(),
        seed: f.seed.clone(),
        list_digest: f.list_digest.clone(),
        prequeued: f.prequeued,
        draw: codec::fairness::DRAW.to_owned(),
    };
    reply.reset(200);
    reply.header("cache-control", b"public, max-age=1, s-maxage=1");
    serde_json::to_writer(reply.json_body(), &body).map_err(|e| Error::Internal {
        message: "cannot render the fairness record",
        cause: e.to_string(),
    })
}
