//! Error codes of the HTTP API: `{"error":{"code":"SEAT_HELD","message":"..."}}`.
//!
//! One enum so that the edge maps every failure to a status and a code in one place,
//! and so that metrics can label errors without strings built at run time.

/// An API error code with its HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    BadRequest,
    InvalidJson,
    InvalidField,
    NotFound,
    MethodNotAllowed,
    RequestTimeout,
    LengthRequired,
    PayloadTooLarge,
    HeadersTooLarge,
    TokenMissing,
    TokenInvalid,
    TokenExpired,
    TokenWrongEvent,
    IdentityMissing,
    IdentityInvalid,
    IdentityExpired,
    NotAdmitted,
    UserMismatch,
    RoomClosed,
    PositionExpired,
    FairnessLocked,
    EventNotFound,
    SeatNotFound,
    SeatHeld,
    SeatSold,
    HoldLimit,
    HoldMismatch,
    IdempotencyKeyMissing,
    IdempotencyKeyInvalid,
    IdempotencyKeyReused,
    IdempotencyInFlight,
    IntentNotFound,
    IntentMismatch,
    IntentExpired,
    OrderNotFound,
    RateLimited,
    PurchaseLimit,
    TokenRevoked,
    PowRequired,
    PowInvalid,
    SignatureMissing,
    SignatureInvalid,
    SignatureExpired,
    Unavailable,
    Draining,
    NotReady,
    Internal,
}

impl ErrorCode {
    /// Every code, for tests that compare this list with the OpenAPI document.
    pub const ALL: [ErrorCode; 47] = [
        Self::BadRequest,
        Self::InvalidJson,
        Self::InvalidField,
        Self::NotFound,
        Self::MethodNotAllowed,
        Self::RequestTimeout,
        Self::LengthRequired,
        Self::PayloadTooLarge,
        Self::HeadersTooLarge,
        Self::TokenMissing,
        Self::TokenInvalid,
        Self::TokenExpired,
        Self::TokenWrongEvent,
        Self::IdentityMissing,
        Self::IdentityInvalid,
        Self::IdentityExpired,
        Self::NotAdmitted,
        Self::UserMismatch,
        Self::RoomClosed,
        Self::PositionExpired,
        Self::FairnessLocked,
        Self::EventNotFound,
        Self::SeatNotFound,
        Self::SeatHeld,
        Self::SeatSold,
        Self::HoldLimit,
        Self::HoldMismatch,
        Self::IdempotencyKeyMissing,
        Self::IdempotencyKeyInvalid,
        Self::IdempotencyKeyReused,
        Self::IdempotencyInFlight,
        Self::IntentNotFound,
        Self::IntentMismatch,
        Self::IntentExpired,
        Self::OrderNotFound,
        Self::RateLimited,
        Self::PurchaseLimit,
        Self::TokenRevoked,
        Self::PowRequired,
        Self::PowInvalid,
        Self::SignatureMissing,
        Self::SignatureInvalid,
        Self::SignatureExpired,
        Self::Unavailable,
        Self::Draining,
        Self::NotReady,
        Self::Internal,
    ];

    /// The code as it appears on the wire.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::BadRequest => "BAD_REQUEST",
            Self::InvalidJson => "INVALID_JSON",
            Self::InvalidField => "INVALID_FIELD",
            Self::NotFound => "NOT_FOUND",
            Self::MethodNotAllowed => "METHOD_NOT_ALLOWED",
            Self::RequestTimeout => "REQUEST_TIMEOUT",
            Self::LengthRequired => "LENGTH_REQUIRED",
            Self::PayloadTooLarge => "PAYLOAD_TOO_LARGE",
            Self::HeadersTooLarge => "HEADERS_TOO_LARGE",
            Self::TokenMissing => "TOKEN_MISSING",
            Self::TokenInvalid => "TOKEN_INVALID",
            Self::TokenExpired => "TOKEN_EXPIRED",
            Self::TokenWrongEvent => "TOKEN_WRONG_EVENT",
            Self::IdentityMissing => "IDENTITY_MISSING",
            Self::IdentityInvalid => "IDENTITY_INVALID",
            Self::IdentityExpired => "IDENTITY_EXPIRED",
            Self::NotAdmitted => "NOT_ADMITTED",
            Self::UserMismatch => "USER_MISMATCH",
            Self::RoomClosed => "ROOM_CLOSED",
            Self::PositionExpired => "POSITION_EXPIRED",
            Self::FairnessLocked => "FAIRNESS_LOCKED",
            Self::EventNotFound => "EVENT_NOT_FOUND",
            Self::SeatNotFound => "SEAT_NOT_FOUND",
            Self::SeatHeld => "SEAT_HELD",
            Self::SeatSold => "SEAT_SOLD",
            Self::HoldLimit => "HOLD_LIMIT",
            Self::HoldMismatch => "HOLD_MISMATCH",
            Self::IdempotencyKeyMissing => "IDEMPOTENCY_KEY_MISSING",
            Self::IdempotencyKeyInvalid => "IDEMPOTENCY_KEY_INVALID",
            Self::IdempotencyKeyReused => "IDEMPOTENCY_KEY_REUSED",
            Self::IdempotencyInFlight => "IDEMPOTENCY_IN_FLIGHT",
            Self::IntentNotFound => "INTENT_NOT_FOUND",
            Self::IntentMismatch => "INTENT_MISMATCH",
            Self::IntentExpired => "INTENT_EXPIRED",
            Self::OrderNotFound => "ORDER_NOT_FOUND",
            Self::RateLimited => "RATE_LIMITED",
            Self::PurchaseLimit => "PURCHASE_LIMIT",
            Self::TokenRevoked => "TOKEN_REVOKED",
            Self::PowRequired => "POW_REQUIRED",
            Self::PowInvalid => "POW_INVALID",
            Self::SignatureMissing => "SIGNATURE_MISSING",
            Self::SignatureInvalid => "SIGNATURE_INVALID",
            Self::SignatureExpired => "SIGNATURE_EXPIRED",
            Self::Unavailable => "UNAVAILABLE",
            Self::Draining => "DRAINING",
            Self::NotReady => "NOT_READY",
            Self::Internal => "INTERNAL",
        }
    }

    /// The HTTP status this code is answered with.
    pub const fn status(self) -> u16 {
        match self {
            Self::BadRequest | Self::InvalidJson | Self::InvalidField => 400,
            Self::IdempotencyKeyMissing | Self::IdempotencyKeyInvalid => 400,
            Self::TokenMissing | Self::TokenInvalid | Self::TokenExpired => 401,
            Self::TokenWrongEvent | Self::TokenRevoked => 401,
            Self::SignatureMissing | Self::SignatureInvalid | Self::SignatureExpired => 401,
            Self::IdentityMissing | Self::IdentityInvalid | Self::IdentityExpired => 401,
            Self::PowRequired | Self::PowInvalid => 403,
            Self::NotAdmitted | Self::UserMismatch | Self::RoomClosed => 403,
            Self::NotFound | Self::EventNotFound | Self::SeatNotFound => 404,
            Self::IntentNotFound | Self::OrderNotFound => 404,
            Self::MethodNotAllowed => 405,
            Self::RequestTimeout => 408,
            Self::SeatHeld | Self::SeatSold | Self::HoldLimit | Self::HoldMismatch => 409,
            Self::IdempotencyInFlight | Self::IntentMismatch | Self::PurchaseLimit => 409,
            Self::FairnessLocked => 409,
            Self::IntentExpired | Self::PositionExpired => 410,
            Self::LengthRequired => 411,
            Self::PayloadTooLarge => 413,
            Self::IdempotencyKeyReused => 422,
            Self::RateLimited => 429,
            Self::HeadersTooLarge => 431,
            Self::Internal => 500,
            Self::Unavailable | Self::Draining | Self::NotReady => 503,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ErrorCode;

    #[test]
    fn codes_are_unique_screaming_snake_case() {
        let mut seen = std::collections::HashSet::new();
        for code in ErrorCode::ALL {
            let s = code.as_str();
            assert!(seen.insert(s), "duplicate code {s}");
            assert!(
                s.bytes().all(|b| b.is_ascii_uppercase() || b == b'_'),
                "{s}"
            );
            assert!((400..600).contains(&code.status()), "{s}");
        }
    }
}
