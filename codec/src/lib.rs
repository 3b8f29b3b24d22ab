//! Contracts and wire formats shared by the edge and the worker.
//!
//! This crate is sans-IO: no runtime, no sockets, no AWS. It holds what both sides of
//! the system must agree on byte for byte.
//!
//! # Layout
//! - [`contract`]: the JSON bodies of the HTTP API (`openapi/ticketing.yaml` is the
//!   normative copy; a test parses every example of the spec into these types) and the
//!   commit-queue message.
//! - [`emf`]: CloudWatch embedded-metric-format lines, and their validity check.
//! - [`error_code`]: the error codes the API answers with, and their HTTP status.
//! - [`json`]: JSON writers for bodies built straight into a reused buffer.
//! - [`keys`]: the Redis data model (key names, the catalog projection).
//! - [`rules`]: what the system accepts, one rule per identifier and field (event,
//!   section and seat ids, user id, Idempotency-Key, currency, amounts, counts), used
//!   by the edge at the door and by the worker, and said again by PostgreSQL's CHECKs.
//! - [`resp`]: Redis (RESP) command encoding into a reused buffer.
//! - [`store`]: the storage protocol: every Lua script (`lua/*.lua`) of the edge and
//!   the worker, with its typed call and typed outcome; the one home of the hold value,
//!   the commit message's encoding and the status record.
//! - [`url`]: percent-encoding and `redis://` URLs.

pub mod contract;
pub mod emf;
pub mod error_code;
pub mod json;
pub mod keys;
pub mod resp;
pub mod rules;
pub mod store;
pub mod url;
