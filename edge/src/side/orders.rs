//! Order look-ups in PostgreSQL, the source of truth, for `GET /confirm/status` when
//! Redis has no status record (it expired after `IDEMPOTENCY_TTL_MS`, or Redis lost its
//! data and `worker rebuild-redis` has not run yet).
//!
//! One connection, made when first needed and again after it breaks (not sooner than
//! [`RECONNECT`] after a failed attempt, failing look-ups at once meanwhile); calls run
//! concurrently on it, pipelined by tokio-postgres, at most [`IN_FLIGHT`] at a time, with
//! [`QUEUED`] more waiting. Past that a look-up fails at once: a flood of polls for keys
//! nobody committed must not become a flood of queries.

use std::{
    sync::{atomic::Ordering, Arc},
    time::Duration,
};

use codec::contract::{Order, StatusResponse};
use futures_channel::oneshot;
use tokio::{
    sync::{mpsc, Semaphore},
    time::{timeout, Instant},
};
use tokio_postgres::{Client, NoTls, Statement};
use tracing::warn;

use super::SideStats;

pub(super) const QUEUED: usize = 256;
const IN_FLIGHT: usize = 64;
const RECONNECT: Duration = Duration::from_secs(1);
/// A look-up (or connecting) that takes longer fails: the buyer polls again.
const DEADLINE: Duration = Duration::from_secs(2);

const BY_KEY: &str = concat!(
    "SELECT ",
    codec::order_columns!(),
    " FROM orders WHERE event_id = $1 AND user_id = $2 AND idem = $3"
);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    #[error("no DATABASE_URL: orders are looked up in Redis only")]
    Unconfigured,
    #[error("too many order look-ups waiting")]
    Busy,
    #[error("postgres: {0}")]
    Database(String),
}

pub(super) struct Lookup {
    pub event: String,
    pub user: String,
    pub idem: String,
    pub done: oneshot::Sender<Result<Option<Vec<u8>>, LookupError>>,
}

pub(super) async fn serve(
    config: tokio_postgres::Config,
    mut lookups: mpsc::Receiver<Lookup>,
    stats: Arc<SideStats>,
) {
    let permits = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut conn: Option<Arc<(Client, Statement)>> = None;
    let mut retry_at = Instant::now();
    while let Some(lookup) = lookups.recv().await {
        stats.lookups.fetch_add(1, Ordering::Relaxed);
        if conn.as_ref().is_none_or(|c| c.0.is_closed()) {
            conn = None;
            if Instant::now() >= retry_at {
                match timeout(DEADLINE, connect(&config)).await {
                    Ok(Ok(c)) => conn = Some(Arc::new(c)),
                    Ok(Err(e)) => warn!(error = %e, "order look-ups: cannot connect"),
                    Err(_) => warn!("order look-ups: connecting timed out"),
                }
                retry_at = Instant::now() + RECONNECT;
            }
        }
        let (Some(conn), Ok(permit)) = (conn.clone(), permits.clone().acquire_owned().await) else {
            stats.lookups_failed.fetch_add(1, Ordering::Relaxed);
            let _ = lookup
                .done
                .send(Err(LookupError::Database("no connection".into())));
            continue;
        };
        let stats = stats.clone();
        tokio::spawn(async move {
            let (client, statement) = &*conn;
            let params: [&(dyn tokio_postgres::types::ToSql + Sync); 3] =
                [&lookup.event, &lookup.user, &lookup.idem];
            let result = match timeout(DEADLINE, client.query_opt(statement, &params)).await {
                Ok(Ok(row)) => row
                    .map(|row| render(&lookup.idem, &lookup.event, &row))
                    .transpose(),
                Ok(Err(e)) => Err(LookupError::Database(postgres_error(&e))),
                Err(_) => Err(LookupError::Database("timed out".into())),
            };
            if result.is_err() {
                stats.lookups_failed.fetch_add(1, Ordering::Relaxed);
            }
            let _ = lookup.done.send(result);
            drop(permit);
        });
    }
}

/// tokio-postgres says only "db error" for an error PostgreSQL reported: the SQLSTATE
/// and PostgreSQL's own message say what happened.
pub(super) fn postgres_error(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{e}: {} (SQLSTATE {})", db.message(), db.code().code()),
        None => e.to_string(),
    }
}

async fn connect(
    config: &tokio_postgres::Config,
) -> Result<(Client, Statement), tokio_postgres::Error> {
    let (client, connection) = config.connect(NoTls).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            warn!(error = %e, "order look-ups: connection closed");
        }
    });
    let statement = client.prepare(BY_KEY).await?;
    Ok((client, statement))
}

/// The row as the worker's status record says it (`StatusResponse::settled`).
fn render(idem: &str, event: &str, row: &tokio_postgres::Row) -> Result<Vec<u8>, LookupError> {
    let bad = || LookupError::Database("an order row of an unexpected shape".into());
    let order = Order::stored(
        idem,
        event,
        row.try_get(0).map_err(|_| bad())?,
        row.try_get(1).map_err(|_| bad())?,
        row.try_get(2).map_err(|_| bad())?,
        row.try_get(3).map_err(|_| bad())?,
        row.try_get(4).map_err(|_| bad())?,
        row.try_get(5).map_err(|_| bad())?,
    )
    .ok_or_else(bad)?;
    Ok(StatusResponse::settled(order).record())
}
