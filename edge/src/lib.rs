//! The edge: a thread-per-core HTTP/1.1 server on monoio (io_uring, epoll fallback)
//! for the `/public/*` and `/confirm/*` API of `openapi/ticketing.yaml`.
//!
//! # Layout
//! - [`config`]: environment variables into one typed struct, validated at start.
//! - [`server`]: one thread, runtime and `SO_REUSEPORT` listener per core; driver
//!   choice; graceful shutdown.
//! - `conn`: one connection's loop: read, answer every buffered request, one write.
//! - [`http`]: HTTP/1.1 framing: request heads parsed in place, limits, responses.
//! - `router`: routes and handlers.
//! - [`error`]: the one error type and its mapping to status, code and JSON body.
//!
//! A request's path: `conn` reads -> [`http::parse_head`] -> `router::dispatch` fills
//! a [`http::Reply`] -> [`http::write_response`] appends it to the write buffer ->
//! one write for all the answers of that read.

pub mod config;
mod conn;
pub mod error;
pub mod events;
pub mod http;
mod ids;
mod public;
pub mod redis;
mod router;
pub mod server;
pub mod token;
