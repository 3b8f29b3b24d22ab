//! The worker: owns the PostgreSQL schema and the event catalog, projects them into
//! Redis, and drains the commit queue into PostgreSQL (at-least-once input,
//! exactly-once effect). `main` is a thin command line over this library, so tests
//! drive the same code.
//!
//! # Layout
//! - [`config`]: the environment, read once into [`config::Config`] (bad value: exit 64).
//! - [`cli`]: `worker migrate | seed | rebuild-redis | run | dlq | bench |
//!   verify-shuffle`, parsed.
//! - [`migrate`]: versioned migrations (`migrations/NNNN_name.sql`), under an advisory
//!   lock, one transaction each.
//! - [`catalog`]: `seed` (PostgreSQL upsert, then projection) and `rebuild_redis`; the
//!   projection writes `codec::keys`' catalog, admission and sold-bitmap keys.
//! - [`run`]: `worker run`: the consumer loops, the event refresher, retries, shutdown.
//! - [`metrics`]: its counters and histograms, and `GET /metrics`.
//! - [`queue`]: the [`queue::Consumer`] trait and its two backends, Redis Streams and
//!   SQS FIFO.
//! - [`commit`]: a message decoded and validated with `codec::rules`: a commit to sell,
//!   one to store `REJECTED` with its reason, or poison with its reason.
//! - [`store`]: a batch of commits in one PostgreSQL transaction (orders, sold seats,
//!   payments; the unique constraints decide).
//! - [`payment`]: `PAYMENT_MODE=provider`: the payment loop (recorded provider
//!   callbacks applied, payments timed out, the changed orders projected).
//! - [`project`]: the Redis projection after the commit (sold bits, holds released,
//!   order status records), and its rebuild.
//! - [`dlq`]: `worker dlq list | redrive` for the dead-letter streams.
//! - [`fairness`]: the line's seed settings (pre-queue, queueing, active limit) and
//!   `worker verify-shuffle`.
//! - [`bench`]: `worker bench`, orders/s from a pre-filled stream.
//! - [`db`]: PostgreSQL connections and the pool.
//! - [`redis`]: a small tokio Redis connection (RESP via `codec` and `redis-protocol`),
//!   request/response and pipelines, `MULTI`/`EXEC`, `EVALSHA`.
//! - [`error`]: the one error type, retryable or not.

pub mod bench;
pub mod catalog;
pub mod cli;
pub mod commit;
pub mod config;
pub mod db;
pub mod dlq;
pub mod error;
pub mod fairness;
pub mod metrics;
pub mod migrate;
pub mod payment;
pub mod project;
pub mod queue;
pub mod redis;
pub mod run;
pub mod store;

pub use error::Error;

pub use codec::now_ms;
