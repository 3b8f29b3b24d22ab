//! The worker: owns the PostgreSQL schema and the event catalog, and projects them
//! into Redis; later it drains the commit queue into PostgreSQL (issue 6). `main` is a
//! thin command line over this library, so tests drive the same code.
//!
//! # Layout
//! - [`config`]: the environment, read once into [`config::Config`] (bad value: exit 64).
//! - [`cli`]: `worker migrate | seed EVENT [...] | rebuild-redis [EVENT]`, parsed.
//! - [`migrate`]: versioned migrations (`migrations/NNNN_name.sql`), under an advisory
//!   lock, one transaction each.
//! - [`catalog`]: `seed` (PostgreSQL upsert, then projection) and `rebuild_redis`; the
//!   projection writes `codec::keys`' catalog, admission and sold-bitmap keys.
//! - [`db`]: PostgreSQL connections.
//! - [`redis`]: a small tokio Redis connection (RESP via `codec` and `redis-protocol`),
//!   request/response and pipelines, `MULTI`/`EXEC`.
//! - [`error`]: the one error type, retryable or not.

pub mod catalog;
pub mod cli;
pub mod config;
pub mod db;
pub mod error;
pub mod migrate;
pub mod redis;

pub use error::Error;
