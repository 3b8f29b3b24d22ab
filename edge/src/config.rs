//! Configuration, read once from the environment (12-factor) into one typed struct.
//!
//! Every variable has a default that runs the local stack; a bad value is a
//! [`ConfigError`] naming the variable, and `main` exits with code 64 (`EX_USAGE`).

use std::{net::SocketAddr, time::Duration};

use crate::{
    identity::{keys, IdentityConfig, Mode},
    limits::{Rate, RateLimits},
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
    /// `EDGE_ACCESS_LOG_SAMPLE`: one request in this many is logged (route, status,
    /// time, request and trace ids) at info; 0 (the default) logs none.
    pub access_log_every: u64,
    /// `REDIS_URL`, `REDIS_TIMEOUT_MS`, `REDIS_MAX_IN_FLIGHT`: each core's connection.
    pub redis: RedisConfig,
    /// `ROOM_TOKEN_SECRET`: HMAC-SHA256 key of room tokens.
    pub room_token_secret: String,
    /// `ROOM_TOKEN_SECRET_PREVIOUS`: still accepted, so keys rotate without logouts.
    pub room_token_secret_previous: Option<String>,
    /// `IDENTITY` and `IDENTITY_*`: how the buyer is known at `enter`
    /// ([`crate::identity`]).
    pub identity: IdentityConfig,
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
    /// `ABANDON_AFTER_MS`: in an event with an `activeLimit`, a buyer not seen (enter,
    /// room-status, room-events) for this long leaves their place, which frees an
    /// active slot or is skipped; 0: nobody is ever dropped.
    pub abandon_after: Duration,
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
    /// Abuse limits (README "Abuse limits"): `RATE_LIMITS` (`on`, the default, or
    /// `off`) with `RATE_ADDRESS_PER_SEC`/`_BURST`, `RATE_BUYER_PER_SEC`/`_BURST` and
    /// `RATE_TABLE_SLOTS`, each per core; `None` when off.
    pub rate_limits: Option<RateLimits>,
    /// `TRUSTED_PROXY_HOPS`: proxies in front of the edge that append to
    /// `X-Forwarded-For` (ALB: 1; CloudFront then ALB: 2). 0: the header is ignored.
    pub trusted_proxy_hops: u8,
    /// `PURCHASE_LIMIT`: most seats one buyer may have in accepted orders of an event
    /// (the worker checks it again in PostgreSQL); 0: no limit.
    pub purchase_limit: u32,
    /// `ENTER_POW_BITS`: proof-of-work on `enter` (0: off).
    pub enter_pow_bits: u8,
    /// `ENTER_POW_TTL_MS`: how long a challenge may be solved and used.
    pub enter_pow_ttl: Duration,
    /// `CORS_ALLOWED_ORIGINS`: origins (exact, comma-separated) whose pages may call
    /// the API; empty (default): no CORS.
    pub cors: crate::cors::Cors,
    /// `PAYMENT_MODE=provider`: orders wait for the payment provider's signed callback
    /// (`POST /confirm/payment-callback`); `None` (`instant`, the default): the route
    /// does not exist and orders are confirmed as they are stored.
    pub payment: Option<PaymentConfig>,
}

/// The payment provider's callback (`PAYMENT_MODE=provider`).
#[derive(Debug, Clone)]
pub struct PaymentConfig {
    /// `PAYMENT_WEBHOOK_SECRET`: the HMAC-SHA256 key shared with the provider.
    pub secret: String,
    /// `PAYMENT_WEBHOOK_SECRET_PREVIOUS`: still accepted while the secret rotates.
    pub secret_previous: Option<String>,
    /// `PAYMENT_WEBHOOK_TOLERANCE_MS`: how far a callback's signed timestamp may be
    /// from the edge's clock, either way.
    pub tolerance: Duration,
    /// `PAYMENT_TIMEOUT_MS`: the worker rejects an order not paid this long after its
    /// commit; the commit extends its holds by this more.
    pub timeout: Duration,
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
            access_log_every: env.ranged("EDGE_ACCESS_LOG_SAMPLE", 0, 0, 1_000_000_000)?,
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
            identity: identity(&env)?,
            room_token_ttl: env.millis("ROOM_TOKEN_TTL_MS", 2 * 3600 * 1000)?,
            hold_ttl: env.millis("HOLD_TTL_MS", 5 * 60 * 1000)?,
            // A buyer's holds go into one commit: at most the seats an order may have.
            hold_limit: env.ranged("HOLD_LIMIT", 4, 1, codec::rules::ORDER_SEATS_MAX as u64)?
                as u32,
            public_cache: env.millis("PUBLIC_CACHE_MS", 1_000)?,
            event_refresh: env.millis("EVENT_REFRESH_MS", 500)?,
            abandon_after: Duration::from_millis(env.ranged(
                "ABANDON_AFTER_MS",
                120_000,
                0,
                86_400_000,
            )?),
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
            rate_limits: match env.get("RATE_LIMITS", "on").as_str() {
                "on" => Some(RateLimits {
                    address: Rate {
                        per_sec: env.ranged("RATE_ADDRESS_PER_SEC", 50, 1, 1_000_000)? as u32,
                        burst: env.ranged("RATE_ADDRESS_BURST", 200, 1, 1_000_000)? as u32,
                    },
                    buyer: Rate {
                        per_sec: env.ranged("RATE_BUYER_PER_SEC", 2, 1, 1_000_000)? as u32,
                        burst: env.ranged("RATE_BUYER_BURST", 10, 1, 1_000_000)? as u32,
                    },
                    slots: env.ranged("RATE_TABLE_SLOTS", 65_536, 64, 1 << 24)? as usize,
                }),
                "off" => None,
                other => return Err(env.bad("RATE_LIMITS", other, "expected on or off")),
            },
            trusted_proxy_hops: env.ranged("TRUSTED_PROXY_HOPS", 0, 0, 8)? as u8,
            purchase_limit: env.ranged("PURCHASE_LIMIT", 0, 0, 1_000_000)? as u32,
            enter_pow_bits: env.ranged("ENTER_POW_BITS", 0, 0, 32)? as u8,
            enter_pow_ttl: env.millis("ENTER_POW_TTL_MS", 120_000)?,
            cors: {
                let list = env.get("CORS_ALLOWED_ORIGINS", "");
                crate::cors::Cors::parse(&list)
                    .map_err(|reason| env.bad("CORS_ALLOWED_ORIGINS", &list, reason))?
            },
            payment: payment(&env)?,
        })
    }
}

/// `PAYMENT_MODE=provider` needs the webhook secret (at least 32 bytes, as the room
/// token's HMAC would want) and `DATABASE_URL`, where callbacks are recorded.
fn payment<F: Fn(&str) -> Option<String>>(
    env: &Env<'_, F>,
) -> Result<Option<PaymentConfig>, ConfigError> {
    let opt = |var| (env.lookup)(var).filter(|v: &String| !v.is_empty());
    match env.get("PAYMENT_MODE", "instant").as_str() {
        "instant" => return Ok(None),
        "provider" => {}
        other => return Err(env.bad("PAYMENT_MODE", other, "expected instant or provider")),
    }
    let short = |s: &Option<String>| s.as_ref().is_some_and(|s| s.len() < 32);
    let secret = opt("PAYMENT_WEBHOOK_SECRET");
    let secret_previous = opt("PAYMENT_WEBHOOK_SECRET_PREVIOUS");
    if secret.is_none() || short(&secret) {
        return Err(env.bad(
            "PAYMENT_WEBHOOK_SECRET",
            "(hidden)",
            "PAYMENT_MODE=provider needs it, at least 32 bytes",
        ));
    }
    if short(&secret_previous) {
        return Err(env.bad(
            "PAYMENT_WEBHOOK_SECRET_PREVIOUS",
            "(hidden)",
            "at least 32 bytes",
        ));
    }
    if opt("DATABASE_URL").is_none() {
        return Err(env.bad(
            "DATABASE_URL",
            "",
            "PAYMENT_MODE=provider records callbacks in PostgreSQL",
        ));
    }
    Ok(Some(PaymentConfig {
        secret: secret.unwrap_or_default(),
        secret_previous,
        tolerance: Duration::from_millis(env.ranged(
            "PAYMENT_WEBHOOK_TOLERANCE_MS",
            300_000,
            1_000,
            3_600_000,
        )?),
        timeout: Duration::from_millis(env.ranged(
            "PAYMENT_TIMEOUT_MS",
            600_000,
            1_000,
            86_400_000,
        )?),
    }))
}

/// `IDENTITY=jwt` needs a secret or a JWKS file, `alb-oidc` the ALB's ARN and key
/// directory; the keys are read once here so that a bad file stops the start.
fn identity<F: Fn(&str) -> Option<String>>(
    env: &Env<'_, F>,
) -> Result<IdentityConfig, ConfigError> {
    let opt = |var| (env.lookup)(var).filter(|v: &String| !v.is_empty());
    let mode = match env.get("IDENTITY", "none").as_str() {
        "none" => Mode::None,
        "jwt" => Mode::Jwt,
        "alb-oidc" => Mode::AlbOidc,
        other => return Err(env.bad("IDENTITY", other, "expected none, jwt or alb-oidc")),
    };
    let config = IdentityConfig {
        mode,
        jwt_secret: opt("IDENTITY_JWT_SECRET"),
        jwks_file: opt("IDENTITY_JWKS_FILE").map(Into::into),
        issuer: opt("IDENTITY_ISSUER"),
        audience: opt("IDENTITY_AUDIENCE"),
        leeway_ms: env.ranged("IDENTITY_LEEWAY_MS", 30_000, 0, 300_000)?,
        alb_arn: opt("IDENTITY_ALB_ARN"),
        alb_key_dir: opt("IDENTITY_ALB_KEY_DIR").map(Into::into),
        keys_refresh: env.millis("IDENTITY_KEYS_REFRESH_MS", 1_000)?,
    };
    if config.jwt_secret.as_ref().is_some_and(|s| s.len() < 32) {
        return Err(env.bad(
            "IDENTITY_JWT_SECRET",
            "(hidden)",
            "at least 32 bytes (RFC 7518 section 3.2)",
        ));
    }
    let (var, path) = match mode {
        Mode::None => return Ok(config),
        Mode::Jwt => {
            if config.jwt_secret.is_none() && config.jwks_file.is_none() {
                return Err(env.bad(
                    "IDENTITY_JWKS_FILE",
                    "",
                    "IDENTITY=jwt needs IDENTITY_JWT_SECRET or IDENTITY_JWKS_FILE",
                ));
            }
            ("IDENTITY_JWKS_FILE", config.jwks_file.as_ref())
        }
        Mode::AlbOidc => {
            if config
                .alb_arn
                .as_ref()
                .is_none_or(|arn| !arn.starts_with("arn:"))
            {
                let value = config.alb_arn.clone().unwrap_or_default();
                return Err(env.bad(
                    "IDENTITY_ALB_ARN",
                    &value,
                    "IDENTITY=alb-oidc needs the load balancer's ARN",
                ));
            }
            let Some(dir) = config.alb_key_dir.as_ref() else {
                return Err(env.bad(
                    "IDENTITY_ALB_KEY_DIR",
                    "",
                    "IDENTITY=alb-oidc needs a directory of ALB public keys",
                ));
            };
            ("IDENTITY_ALB_KEY_DIR", Some(dir))
        }
    };
    if let Err(e) = keys::load(&config) {
        let path = path.map(|p| p.display().to_string()).unwrap_or_default();
        return Err(env.bad(
            var,
            &format!("{path}: {e}"),
            "cannot be read, or holds no usable key",
        ));
    }
    Ok(config)
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
        let limits = c.rate_limits.expect("rate limits are on by default");
        assert!(limits.address.per_sec > limits.buyer.per_sec);
        assert_eq!(c.trusted_proxy_hops, 0);
        assert!(with(&[("RATE_LIMITS", "off")])
            .expect("valid")
            .rate_limits
            .is_none());
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
            ("RATE_LIMITS", "yes"),
            ("RATE_BUYER_PER_SEC", "0"),
            ("RATE_ADDRESS_BURST", "x"),
            ("RATE_TABLE_SLOTS", "8"),
            ("TRUSTED_PROXY_HOPS", "9"),
            ("PURCHASE_LIMIT", "-1"),
            ("ENTER_POW_BITS", "33"),
            ("ENTER_POW_TTL_MS", "0"),
            ("DATABASE_URL", "postgres://h:notaport/db"),
            ("IDENTITY", "oauth"),
            ("IDENTITY_LEEWAY_MS", "300001"),
            ("IDENTITY_KEYS_REFRESH_MS", "0"),
            ("CORS_ALLOWED_ORIGINS", "*"),
            ("CORS_ALLOWED_ORIGINS", "https://tickets.example.com/"),
        ] {
            let err = with(&[(var, value)]).expect_err(var);
            assert_eq!(err.var, var);
            assert!(err.to_string().starts_with(var), "{err}");
        }
    }

    #[test]
    fn identity_modes_need_their_keys() {
        let secret = "a-jwt-secret-of-at-least-32-bytes";
        let jwks = std::env::temp_dir().join(format!("edge-config-jwks-{}", std::process::id()));
        std::fs::write(
            &jwks,
            r#"{"keys":[{"kty":"EC","crv":"P-256","kid":"k","x":"AA","y":"AA"}]}"#,
        )
        .expect("write");
        let jwks_path = jwks.to_str().expect("path");
        for (vars, var) in [
            (&[("IDENTITY", "jwt")][..], "IDENTITY_JWKS_FILE"),
            (
                &[("IDENTITY", "jwt"), ("IDENTITY_JWT_SECRET", "short")],
                "IDENTITY_JWT_SECRET",
            ),
            (
                &[
                    ("IDENTITY", "jwt"),
                    ("IDENTITY_JWKS_FILE", "/nonexistent/jwks.json"),
                ],
                "IDENTITY_JWKS_FILE",
            ),
            // x and y are not 32 bytes: the file does not parse.
            (
                &[("IDENTITY", "jwt"), ("IDENTITY_JWKS_FILE", jwks_path)],
                "IDENTITY_JWKS_FILE",
            ),
            (
                &[("IDENTITY", "alb-oidc"), ("IDENTITY_ALB_KEY_DIR", "/tmp")],
                "IDENTITY_ALB_ARN",
            ),
            (
                &[
                    ("IDENTITY", "alb-oidc"),
                    ("IDENTITY_ALB_ARN", "arn:aws:elasticloadbalancing:x"),
                ],
                "IDENTITY_ALB_KEY_DIR",
            ),
        ] {
            let err = with(vars).expect_err(var);
            assert_eq!(err.var, var, "{vars:?}");
        }
        let _ = std::fs::remove_file(&jwks);
        let ok = with(&[("IDENTITY", "jwt"), ("IDENTITY_JWT_SECRET", secret)]).expect("valid");
        assert_eq!(ok.identity.mode, Mode::Jwt);
        assert_eq!(with(&[]).expect("defaults").identity.mode, Mode::None);
    }
}
