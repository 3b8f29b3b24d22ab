//! `POST /confirm/payment-intent`.

use codec::{
    contract::PaymentIntentRequest,
    store::{Idempotent, Intent},
};

use super::{answer, csv, fingerprint, idempotency_key, keyed, refused, seats};
use crate::{
    api::request::parse,
    core::Core,
    error::Error,
    http::{Head, Reply},
    token,
};

/// Every seat held by this user (one script), priced from the catalog, stored for the
/// holds' remaining lifetime.
pub async fn payment_intent(
    core: &Core,
    head: &Head<'_>,
    body: &[u8],
    reply: &mut Reply,
) -> Result<(), Error> {
    let key = idempotency_key(head)?;
    let req: PaymentIntentRequest<'_> = parse(body)?;
    let mut scratch = [0u8; token::SCRATCH_BYTES];
    let fp = fingerprint(&[&req.event_id, &req.user_id], &req.seat_ids);
    let call = keyed(core, head, key, fp, &mut scratch).await?;
    let checked = async {
        let event = call.caller(core, &req.user_id, &req.event_id).await?;
        let (seats, amount) = seats(&event, &req.seat_ids, core.config.hold_limit)?;
        Ok::<_, Error>((event, seats, amount))
    };
    let (event, seats, amount) = match checked.await {
        Ok(checked) => checked,
        Err(e) => return Err(call.refuse(core, "intent", e).await),
    };
    let seat_csv = csv(&seats);
    let event_id = event.catalog.event_id.as_str();
    let mut intent_id = [0u8; crate::ids::ID_BYTES];
    crate::ids::write_next_into(&mut intent_id);
    let intent = Intent {
        event: event_id,
        user: call.token.user,
        idem: call.key,
        fingerprint: &call.fingerprint,
        // Hex digits: ASCII.
        intent_id: std::str::from_utf8(&intent_id).unwrap_or_default(),
        amount,
        currency: &event.catalog.currency,
        ttl_ms: core.config.idempotency_ttl.as_millis() as u64,
        seat_csv: &seat_csv,
        seats: &seats,
    };
    core.store
        .intent(&intent, |outcome| match outcome {
            Idempotent::Done(body) => {
                answer(reply, 201, false, body);
                Ok(())
            }
            Idempotent::Replay(body) => {
                answer(reply, 201, true, body);
                Ok(())
            }
            Idempotent::Refused(refusal) => Err(refused(refusal)),
            Idempotent::Begun(_) => Err(Error::from(codec::store::Unexpected("intent"))),
        })
        .await?
}
