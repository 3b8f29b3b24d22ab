//! The commit queue, seen from one consumer loop: the seam between the two backends.
//!
//! - [`streams`]: Redis Streams (`PROFILE=local`): a consumer group per stream,
//!   `XREADGROUP BLOCK`, `XAUTOCLAIM` after the visibility timeout, a dead-letter
//!   stream per event.
//! - [`sqs`]: SQS FIFO (`PROFILE=aws`): long polls, visibility extension,
//!   `DeleteMessageBatch`, dead letters by the queue's redrive policy.
//!
//! The contract both keep: a message is only removed by [`Consumer::ack`], which the
//! worker calls after the PostgreSQL commit; a message not acknowledged within the
//! visibility timeout is delivered again (to this consumer or another), so every
//! message is processed at least once.

pub mod sqs;
pub mod streams;

use std::future::Future;

use crate::error::Error;

/// One received message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The message body (a `CommitMessage` JSON, unless it is poison).
    pub body: Vec<u8>,
    /// How often it has been delivered, this time included (1 the first time).
    pub receives: u32,
    /// The event whose stream it came from (streams only: the message must be that
    /// event's).
    pub event_id: Option<String>,
    /// Where it came from: the stream key, or the SQS message id.
    pub source: String,
    /// What acknowledges it: the stream entry id, or the SQS receipt handle.
    pub receipt: String,
}

/// One consumer loop's view of the queue. Each loop owns its consumer (its own
/// connection, for streams), so the methods take `&mut self`.
pub trait Consumer: Send + 'static {
    /// Waits (bounded: a block or long-poll timeout) for messages; may return none.
    /// Returns at once with none when shutting down.
    fn receive(&mut self) -> impl Future<Output = Result<Vec<Delivery>, Error>> + Send;

    /// Removes processed messages from the queue, only ever after the commit.
    fn ack(&mut self, done: &[Delivery]) -> impl Future<Output = Result<(), Error>> + Send;

    /// Gives up on a message for good, with the reason: the dead-letter stream (and
    /// acknowledged), or, on SQS, left to the queue's redrive policy.
    fn dead_letter(
        &mut self,
        delivery: &Delivery,
        reason: &str,
    ) -> impl Future<Output = Result<(), Error>> + Send;

    /// Keeps messages in hand from being delivered elsewhere for another visibility
    /// timeout, while slow work (retries) goes on.
    fn extend(&mut self, held: &[Delivery]) -> impl Future<Output = Result<(), Error>> + Send;

    /// Deliveries above this count go to the dead-letter queue unprocessed; `None` when
    /// the queue enforces it itself (SQS redrive policy).
    fn max_receives(&self) -> Option<u32>;
}
