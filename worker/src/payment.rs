//! `PAYMENT_MODE=provider`: the payment loop. Orders that won their seats wait,
//! PENDING, for the payment provider; the edge records each of its signed callbacks in
//! PostgreSQL's `payment_callbacks` (the inbox) before answering it; this loop, every
//! `PAYMENT_POLL_MS`, in one short transaction:
//!
//! 1. applies the recorded callbacks whose order is stored, in arrival order
//!    ([`transition`]: `PENDING -> AUTHORIZED -> CAPTURED`, or `FAILED`): a capture
//!    confirms the order, a failure rejects it (`PAYMENT_FAILED`) and frees its seats;
//!    a callback that moves nothing forward (a late `AUTHORIZED`, anything after the
//!    order was rejected) is marked `IGNORED` (a capture there is logged: the money
//!    must go back);
//! 2. times out the payments still `PENDING` or `AUTHORIZED` past their `due_at` (the
//!    commit's acceptance + `PAYMENT_TIMEOUT_MS`): payment `VOIDED`, order `REJECTED`
//!    with `PAYMENT_TIMEOUT`, seats freed;
//!
//! then projects each changed order into Redis (`project::project`: sold bits, holds,
//! status record) and marks it projected, holding its payment row's lock meanwhile, so
//! two projections of one order never cross (`payments.projected` is the outbox: a
//! crash before the mark projects it again).
//!
//! Exactly once: every change locks its payment row first (`FOR UPDATE SKIP LOCKED`)
//! and is conditional on the state it leaves (READ COMMITTED re-checks the condition
//! on the locked row), so of two workers one changes a payment and the other skips it
//! or finds it moved on. Seats are freed by order id, so a rejection can never free
//! another order's seats.

use std::{collections::HashMap, sync::Arc, time::Duration};

use codec::{
    contract::{reason, CommitMessage, OrderState, PaymentState},
    payment::CallbackStatus,
    rules,
};
use tokio::sync::watch;
use tokio_postgres::Client;
use tracing::{info, warn};

use crate::{
    commit::{Commit, OrderKey},
    config::Config,
    db,
    error::Error,
    metrics::{Metrics, Settled},
    project::{self, Pending},
    redis::{Conn, Script},
    store,
};

/// Rows taken per step and tick.
const BATCH: i64 = 100;

/// The callbacks not applied yet whose order is stored (the first order of the intent
/// not rejected, else the first), in arrival order, locked with their payment:
/// provider event id, callback status, provider payment id, order id, payment status.
const CALLBACKS: &str = "
SELECT c.provider_event_id, c.status, c.payment_id, o.order_id, p.status
  FROM payment_callbacks c
  JOIN LATERAL (SELECT o.order_id FROM orders o
                 WHERE o.event_id = c.event_id AND o.intent_id = c.intent_id
                 ORDER BY o.status = 'REJECTED', o.order_id LIMIT 1) o ON true
  JOIN payments p ON p.order_id = o.order_id
 WHERE c.applied_at IS NULL AND ($2::text[] IS NULL OR c.event_id = ANY($2::text[]))
 ORDER BY c.received_at, c.provider_event_id
 LIMIT $1
   FOR UPDATE OF c, p SKIP LOCKED";

/// A payment's move ($1 order, $2 payment status, $3 provider payment id or null, $4
/// order status, $5 reason or null); a rejected order's seats are freed. Marks the
/// order for projection.
const MOVE: &str = "
WITH p AS (
    UPDATE payments SET status = $2, provider_payment_id = coalesce(provider_payment_id, $3),
                        projected = false, updated_at = now()
     WHERE order_id = $1
), freed AS (
    DELETE FROM sold_seats WHERE order_id = $1 AND $4::text = 'REJECTED'
)
UPDATE orders SET status = $4, reason = $5, updated_at = now() WHERE order_id = $1";

const APPLIED: &str =
    "UPDATE payment_callbacks SET applied_at = now(), outcome = $2 WHERE provider_event_id = $1";

/// Payments past due, locked: order ids.
const DUE: &str = "
SELECT p.order_id FROM payments p JOIN orders o USING (order_id)
 WHERE p.status IN ('PENDING', 'AUTHORIZED') AND p.due_at <= now()
   AND ($2::text[] IS NULL OR o.event_id = ANY($2::text[]))
 ORDER BY p.due_at LIMIT $1
   FOR UPDATE OF p SKIP LOCKED";

/// Orders whose last change is not projected yet, locked: key, then the columns
/// [`store::existing`] reads, then intent and hold ids.
const UNPROJECTED: &str = concat!(
    "SELECT o.event_id, o.user_id, o.idem, o.order_id, ",
    codec::order_columns!(),
    ", o.intent_id, coalesce(pay.hold_ids, '{}')
  FROM payments pay JOIN orders o USING (order_id)
 WHERE NOT pay.projected AND ($2::text[] IS NULL OR o.event_id = ANY($2::text[]))
 LIMIT $1
   FOR UPDATE OF pay SKIP LOCKED"
);

const PROJECTED: &str = "UPDATE payments SET projected = true WHERE order_id = ANY($1)";

/// Where a callback moves a payment in state `now`; `None`: nowhere (a state is
/// never left backwards, and the final ones are never left).
pub fn transition(now: PaymentState, callback: CallbackStatus) -> Option<PaymentState> {
    use PaymentState::{Authorized, Pending};
    match (now, callback) {
        (Pending, CallbackStatus::Authorized) => Some(Authorized),
        (Pending | Authorized, CallbackStatus::Captured) => Some(PaymentState::Captured),
        (Pending | Authorized, CallbackStatus::Failed) => Some(PaymentState::Failed),
        _ => None,
    }
}

/// Steps 1 and 2 in one transaction, for the orders of `events` (`WORKER_EVENTS`;
/// `None`: every event).
pub async fn settle(pg: &mut Client, events: Option<&[String]>) -> Result<Settled, Error> {
    let tx = pg.transaction().await?;
    let mut settled = Settled::default();
    let rows = tx.query(CALLBACKS, &[&BATCH, &events]).await?;
    // A payment's state as this transaction moved it (several callbacks may name it).
    let mut states: HashMap<i64, PaymentState> = HashMap::new();
    for row in &rows {
        let (event_id, status, payment_id): (&str, &str, &str) =
            (row.get(0), row.get(1), row.get(2));
        let order_id: i64 = row.get(3);
        let stored: &str = row.get(4);
        let now = match states.get(&order_id) {
            Some(&state) => state,
            None => PaymentState::stored(stored)
                .ok_or_else(|| Error::Schema(format!("payment status {stored:?}")))?,
        };
        let callback = CallbackStatus::stored(status)
            .ok_or_else(|| Error::Schema(format!("callback status {status:?}")))?;
        let outcome = match transition(now, callback) {
            Some(next) => {
                let (order, why, count) = match next {
                    PaymentState::Captured => (OrderState::Confirmed, None, &mut settled.captured),
                    PaymentState::Failed => (
                        OrderState::Rejected,
                        Some(reason::PAYMENT_FAILED),
                        &mut settled.failed,
                    ),
                    _ => (OrderState::Pending, None, &mut settled.authorized),
                };
                *count += 1;
                move_payment(&tx, order_id, next, Some(payment_id), order, why).await?;
                states.insert(order_id, next);
                "APPLIED"
            }
            None => {
                if callback == CallbackStatus::Captured && now != PaymentState::Captured {
                    warn!(provider_event_id = event_id, order_id, payment = ?now,
                        "a payment was captured for an order already rejected: refund it");
                }
                settled.ignored += 1;
                "IGNORED"
            }
        };
        tx.execute(APPLIED, &[&event_id, &outcome]).await?;
    }
    for row in tx.query(DUE, &[&BATCH, &events]).await? {
        let order_id: i64 = row.get(0);
        let why = Some(reason::PAYMENT_TIMEOUT);
        move_payment(
            &tx,
            order_id,
            PaymentState::Voided,
            None,
            OrderState::Rejected,
            why,
        )
        .await?;
        settled.timed_out += 1;
    }
    tx.commit().await?;
    Ok(settled)
}

async fn move_payment(
    tx: &tokio_postgres::Transaction<'_>,
    order_id: i64,
    payment: PaymentState,
    payment_id: Option<&str>,
    order: OrderState,
    why: Option<&str>,
) -> Result<(), Error> {
    let (payment, order) = (payment.as_str(), order.as_str());
    tx.execute(MOVE, &[&order_id, &payment, &payment_id, &order, &why])
        .await?;
    Ok(())
}

/// Step 3: projects the orders changed and not projected yet; returns how many.
pub async fn project_changed(
    pg: &mut Client,
    redis: &mut Conn,
    script: &Script,
    status_ttl: Duration,
    events: Option<&[String]>,
) -> Result<u64, Error> {
    let tx = pg.transaction().await?;
    let rows = tx.query(UNPROJECTED, &[&BATCH, &events]).await?;
    if rows.is_empty() {
        return Ok(0);
    }
    let mut orders = Vec::with_capacity(rows.len());
    for row in &rows {
        let outcome = store::existing(row, 3)?;
        let seats = outcome
            .seat_ids
            .iter()
            .map(|id| {
                rules::seat_id(id)
                    .map(|s| (s.section.to_owned(), s.n))
                    .map_err(|e| Error::Schema(format!("{e}: {id:?}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let msg = CommitMessage {
            v: CommitMessage::VERSION,
            idem: row.get(2),
            intent_id: row.get(11),
            event_id: row.get(0),
            user_id: row.get(1),
            seat_ids: outcome.seat_ids.clone(),
            hold_ids: row.get(12),
            amount: outcome.amount,
            currency: outcome.currency.clone(),
            accepted_at: 0,
        };
        let commit = Commit {
            msg,
            seats,
            rejected: None,
        };
        orders.push((commit, outcome));
    }
    let pairs: Vec<(&Commit, &store::Outcome)> = orders.iter().map(|(c, o)| (c, o)).collect();
    project::project(redis, script, &pairs, status_ttl, Pending::ReplaceRecord).await?;
    let ids: Vec<i64> = orders.iter().map(|(_, o)| o.order_id).collect();
    tx.execute(PROJECTED, &[&ids]).await?;
    tx.commit().await?;
    for (commit, outcome) in &orders {
        let OrderKey { event_id, idem, .. } = commit.key();
        tracing::debug!(event_id, idem, state = ?outcome.state, payment = ?outcome.payment, "payment projected");
    }
    Ok(ids.len() as u64)
}

/// The loop, until `shutdown` turns true: one [`settle`] and [`project_changed`] every
/// `PAYMENT_POLL_MS`, on a connection of its own (made again after a failure).
pub async fn run(
    config: Arc<Config>,
    script: Script,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    let run = &config.run;
    let Some(timeout) = run.payment_timeout else {
        return;
    };
    info!(
        timeout_ms = timeout.as_millis() as u64,
        poll_ms = run.payment_poll.as_millis() as u64,
        "payment loop: waiting for the provider's callbacks"
    );
    let mut conns: Option<(Client, Conn)> = None;
    while !*shutdown.borrow() {
        match tick(&config, &script, &metrics, &mut conns).await {
            Ok(settled) if settled != Settled::default() => info!(
                applied = settled.applied(),
                ignored = settled.ignored,
                timed_out = settled.timed_out,
                "payments settled"
            ),
            Ok(_) => {}
            Err(e) => {
                warn!(error = %e, kind = e.kind(), "payment loop failed, will retry");
                conns = None;
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(run.payment_poll) => {}
            _ = shutdown.changed() => {}
        }
    }
}

async fn tick(
    config: &Config,
    script: &Script,
    metrics: &Metrics,
    conns: &mut Option<(Client, Conn)>,
) -> Result<Settled, Error> {
    if conns
        .as_ref()
        .is_none_or(|(pg, redis)| pg.is_closed() || redis.is_dead())
    {
        let pg = db::connect(&config.database).await?;
        let redis = Conn::connect(&config.redis).await?;
        *conns = Some((pg, redis));
    }
    let (pg, redis) = conns.as_mut().expect("just connected");
    let events = config.run.events.as_deref();
    let settled = settle(pg, events).await?;
    // Counted once committed, whatever the projection does next.
    metrics.settled(&settled);
    // Everything changed, by this tick or by a tick that failed before projecting.
    let ttl = config.run.status_ttl;
    while project_changed(pg, redis, script, ttl, events).await? == BATCH as u64 {}
    Ok(settled)
}

#[cfg(test)]
mod tests {
    use super::*;
    use CallbackStatus as C;
    use PaymentState as P;

    #[test]
    fn a_payment_only_moves_forward() {
        assert_eq!(transition(P::Pending, C::Authorized), Some(P::Authorized));
        assert_eq!(transition(P::Pending, C::Captured), Some(P::Captured));
        assert_eq!(transition(P::Authorized, C::Captured), Some(P::Captured));
        assert_eq!(transition(P::Pending, C::Failed), Some(P::Failed));
        assert_eq!(transition(P::Authorized, C::Failed), Some(P::Failed));
        assert_eq!(transition(P::Authorized, C::Authorized), None);
        for done in [P::Captured, P::Failed, P::Voided] {
            for callback in [C::Authorized, C::Captured, C::Failed] {
                assert_eq!(transition(done, callback), None, "{done:?} {callback:?}");
            }
        }
    }
}
