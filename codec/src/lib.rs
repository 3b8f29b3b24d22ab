//! Contracts and wire formats shared by the edge and the worker.
//!
//! This crate is sans-IO: no runtime, no sockets, no AWS. It holds what both sides of
//! the system must agree on byte for byte.
//!
//! # Layout
//! - [`admission`]: who is admitted into an event's waiting room, and when.
//! - [`cluster`]: Redis Cluster's key slots (CRC16, hash tags), redirections and
//!   slot map, for both clients.
//! - [`contract`]: the JSON bodies of the HTTP API (`openapi/ticketing.yaml` is the
//!   normative copy; a test parses every example of the spec into these types) and the
//!   commit-queue message.
//! - [`emf`]: CloudWatch embedded-metric-format lines, and their validity check.
//! - [`error_code`]: the error codes the API answers with, and their HTTP status.
//! - [`fairness`]: the pre-queue's draw (commitment, list digest, order) as the
//!   verifier recomputes it; `lua/line.lua` runs the same function in Redis.
//! - [`json`]: JSON writers for bodies built straight into a reused buffer.
//! - [`payment`]: the payment provider's callback: its signature (HMAC-SHA256 over
//!   timestamp and body) and its body.
//! - [`keys`]: the Redis data model (key names, the catalog projection).
//! - [`projection`]: an event read from PostgreSQL (one statement) and the Redis
//!   commands that project it, for the worker's seed and rebuild and the edge's repair.
//! - [`rules`]: what the system accepts, one rule per identifier and field (event,
//!   section and seat ids, user id, Idempotency-Key, currency, amounts, counts), used
//!   by the edge at the door and by the worker, and said again by PostgreSQL's CHECKs.
//! - [`resp`]: Redis (RESP) command encoding into a reused buffer.
//! - [`store`]: the storage protocol: every Lua script (`lua/*.lua`) of the edge and
//!   the worker, with its typed call and typed outcome; the one home of the hold value,
//!   the commit message's encoding and the status record.
//! - [`url`]: percent-encoding and `redis://` (and `redis-cluster://`) URLs.

pub mod admission;
pub mod cluster;
pub mod contract;
pub mod emf;
pub mod error_code;
pub mod fairness;
pub mod json;
pub mod keys;
pub mod payment;
pub mod projection;
pub mod resp;
pub mod rules;
pub mod store;
pub mod url;

/// The wall clock in epoch milliseconds (0 before 1970), for the edge and the worker.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
