//! Configuration, read once from the environment (12-factor) into one typed struct.
//!
//! Every variable has a default that runs against the local stack (`make services`); a
//! bad value is a [`ConfigError`] naming the variable, and `main` exits with code 64
//! (`EX_USAGE`).

use std::{str::FromStr, time::Duration};

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
    /// `REDIS_URL`: `redis://[user[:password]@]host[:port][/db]`, or `rediss://` for
    /// TLS; `REDIS_TLS_CA_FILE`: a PEM file of CAs trusted besides the Mozilla roots.
    pub redis: RedisConfig,
    /// `WORKER_LOG`: `error`, `warn`, `info`, `debug` or `trace`.
    pub log_level: LevelFilter,
    /// `WORKER_LOG_FORMAT=json`: one JSON object a line; `text` (the default) for people.
    pub log_json: bool,
    /// What `worker run` consumes and how.
    pub run: RunConfig,
}

/// The commit queue: `PROFILE=local` (default) or `PROFILE=aws`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Profile {
    /// Redis Streams `ev:{E}:commits:{0..COMMIT_SHARDS-1}` of every event in PostgreSQL
    /// (or of `WORKER_EVENTS`), consumer group `workers`.
    Local,
    /// SQS FIFO `SQS_QUEUE_URL`, long polls of `SQS_WAIT_SECS`; the AWS SDK reads its
    /// region, credentials and endpoint from the usual `AWS_*` variables.
    Aws { queue_url: String, wait_secs: i32 },
}

/// A fault `WORKER_FAULT` injects, for tests only: never set it in a deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// `exit-after-commit`: the process exits at once (no Redis projection, no ack)
    /// right after its first PostgreSQL commit, as if killed there with SIGKILL.
    ExitAfterCommit,
}

/// `worker run`'s settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunConfig {
    pub profile: Profile,
    /// `COMMIT_SHARDS`: streams per event; the edge's value.
    pub commit_shards: u32,
    /// `WORKER_CONCURRENCY`: consumer loops, each with its own queue connection.
    pub concurrency: usize,
    /// `WORKER_PG_CONNECTIONS`: the PostgreSQL pool's size (default: the concurrency).
    pub pg_connections: usize,
    /// `WORKER_BATCH`: most messages one receive asks for (SQS: at most 10) and one
    /// PostgreSQL transaction holds.
    pub batch: usize,
    /// `WORKER_VISIBILITY_MS`: a message received and not acknowledged this long is
    /// handed to another consumer (streams: `XAUTOCLAIM`; SQS: the receive's
    /// VisibilityTimeout). A consumer working longer extends it.
    pub visibility: Duration,
    /// `WORKER_MAX_DELIVERIES`: a stream entry delivered more often than this goes to
    /// the dead-letter stream (SQS: the queue's redrive policy decides).
    pub max_deliveries: u32,
    /// `WORKER_BLOCK_MS`: how long one `XREADGROUP` waits for entries.
    pub block: Duration,
    /// `WORKER_EVENT_REFRESH_MS`: how often the events (and their catalogs) are
    /// re-read from PostgreSQL, so a newly seeded event is consumed.
    pub event_refresh: Duration,
    /// `WORKER_EVENTS`: comma-separated event ids to consume (local profile); unset,
    /// every event in PostgreSQL.
    pub events: Option<Vec<String>>,
    /// `IDEMPOTENCY_TTL_MS`: lifetime of an order's status record; the edge's value.
    pub status_ttl: Duration,
    /// `WORKER_FAULT`: test-only fault injection.
    pub fault: Option<Fault>,
    /// `PURCHASE_LIMIT`: most seats one buyer may have in CONFIRMED orders of an event;
    /// an order that would pass it ends REJECTED `PURCHASE_LIMIT`. 0: no limit. The
    /// edge's value (it checks first, in Redis); this check is the one that holds.
    pub purchase_limit: u32,
    /// `WORKER_METRICS_ADDR`: where `GET /metrics` is served (default
    /// `127.0.0.1:9101`); `off` serves none.
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// `METRICS_EMF=1`: the counters' increase as CloudWatch EMF lines on stdout every
    /// `METRICS_EMF_INTERVAL_MS` (default 60 s).
    pub metrics_emf: Option<Duration>,
    /// `PAYMENT_MODE=provider` (`PAYMENT_TIMEOUT_MS`): orders wait for the payment
    /// provider's callback, PENDING, at most this long from their acceptance. `None`
    /// (`instant`, the default): orders are stored CONFIRMED with a CAPTURED payment.
    pub payment_timeout: Option<Duration>,
    /// `PAYMENT_POLL_MS`: how often the payment loop applies recorded callbacks and
    /// times payments out (provider mode).
    pub payment_poll: Duration,
}

impl Default for RunConfig {
    fn default() -> Self {
        Self {
            profile: Profile::Local,
            commit_shards: 4,
            concurrency: 4,
            pg_connections: 4,
            batch: DEFAULT_BATCH,
            visibility: Duration::from_secs(30),
            max_deliveries: 5,
            block: Duration::from_millis(1000),
            event_refresh: Duration::from_secs(5),
            events: None,
            metrics_addr: Some(std::net::SocketAddr::from(([127, 0, 0, 1], 9101))),
            metrics_emf: None,
            status_ttl: Duration::from_millis(86_400_000),
            fault: None,
            purchase_limit: 0,
            payment_timeout: None,
            payment_poll: Duration::from_millis(200),
        }
    }
}

/// Messages per transaction unless `WORKER_BATCH` says otherwise (see the README's
/// worker benchmark for why).
pub const DEFAULT_BATCH: usize = 100;

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
        let mut redis = RedisConfig::from_url(&redis_url).map_err(|reason| ConfigError {
            var: "REDIS_URL",
            value: redact(&redis_url),
            reason: reason.to_owned(),
        })?;
        redis.tls_ca_file = lookup("REDIS_TLS_CA_FILE")
            .filter(|s| !s.is_empty())
            .map(Into::into);
        if let (true, Some(path)) = (redis.tls, &redis.tls_ca_file) {
            redis.tls_connector().map_err(|reason| ConfigError {
                var: "REDIS_TLS_CA_FILE",
                value: path.display().to_string(),
                reason,
            })?;
        }
        let log = get("WORKER_LOG", "info");
        let log_level = LevelFilter::from_str(log.trim()).map_err(|_| ConfigError {
            var: "WORKER_LOG",
            value: log.clone(),
            reason: "expected error, warn, info, debug or trace".to_owned(),
        })?;
        let log_json = match get("WORKER_LOG_FORMAT", "text").trim() {
            "text" => false,
            "json" => true,
            other => {
                return Err(ConfigError {
                    var: "WORKER_LOG_FORMAT",
                    value: other.to_owned(),
                    reason: "expected text or json".to_owned(),
                })
            }
        };
        let run = run_config(&lookup)?;
        Ok(Self {
            database,
            redis,
            log_level,
            log_json,
            run,
        })
    }
}

fn run_config(lookup: &impl Fn(&str) -> Option<String>) -> Result<RunConfig, ConfigError> {
    let bad = |var: &'static str, value: &str, reason: &str| ConfigError {
        var,
        value: value.to_owned(),
        reason: reason.to_owned(),
    };
    let ranged =
        |var: &'static str, default: u64, min: u64, max: u64| -> Result<u64, ConfigError> {
            let Some(value) = lookup(var) else {
                return Ok(default);
            };
            let n: u64 = value
                .trim()
                .parse()
                .map_err(|_| bad(var, &value, "expected a whole number"))?;
            if !(min..=max).contains(&n) {
                return Err(bad(var, &value, &format!("expected {min} to {max}")));
            }
            Ok(n)
        };
    let millis =
        |var, default, min| ranged(var, default, min, 24 * 3600 * 1000).map(Duration::from_millis);
    let profile = match lookup("PROFILE").as_deref().map(str::trim) {
        None | Some("local") => Profile::Local,
        Some("aws") => Profile::Aws {
            queue_url: lookup("SQS_QUEUE_URL")
                .filter(|u| !u.trim().is_empty())
                .ok_or_else(|| bad("SQS_QUEUE_URL", "", "required with PROFILE=aws"))?,
            wait_secs: ranged("SQS_WAIT_SECS", 20, 0, 20)? as i32,
        },
        Some(other) => return Err(bad("PROFILE", other, "expected local or aws")),
    };
    let concurrency = ranged("WORKER_CONCURRENCY", 4, 1, 256)? as usize;
    let events = match lookup("WORKER_EVENTS") {
        None => None,
        Some(list) => {
            let ids: Vec<String> = list
                .split(',')
                .map(|e| e.trim().to_owned())
                .filter(|e| !e.is_empty())
                .collect();
            if ids.is_empty() || !ids.iter().all(|e| codec::rules::event_id(e).is_ok()) {
                return Err(bad(
                    "WORKER_EVENTS",
                    &list,
                    "expected event ids separated by commas",
                ));
            }
            Some(ids)
        }
    };
    let fault = match lookup("WORKER_FAULT").as_deref() {
        None | Some("") => None,
        Some("exit-after-commit") => Some(Fault::ExitAfterCommit),
        Some(other) => {
            return Err(bad(
                "WORKER_FAULT",
                other,
                "expected exit-after-commit (tests only)",
            ))
        }
    };
    let metrics_addr = match lookup("WORKER_METRICS_ADDR").as_deref().map(str::trim) {
        Some("off") => None,
        value => {
            let value = value.unwrap_or("127.0.0.1:9101");
            Some(
                value
                    .parse()
                    .map_err(|_| bad("WORKER_METRICS_ADDR", value, "expected host:port or off"))?,
            )
        }
    };
    let metrics_emf = match lookup("METRICS_EMF").as_deref().map(str::trim) {
        None | Some("0") => None,
        Some("1") => Some(millis("METRICS_EMF_INTERVAL_MS", 60_000, 100)?),
        Some(other) => return Err(bad("METRICS_EMF", other, "expected 0 or 1")),
    };
    let payment_timeout = match lookup("PAYMENT_MODE").as_deref().map(str::trim) {
        None | Some("instant") => None,
        Some("provider") => Some(millis("PAYMENT_TIMEOUT_MS", 600_000, 1000)?),
        Some(other) => return Err(bad("PAYMENT_MODE", other, "expected instant or provider")),
    };
    Ok(RunConfig {
        payment_timeout,
        payment_poll: millis("PAYMENT_POLL_MS", 200, 10)?,
        metrics_addr,
        metrics_emf,
        profile,
        commit_shards: ranged("COMMIT_SHARDS", 4, 1, 256)? as u32,
        concurrency,
        pg_connections: ranged("WORKER_PG_CONNECTIONS", concurrency as u64, 1, 256)? as usize,
        batch: ranged("WORKER_BATCH", DEFAULT_BATCH as u64, 1, 1000)? as usize,
        visibility: millis("WORKER_VISIBILITY_MS", 30_000, 100)?,
        max_deliveries: ranged("WORKER_MAX_DELIVERIES", 5, 1, 1000)? as u32,
        block: millis("WORKER_BLOCK_MS", 1000, 1)?,
        event_refresh: millis("WORKER_EVENT_REFRESH_MS", 5000, 10)?,
        events,
        status_ttl: millis("IDEMPOTENCY_TTL_MS", 86_400_000, 1)?,
        fault,
        purchase_limit: ranged("PURCHASE_LIMIT", 0, 0, 1_000_000)? as u32,
    })
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
        assert_eq!(c.run, RunConfig::default());
    }

    #[test]
    fn the_aws_profile_needs_its_queue() {
        assert!(with(&[("PROFILE", "aws")]).is_err());
        let c = with(&[
            ("PROFILE", "aws"),
            ("SQS_QUEUE_URL", "http://q/1/c.fifo"),
            ("SQS_WAIT_SECS", "1"),
        ])
        .expect("valid");
        assert_eq!(
            c.run.profile,
            Profile::Aws {
                queue_url: "http://q/1/c.fifo".into(),
                wait_secs: 1
            }
        );
        let c = with(&[
            ("WORKER_EVENTS", "a, b"),
            ("WORKER_FAULT", "exit-after-commit"),
        ])
        .expect("valid");
        assert_eq!(c.run.events, Some(vec!["a".to_owned(), "b".to_owned()]));
        assert_eq!(c.run.fault, Some(Fault::ExitAfterCommit));
    }

    #[test]
    fn bad_values_name_their_variable_and_hide_passwords() {
        for (var, value) in [
            ("DATABASE_URL", "mysql://ticket:sekrit@h/db"),
            ("DATABASE_URL", "postgres://ticket:sekrit@h:notaport/db"),
            ("REDIS_URL", "http://127.0.0.1"),
            ("REDIS_URL", "redis://u:sekrit@h/x"),
            ("REDIS_URL", "redis-cluster://u:sekrit@h:1,h:2"),
            ("WORKER_LOG", "loud"),
            ("WORKER_LOG_FORMAT", "yaml"),
            ("WORKER_METRICS_ADDR", "9101"),
            ("METRICS_EMF", "yes"),
            ("PROFILE", "gcp"),
            ("COMMIT_SHARDS", "0"),
            ("WORKER_CONCURRENCY", "many"),
            ("WORKER_BATCH", "1001"),
            ("WORKER_VISIBILITY_MS", "5"),
            ("WORKER_EVENTS", "a{b}"),
            ("WORKER_FAULT", "explode"),
            ("REDIS_TLS_CA_FILE", "/nonexistent/ca.pem"),
        ] {
            // rediss://, so that REDIS_TLS_CA_FILE is read (the first REDIS_URL wins).
            let err = with(&[(var, value), ("REDIS_URL", "rediss://h")]).expect_err(var);
            assert_eq!(err.var, var);
            let shown = err.to_string();
            assert!(shown.starts_with(var), "{shown}");
            assert!(!shown.contains("sekrit"), "{shown}");
        }
    }
}
