//! The aws commit queue: SQS FIFO, which the edge fills with `SendMessageBatch`
//! (group `{eventId}#{n}`, deduplication id a digest of event, user and key).
//!
//! Each consumer loop long-polls (`ReceiveMessage`, up to 10 messages,
//! `WaitTimeSeconds` = `SQS_WAIT_SECS`, 20 by default: the most SQS allows) with the
//! worker's visibility timeout; slow work extends it (`ChangeMessageVisibilityBatch`);
//! processed messages are deleted (`DeleteMessageBatch`) only after the PostgreSQL
//! commit.
//!
//! Dead letters: SQS moves a message to the queue's dead-letter queue once it has been
//! received `maxReceiveCount` times (the queue's redrive policy, set by `infra/`). The
//! worker never deletes a message it could not process; poison is logged with its
//! reason and made visible again at once (`ChangeMessageVisibility` 0), so it reaches
//! `maxReceiveCount` quickly instead of blocking its FIFO message group for a
//! visibility timeout each time. Redrive from the DLQ with the console or
//! `aws sqs start-message-move-task`.

use std::time::Duration;

use aws_sdk_sqs::{
    error::{DisplayErrorContext, ProvideErrorMetadata, SdkError},
    types::{
        ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry,
        MessageSystemAttributeName,
    },
    Client,
};
use tokio::sync::watch;
use tracing::warn;

use super::{Consumer, Delivery};
use crate::error::Error;

/// The most messages one SQS call takes.
pub const MAX_BATCH: usize = 10;

/// One long-poll loop's consumer; the SDK client is a cheap shared handle.
pub struct SqsConsumer {
    client: Client,
    queue_url: String,
    wait_secs: i32,
    visibility_secs: i32,
    max_messages: i32,
    shutdown: watch::Receiver<bool>,
}

impl SqsConsumer {
    pub fn new(
        client: Client,
        queue_url: String,
        wait_secs: i32,
        visibility: Duration,
        batch: usize,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        Self {
            client,
            queue_url,
            wait_secs,
            // Whole seconds, 12 h at most (SQS limits); never 0, which would make a
            // received message visible again at once.
            visibility_secs: visibility.as_secs().clamp(1, 12 * 3600) as i32,
            max_messages: batch.clamp(1, MAX_BATCH) as i32,
            shutdown,
        }
    }

    /// A client from the standard AWS environment (`AWS_REGION`, credentials,
    /// `AWS_ENDPOINT_URL` for moto).
    pub async fn client_from_env() -> Client {
        Client::new(&aws_config::load_from_env().await)
    }
}

/// Throttling, 5xx, timeouts and lost connections are worth retrying; the rest
/// (a wrong queue URL, an invalid receipt handle) is not.
fn sqs_error<E, R>(e: SdkError<E, R>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let retryable = match &e {
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) | SdkError::ResponseError(_) => {
            true
        }
        SdkError::ServiceError(s) => s.err().code().is_some_and(|code| {
            code.contains("Throttl")
                || matches!(
                    code,
                    "RequestThrottled" | "ServiceUnavailable" | "InternalError" | "InternalFailure"
                )
        }),
        _ => false,
    };
    Error::Sqs {
        message: DisplayErrorContext(&e).to_string(),
        retryable,
    }
}

impl Consumer for SqsConsumer {
    async fn receive(&mut self) -> Result<Vec<Delivery>, Error> {
        if *self.shutdown.borrow() {
            return Ok(Vec::new());
        }
        let call = self
            .client
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(self.max_messages)
            .wait_time_seconds(self.wait_secs)
            .visibility_timeout(self.visibility_secs)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .send();
        // A shutdown does not wait out a 20 s long poll. Messages the abandoned call
        // may have received come back after the visibility timeout.
        let out = tokio::select! {
            out = call => out.map_err(sqs_error)?,
            _ = self.shutdown.changed() => return Ok(Vec::new()),
        };
        Ok(out
            .messages()
            .iter()
            .map(|m| Delivery {
                body: m.body().unwrap_or_default().as_bytes().to_vec(),
                receives: m
                    .attributes()
                    .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(1),
                event_id: None,
                source: m.message_id().unwrap_or_default().to_owned(),
                receipt: m.receipt_handle().unwrap_or_default().to_owned(),
            })
            .collect())
    }

    async fn ack(&mut self, done: &[Delivery]) -> Result<(), Error> {
        for chunk in done.chunks(MAX_BATCH) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, d)| {
                    DeleteMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(&d.receipt)
                        .build()
                        .map_err(|e| Error::Invalid(e.to_string()))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let out = self
                .client
                .delete_message_batch()
                .queue_url(&self.queue_url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(sqs_error)?;
            for failed in out.failed() {
                // Delivered again later and found done: harmless, but worth a line.
                warn!(id = failed.id(), code = failed.code(), message = ?failed.message(), "DeleteMessageBatch entry failed");
            }
        }
        Ok(())
    }

    async fn dead_letter(&mut self, delivery: &Delivery, reason: &str) -> Result<(), Error> {
        warn!(message_id = %delivery.source, receives = delivery.receives, reason, "poison message left to the queue's redrive policy");
        self.client
            .change_message_visibility()
            .queue_url(&self.queue_url)
            .receipt_handle(&delivery.receipt)
            .visibility_timeout(0)
            .send()
            .await
            .map_err(sqs_error)?;
        Ok(())
    }

    async fn extend(&mut self, held: &[Delivery]) -> Result<(), Error> {
        for chunk in held.chunks(MAX_BATCH) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, d)| {
                    ChangeMessageVisibilityBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(&d.receipt)
                        .visibility_timeout(self.visibility_secs)
                        .build()
                        .map_err(|e| Error::Invalid(e.to_string()))
                })
                .collect::<Result<Vec<_>, _>>()?;
            self.client
                .change_message_visibility_batch()
                .queue_url(&self.queue_url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(sqs_error)?;
        }
        Ok(())
    }

    fn max_receives(&self) -> Option<u32> {
        None
    }
}
