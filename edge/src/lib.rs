//! The edge: a thread-per-core HTTP/1.1 server on monoio (io_uring, epoll fallback)
//! for the `/public/*` and `/confirm/*` API of `openapi/ticketing.yaml`.
//!
//! # Layout
//! - [`config`]: environment variables into one typed struct, validated at start.
//! - [`server`]: one thread, runtime and `SO_REUSEPORT` listener per core; driver
//!   choice; graceful shutdown.
//! - `conn`: one connection's loop: read, answer every buffered request, one write.
//! - [`http`]: HTTP/1.1 framing: request heads parsed in place, limits, responses.
//! - `router`: path and method to handler; ping and health.
//! - `public`: `/public/*` (waiting room, holds, summary, seat map) and the admin
//!   admission endpoint, with their Lua scripts in `public/scripts.rs`.
//! - `confirm`: `/confirm/*` (idempotent payment intent, commit through the queue,
//!   status), scripts in `confirm/scripts.rs`.
//! - [`events`]: each core's copy of an event's catalog and admission state.
//! - [`token`]: HMAC-SHA256 room tokens.
//! - [`redis`]: the per-core pipelined Redis client.
//! - [`error`]: the one error type and its mapping to status, code and JSON body.
//!
//! A request's path: `conn` reads -> [`http::parse_head`] -> `router::dispatch` fills
//! a [`http::Reply`] -> [`http::write_response`] appends it to the write buffer ->
//! one write for all the answers of that read.

pub mod config;
mod confirm;
mod conn;
pub mod error;
pub mod events;
pub mod http;
mod ids;
mod public;
pub mod redis;
mod router;
pub mod server;
pub mod side;
pub mod token;
