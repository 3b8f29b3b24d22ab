//! The edge's side thread: a small tokio runtime for the AWS SDK and PostgreSQL, fed by
//! channels from the cores, so no core ever blocks on or polls such a call.
//!
//! - SQS FIFO sends (aws profile): entries are gathered into `SendMessageBatch` calls of
//!   up to 10, sent when full or after `SQS_LINGER_MS`; each entry's own result goes
//!   back to the request that waits for it (202 only once SQS accepted it). Failed
//!   entries are retried with backoff unless SQS says the sender is at fault.
//! - DynamoDB hold mirror (aws profile): holds and releases are written behind with
//!   `BatchWriteItem` (<= 25, unprocessed items retried). The backlog is bounded: past
//!   `MIRROR_BACKLOG` operations are dropped and counted, so a slow or absent
//!   DynamoDB never slows or fails a hold.
//! - Order look-ups (`DATABASE_URL` set, either profile): `GET /confirm/status` asks
//!   PostgreSQL when Redis has no status record ([`orders`]); payment callbacks are
//!   recorded there (`PAYMENT_MODE=provider`).
//! - Event reads (`DATABASE_URL` set): `summary` and `seats` of an event Redis has no
//!   copy of are answered from PostgreSQL, one query per event at a time ([`snapshots`]).

mod orders;
pub mod snapshots;

use std::{
    collections::VecDeque,
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use aws_sdk_dynamodb::types::{AttributeValue, DeleteRequest, PutRequest, WriteRequest};
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use codec::payment::PaymentCallback;
use futures_channel::oneshot;
use tokio::sync::mpsc;
use tracing::{info, warn};

pub use orders::LookupError;
pub use snapshots::Fetched;

/// SQS takes at most 10 entries a batch, DynamoDB at most 25 writes.
const SQS_BATCH: usize = 10;
const DYNAMO_BATCH: usize = 25;
const MAX_ATTEMPTS: u32 = 5;
/// One SQS or DynamoDB call's deadline: a peer that takes the connection and never
/// answers fails the attempt instead of holding a buyer's commit forever. With the
/// retries and their backoff, a send is answered within about 12 s.
const ATTEMPT_DEADLINE: Duration = Duration::from_secs(2);

/// What the side thread does; it starts when either part is there.
#[derive(Debug, Clone)]
pub struct SideConfig {
    /// `PROFILE=aws`: the SQS queue and the DynamoDB mirror.
    pub aws: Option<AwsConfig>,
    /// `DATABASE_URL`: where `status` looks for orders Redis has no record of.
    pub database: Option<tokio_postgres::Config>,
}

#[derive(Debug, Clone)]
pub struct AwsConfig {
    pub queue_url: String,
    pub linger: Duration,
    pub mirror_table: String,
    pub mirror_backlog: usize,
}

/// Counters, readable from any thread.
#[derive(Debug, Default)]
pub struct SideStats {
    pub sqs_batches: AtomicU64,
    pub sqs_messages: AtomicU64,
    pub sqs_failed: AtomicU64,
    pub mirror_written: AtomicU64,
    pub mirror_dropped: AtomicU64,
    pub mirror_failed: AtomicU64,
    pub lookups: AtomicU64,
    pub lookups_failed: AtomicU64,
    /// Events read from PostgreSQL for `summary` and `seats` (queries, not requests).
    pub db_reads: AtomicU64,
    pub db_reads_failed: AtomicU64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("queue: {0}")]
pub struct SendError(pub String);

struct SendJob {
    group: String,
    dedup: String,
    body: String,
    done: oneshot::Sender<Result<(), SendError>>,
}

/// A hold mirrored to DynamoDB: `pk` is `event#seat`, `exp` the TTL attribute.
#[derive(Debug)]
pub enum MirrorOp {
    Hold {
        pk: String,
        holder: String,
        hold_id: String,
        exp_secs: u64,
    },
    Release {
        pk: String,
    },
}

impl MirrorOp {
    fn pk(&self) -> &str {
        match self {
            Self::Hold { pk, .. } | Self::Release { pk } => pk,
        }
    }
}

/// A handle to the side thread; cheap to clone, one per core.
#[derive(Clone)]
pub struct Side {
    sends: Option<mpsc::UnboundedSender<SendJob>>,
    mirror: Option<mpsc::UnboundedSender<MirrorOp>>,
    lookups: Option<mpsc::Sender<orders::Job>>,
    snapshots: Option<mpsc::Sender<snapshots::Request>>,
    mirror_pending: Arc<AtomicUsize>,
    mirror_backlog: usize,
    pub stats: Arc<SideStats>,
}

impl Side {
    /// Starts the thread; the AWS configuration (region, credentials, endpoint) comes
    /// from the environment, as every AWS SDK reads it.
    pub fn start(config: SideConfig) -> std::io::Result<Side> {
        let (sends, send_rx) = mpsc::unbounded_channel();
        let (mirror, mirror_rx) = mpsc::unbounded_channel();
        let (lookups, lookup_rx) = mpsc::channel(orders::QUEUED);
        let (snapshots, snapshot_rx) = mpsc::channel(snapshots::QUEUED);
        let side = Side {
            sends: config.aws.is_some().then_some(sends),
            mirror: config.aws.is_some().then_some(mirror),
            lookups: config.database.is_some().then_some(lookups),
            snapshots: config.database.is_some().then_some(snapshots),
            mirror_pending: Arc::default(),
            mirror_backlog: config.aws.as_ref().map_or(0, |aws| aws.mirror_backlog),
            stats: Arc::default(),
        };
        let (stats, pending) = (side.stats.clone(), side.mirror_pending.clone());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let channels = (send_rx, mirror_rx, lookup_rx, snapshot_rx);
        std::thread::Builder::new()
            .name("edge-side".into())
            .spawn(move || rt.block_on(run(config, channels, pending, stats)))?;
        Ok(side)
    }

    /// Mirror writes queued and not yet sent (the DynamoDB backlog), for the metrics.
    pub fn mirror_pending(&self) -> Arc<AtomicUsize> {
        self.mirror_pending.clone()
    }

    /// Commits go to SQS (the aws profile) rather than a Redis Stream.
    pub fn queues(&self) -> bool {
        self.sends.is_some()
    }

    /// This user's order `idem` of `event` from PostgreSQL, as `GET /confirm/status`
    /// answers it; `Ok(None)` when there is none, an error when there is no telling
    /// (no `DATABASE_URL`, PostgreSQL away or too busy).
    pub async fn order_status(
        &self,
        event: &str,
        user: &str,
        idem: &str,
    ) -> Result<Option<Vec<u8>>, LookupError> {
        let lookups = self.lookups.as_ref().ok_or(LookupError::Unconfigured)?;
        let (done, result) = oneshot::channel();
        lookups
            .try_send(orders::Job::Status(orders::Lookup {
                event: event.to_owned(),
                user: user.to_owned(),
                idem: idem.to_owned(),
                done,
            }))
            .map_err(|_| LookupError::Busy)?;
        result.await.unwrap_or(Err(LookupError::Busy))
    }

    /// Records a payment provider's callback in PostgreSQL (`payment_callbacks`);
    /// `Ok(false)` when its `providerEventId` was recorded before (a replay).
    pub async fn record_callback(
        &self,
        callback: &PaymentCallback<'_>,
    ) -> Result<bool, LookupError> {
        let lookups = self.lookups.as_ref().ok_or(LookupError::Unconfigured)?;
        let (done, result) = oneshot::channel();
        lookups
            .try_send(orders::Job::Callback(orders::Record {
                fields: [
                    callback.provider_event_id.to_string(),
                    callback.event_id.to_string(),
                    callback.intent_id.to_string(),
                    callback.payment_id.to_string(),
                    callback.status.as_str().to_owned(),
                ],
                done,
            }))
            .map_err(|_| LookupError::Busy)?;
        result.await.unwrap_or(Err(LookupError::Busy))
    }

    /// Event `event` as PostgreSQL has it, for `summary` and `seats` when Redis has no
    /// copy ([`snapshots`]): `snapshot` is `None` when there is no such event; an error
    /// when there is no telling (no `DATABASE_URL`, PostgreSQL away or too busy).
    pub async fn event_snapshot(&self, event: &str) -> Result<Fetched, LookupError> {
        let requests = self.snapshots.as_ref().ok_or(LookupError::Unconfigured)?;
        let (done, result) = oneshot::channel();
        requests
            .try_send(snapshots::Request {
                event: event.to_owned(),
                done,
            })
            .map_err(|_| LookupError::Busy)?;
        result.await.unwrap_or(Err(LookupError::Busy))
    }

    /// Sends `body` to the queue; resolves once SQS accepted it (or gave up).
    pub fn send(
        &self,
        group: String,
        dedup: String,
        body: String,
    ) -> oneshot::Receiver<Result<(), SendError>> {
        let (done, result) = oneshot::channel();
        let job = SendJob {
            group,
            dedup,
            body,
            done,
        };
        let Some(sends) = &self.sends else {
            let _ = job
                .done
                .send(Err(SendError("no SQS queue configured".into())));
            return result;
        };
        if let Err(mpsc::error::SendError(job)) = sends.send(job) {
            let _ = job.done.send(Err(SendError("side thread gone".into())));
        }
        result
    }

    /// Queues the mirror write `op` makes (the aws profile; nothing is built without
    /// it); past the backlog bound it is dropped and counted.
    pub fn mirror(&self, op: impl FnOnce() -> MirrorOp) {
        let Some(mirror) = &self.mirror else {
            return;
        };
        if self.mirror_pending.fetch_add(1, Ordering::Relaxed) >= self.mirror_backlog {
            self.mirror_pending.fetch_sub(1, Ordering::Relaxed);
            let dropped = self.stats.mirror_dropped.fetch_add(1, Ordering::Relaxed);
            if dropped.is_power_of_two() {
                warn!(
                    dropped = dropped + 1,
                    backlog = self.mirror_backlog,
                    "hold mirror backlog full, dropping"
                );
            }
            return;
        }
        if mirror.send(op()).is_err() {
            self.mirror_pending.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

type Receivers = (
    mpsc::UnboundedReceiver<SendJob>,
    mpsc::UnboundedReceiver<MirrorOp>,
    mpsc::Receiver<orders::Job>,
    mpsc::Receiver<snapshots::Request>,
);

/// The side thread's work, until every core's handle is gone.
async fn run(
    config: SideConfig,
    (sends, mirror, lookups, snapshot_requests): Receivers,
    pending: Arc<AtomicUsize>,
    stats: Arc<SideStats>,
) {
    let reads = config
        .database
        .clone()
        .map(|db| tokio::spawn(snapshots::serve(db, snapshot_requests, stats.clone())));
    let lookups = config
        .database
        .map(|db| tokio::spawn(orders::serve(db, lookups, stats.clone())));
    if let Some(aws) = config.aws {
        let sdk = aws_config::load_from_env().await;
        info!(queue = %aws.queue_url, table = %aws.mirror_table, "side thread ready");
        let sqs = aws_sdk_sqs::Client::new(&sdk);
        let dynamo = aws_sdk_dynamodb::Client::new(&sdk);
        let batcher = tokio::spawn(batch_sends(sqs, aws.clone(), sends, stats.clone()));
        mirror_holds(dynamo, aws.mirror_table, mirror, pending, stats).await;
        let _ = batcher.await;
    }
    if let Some(lookups) = lookups {
        let _ = lookups.await;
    }
    if let Some(reads) = reads {
        let _ = reads.await;
    }
}

/// Gathers sends into batches of up to 10, sent when full or after the linger; each
/// batch is sent on its own task so a slow call does not hold up the next.
async fn batch_sends(
    sqs: aws_sdk_sqs::Client,
    config: AwsConfig,
    mut jobs: mpsc::UnboundedReceiver<SendJob>,
    stats: Arc<SideStats>,
) {
    while let Some(first) = jobs.recv().await {
        let mut batch = vec![first];
        let deadline = tokio::time::Instant::now() + config.linger;
        while batch.len() < SQS_BATCH {
            match tokio::time::timeout_at(deadline, jobs.recv()).await {
                Ok(Some(job)) => batch.push(job),
                Ok(None) | Err(_) => break,
            }
        }
        tokio::spawn(send_batch(
            sqs.clone(),
            config.queue_url.clone(),
            batch,
            stats.clone(),
        ));
    }
}

async fn send_batch(
    sqs: aws_sdk_sqs::Client,
    url: String,
    mut batch: Vec<SendJob>,
    stats: Arc<SideStats>,
) {
    for attempt in 1..=MAX_ATTEMPTS {
        let entries = batch.iter().enumerate().map(|(i, job)| {
            SendMessageBatchRequestEntry::builder()
                .id(i.to_string())
                .message_body(&job.body)
                .message_group_id(&job.group)
                .message_deduplication_id(&job.dedup)
                .build()
        });
        let entries: Result<Vec<_>, _> = entries.collect();
        let entries = match entries {
            Ok(entries) => entries,
            Err(e) => return fail(batch, &e.to_string(), &stats),
        };
        stats.sqs_batches.fetch_add(1, Ordering::Relaxed);
        let mut retry = Vec::new();
        let sent = sqs
            .send_message_batch()
            .queue_url(&url)
            .set_entries(Some(entries))
            .send();
        match tokio::time::timeout(ATTEMPT_DEADLINE, sent).await {
            Ok(Ok(out)) => {
                let mut jobs: Vec<Option<SendJob>> = batch.into_iter().map(Some).collect();
                let mut take = |id: &str| {
                    id.parse::<usize>()
                        .ok()
                        .and_then(|i| jobs.get_mut(i)?.take())
                };
                for ok in out.successful() {
                    if let Some(job) = take(ok.id()) {
                        stats.sqs_messages.fetch_add(1, Ordering::Relaxed);
                        let _ = job.done.send(Ok(()));
                    }
                }
                for failed in out.failed() {
                    let Some(job) = take(failed.id()) else {
                        continue;
                    };
                    if failed.sender_fault() {
                        let reason =
                            format!("{}: {}", failed.code(), failed.message().unwrap_or(""));
                        stats.sqs_failed.fetch_add(1, Ordering::Relaxed);
                        let _ = job.done.send(Err(SendError(reason)));
                    } else {
                        retry.push(job);
                    }
                }
                // An entry SQS mentioned in neither list: treat as not sent.
                retry.extend(jobs.into_iter().flatten());
            }
            Ok(Err(e)) => {
                warn!(attempt, error = %aws_sdk_sqs::error::DisplayErrorContext(&e), "SendMessageBatch failed");
                retry = batch;
            }
            Err(_) => {
                warn!(attempt, "SendMessageBatch unanswered within its deadline");
                retry = batch;
            }
        }
        if retry.is_empty() {
            return;
        }
        batch = retry;
        tokio::time::sleep(backoff(attempt)).await;
    }
    fail(batch, "gave up after retries", &stats);
}

fn fail(batch: Vec<SendJob>, reason: &str, stats: &SideStats) {
    for job in batch {
        stats.sqs_failed.fetch_add(1, Ordering::Relaxed);
        let _ = job.done.send(Err(SendError(reason.to_owned())));
    }
}

/// Capped exponential backoff: 50 ms, 100 ms, ... up to 1 s.
fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(50 << attempt.min(5)).min(Duration::from_secs(1))
}

/// Writes mirror operations in order, up to 25 a call, never two for one key in a
/// call (DynamoDB refuses that), retrying unprocessed items.
async fn mirror_holds(
    dynamo: aws_sdk_dynamodb::Client,
    table: String,
    mut ops: mpsc::UnboundedReceiver<MirrorOp>,
    pending: Arc<AtomicUsize>,
    stats: Arc<SideStats>,
) {
    let mut backlog: VecDeque<MirrorOp> = VecDeque::new();
    loop {
        if backlog.is_empty() {
            match ops.recv().await {
                Some(op) => backlog.push_back(op),
                None => return,
            }
        }
        while let Ok(op) = ops.try_recv() {
            backlog.push_back(op);
        }
        let mut batch: Vec<MirrorOp> = Vec::with_capacity(DYNAMO_BATCH);
        while batch.len() < DYNAMO_BATCH {
            match backlog.front() {
                Some(next) if !batch.iter().any(|op| op.pk() == next.pk()) => {
                    batch.extend(backlog.pop_front());
                }
                _ => break,
            }
        }
        let count = batch.len();
        let mut writes: Vec<WriteRequest> = batch.iter().filter_map(write_request).collect();
        for attempt in 1..=MAX_ATTEMPTS {
            let call = dynamo
                .batch_write_item()
                .request_items(&table, writes.clone())
                .send();
            match tokio::time::timeout(ATTEMPT_DEADLINE, call).await {
                Ok(Ok(out)) => {
                    writes = out
                        .unprocessed_items()
                        .and_then(|items| items.get(&table))
                        .cloned()
                        .unwrap_or_default();
                }
                Ok(Err(e)) if attempt == 1 || attempt == MAX_ATTEMPTS => {
                    warn!(attempt, error = %aws_sdk_dynamodb::error::DisplayErrorContext(&e), "BatchWriteItem failed");
                }
                Err(_) if attempt == 1 || attempt == MAX_ATTEMPTS => {
                    warn!(attempt, "BatchWriteItem unanswered within its deadline");
                }
                Ok(Err(_)) | Err(_) => {}
            }
            if writes.is_empty() {
                break;
            }
            tokio::time::sleep(backoff(attempt)).await;
        }
        stats
            .mirror_failed
            .fetch_add(writes.len() as u64, Ordering::Relaxed);
        stats
            .mirror_written
            .fetch_add((count - writes.len()) as u64, Ordering::Relaxed);
        pending.fetch_sub(count, Ordering::Relaxed);
    }
}

fn write_request(op: &MirrorOp) -> Option<WriteRequest> {
    let s = |v: &str| AttributeValue::S(v.to_owned());
    let request = match op {
        MirrorOp::Hold {
            pk,
            holder,
            hold_id,
            exp_secs,
        } => WriteRequest::builder().put_request(
            PutRequest::builder()
                .item("pk", s(pk))
                .item("holder", s(holder))
                .item("holdId", s(hold_id))
                .item("exp", AttributeValue::N(exp_secs.to_string()))
                .build()
                .ok()?,
        ),
        MirrorOp::Release { pk } => WriteRequest::builder()
            .delete_request(DeleteRequest::builder().key("pk", s(pk)).build().ok()?),
    };
    Some(request.build())
}
