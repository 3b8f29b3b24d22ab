//! `/public/*`: the waiting room (`room`: `enter`, `room-status`; `fairness`: the
//! pre-queue's published draw), seat holds (`holds`:
//! `hold`, `release`), and the cached reads (`reads`: `summary`, `seats`).
//!
//! Every handler that changes Redis does it in one round trip: one script
//! (`codec::store`), run by SHA on the core's pipelined connection.

pub mod fairness;
pub mod holds;
pub mod reads;
pub mod room;
