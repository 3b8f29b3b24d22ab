//! The worker's one error type: what failed ([`Error`]'s variant) and whether trying
//! again can help ([`Error::is_retryable`]), which the queue consumers will use to tell
//! a retry from a dead letter (STYLE.md, direction 6).

use crate::redis::RedisError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Shown with the server's message (`tokio_postgres::Error` alone says "db error").
    #[error("postgres: {}", postgres_message(.0))]
    Postgres(tokio_postgres::Error),
    #[error(transparent)]
    Redis(#[from] RedisError),
    /// A request that can never succeed as asked (a seed that would drop sold seats).
    #[error("{0}")]
    Invalid(String),
    /// The database disagrees with this binary's migrations.
    #[error("schema: {0}")]
    Schema(String),
    /// A call that did not answer in time (its connection is not reused).
    #[error("no answer within {0:?}")]
    Timeout(std::time::Duration),
    /// An SQS call failed; throttling, timeouts and lost connections are retryable.
    #[error("sqs: {message}")]
    Sqs { message: String, retryable: bool },
}

impl From<tokio_postgres::Error> for Error {
    fn from(e: tokio_postgres::Error) -> Self {
        Self::Postgres(e)
    }
}

fn postgres_message(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {} ({})", db.severity(), db.message(), db.code().code()),
        None => match std::error::Error::source(e) {
            Some(source) => format!("{e}: {source}"),
            None => e.to_string(),
        },
    }
}

impl Error {
    /// Lost connections, timeouts, serialization failures and deadlocks: the same work
    /// may succeed on a later try. Everything else will fail the same way again.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Postgres(e) => {
                e.is_closed()
                    || e.code().is_some_and(|code| {
                        use tokio_postgres::error::SqlState;
                        [
                            SqlState::T_R_SERIALIZATION_FAILURE,
                            SqlState::T_R_DEADLOCK_DETECTED,
                            SqlState::ADMIN_SHUTDOWN,
                            SqlState::CANNOT_CONNECT_NOW,
                            SqlState::TOO_MANY_CONNECTIONS,
                        ]
                        .contains(code)
                    })
                    || std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>())
            }
            Self::Redis(e) => e.is_retryable(),
            Self::Sqs { retryable, .. } => *retryable,
            Self::Timeout(_) => true,
            Self::Invalid(_) | Self::Schema(_) => false,
        }
    }

    /// PostgreSQL's SQLSTATE, when it was PostgreSQL that refused.
    pub fn sqlstate(&self) -> Option<&tokio_postgres::error::SqlState> {
        match self {
            Self::Postgres(e) => e.code(),
            _ => None,
        }
    }

    /// A label for logs and counters.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Postgres(_) => "postgres",
            Self::Redis(e) => e.kind(),
            Self::Invalid(_) => "invalid",
            Self::Schema(_) => "schema",
            Self::Sqs { .. } => "sqs",
            Self::Timeout(_) => "timeout",
        }
    }
}
