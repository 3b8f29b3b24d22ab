//! PostgreSQL connections: a [`tokio_postgres::Client`] handle, its connection driven
//! by a task of its own.

use tokio_postgres::{Client, NoTls};
use tracing::warn;

use crate::error::Error;

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
