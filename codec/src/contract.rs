//! JSON bodies of the HTTP API and the commit-queue message.
//!
//! Field names are camelCase on the wire. Request types are lenient (unknown fields
//! are ignored) and borrow from the request body where no escape forces a copy: the
//! edge parses into them; response types carry every field the OpenAPI document
//! requires.

use std::borrow::Cow;

use serde::{Deserialize, Deserializer, Serialize};

use crate::rules;

/// `GET /public/ping` and `GET /public/health` when ready.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    pub status: String,
}

/// `{"error":{"code":"SEAT_HELD","message":"..."}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
}

/// `POST /admin/events/{eventId}/revoke`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RevokeRequest<'a> {
    #[serde(borrow)]
    pub user_id: Cow<'a, str>,
}

/// `POST /admin/events/{eventId}/revoke`'s answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RevokeResponse {
    pub user_id: String,
    pub revoked: bool,
    pub holds_released: u64,
}

/// `GET /public/challenge`: a proof-of-work challenge for `enter`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChallengeResponse {
    pub challenge: String,
    pub bits: u8,
    pub expires_at: u64,
}

/// `POST /public/enter`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnterRequest<'a> {
    /// The buyer with `IDENTITY=none`; with a verified identity it may be left out, and
    /// if sent must equal the verified user. `null` is a wrong type, not an absence.
    #[serde(
        borrow,
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present_str"
    )]
    pub user_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub event_id: Cow<'a, str>,
    /// With `ENTER_POW_BITS` > 0: a challenge of `GET /public/challenge` and the nonce
    /// that solves it for this user (`edge/src/pow.rs`). Left out when not asked;
    /// `null` is a wrong type.
    #[serde(
        borrow,
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present_str"
    )]
    pub challenge: Option<Cow<'a, str>>,
    #[serde(
        borrow,
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present_str"
    )]
    pub nonce: Option<Cow<'a, str>>,
}

/// An optional string field that, when present, must be a string (`Option`'s own
/// deserializer would take `null` for absent).
fn present_str<'de: 'a, 'a, D: Deserializer<'de>>(d: D) -> Result<Option<Cow<'a, str>>, D::Error> {
    #[derive(Deserialize)]
    struct Text<'a>(#[serde(borrow)] Cow<'a, str>);
    Text::deserialize(d).map(|t| Some(t.0))
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnterResponse {
    pub room_token: String,
    pub position: u64,
    pub eta_sec: u64,
}

/// `GET /public/room-status`. Position 0: entered during a `random` pre-queue, the
/// place is drawn at the opening; the first status after the draw carries a new
/// `room_token` with the drawn place.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RoomStatus {
    pub ready: bool,
    pub left_sec: u64,
    pub position: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room_token: Option<String>,
}

/// How an event's line is ordered (`queueing`, per event, operator-set).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Queueing {
    /// Places by arrival.
    #[default]
    Fifo,
    /// Those who enter during the pre-queue get places drawn at the opening
    /// ([`crate::fairness`]); later arrivals queue behind them by arrival.
    Random,
    /// No line: every buyer is admitted on entering (rate and limit ignored).
    Passthrough,
    /// No new entries (403 `ROOM_CLOSED`); those in line keep their places.
    Reject,
}

impl Queueing {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Fifo => "fifo",
            Self::Random => "random",
            Self::Passthrough => "passthrough",
            Self::Reject => "reject",
        }
    }

    /// The stored spelling; anything else is `None`.
    pub fn parse(s: &[u8]) -> Option<Self> {
        [Self::Fifo, Self::Random, Self::Passthrough, Self::Reject]
            .into_iter()
            .find(|q| q.as_str().as_bytes() == s)
    }
}

/// `GET /public/fairness/{eventId}`: what anyone needs to check the pre-queue's draw.
/// `seed_hash` (SHA-256 of the seed) is public from the moment a pre-queue is set,
/// before anyone can enter it; `seed`, `list_digest` and `prequeued` once the draw is
/// done at the opening.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Fairness {
    pub event_id: String,
    pub queueing: Queueing,
    pub prequeue_at_ms: u64,
    pub open_at_ms: u64,
    pub rate: u64,
    pub active_limit: u64,
    pub seed_hash: Option<String>,
    pub seed: Option<String>,
    pub list_digest: Option<String>,
    pub prequeued: Option<u64>,
    /// The function that orders the pre-queue, by name ([`crate::fairness::DRAW`]).
    pub draw: String,
}

/// `GET /public/summary/{eventId}/{section}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub event_id: String,
    pub section: String,
    pub total: u64,
    pub available: u64,
    pub held: u64,
    pub sold: u64,
    /// Minor units of `currency`.
    pub price: u64,
    pub currency: String,
}

/// `GET /public/seats/{eventId}`: one character a seat, `A` available, `H` held,
/// `S` sold; seat `n` at index `n - 1`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SeatMap {
    pub event_id: String,
    pub sections: Vec<SectionSeats>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SectionSeats {
    pub section: String,
    pub seats: String,
}

/// `POST /public/hold`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HoldRequest<'a> {
    #[serde(borrow)]
    pub event_id: Cow<'a, str>,
    #[serde(borrow)]
    pub seat_id: Cow<'a, str>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HoldResponse {
    pub hold_id: String,
    /// Epoch milliseconds.
    pub expires_at: u64,
}

/// `POST /public/release`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReleaseRequest<'a> {
    #[serde(borrow)]
    pub event_id: Cow<'a, str>,
    #[serde(borrow)]
    pub seat_id: Cow<'a, str>,
    #[serde(borrow)]
    pub hold_id: Cow<'a, str>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseResponse {
    pub released: bool,
}

/// `POST /confirm/payment-intent`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentIntentRequest<'a> {
    #[serde(borrow)]
    pub user_id: Cow<'a, str>,
    #[serde(borrow)]
    pub event_id: Cow<'a, str>,
    #[serde(borrow)]
    pub seat_ids: Vec<Cow<'a, str>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentIntentResponse {
    pub intent_id: String,
    pub amount: u64,
    pub currency: String,
    /// Epoch milliseconds.
    pub expires_at: u64,
}

/// `POST /confirm/commit`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CommitRequest<'a> {
    #[serde(borrow)]
    pub intent_id: Cow<'a, str>,
    #[serde(borrow)]
    pub event_id: Cow<'a, str>,
    #[serde(borrow)]
    pub seat_ids: Vec<Cow<'a, str>>,
    #[serde(borrow)]
    pub user_id: Cow<'a, str>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitResponse {
    pub idem: String,
    pub status: OrderState,
}

/// `GET /confirm/status?idem=KEY`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusResponse {
    pub order: Order,
    pub payment: Payment,
}

impl StatusResponse {
    /// The answer for an order accepted and not yet stored: the edge records it when it
    /// answers `202`.
    pub fn pending(order: Order) -> Self {
        let payment = Payment {
            status: PaymentState::Pending,
            amount: order.amount,
            currency: order.currency.clone(),
        };
        Self { order, payment }
    }

    /// The status record in Redis (`keys::order_status`) and the body of
    /// `GET /confirm/status`: this serializer is the only one of the document, whoever
    /// writes it (the edge when it accepts, the worker when it stores, the edge again
    /// from PostgreSQL), so that every copy is byte for byte the same.
    pub fn record(&self) -> Vec<u8> {
        // Strings, numbers and enums only: serializing cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The answer for an order the worker stored, with its payment's state as
    /// PostgreSQL has it (`payments.status`). Without one (`PAYMENT_MODE=instant`
    /// never needs to read it) the payment was captured when the order was confirmed,
    /// voided when it was rejected, pending while the order is.
    pub fn stored(order: Order, payment: Option<PaymentState>) -> Self {
        let status = payment.unwrap_or(PaymentState::settled(order.status));
        let payment = Payment {
            status,
            amount: order.amount,
            currency: order.currency.clone(),
        };
        Self { order, payment }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Order {
    pub idem: String,
    pub status: OrderState,
    pub event_id: String,
    pub seat_ids: Vec<String>,
    pub amount: u64,
    pub currency: String,
    /// Why an order was rejected (one of [`reason`]), else null.
    pub reason: Option<String>,
    /// Epoch milliseconds.
    pub updated_at: u64,
}

/// Why the worker rejected an order: [`Order::reason`], `orders.reason`. Each is final:
/// no retry changes it (what an operator can fix goes to the dead-letter queue instead).
pub mod reason {
    /// Another order won one of its seats.
    pub const SEAT_SOLD: &str = "SEAT_SOLD";
    /// A seat is not in the event's catalog (its section is gone, or smaller now).
    pub const SEAT_NOT_FOUND: &str = "SEAT_NOT_FOUND";
    /// Its seat list breaks [`crate::rules::seat_id`] or [`crate::rules::order_seats`]
    /// (a message from an edge older than the rules); the order records no seats.
    pub const INVALID_SEAT_ID: &str = "INVALID_SEAT_ID";
    /// The buyer's confirmed seats in the event would pass `PURCHASE_LIMIT` (checked
    /// by the worker in PostgreSQL, after the edge's check in Redis).
    pub const PURCHASE_LIMIT: &str = "PURCHASE_LIMIT";
    /// `PAYMENT_MODE=provider`: the provider said the payment `FAILED`.
    pub const PAYMENT_FAILED: &str = "PAYMENT_FAILED";
    /// `PAYMENT_MODE=provider`: no capture within `PAYMENT_TIMEOUT_MS` of the commit.
    pub const PAYMENT_TIMEOUT: &str = "PAYMENT_TIMEOUT";
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OrderState {
    Pending,
    Confirmed,
    Rejected,
}

impl OrderState {
    /// `orders.status` (the wire spelling too).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::Confirmed => "CONFIRMED",
            Self::Rejected => "REJECTED",
        }
    }

    /// `orders.status`: CONFIRMED or REJECTED, or PENDING while a provider's payment
    /// is awaited (`PAYMENT_MODE=provider`; otherwise PENDING exists only in Redis).
    pub fn stored(status: &str) -> Option<Self> {
        [Self::Pending, Self::Confirmed, Self::Rejected]
            .into_iter()
            .find(|o| o.as_str() == status)
    }
}

/// The select list of PostgreSQL's `orders` (aliased `o`) that a stored order's status
/// comes from, in the order [`Order::stored`] takes it, then its payment's state
/// ([`PaymentState::stored`]); a macro, so queries can `concat!` it.
#[macro_export]
macro_rules! order_columns {
    () => {
        "o.status, o.reason, (extract(epoch FROM o.updated_at) * 1000)::bigint, o.seat_ids, o.amount, o.currency::text, (SELECT p.status FROM payments p WHERE p.order_id = o.order_id)"
    };
}

impl Order {
    /// An order as PostgreSQL stores it ([`order_columns!`]): CONFIRMED or REJECTED
    /// (PENDING exists only in Redis), numbers non-negative. `None` for a row this
    /// code cannot have written.
    #[allow(clippy::too_many_arguments)]
    pub fn stored(
        idem: &str,
        event_id: &str,
        status: &str,
        reason: Option<String>,
        updated_at_ms: i64,
        seat_ids: Vec<String>,
        amount: i64,
        currency: &str,
    ) -> Option<Self> {
        Some(Self {
            idem: idem.to_owned(),
            status: OrderState::stored(status)?,
            event_id: event_id.to_owned(),
            seat_ids,
            amount: u64::try_from(amount).ok()?,
            // char(3) comes back padded when shorter.
            currency: currency.trim_end().to_owned(),
            reason,
            updated_at: u64::try_from(updated_at_ms).ok()?,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payment {
    pub status: PaymentState,
    pub amount: u64,
    pub currency: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PaymentState {
    Pending,
    /// `PAYMENT_MODE=provider`: the provider reserved the money, capture to follow.
    Authorized,
    Captured,
    /// `PAYMENT_MODE=provider`: the provider said the payment failed.
    Failed,
    Voided,
}

impl PaymentState {
    /// The payment of an order in state `order` with `PAYMENT_MODE=instant`: captured
    /// when confirmed, voided when rejected, pending while the order is.
    pub const fn settled(order: OrderState) -> Self {
        match order {
            OrderState::Confirmed => Self::Captured,
            OrderState::Rejected => Self::Voided,
            OrderState::Pending => Self::Pending,
        }
    }

    /// `payments.status` (the wire spelling too).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::Authorized => "AUTHORIZED",
            Self::Captured => "CAPTURED",
            Self::Failed => "FAILED",
            Self::Voided => "VOIDED",
        }
    }

    /// `payments.status`, read back.
    pub fn stored(status: &str) -> Option<Self> {
        [
            Self::Pending,
            Self::Authorized,
            Self::Captured,
            Self::Failed,
            Self::Voided,
        ]
        .into_iter()
        .find(|p| p.as_str() == status)
    }
}

/// `POST /admin/events/{eventId}/admission`: either or both. A value its rule
/// ([`rules::epoch_ms`], [`rules::admission_rate`]) refuses does not deserialize (a
/// data error, which the edge answers 400 `INVALID_FIELD`), so it never reaches the
/// admission script.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdmissionRequest {
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "open_at_ms"
    )]
    pub open_at_ms: Option<u64>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "admission_rate"
    )]
    pub rate: Option<u64>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "prequeue_at_ms"
    )]
    pub prequeue_at_ms: Option<u64>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    pub queueing: Option<Queueing>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "active_limit"
    )]
    pub active_limit: Option<u64>,
}

fn prequeue_at_ms<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    ruled(d, rules::prequeue_at_ms)
}

fn active_limit<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    ruled(d, rules::active_limit)
}

fn open_at_ms<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    ruled(d, rules::epoch_ms)
}

fn admission_rate<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    ruled(d, rules::admission_rate)
}

/// A field that may be left out but, when sent, is a value: `null` is refused (the
/// contract's types are not nullable), as `serde`'s `Option` alone would take it for
/// "left out".
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    Option::<T>::deserialize(d)?
        .map(Some)
        .ok_or_else(|| serde::de::Error::custom("null is not a value for this field"))
}

/// [`present`], and the number must pass `rule`.
fn ruled<'de, D: Deserializer<'de>>(
    d: D,
    rule: fn(u64) -> Result<(), rules::Invalid>,
) -> Result<Option<u64>, D::Error> {
    let n = u64::deserialize(d)?;
    rule(n).map_err(serde::de::Error::custom)?;
    Ok(Some(n))
}

/// The admission state in force: from `open_at_ms`, `rate` users a second, counting
/// on from `base_admitted` at `base_ms` (when the rate last changed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdmissionState {
    pub open_at_ms: u64,
    pub rate: u64,
    pub base_ms: u64,
    pub base_admitted: u64,
    /// 0: no pre-queue.
    pub prequeue_at_ms: u64,
    pub queueing: Queueing,
    /// 0: no limit.
    pub active_limit: u64,
    /// SHA-256 of the pre-queue's seed, hex; set with the first pre-queue, never changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed_hash: Option<String>,
}

/// The commit-queue message (SQS FIFO body / Redis Streams entry), version 1, encoded
/// by `codec/lua/commit.lua` ([`crate::store::Commit`]). The SQS
/// `MessageDeduplicationId` is [`CommitMessage::deduplication_id`]; the worker sends
/// unknown versions to the DLQ.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CommitMessage {
    pub v: u32,
    pub idem: String,
    pub intent_id: String,
    pub event_id: String,
    pub user_id: String,
    pub seat_ids: Vec<String>,
    pub hold_ids: Vec<String>,
    pub amount: u64,
    pub currency: String,
    /// Epoch milliseconds.
    pub accepted_at: u64,
}

impl CommitMessage {
    pub const VERSION: u32 = 1;

    /// SQS deduplicates queue-wide with ids of at most 128 characters, while an
    /// Idempotency-Key is per event and user and up to 255: the id is a [`digest`] of
    /// all three.
    pub fn deduplication_id(event: &str, user: &str, idem: &str) -> String {
        digest([event, user, idem])
    }
}

/// 32 hex digits naming a sequence of strings: the first 16 bytes of the SHA-256 of
/// each followed by a NUL (so `["ab", "c"]` and `["a", "bc"]` differ).
pub fn digest<'a>(parts: impl IntoIterator<Item = &'a str>) -> String {
    use sha2::{Digest, Sha256};
    let mut sha = Sha256::new();
    for part in parts {
        sha.update(part.as_bytes());
        sha.update([0]);
    }
    sha.finalize()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_states_are_spelled_as_on_the_wire() {
        use PaymentState as P;
        for p in [P::Pending, P::Authorized, P::Captured, P::Failed, P::Voided] {
            assert_eq!(serde_json::to_value(p).ok(), Some(p.as_str().into()));
            assert_eq!(P::stored(p.as_str()), Some(p));
        }
        for o in [
            OrderState::Pending,
            OrderState::Confirmed,
            OrderState::Rejected,
        ] {
            assert_eq!(serde_json::to_value(o).ok(), Some(o.as_str().into()));
            assert_eq!(OrderState::stored(o.as_str()), Some(o));
        }
        assert_eq!(P::stored("REFUNDED"), None);
    }

    #[test]
    fn an_admission_field_may_be_left_out_but_not_null() {
        let none: AdmissionRequest = serde_json::from_str("{}").expect("all left out");
        assert_eq!(none.rate, None);
        let set: AdmissionRequest =
            serde_json::from_str(r#"{"rate":5,"queueing":"random"}"#).expect("set");
        assert_eq!((set.rate, set.queueing), (Some(5), Some(Queueing::Random)));
        for field in [
            "openAtMs",
            "rate",
            "prequeueAtMs",
            "queueing",
            "activeLimit",
        ] {
            let body = format!("{{\"{field}\":null}}");
            let err = serde_json::from_str::<AdmissionRequest>(&body).expect_err(field);
            assert!(err.is_data(), "{field}: {err}");
        }
    }
}
