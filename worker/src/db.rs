//! PostgreSQL connections: [`connect`] for one-off commands, and a small [`Pool`] of
//! connections with their statements prepared, for `worker run`.
//!
//! A connection is a [`tokio_postgres::Client`] handle whose connection is driven by a
//! task of its own; calls issued without awaiting each other are pipelined on it.

use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_postgres::{Client, NoTls};
use tracing::warn;

use crate::{error::Error, store};

/// Connects and spawns the connection's driver task; the client's calls fail once the
/// connection is gone (`Error::is_retryable` says so).
pub async fn connect(config: &tokio_postgres::Config) -> Result<Client, Error> {
    let (client, connection) = config.connect(NoTls).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            warn!(error = %e, "postgres connection closed");
        }
    });
    Ok(client)
}

pub use crate::store::PgConn;

/// At most `size` connections, made when first needed and kept while healthy; a
/// connection that broke is dropped when handed back, and the next [`Pool::get`]
/// connects anew (the caller retries with backoff: a failed connect is retryable).
pub struct Pool {
    config: tokio_postgres::Config,
    size: usize,
    idle: Mutex<Vec<PgConn>>,
    permits: Arc<Semaphore>,
}

impl Pool {
    pub fn new(config: tokio_postgres::Config, size: usize) -> Arc<Self> {
        Arc::new(Self {
            config,
            size,
            idle: Mutex::new(Vec::with_capacity(size)),
            permits: Arc::new(Semaphore::new(size)),
        })
    }

    /// Connections lent out now.
    pub fn in_use(&self) -> usize {
        self.size.saturating_sub(self.permits.available_permits())
    }

    /// Waits for a free slot, then hands out an idle connection or makes one.
    pub async fn get(self: &Arc<Self>) -> Result<Pooled, Error> {
        let permit = Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .map_err(|_| Error::Invalid("the pool is closed".into()))?;
        let idle = self.idle.lock().map(|mut idle| idle.pop()).ok().flatten();
        let conn = match idle {
            Some(conn) if !conn.client.is_closed() => conn,
            _ => {
                let client = connect(&self.config).await?;
                let statements = store::Statements::prepare(&client).await?;
                PgConn { client, statements }
            }
        };
        Ok(Pooled {
            conn: Some(conn),
            reusable: false,
            pool: Arc::clone(self),
            _permit: permit,
        })
    }
}

/// A connection lent by the [`Pool`]. Handed back with [`Pooled::reuse`] once its
/// user's calls ran to their end; dropped without it (a call cancelled half-way, a
/// transaction in an unknown state), the connection is closed instead.
pub struct Pooled {
    conn: Option<PgConn>,
    reusable: bool,
    pool: Arc<Pool>,
    _permit: OwnedSemaphorePermit,
}

impl std::ops::Deref for Pooled {
    type Target = PgConn;
    fn deref(&self) -> &PgConn {
        self.conn.as_ref().expect("present until dropped")
    }
}

impl std::ops::DerefMut for Pooled {
    fn deref_mut(&mut self) -> &mut PgConn {
        self.conn.as_mut().expect("present until dropped")
    }
}

impl Pooled {
    /// Back to the pool for the next user (unless the connection is closed).
    pub fn reuse(mut self) {
        self.reusable = true;
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        let conn = self
            .conn
            .take()
            .filter(|c| self.reusable && !c.client.is_closed());
        if let Some(conn) = conn {
            if let Ok(mut idle) = self.pool.idle.lock() {
                idle.push(conn);
            }
        }
    }
}
