//! The edge: a thread-per-core HTTP/1.1 server on monoio (io_uring, epoll fallback)
//! for the `/public/*` and `/confirm/*` API of `openapi/ticketing.yaml`.
//!
//! # Layout
//! Each module uses only those listed after it (`router` and `conn` excepted, which
//! sit on top), so there is no import circle.
//! - [`config`]: environment variables into one typed struct, validated at start.
//! - [`server`]: one thread, runtime and `SO_REUSEPORT` listener per core; driver
//!   choice; graceful shutdown.
//! - `conn`: one connection's loop: read, answer every buffered request, one write.
//! - [`router`]: path and method to handler; ping and health; errors rendered, and
//!   logged once with the request id.
//! - [`api`]: the handlers: `api/public/*` (waiting room, holds, cached reads),
//!   `api/confirm/*` (payment intent, commit, status), `api/admin`, and what they share
//!   (`api/request`: bodies, field rules, the room token).
//! - [`core`]: one core's state, which every handler takes.
//! - [`cache`]: each core's cache of rendered `summary` and `seats` bodies.
//! - [`store`]: the scripts of `codec::store` run on the core's Redis connection, each
//!   a typed call with a typed outcome.
//! - [`events`]: each core's copy of an event's catalog and admission state.
//! - [`token`]: HMAC-SHA256 room tokens.
//! - [`metrics`]: per-core counters and latency histograms, the `/metrics` scrape.
//! - [`side`]: the tokio side thread: SQS, the DynamoDB mirror, order look-ups.
//! - [`error`]: the one error type and its mapping to status, code and JSON body.
//! - [`http`]: HTTP/1.1 framing: request heads parsed in place, limits, responses.
//! - [`redis`]: the per-core pipelined Redis client.
//!
//! A request's path: `conn` reads -> [`http::parse_head`] -> [`router::dispatch`]
//! fills a [`http::Reply`] -> [`http::write_response`] appends it to the write buffer
//! -> one write for all the answers of that read.

pub mod api;
pub mod cache;
pub mod config;
mod conn;
pub mod core;
pub mod error;
pub mod events;
pub mod http;
mod ids;
pub mod metrics;
pub mod redis;
pub mod router;
pub mod server;
pub mod side;
pub mod store;
pub mod token;
