//! Configuration, read once from the environment (12-factor) into one typed struct.
//!
//! Every variable has a default that runs the local stack; a bad value is a
//! [`ConfigError`] naming the variable, and `main` exits with code 64 (`EX_USAGE`).

use std::{net::SocketAddr, time::Duration};

use crate::{
    redis::RedisConfig,
    side::{AwsConfig, SideConfig},
};

/// Which io driver each core's runtime uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DriverChoice {
    /// io_uring, falling back to epoll when the kernel or a seccomp profile refuses it.
    Auto,
    Uring,
    Epoll,
}

#[derive(Debug, Clone)]
pub struct Config {
    /// `EDGE_ADDR`: where every core's `SO_REUSEPORT` listener binds.
    pub addr: SocketAddr,
    /// `EDGE_THREADS`: runtimes (one per core).
    pub threads: usize,
    /// `EDGE_DRIVER`: `auto`, `uring` or `epoll`.
    pub driver: DriverChoice,
    /// `EDGE_URING_ENTRIES`: io_uring submission queue size.
    pub uring_entries: u32,
    /// `EDGE_URING_COOP_TASKRUN`: build rings with `IORING_SETUP_COOP_TASKRUN` (and
    /// `TASKRUN_FLAG`), so completions do not interrupt the running core with an IPI
    /// each (`perf/results/uring-setup.md`); falls back without on kernels before 5.19.
    pub uring_coop_taskrun: bool,
    /// `EDGE_MAX_BODY_BYTES`: larger request bodies get 413.
    pub max_body_bytes: usize,
    /// `EDGE_REQUEST_TIMEOUT_MS`: a request must arrive whole within this time of its
    /// first byte (slowloris guard); else 408 and close.
    pub request_timeout: Duration,
    /// `EDGE_KEEPALIVE_MS`: idle keep-alive connections close after this. Longer than
    /// an ALB's 60 s idle timeout, so the ALB, not the edge, closes idle connections.
    pub keepalive: Duration,
    /// `EDGE_SHUTDOWN_GRACE_MS`: after SIGTERM, in-flight requests get this long.
    pub shutdown_grace: Duration,
    /// `EDGE_LOG`: `error`, `warn`, `info`, `debug` or `trace`.
    pub log_level: tracing::level_filters::LevelFilter,
    /// `EDGE_LOG_FORMAT=json`: one JSON object a line (for CloudWatch Logs and the
    /// like); `text` (the default) for people.
    pub log_json: bool,
    /// `REDIS_URL`, `REDIS_TIMEOUT_MS`, `REDIS_MAX_IN_FLIGHT`: each core's connection.
    pub redis: RedisConfig,
    /// `ROOM_TOKEN_SECRET`: HMAC-SHA256 key of room tokens.
    pub room_token_secret: String,
    /// `ROOM_TOKEN_SECRET_PREVIOUS`: still accepted, so keys rotate without logouts.
    pub room_token_secret_previous: Option<String>,
    /// `ROOM_TOKEN_TTL_MS`: how long a room token is valid.
    pub room_token_ttl: Duration,
    /// `HOLD_TTL_MS`: a hold expires by itself after this.
    pub hold_ttl: Duration,
    /// `HOLD_LIMIT`: live holds one buyer may have in one event.
    pub hold_limit: u32,
    /// `PUBLIC_CACHE_MS`: each core reuses a summary or seat map this long; also the
    /// `s-maxage` CloudFront sees (rounded up to whole seconds).
    pub public_cache: Duration,
    /// `EVENT_REFRESH_MS`: each core re-reads an event's catalog and admission state
    /// at most this often, so operator changes reach every core within it.
    pub event_refresh: Duration,
    /// `ADMIN_TOKEN`: bearer token of the `/admin/*` endpoints; unset, they do not exist.
    pub admin_token: Option<String>,
    /// `METRICS_ADDR`: where `GET /metrics` is served (an admin address, never the
    /// public port); `off` serves none.
    pub metrics_addr: Option<SocketAddr>,
    /// `METRICS_EMF=1`: the figures also as CloudWatch embedded-metric-format lines on
    /// stdout, every `METRICS_EMF_INTERVAL_MS` (default 60 s), for Fargate's awslogs.
    pub metrics_emf: Option<Duration>,
    /// `IDEMPOTENCY_TTL_MS`: how long an Idempotency-Key's outcome (and the order's
    /// status record) is kept.
    pub idempotency_ttl: Duration,
    /// `COMMIT_HOLD_EXTEND_MS`: a commit extends its holds by this, to cover processing.
    pub commit_hold_extend: Duration,
    /// `COMMIT_IN_FLIGHT_MS` (aws profile): how long a commit's key stays in flight
    /// (409 to a second attempt) while SQS is asked; after an edge crash in between, the
    /// key frees itself after this. Shorter than a send may take only costs a second
    /// send of the same message, which SQS's deduplication id and the worker absorb.
    pub commit_in_flight: Duration,
    /// `COMMIT_SHARDS`: commit streams per event, so a hot event spreads over consumers.
    pub commit_shards: u32,
    /// The side thread, when there is work for it. `PROFILE=aws`: commits go to SQS
    /// FIFO (`SQS_QUEUE_URL`, `SQS_LINGER_MS`) and holds are mirrored to DynamoDB
    /// (`HOLD_MIRROR_TABLE`, `MIRROR_BACKLOG`). `PROFILE=local` (default): Redis
    /// Streams, no mirror. `DATABASE_URL` (either profile): `status` asks PostgreSQL
    /// when Redis has no record.
    pub side: Option<SideConfig>,
    /// `SQS_GROUPS`: message groups per event (`{eventId}#{n}`), so one hot event
    /// still spreads over FIFO groups and consumers.
    pub sqs_groups: u32,
}

/// The room-token key used when `ROOM_TOKEN_SECRET` is unset: fine on a laptop, never
/// in production (the edge warns at start).
pub const LOCAL_ROOM_TOKEN_SECRET: &str = "local-only-room-token-secret";

#[derive(Debug, thiserror::Error)]
#[error("{var}={value:?}: {reason}")]
pub struct ConfigError {
    pub var: &'static str,
    pub value: String,
    pub reason: &'static str,
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads variables through `lookup`, so tests need not touch the process environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let env = Env { lookup: &lookup };
        Ok(Self {
            addr: env.parse("EDGE_ADDR", "127.0.0.1:8080", "expected ip:port")?,
            threads: env.ranged("EDGE_THREADS", cores as u64, 1, 1024)? as usize,
            driver: match env.get("EDGE_DRIVER", "auto").as_str() {
                "auto" => DriverChoice::Auto,
                "uring" => DriverChoice::Uring,
                "epoll" => DriverChoice::Epoll,
                other => {
                    return Err(env.bad("EDGE_DRIVER", other, "expected auto, uring or epoll"))
                }
            },
            uring_entries: env.ranged("EDGE_URING_ENTRIES", 1024, 8, 32768)? as u32,
            uring_coop_taskrun: env.parse(
                "EDGE_URING_COOP_TASKRUN",
                "true",
                "expected true or false",
            )?,
            max_body_bytes: env.ranged("EDGE_MAX_BODY_BYTES", 64 * 1024, 0, 16 << 20)? as usize,
            request_timeout: env.millis("EDGE_REQUEST_TIMEOUT_MS", 10_000)?,
            keepalive: env.millis("EDGE_KEEPALIVE_MS", 75_000)?,
            shutdown_grace: env.millis("EDGE_SHUTDOWN_GRACE_MS", 20_000)?,
            log_level: env.parse(
                "EDGE_LOG",
                "info",
                "expected error, warn, info, debug or trace",
            )?,
            log_json: match env.get("EDGE_LOG_FORMAT", "text").as_str() {
                "text" => false,
                "json" => true,
                other => return Err(env.bad("EDGE_LOG_FORMAT", other, "expected text or json")),
            },
            redis: {
                let url = env.get("REDIS_URL", "redis://127.0.0.1:16379");
                let mut redis = RedisConfig::from_url(&url)
                    .map_err(|reason| env.bad("REDIS_URL", &url, reason))?;
                redis.timeout = env.millis("REDIS_TIMEOUT_MS", 1_000)?;
                redis.tls_ca_file = (lookup)("REDIS_TLS_CA_FILE")
                    .filter(|s| !s.is_empty())
                    .map(Into::into);
                if let (true, Some(path)) = (redis.url.tls, &redis.tls_ca_file) {
                    crate::redis::check_tls(&redis).map_err(|_| {
                        env.bad(
                            "REDIS_TLS_CA_FILE",
                            &path.display().to_string(),
                            "cannot be read, or holds no PEM certificate",
                        )
                    })?;
                }
                redis.max_in_flight =
                    env.ranged("REDIS_MAX_IN_FLIGHT", 32 * 1024, 1, 1 << 20)? as usize;
                redis
            },
            room_token_secret: env.get("ROOM_TOKEN_SECRET", LOCAL_ROOM_TOKEN_SECRET),
            room_token_secret_previous: (lookup)("ROOM_TOKEN_SECRET_PREVIOUS")
                .filter(|s| !s.is_empty()),
            room_token_ttl: env.millis("ROOM_TOKEN_TTL_MS", 2 * 3600 * 1000)?,
            hold_ttl: env.millis("HOLD_TTL_MS", 5 * 60 * 1000)?,
            // A buyer's holds go into one commit: at most the seats an order may have.
            hold_limit: env.ranged("HOLD_LIMIT", 4, 1, codec::rules::ORDER_SEATS_MAX as u64)?
                as u32,
            public_cache: env.millis("PUBLIC_CACHE_MS", 1_000)?,
            event_refresh: env.millis("EVENT_REFRESH_MS", 500)?,
            admin_token: (lookup)("ADMIN_TOKEN").filter(|s| !s.is_empty()),
            metrics_addr: match env.get("METRICS_ADDR", "127.0.0.1:9100").as_str() {
                "off" => None,
                _ => Some(env.parse(
                    "METRICS_ADDR",
                    "127.0.0.1:9100",
                    "expected host:port or off",
                )?),
            },
            metrics_emf: match env.get("METRICS_EMF", "0").as_str() {
                "0" => None,
                "1" => Some(Duration::from_millis(env.ranged(
                    "METRICS_EMF_INTERVAL_MS",
                    60_000,
                    100,
                    3_600_000,
                )?)),
                other => return Err(env.bad("METRICS_EMF", other, "expected 0 or 1")),
            },
            idempotency_ttl: env.millis("IDEMPOTENCY_TTL_MS", 24 * 3600 * 1000)?,
            commit_hold_extend: env.millis("COMMIT_HOLD_EXTEND_MS", 120_000)?,
            commit_in_flight: Duration::from_millis(env.ranged(
                "COMMIT_IN_FLIGHT_MS",
                30_000,
                1_000,
                3_600_000,
            )?),
            commit_shards: env.ranged("COMMIT_SHARDS", 4, 1, 256)? as u32,
            side: {
                let aws = match env.get("PROFILE", "local").as_str() {
                    "local" => None,
                    "aws" => Some(AwsConfig {
                        queue_url: env.required("SQS_QUEUE_URL")?,
                        linger: env.millis("SQS_LINGER_MS", 2)?,
                        mirror_table: env.required("HOLD_MIRROR_TABLE")?,
                        mirror_backlog: env.ranged("MIRROR_BACKLOG", 100_000, 1, 10_000_000)?
                            as usize,
                    }),
                    other => return Err(env.bad("PROFILE", other, "expected local or aws")),
                };
                let database = match (lookup)("DATABASE_URL").filter(|s| !s.is_empty()) {
                    Some(url) => Some(url.parse().map_err(|_| {
                        env.bad(
                            "DATABASE_URL",
                            &url,
                            "expected postgres://user@host:port/db",
                        )
                    })?),
                    None => None,
                };
                (aws.is_some() || database.is_some()).then_some(SideConfig { aws, database })
            },
            sqs_groups: env.ranged("SQS_GROUPS", 16, 1, 1024)? as u32,
        })
    }
}

struct Env<'a, F: Fn(&str) -> Option<String>> {
    lookup: &'a F,
}

impl<F: Fn(&str) -> Option<String>> Env<'_, F> {
    fn get(&self, var: &'static str, default: &str) -> String {
        (self.lookup)(var).unwrap_or_else(|| default.to_owned())
    }

    fn required(&self, var: &'static str) -> Result<String, ConfigError> {
        (self.lookup)(var)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| self.bad(var, "", "required with PROFILE=aws"))
    }

    fn bad(&self, var: &'static str, value: &str, reason: &'static str) -> ConfigError {
        ConfigError {
            var,
            value: value.to_owned(),
            reason,
        }
    }

    fn parse<T: std::str::FromStr>(
        &self,
        var: &'static str,
        default: &str,
        reason: &'static str,
    ) -> Result<T, ConfigError> {
        let value = self.get(var, default);
        value
            .trim()
            .parse()
            .map_err(|_| self.bad(var, &value, reason))
    }

    fn ranged(
        &self,
        var: &'static str,
        default: u64,
        min: u64,
        max: u64,
    ) -> Result<u64, ConfigError> {
        let n: u64 = self.parse(var, &default.to_string(), "expected a whole number")?;
        if n < min || n > max {
            return Err(self.bad(var, &n.to_string(), "out of range"));
        }
        Ok(n)
    }

    fn millis(&self, var: &'static str, default: u64) -> Result<Duration, ConfigError> {
        self.ranged(var, default, 1, 24 * 3600 * 1000)
            .map(Duration::from_millis)
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
    fn defaults_run_locally() {
        let c = with(&[]).expect("defaults are valid");
        assert_eq!(c.addr, "127.0.0.1:8080".parse().expect("addr"));
        assert_eq!(c.driver, DriverChoice::Auto);
        assert!(c.threads >= 1);
        assert!(
            c.keepalive > Duration::from_secs(60),
            "must outlive an ALB's idle timeout"
        );
    }

    #[test]
    fn bad_values_name_their_variable() {
        for (var, value) in [
            ("EDGE_ADDR", "localhost"),
            ("EDGE_THREADS", "0"),
            ("EDGE_THREADS", "two"),
            ("EDGE_DRIVER", "kqueue"),
            ("EDGE_KEEPALIVE_MS", "-5"),
            ("EDGE_MAX_BODY_BYTES", "99999999999"),
            ("EDGE_LOG", "loud"),
            ("EDGE_LOG_FORMAT", "yaml"),
            ("METRICS_ADDR", "9100"),
            ("METRICS_EMF", "yes"),
            ("REDIS_URL", "http://127.0.0.1"),
            ("REDIS_TIMEOUT_MS", "0"),
            ("HOLD_TTL_MS", "0"),
            ("HOLD_LIMIT", "0"),
            ("PROFILE", "gcp"),
            ("DATABASE_URL", "postgres://h:notaport/db"),
        ] {
            let err = with(&[(var, value)]).expect_err(var);
            assert_eq!(err.var, var);
            assert!(err.to_string().starts_with(var), "{err}");
        }
    }
}
