//! The handlers, grouped by what they serve. Each takes the core's state
//! ([`crate::core::Core`]), the request and a [`crate::http::Reply`] to fill, and
//! returns an [`crate::error::Error`] that `router` renders.
//!
//! - [`request`]: what handlers share: JSON bodies into codec's types, field rules,
//!   the room token, the clock.
//! - [`public`]: `/public/*`: the waiting room (`room`), holds (`holds`), the cached
//!   reads (`reads`).
//! - [`confirm`]: `/confirm/*`: payment intent, commit, order status.
//! - [`admin`]: the operators' endpoints.

pub mod admin;
pub mod confirm;
pub mod public;
pub mod request;
