//! The edge's one error type, and the one place that maps it to a status, an error
//! code and the JSON error body.

use codec::error_code::ErrorCode;

use crate::{http::Reply, redis::RedisError};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request broke HTTP/1.1 framing or a limit; the connection closes after the
    /// answer because the next request's first byte can no longer be found (RFC 9112
    /// section 9.3 and 11.2).
    #[error("{message}")]
    Framing {
        code: ErrorCode,
        message: &'static str,
    },
    /// A well-framed request the API refuses: the connection stays open.
    #[error("{message}")]
    Request {
        code: ErrorCode,
        message: &'static str,
    },
    #[error("method not allowed")]
    MethodNotAllowed { allow: &'static str },
    /// Try again later, with `Retry-After`: draining or a dependency down (503), or
    /// the first request with this Idempotency-Key still in flight (409).
    #[error("{message}")]
    RetryLater {
        code: ErrorCode,
        message: &'static str,
        retry_after_secs: u32,
    },
    /// A failure that is our fault: 500.
    #[error("{message}")]
    Internal { message: &'static str },
}

impl From<RedisError> for Error {
    /// Redis unreachable, slow or overloaded is a retryable 503; an error reply means
    /// a bug or a broken deployment, a 500.
    fn from(e: RedisError) -> Self {
        match e {
            RedisError::Server(_) | RedisError::Protocol(_) => Self::Internal {
                message: "storage error",
            },
            RedisError::Disconnected | RedisError::Timeout | RedisError::Overloaded => {
                Self::RetryLater {
                    code: ErrorCode::Unavailable,
                    message: "storage unavailable, retry",
                    retry_after_secs: 1,
                }
            }
        }
    }
}

impl Error {
    pub const fn framing(code: ErrorCode, message: &'static str) -> Self {
        Self::Framing { code, message }
    }

    pub const fn request(code: ErrorCode, message: &'static str) -> Self {
        Self::Request { code, message }
    }

    pub const fn code(&self) -> ErrorCode {
        match self {
            Self::Framing { code, .. } | Self::Request { code, .. } => *code,
            Self::RetryLater { code, .. } => *code,
            Self::MethodNotAllowed { .. } => ErrorCode::MethodNotAllowed,
            Self::Internal { .. } => ErrorCode::Internal,
        }
    }

    /// Whether the connection must close after this answer.
    pub const fn closes_connection(&self) -> bool {
        matches!(self, Self::Framing { .. })
    }

    /// Renders the error as the reply: status, headers and
    /// `{"error":{"code":"...","message":"..."}}`.
    pub fn render(&self, reply: &mut Reply) {
        let code = self.code();
        reply.reset(code.status());
        match self {
            Self::MethodNotAllowed { allow } => reply.header("allow", allow.as_bytes()),
            Self::RetryLater {
                retry_after_secs, ..
            } => {
                reply.header("retry-after", retry_after_secs.to_string().as_bytes());
            }
            Self::Framing { .. } | Self::Request { .. } | Self::Internal { .. } => {}
        }
        let body = reply.json_body();
        body.extend_from_slice(b"{\"error\":{\"code\":\"");
        body.extend_from_slice(code.as_str().as_bytes());
        body.extend_from_slice(b"\",\"message\":");
        codec::json::write_str(body, self.to_string().as_bytes());
        body.extend_from_slice(b"}}");
    }
}
