//! Commits into PostgreSQL: one short transaction for a batch of commits, set-based
//! (arrays in, one statement for orders, sold seats and payments), so a batch of 100
//! costs about the round trips of one.
//!
//! Exactly-once effect from at-least-once input:
//! - `orders`' unique `(event_id, user_id, idem)`: a redelivered commit inserts
//!   nothing (`ON CONFLICT DO NOTHING`) and is answered from the order it finds;
//! - `sold_seats`' primary key `(event_id, seat_id)`: a seat already sold is not
//!   inserted (`ON CONFLICT DO NOTHING`, so the transaction survives), and an order that
//!   did not get all its seats is turned `REJECTED` with `SEAT_SOLD`, its other seats
//!   freed and its payment `VOIDED`, in the same transaction. The constraint decides,
//!   not Redis.
//!
//! A commit [`crate::commit`] rejected already (`SEAT_NOT_FOUND`, `INVALID_SEAT_ID`) is
//! written `REJECTED` with its reason and a `VOIDED` payment, and sells nothing.
//!
//! With a purchase limit, the buyers of a batch are locked first (a transaction-level
//! advisory lock each, in one order everywhere, so two consumers with orders of one
//! buyer take turns), their seats in orders not rejected counted (CONFIRMED, or PENDING
//! awaiting a provider's payment), and each order that would pass the limit, in arrival
//! order, is stored `REJECTED` with `PURCHASE_LIMIT`: no constraint
//! can hold a sum over rows, the lock makes the count exact. (An order that then loses
//! a seat race has counted: a later order of the same buyer in the same batch may be
//! refused that would have fit. Conservative, and rare.)
//!
//! Two commits of one batch that want the same seat go into successive rounds (one
//! statement each, same transaction), so the batch decides exactly as one-by-one
//! processing in arrival order would. Rows are inserted in key order, so concurrent
//! transactions lock in the same order and do not deadlock each other.

use std::collections::{HashMap, HashSet};

use std::time::Duration;

use codec::contract::{reason, OrderState, PaymentState};
use tokio_postgres::{Client, Statement};

use crate::{
    commit::{Commit, OrderKey, Rejected},
    error::Error,
};

/// The reason of an order that lost a seat race.
pub const SEAT_SOLD: &str = reason::SEAT_SOLD;

/// Orders, their seats and payments, for one round of commits whose seats are distinct.
/// Parameters: parallel arrays event, user, idem, intent, seats (comma-joined), amount,
/// currency, reason (null: sell the seats; else store `REJECTED` with it), accepted at
/// (epoch ms), hold ids (space-joined: a hold id is visible ASCII, commas allowed); then the payment timeout in ms (0:
/// `PAYMENT_MODE=instant`). Returns one row per order inserted: id, event, user, idem,
/// updatedAt ms, whether it won every seat. Payments start `CAPTURED` with a CONFIRMED
/// order (instant), `PENDING` with a PENDING one (provider: the seats are taken, the
/// payment is due `timeout` after the commit's acceptance), `VOIDED` when rejected;
/// [`REJECT`] voids the losers'.
const INSERT: &str = "
WITH m AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[], $7::text[], $8::text[], $9::bigint[], $10::text[])
        AS m (event_id, user_id, idem, intent_id, seats, amount, currency, reason, accepted_at, holds)
), o AS (
    INSERT INTO orders (idem, user_id, event_id, intent_id, seat_ids, amount, currency, status, reason)
    SELECT idem, user_id, event_id, intent_id, string_to_array(seats, ','), amount, currency,
           CASE WHEN reason IS NOT NULL THEN 'REJECTED' WHEN $11::bigint > 0 THEN 'PENDING' ELSE 'CONFIRMED' END,
           reason
      FROM m ORDER BY event_id, user_id, idem
    ON CONFLICT (event_id, user_id, idem) DO NOTHING
    RETURNING order_id, event_id, user_id, idem, intent_id, seat_ids, amount, currency, status, updated_at
), s AS (
    INSERT INTO sold_seats (event_id, seat_id, order_id)
    SELECT o.event_id, seat.id, o.order_id FROM o, unnest(o.seat_ids) AS seat (id)
     WHERE o.status <> 'REJECTED'
     ORDER BY o.event_id, seat.id
    ON CONFLICT (event_id, seat_id) DO NOTHING
    RETURNING order_id
), p AS (
    INSERT INTO payments (order_id, status, amount, currency, intent_id, due_at, hold_ids)
    SELECT o.order_id,
           CASE o.status WHEN 'CONFIRMED' THEN 'CAPTURED' WHEN 'PENDING' THEN 'PENDING' ELSE 'VOIDED' END,
           o.amount, o.currency, o.intent_id,
           CASE WHEN o.status = 'PENDING' THEN to_timestamp((m.accepted_at + $11::bigint) / 1000.0) END,
           CASE WHEN $11::bigint > 0 THEN string_to_array(m.holds, ' ') END
      FROM o JOIN m USING (event_id, user_id, idem)
)
SELECT o.order_id, o.event_id, o.user_id, o.idem,
       (extract(epoch FROM o.updated_at) * 1000)::bigint,
       cardinality(o.seat_ids) = coalesce(w.won, 0)
  FROM o LEFT JOIN (SELECT order_id, count(*) AS won FROM s GROUP BY order_id) w USING (order_id)";

/// The orders (ids) that lost a seat: seats freed, payment voided, order rejected.
const REJECT: &str = "
WITH lost AS (SELECT unnest($1::bigint[]) AS order_id),
freed AS (DELETE FROM sold_seats s USING lost WHERE s.order_id = lost.order_id),
voided AS (UPDATE payments p SET status = 'VOIDED', updated_at = now() FROM lost WHERE p.order_id = lost.order_id)
UPDATE orders o SET status = 'REJECTED', reason = $2, updated_at = now()
  FROM lost WHERE o.order_id = lost.order_id";

/// Orders that exist already, by key (parallel arrays event, user, idem): key, order id,
/// then [`codec::order_columns!`], as [`existing`] reads them.
const EXISTING: &str = concat!(
    "SELECT o.event_id, o.user_id, o.idem, o.order_id, ",
    codec::order_columns!(),
    " FROM unnest($1::text[], $2::text[], $3::text[]) AS k (event_id, user_id, idem)
       JOIN orders o USING (event_id, user_id, idem)"
);

/// Takes the advisory lock of each buyer (parallel arrays event, user) for the rest of
/// the transaction, in the order of their keys, so transactions never wait in a circle.
const LOCK_BUYERS: &str = "
SELECT pg_advisory_xact_lock(k) FROM (
    SELECT DISTINCT hashtextextended(e || '/' || u, 0) AS k
      FROM unnest($1::text[], $2::text[]) AS b (e, u) ORDER BY k) s";

/// The buyers' (parallel arrays event, user) orders that hold their seats (CONFIRMED,
/// or PENDING while a provider's payment is awaited), and any of their orders with an
/// Idempotency-Key of `$3` (a redelivery): event, user, idem, seats, counted.
const BOUGHT: &str = "
SELECT o.event_id, o.user_id, o.idem, cardinality(o.seat_ids)::bigint, o.status <> 'REJECTED'
  FROM (SELECT DISTINCT e, u FROM unnest($1::text[], $2::text[]) AS b (e, u)) b
  JOIN orders o ON o.event_id = b.e AND o.user_id = b.u
 WHERE o.status <> 'REJECTED' OR o.idem = ANY($3::text[])";

/// A pooled connection (`db::Pool`) and the statements prepared on it.
pub struct PgConn {
    pub client: Client,
    pub statements: Statements,
}

/// [`INSERT`], [`REJECT`], [`EXISTING`], [`LOCK_BUYERS`] and [`BOUGHT`], prepared on one
/// connection.
pub struct Statements {
    insert: Statement,
    reject: Statement,
    existing: Statement,
    lock_buyers: Statement,
    bought: Statement,
}

impl Statements {
    pub async fn prepare(client: &Client) -> Result<Self, Error> {
        let (insert, reject, existing, lock_buyers, bought) = tokio::try_join!(
            client.prepare(INSERT),
            client.prepare(REJECT),
            client.prepare(EXISTING),
            client.prepare(LOCK_BUYERS),
            client.prepare(BOUGHT)
        )?;
        Ok(Self {
            insert,
            reject,
            existing,
            lock_buyers,
            bought,
        })
    }
}

/// An order as PostgreSQL has it after a commit was stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub order_id: i64,
    /// `Confirmed` or `Rejected`.
    pub state: OrderState,
    /// One of `codec::contract::reason` when rejected.
    pub reason: Option<String>,
    /// Epoch milliseconds.
    pub updated_at_ms: u64,
    pub seat_ids: Vec<String>,
    pub amount: u64,
    pub currency: String,
    /// `payments.status`.
    pub payment: PaymentState,
    /// The order existed before this delivery, which changed nothing in PostgreSQL.
    pub replay: bool,
}

/// Writes `commits` in one transaction and returns each one's order, in the same
/// order (a commit that appears twice gets its order twice, the second as a replay).
/// `purchase_limit` (0: none): most seats a buyer may have in orders of an event not
/// rejected. `payment_timeout` (`PAYMENT_MODE=provider`): orders that win their seats are
/// stored PENDING, their payment due this long after the commit's acceptance; `None`:
/// CONFIRMED. Nothing is written when this fails; [`Error::is_retryable`] says whether
/// to retry.
pub async fn store(
    conn: &mut PgConn,
    commits: &[&Commit],
    purchase_limit: u32,
    payment_timeout: Option<Duration>,
) -> Result<Vec<Outcome>, Error> {
    let timeout_ms = payment_timeout.map_or(0, |t| t.as_millis() as i64);
    // First occurrence of each key, and each commit's first occurrence.
    let mut first: HashMap<OrderKey<'_>, usize> = HashMap::with_capacity(commits.len());
    let of: Vec<usize> = commits
        .iter()
        .enumerate()
        .map(|(i, c)| *first.entry(c.key()).or_insert(i))
        .collect();

    let PgConn { client, statements } = conn;
    let tx = client.transaction().await?;
    let over = match purchase_limit {
        0 => Vec::new(),
        limit => over_limit(&tx, statements, commits, &of, limit).await?,
    };
    let limited: Vec<Commit> = over
        .iter()
        .map(|&i| {
            let mut commit = commits[i].clone();
            commit.rejected = Some(Rejected {
                reason: reason::PURCHASE_LIMIT,
                detail: format!("more than {purchase_limit} seats for this buyer"),
            });
            commit
        })
        .collect();
    let mut adjusted = commits.to_vec();
    for (&i, commit) in over.iter().zip(&limited) {
        adjusted[i] = commit;
    }
    let commits = &adjusted[..];
    let rounds = rounds(commits, &of);
    let mut outcomes: Vec<Option<Outcome>> = vec![None; commits.len()];
    for round in &rounds {
        let mut lost = Vec::new();
        let columns = Columns::of(round.iter().map(|&i| commits[i]));
        let rows = tx
            .query(
                &statements.insert,
                &[
                    &columns.event,
                    &columns.user,
                    &columns.idem,
                    &columns.intent,
                    &columns.seats,
                    &columns.amount,
                    &columns.currency,
                    &columns.reason,
                    &columns.accepted_at,
                    &columns.holds,
                    &timeout_ms,
                ],
            )
            .await?;
        for row in &rows {
            let key = OrderKey {
                event_id: row.get(1),
                user_id: row.get(2),
                idem: row.get(3),
            };
            let Some(&i) = first.get(&key) else {
                continue;
            };
            let order_id: i64 = row.get(0);
            let rejected = match &commits[i].rejected {
                Some(rejected) => Some(rejected.reason),
                None if row.get::<_, bool>(5) => None,
                None => {
                    lost.push(order_id);
                    Some(SEAT_SOLD)
                }
            };
            let msg = &commits[i].msg;
            let (state, payment) = match (rejected, timeout_ms) {
                (Some(_), _) => (OrderState::Rejected, PaymentState::Voided),
                (None, 0) => (OrderState::Confirmed, PaymentState::Captured),
                (None, _) => (OrderState::Pending, PaymentState::Pending),
            };
            outcomes[i] = Some(Outcome {
                order_id,
                state,
                payment,
                reason: rejected.map(str::to_owned),
                updated_at_ms: row.get::<_, i64>(4) as u64,
                seat_ids: msg.seat_ids.clone(),
                amount: msg.amount,
                currency: msg.currency.clone(),
                replay: false,
            });
        }
        // Before the next round, which may want the seats the losers free.
        if !lost.is_empty() {
            tx.execute(&statements.reject, &[&lost, &SEAT_SOLD]).await?;
        }
    }
    // Keys that inserted nothing: their order was there before (a redelivery).
    let replays: Vec<usize> = (0..commits.len())
        .filter(|&i| of[i] == i && outcomes[i].is_none())
        .collect();
    if !replays.is_empty() {
        let columns = Columns::of(replays.iter().map(|&i| commits[i]));
        let rows = tx
            .query(
                &statements.existing,
                &[&columns.event, &columns.user, &columns.idem],
            )
            .await?;
        for row in &rows {
            let key = OrderKey {
                event_id: row.get(0),
                user_id: row.get(1),
                idem: row.get(2),
            };
            if let Some(&i) = first.get(&key) {
                outcomes[i] = Some(existing(row, 3)?);
            }
        }
    }
    tx.commit().await?;

    (0..commits.len())
        .map(|i| {
            let mut outcome = outcomes[of[i]].clone().ok_or_else(|| {
                Error::Invalid(format!(
                    "order {:?} neither inserted nor found",
                    commits[i].key()
                ))
            })?;
            outcome.replay |= of[i] != i;
            Ok(outcome)
        })
        .collect()
}

/// The first occurrences in `commits` that would take their buyer past `limit`
/// seats in orders not rejected, in arrival order; the buyers stay locked until the
/// transaction ends. The lock and the count go in one round trip: PostgreSQL runs the
/// count after the lock is granted, with a snapshot taken then (READ COMMITTED).
async fn over_limit(
    tx: &tokio_postgres::Transaction<'_>,
    statements: &Statements,
    commits: &[&Commit],
    of: &[usize],
    limit: u32,
) -> Result<Vec<usize>, Error> {
    let candidates: Vec<usize> = (0..commits.len())
        .filter(|&i| of[i] == i && commits[i].rejected.is_none())
        .collect();
    if candidates.is_empty() {
        return Ok(Vec::new());
    }
    let events: Vec<&str> = candidates
        .iter()
        .map(|&i| commits[i].msg.event_id.as_str())
        .collect();
    let users: Vec<&str> = candidates
        .iter()
        .map(|&i| commits[i].msg.user_id.as_str())
        .collect();
    let idems: Vec<&str> = candidates
        .iter()
        .map(|&i| commits[i].msg.idem.as_str())
        .collect();
    let lock_params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&events, &users];
    let bought_params: [&(dyn tokio_postgres::types::ToSql + Sync); 3] = [&events, &users, &idems];
    let (_, rows) = tokio::try_join!(
        tx.execute(&statements.lock_buyers, &lock_params),
        tx.query(&statements.bought, &bought_params)
    )?;
    let mut bought: HashMap<(String, String), u64> = HashMap::new();
    let mut known: HashSet<(String, String, String)> = HashSet::new();
    for row in &rows {
        let (event, user, idem): (String, String, String) = (row.get(0), row.get(1), row.get(2));
        if row.get::<_, bool>(4) {
            *bought.entry((event.clone(), user.clone())).or_default() +=
                row.get::<_, i64>(3) as u64;
        }
        known.insert((event, user, idem));
    }
    let mut over = Vec::new();
    for i in candidates {
        let m = &commits[i].msg;
        if known.contains(&(m.event_id.clone(), m.user_id.clone(), m.idem.clone())) {
            // Stored before: answered from its order, counted already if confirmed.
            continue;
        }
        let total = bought
            .entry((m.event_id.clone(), m.user_id.clone()))
            .or_default();
        let seats = m.seat_ids.len() as u64;
        if *total + seats > u64::from(limit) {
            over.push(i);
        } else {
            *total += seats;
        }
    }
    Ok(over)
}

/// An order row read back: columns order_id, status, reason, updated_at ms, seat_ids,
/// amount, currency, payment status from `at` on.
pub fn existing(row: &tokio_postgres::Row, at: usize) -> Result<Outcome, Error> {
    let status: &str = row.get(at + 1);
    let state = OrderState::stored(status)
        .ok_or_else(|| Error::Schema(format!("order status {status:?}")))?;
    let paid: Option<&str> = row.get(at + 7);
    let payment = match paid {
        Some(paid) => PaymentState::stored(paid)
            .ok_or_else(|| Error::Schema(format!("payment status {paid:?}")))?,
        None => PaymentState::settled(state),
    };
    Ok(Outcome {
        order_id: row.get(at),
        state,
        reason: row.get(at + 2),
        updated_at_ms: row.get::<_, i64>(at + 3) as u64,
        seat_ids: row.get(at + 4),
        amount: row.get::<_, i64>(at + 5) as u64,
        currency: row.get::<_, String>(at + 6).trim_end().to_owned(),
        payment,
        replay: true,
    })
}

/// Splits the first occurrences into rounds whose seats are distinct: a commit goes
/// one round after the last earlier commit that wants one of its seats. A rejected
/// commit wants none.
fn rounds(commits: &[&Commit], of: &[usize]) -> Vec<Vec<usize>> {
    let mut last: HashMap<(&str, &str), usize> = HashMap::new();
    let mut rounds: Vec<Vec<usize>> = Vec::new();
    for (i, commit) in commits.iter().enumerate() {
        if of[i] != i {
            continue;
        }
        let event = commit.msg.event_id.as_str();
        let wanted: &[String] = match commit.rejected {
            Some(_) => &[],
            None => &commit.msg.seat_ids,
        };
        let round = wanted
            .iter()
            .filter_map(|seat| last.get(&(event, seat.as_str())).map(|r| r + 1))
            .max()
            .unwrap_or(0);
        for seat in wanted {
            last.insert((event, seat.as_str()), round);
        }
        if rounds.len() <= round {
            rounds.resize_with(round + 1, Vec::new);
        }
        rounds[round].push(i);
    }
    rounds
}

/// The parallel arrays [`INSERT`] and [`EXISTING`] take.
#[derive(Default)]
struct Columns<'a> {
    event: Vec<&'a str>,
    user: Vec<&'a str>,
    idem: Vec<&'a str>,
    intent: Vec<&'a str>,
    seats: Vec<String>,
    amount: Vec<i64>,
    currency: Vec<&'a str>,
    reason: Vec<Option<&'static str>>,
    accepted_at: Vec<i64>,
    holds: Vec<String>,
}

impl<'a> Columns<'a> {
    fn of(commits: impl Iterator<Item = &'a Commit>) -> Self {
        let mut c = Self::default();
        for commit in commits {
            let m = &commit.msg;
            c.event.push(&m.event_id);
            c.user.push(&m.user_id);
            c.idem.push(&m.idem);
            c.intent.push(&m.intent_id);
            // Seat ids hold no commas (`codec::rules::seat_id`).
            c.seats.push(m.seat_ids.join(","));
            c.amount.push(m.amount as i64);
            c.currency.push(&m.currency);
            c.reason.push(commit.rejected.as_ref().map(|r| r.reason));
            c.accepted_at.push(m.accepted_at as i64);
            // Hold ids are visible ASCII (`codec::rules::hold_id`): no spaces.
            c.holds.push(m.hold_ids.join(" "));
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commit::{decode, Rejected};

    fn commit(idem: &str, seats: &[&str]) -> Commit {
        let holds: Vec<String> = seats.iter().map(|s| format!("h{s}")).collect();
        let body = serde_json::json!({"v": 1, "idem": idem, "intentId": "pi", "eventId": "e",
            "userId": "u", "seatIds": seats, "holdIds": holds, "amount": 1, "currency": "KRW",
            "acceptedAt": 0});
        decode(body.to_string().as_bytes()).expect("valid")
    }

    #[test]
    fn commits_wanting_one_seat_go_into_successive_rounds() {
        let mut rejected = commit("r", &["A-4"]);
        rejected.rejected = Some(Rejected {
            reason: reason::SEAT_NOT_FOUND,
            detail: String::new(),
        });
        let commits = [
            commit("a", &["A-1", "A-2"]),
            commit("b", &["A-2", "A-3"]),
            commit("c", &["A-4"]),
            commit("d", &["A-3"]),
            commit("a", &["A-1", "A-2"]),
            // Sells nothing, so waits for no one.
            rejected,
        ];
        let refs: Vec<&Commit> = commits.iter().collect();
        let of = [0, 1, 2, 3, 0, 5];
        assert_eq!(rounds(&refs, &of), [vec![0, 2, 5], vec![1], vec![3]]);
    }
}
