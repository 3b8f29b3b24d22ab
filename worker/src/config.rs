//! Configuration, read once from the environment (12-factor) into one typed struct.
//!
//! Every variable has a default that runs against the local stack (`make services`); a
//! bad value is a [`ConfigError`] naming the variable, and `main` exits with code 64
//! (`EX_USAGE`).

use std::str::FromStr;

use tracing::level_filters::LevelFilter;

use crate::redis::RedisConfig;

/// The local stack's PostgreSQL (`infra/local/stack.sh env`).
pub const DEFAULT_DATABASE_URL: &str = "postgres://ticket:ticket@127.0.0.1:15432/ticket";
/// The local stack's Redis.
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:16379";

#[derive(Debug, Clone)]
pub struct Config {
    /// `DATABASE_URL`: `postgres://user:password@host:port/db` or libpq's `key=value`
    /// form. TLS is not supported yet (`sslmode=require` fails to connect).
    pub database: tokio_postgres::Config,
    /// `REDIS_URL`: `redis://[user[:password]@]host[:port][/db]`.
    pub redis: RedisConfig,
    /// `WORKER_LOG`: `error`, `warn`, `info`, `debug` or `trace`.
    pub log_level: LevelFilter,
}

#[derive(Debug, thiserror::Error)]
#[error("{var}={value:?}: {reason}")]
pub struct ConfigError {
    pub var: &'static str,
    /// The offending value, with any password in it blanked.
    pub value: String,
    pub reason: String,
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads variables through `lookup`, so tests need not touch the process environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |var: &str, default: &str| lookup(var).unwrap_or_else(|| default.to_owned());
        let database_url = get("DATABASE_URL", DEFAULT_DATABASE_URL);
        let database =
            tokio_postgres::Config::from_str(&database_url).map_err(|e| ConfigError {
                var: "DATABASE_URL",
                value: redact(&database_url),
                reason: e.to_string(),
            })?;
        let redis_url = get("REDIS_URL", DEFAULT_REDIS_URL);
        let redis = RedisConfig::from_url(&redis_url).map_err(|reason| ConfigError {
            var: "REDIS_URL",
            value: redact(&redis_url),
            reason: reason.to_owned(),
        })?;
        let log = get("WORKER_LOG", "info");
        let log_level = LevelFilter::from_str(log.trim()).map_err(|_| ConfigError {
            var: "WORKER_LOG",
            value: log.clone(),
            reason: "expected error, warn, info, debug or trace".to_owned(),
        })?;
        Ok(Self {
            database,
            redis,
            log_level,
        })
    }
}

/// `scheme://user:secret@host` -> `scheme://user:***@host`, so an error message never
/// prints a password.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((userinfo, host)) = rest.rsplit_once('@') else {
        return url.to_owned();
    };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::from_lookup(|name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        })
    }

    #[test]
    fn defaults_are_the_local_stack() {
        let c = with(&[]).expect("defaults are valid");
        assert_eq!(c.database.get_ports(), [15432]);
        assert_eq!(c.database.get_dbname(), Some("ticket"));
        assert_eq!(c.redis.addr, "127.0.0.1:16379");
        assert_eq!(c.log_level, LevelFilter::INFO);
    }

    #[test]
    fn bad_values_name_their_variable_and_hide_passwords() {
        for (var, value) in [
            ("DATABASE_URL", "mysql://ticket:sekrit@h/db"),
            ("DATABASE_URL", "postgres://ticket:sekrit@h:notaport/db"),
            ("REDIS_URL", "http://127.0.0.1"),
            ("REDIS_URL", "redis://u:sekrit@h/x"),
            ("WORKER_LOG", "loud"),
        ] {
            let err = with(&[(var, value)]).expect_err(var);
            assert_eq!(err.var, var);
            let shown = err.to_string();
            assert!(shown.starts_with(var), "{shown}");
            assert!(!shown.contains("sekrit"), "{shown}");
        }
    }
}
