//! Order look-ups in PostgreSQL, the source of truth, for `GET /confirm/status` when
//! Redis has no status record (it expired after `IDEMPOTENCY_TTL_MS`, or Redis lost its
//! data and `worker rebuild-redis` has not run yet); and, with `PAYMENT_MODE=provider`,
//! the payment provider's callbacks recorded in `payment_callbacks` before they are
//! answered (the worker applies them).
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

use codec::contract::{Order, PaymentState, StatusResponse};
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
    " FROM orders o WHERE o.event_id = $1 AND o.user_id = $2 AND o.idem = $3"
);

/// A callback, once: a provider's retry of the same event inserts nothing.
const RECORD: &str = "
INSERT INTO payment_callbacks (provider_event_id, event_id, intent_id, payment_id, status)
VALUES ($1, $2, $3, $4, $5) ON CONFLICT (provider_event_id) DO NOTHING";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    #[error("no DATABASE_URL: orders are looked up in Redis only")]
    Unconfigured,
    #[error("too many order look-ups waiting")]
    Busy,
    #[error("postgres: {0}")]
    Database(String),
}

/// What the cores ask of PostgreSQL.
pub(super) enum Job {
    Status(Lookup),
    Callback(Record),
}

pub(super) struct Lookup {
    pub event: String,
    pub user: String,
    pub idem: String,
    pub done: oneshot::Sender<Result<Option<Vec<u8>>, LookupError>>,
}

/// A payment callback to record: provider event id, event, intent, payment id, status.
/// Answers whether it is new (false: recorded before, a replay).
pub(super) struct Record {
    pub fields: [String; 5],
    pub done: oneshot::Sender<Result<bool, LookupError>>,
}

impl Job {
    fn fail(self, error: LookupError) {
        match self {
            Self::Status(lookup) => drop(lookup.done.send(Err(error))),
            Self::Callback(record) => drop(record.done.send(Err(error))),
        }
    }
}

/// A connection and its statements: [`BY_KEY`], [`RECORD`].
struct Conn {
    client: Client,
    by_key: Statement,
    record: Option<Statement>,
}

pub(super) async fn serve(
    config: tokio_postgres::Config,
    mut lookups: mpsc::Receiver<Job>,
    stats: Arc<SideStats>,
) {
    let permits = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut conn: Option<Arc<Conn>> = None;
    let mut retry_at = Instant::now();
    while let Some(job) = lookups.recv().await {
        stats.lookups.fetch_add(1, Ordering::Relaxed);
        if conn.as_ref().is_none_or(|c| c.client.is_closed()) {
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
            job.fail(LookupError::Database("no connection".into()));
            continue;
        };
        let stats = stats.clone();
        tokio::spawn(async move {
            let failed = match job {
                Job::Status(lookup) => {
                    let result = look_up(&conn, &lookup).await;
                    let failed = result.is_err();
                    let _ = lookup.done.send(result);
                    failed
                }
                Job::Callback(record) => {
                    let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = record
                        .fields
                        .iter()
                        .map(|f| f as &(dyn tokio_postgres::types::ToSql + Sync))
                        .collect();
                    let result = match &conn.record {
                        None => Err(LookupError::Database(
                            "no payment_callbacks table: run `worker migrate`".into(),
                        )),
                        Some(statement) => {
                            match timeout(DEADLINE, conn.client.execute(statement, &params)).await {
                                Ok(Ok(inserted)) => Ok(inserted == 1),
                                Ok(Err(e)) => Err(LookupError::Database(postgres_error(&e))),
                                Err(_) => Err(LookupError::Database("timed out".into())),
                            }
                        }
                    };
                    let failed = result.is_err();
                    let _ = record.done.send(result);
                    failed
                }
            };
            if failed {
                stats.lookups_failed.fetch_add(1, Ordering::Relaxed);
            }
            drop(permit);
        });
    }
}

async fn look_up(conn: &Conn, lookup: &Lookup) -> Result<Option<Vec<u8>>, LookupError> {
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 3] =
        [&lookup.event, &lookup.user, &lookup.idem];
    match timeout(DEADLINE, conn.client.query_opt(&conn.by_key, &params)).await {
        Ok(Ok(row)) => row
            .map(|row| render(&lookup.idem, &lookup.event, &row))
            .transpose(),
        Ok(Err(e)) => Err(LookupError::Database(postgres_error(&e))),
        Err(_) => Err(LookupError::Database("timed out".into())),
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

async fn connect(config: &tokio_postgres::Config) -> Result<Conn, tokio_postgres::Error> {
    let (client, connection) = config.connect(NoTls).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            warn!(error = %e, "order look-ups: connection closed");
        }
    });
    let by_key = client.prepare(BY_KEY).await?;
    // The table exists once `worker migrate` ran 0006; an edge in instant mode does
    // not need it, and must not fail its status look-ups for want of it.
    let record = client.prepare(RECORD).await.ok();
    Ok(Conn {
        client,
        by_key,
        record,
    })
}

/// The row as the worker's status record says it (`StatusResponse::stored`).
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
    let payment: Option<&str> = row.try_get(6).map_err(|_| bad())?;
    let payment = payment
        .map(|p| PaymentState::stored(p).ok_or_else(bad))
        .transpose()?;
    Ok(StatusResponse::stored(order, payment).record())
}
