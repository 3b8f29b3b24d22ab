//! Events read from PostgreSQL for `summary` and `seats` when Redis has no copy of them
//! (its catalog lost, flushed, or not rebuilt yet): the seed's third tier (Redis miss ->
//! the database -> cached 1-3 s).
//!
//! However many requests of however many cores wait for one event, PostgreSQL is asked
//! once ([`SNAPSHOT_SQL`], one statement): the first request starts the query, the
//! others wait for its answer (single flight), and the answer is kept [`FRESH`] for
//! every request after it, a missing event included. At most [`IN_FLIGHT`] events are
//! read at a time; past [`WAITING_EVENTS`] events waiting, a request fails at once
//! rather than queue up behind a PostgreSQL that is slow or away.
//!
//! Of the requests one query answers, the first is told to repair Redis with it
//! (`Fetched::repair`): the projection is written once, by one core.
//!
//! [`SNAPSHOT_SQL`]: codec::projection::SNAPSHOT_SQL

use std::{
    collections::HashMap,
    sync::{atomic::Ordering, Arc},
    time::Duration,
};

use codec::projection::{Snapshot, SNAPSHOT_SQL};
use futures_channel::oneshot;
use tokio::{
    sync::{mpsc, Semaphore},
    time::{timeout, Instant},
};
use tokio_postgres::{Client, NoTls};
use tracing::warn;

use super::{orders::postgres_error, LookupError, SideStats};

pub(super) const QUEUED: usize = 1024;
/// How long an answer serves every request for its event: the seed's 1-3 s.
pub const FRESH: Duration = Duration::from_secs(2);
const IN_FLIGHT: usize = 4;
const WAITING_EVENTS: usize = 256;
const RECONNECT: Duration = Duration::from_secs(1);
/// A query (or connecting) that takes longer fails: the reader gets a 503 and retries.
const DEADLINE: Duration = Duration::from_secs(2);

/// One request's answer.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// `None`: PostgreSQL has no such event either.
    pub snapshot: Option<Arc<Snapshot>>,
    /// This request is the one that writes the projection back into Redis.
    pub repair: bool,
}

type Answer = Result<Fetched, LookupError>;

pub(super) struct Request {
    pub event: String,
    pub done: oneshot::Sender<Answer>,
}

type Done = (String, Result<Option<Arc<Snapshot>>, LookupError>);

pub(super) async fn serve(
    config: tokio_postgres::Config,
    mut requests: mpsc::Receiver<Request>,
    stats: Arc<SideStats>,
) {
    let permits = Arc::new(Semaphore::new(IN_FLIGHT));
    let (finished, mut done) = mpsc::unbounded_channel::<Done>();
    let mut fresh: HashMap<String, (Instant, Option<Arc<Snapshot>>)> = HashMap::new();
    let mut waiting: HashMap<String, Vec<oneshot::Sender<Answer>>> = HashMap::new();
    let conn = Arc::new(tokio::sync::Mutex::new(Connection::new(config)));
    loop {
        tokio::select! {
            request = requests.recv() => {
                let Some(Request { event, done }) = request else { return };
                if let Some((at, snapshot)) = fresh.get(&event) {
                    if at.elapsed() < FRESH {
                        let snapshot = snapshot.clone();
                        let _ = done.send(Ok(Fetched { snapshot, repair: false }));
                        continue;
                    }
                }
                if let Some(waiters) = waiting.get_mut(&event) {
                    waiters.push(done);
                    continue;
                }
                if waiting.len() >= WAITING_EVENTS {
                    let _ = done.send(Err(LookupError::Busy));
                    continue;
                }
                waiting.insert(event.clone(), vec![done]);
                let (permits, conn, stats, finished) =
                    (permits.clone(), conn.clone(), stats.clone(), finished.clone());
                tokio::spawn(async move {
                    let _permit = permits.acquire_owned().await;
                    stats.db_reads.fetch_add(1, Ordering::Relaxed);
                    let read = read(&conn, &event).await;
                    if read.is_err() {
                        stats.db_reads_failed.fetch_add(1, Ordering::Relaxed);
                    }
                    let _ = finished.send((event, read));
                });
            }
            Some((event, read)) = done.recv() => {
                let waiters = waiting.remove(&event).unwrap_or_default();
                if let Ok(snapshot) = &read {
                    if fresh.len() >= WAITING_EVENTS {
                        fresh.retain(|_, (at, _)| at.elapsed() < FRESH);
                    }
                    fresh.insert(event, (Instant::now(), snapshot.clone()));
                }
                for (i, waiter) in waiters.into_iter().enumerate() {
                    let answer = read.clone().map(|snapshot| Fetched {
                        repair: i == 0 && snapshot.is_some(),
                        snapshot,
                    });
                    let _ = waiter.send(answer);
                }
            }
        }
    }
}

/// The event from PostgreSQL, within [`DEADLINE`].
async fn read(
    conn: &tokio::sync::Mutex<Connection>,
    event: &str,
) -> Result<Option<Arc<Snapshot>>, LookupError> {
    let client = conn.lock().await.client().await?;
    let row = match timeout(DEADLINE, client.query_opt(SNAPSHOT_SQL, &[&event])).await {
        Ok(Ok(row)) => row,
        Ok(Err(e)) => return Err(LookupError::Database(postgres_error(&e))),
        Err(_) => return Err(LookupError::Database("timed out".into())),
    };
    let Some(row) = row else { return Ok(None) };
    let json: &str = row
        .try_get(0)
        .map_err(|e| LookupError::Database(postgres_error(&e)))?;
    let snapshot = Snapshot::parse(json)
        .map_err(|e| LookupError::Database(format!("event {event} read back: {e}")))?;
    Ok(Some(Arc::new(snapshot)))
}

/// One connection, made when first needed and again after it breaks, not sooner than
/// [`RECONNECT`] after a failed attempt (failing reads at once meanwhile).
struct Connection {
    config: tokio_postgres::Config,
    client: Option<Arc<Client>>,
    retry_at: Instant,
}

impl Connection {
    fn new(config: tokio_postgres::Config) -> Self {
        Self {
            config,
            client: None,
            retry_at: Instant::now(),
        }
    }

    async fn client(&mut self) -> Result<Arc<Client>, LookupError> {
        if let Some(client) = self.client.as_ref().filter(|c| !c.is_closed()) {
            return Ok(client.clone());
        }
        self.client = None;
        if Instant::now() < self.retry_at {
            return Err(LookupError::Database("no connection".into()));
        }
        self.retry_at = Instant::now() + RECONNECT;
        let (client, connection) = match timeout(DEADLINE, self.config.connect(NoTls)).await {
            Ok(Ok(made)) => made,
            Ok(Err(e)) => {
                warn!(error = %e, "event reads: cannot connect");
                return Err(LookupError::Database(postgres_error(&e)));
            }
            Err(_) => {
                warn!("event reads: connecting timed out");
                return Err(LookupError::Database("connecting timed out".into()));
            }
        };
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                warn!(error = %e, "event reads: connection closed");
            }
        });
        let client = Arc::new(client);
        self.client = Some(client.clone());
        Ok(client)
    }
}
