//! The Redis projections of stored orders (`codec::keys`), written after the
//! PostgreSQL commit and before the ack, so a crash in between only repeats them:
//! every write here is idempotent.
//!
//! Per order, one script ([`PROJECT`], `codec/lua/project.lua`): a CONFIRMED order sets
//! its seats' sold bits and leaves `sold` in their hold keys for good (a hold's one
//! `SET ... NX` then refuses them), and marks its buyer's place in the line left; a
//! REJECTED one gives its seats back to the buyer's purchase limit
//! (`ev:{E}:bought:..`) and removes its own holds (compare-and-delete of `holdId user`,
//! so another buyer's later hold on the seat stays); either takes them out of the
//! section's held zset and the buyer's zset; then the status record
//! `ev:{E}:status:...` becomes the final
//! [`StatusResponse`]. All the orders of a batch go in one pipeline: one round trip.
//! [`rebuild_statuses`] writes the status records again from PostgreSQL.

use std::time::Duration;

use codec::{
    contract::{Order, OrderState, StatusResponse},
    keys,
};
use tokio_postgres::Client;

use crate::{
    commit::{Commit, OrderKey},
    error::Error,
    now_ms,
    redis::{Conn, Pipeline, Script},
    store::{self, Outcome},
};

/// The projection script (`codec/lua/project.lua`).
pub use codec::store::scripts::PROJECT;

/// The status record of an order: what `GET /confirm/status` answers.
pub fn status(key: OrderKey<'_>, outcome: &Outcome) -> StatusResponse {
    StatusResponse::stored(
        Order {
            idem: key.idem.to_owned(),
            status: outcome.state,
            event_id: key.event_id.to_owned(),
            seat_ids: outcome.seat_ids.clone(),
            amount: outcome.amount,
            currency: outcome.currency.clone(),
            reason: outcome.reason.clone(),
            updated_at: outcome.updated_at_ms,
        },
        Some(outcome.payment),
    )
}

fn status_json(key: OrderKey<'_>, outcome: &Outcome) -> Result<Vec<u8>, Error> {
    Ok(status(key, outcome).record())
}

/// Who projects an order awaiting its payment, and so whether its status record
/// replaces the one in Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pending {
    /// The commit's consumer: the record is written only where there is none (the
    /// payment loop may have written a later state already).
    KeepRecord,
    /// The payment loop, which projects each change of an order in turn.
    ReplaceRecord,
}

/// Projects stored orders into Redis, one pipeline for all of them.
pub async fn project(
    redis: &mut Conn,
    script: &Script,
    orders: &[(&Commit, &Outcome)],
    status_ttl: Duration,
    pending: Pending,
) -> Result<(), Error> {
    if orders.is_empty() {
        return Ok(());
    }
    let ttl = status_ttl.as_millis().to_string();
    let mut pipeline = Pipeline::new();
    for (commit, outcome) in orders {
        let m = &commit.msg;
        let json = status_json(commit.key(), outcome)?;
        let mut keys = vec![
            keys::order_status(&m.event_id, &m.user_id, &m.idem),
            keys::user_holds(&m.event_id, &m.user_id),
            keys::bought(&m.event_id, &m.user_id),
            keys::positions(&m.event_id),
            keys::left(&m.event_id),
            keys::seen(&m.event_id),
        ];
        let mut args: Vec<Vec<u8>> = vec![
            json,
            ttl.clone().into_bytes(),
            match outcome.state {
                OrderState::Confirmed => b"1".to_vec(),
                OrderState::Rejected => b"0".to_vec(),
                OrderState::Pending if pending == Pending::KeepRecord => b"2".to_vec(),
                OrderState::Pending => b"3".to_vec(),
            },
            m.user_id.clone().into_bytes(),
            m.idem.clone().into_bytes(),
        ];
        for (((section, n), seat_id), hold_id) in
            commit.seats.iter().zip(&m.seat_ids).zip(&m.hold_ids)
        {
            keys.push(keys::sold(&m.event_id, section));
            keys.push(keys::hold(&m.event_id, section, *n));
            keys.push(keys::section_holds(&m.event_id, section));
            args.push(n.to_string().into_bytes());
            args.push(seat_id.clone().into_bytes());
            args.push(hold_id.clone().into_bytes());
        }
        let keys: Vec<&[u8]> = keys.iter().map(|k| k.as_bytes()).collect();
        let args: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
        script.push(&mut pipeline, &keys, &args);
    }
    redis.run_script(script, &pipeline).await?;
    Ok(())
}

/// Orders read per query while rebuilding.
const REBUILD_PAGE: i64 = 5_000;

/// Writes the status record of every order of `event_id` from PostgreSQL that is
/// younger than `status_ttl` (a record lives `status_ttl` after its order's last
/// change), with the life it has left. Returns how many were written.
pub async fn rebuild_statuses(
    pg: &Client,
    redis: &mut Conn,
    event_id: &str,
    status_ttl: Duration,
) -> Result<u64, Error> {
    let page = pg
        .prepare(concat!(
            "SELECT user_id, idem, order_id, ",
            codec::order_columns!(),
            " FROM orders o
                 WHERE event_id = $1 AND (event_id, user_id, idem) > ($1, $2, $3)
                   AND updated_at > now() - make_interval(secs => $4)
                 ORDER BY event_id, user_id, idem
                 LIMIT $5"
        ))
        .await?;
    let ttl_ms = status_ttl.as_millis() as u64;
    let ttl_secs = status_ttl.as_secs_f64();
    let (mut after_user, mut after_idem) = (String::new(), String::new());
    let mut written = 0;
    loop {
        let rows = pg
            .query(
                &page,
                &[
                    &event_id,
                    &after_user,
                    &after_idem,
                    &ttl_secs,
                    &REBUILD_PAGE,
                ],
            )
            .await?;
        let now = now_ms();
        let mut pipeline = Pipeline::new();
        for row in &rows {
            let key = OrderKey {
                event_id,
                user_id: row.get(0),
                idem: row.get(1),
            };
            let outcome = store::existing(row, 2)?;
            let left = (outcome.updated_at_ms + ttl_ms).saturating_sub(now);
            if left == 0 {
                continue;
            }
            let json = status_json(key, &outcome)?;
            let status_key = keys::order_status(event_id, key.user_id, key.idem);
            pipeline.push(&[
                b"SET",
                status_key.as_bytes(),
                &json,
                b"PX",
                left.to_string().as_bytes(),
            ]);
        }
        written += pipeline.len() as u64;
        if !pipeline.is_empty() {
            redis.pipeline(&pipeline).await?;
        }
        match rows.last() {
            Some(last) if rows.len() as i64 == REBUILD_PAGE => {
                after_user = last.get(0);
                after_idem = last.get(1);
            }
            _ => return Ok(written),
        }
    }
}
