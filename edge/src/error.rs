//! The edge's one error type, and the one place that maps it to a status, an error
//! code and the JSON error body. Failures that are the server's (a dependency down, a
//! reply no script returns) keep their cause, which `router` logs once, with the
//! request id, where the error becomes a response.

use codec::{error_code::ErrorCode, rules::Invalid, store::Unexpected};

use crate::{
    http::{FramingError, Reply},
    redis::RedisError,
};

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
    /// A field a rule of `codec::rules` refused: 400, the message naming the field.
    #[error("{invalid}")]
    Invalid { code: ErrorCode, invalid: Invalid },
    #[error("method not allowed")]
    MethodNotAllowed { allow: &'static str },
    /// Try again later, with `Retry-After`: draining, or the first request with this
    /// Idempotency-Key still in flight (409).
    #[error("{message}")]
    RetryLater {
        code: ErrorCode,
        message: &'static str,
        retry_after_secs: u32,
    },
    /// A dependency (Redis, SQS, PostgreSQL) is down, slow or overloaded: 503 with
    /// `Retry-After`.
    #[error("{message}")]
    Unavailable {
        message: &'static str,
        cause: String,
    },
    /// A failure that is our fault (a Redis error reply, a reply of the wrong shape):
    /// 500.
    #[error("{message}")]
    Internal {
        message: &'static str,
        cause: String,
    },
}

impl From<Invalid> for Error {
    fn from(invalid: Invalid) -> Self {
        Self::Invalid {
            code: ErrorCode::InvalidField,
            invalid,
        }
    }
}

impl From<FramingError> for Error {
    fn from(e: FramingError) -> Self {
        Self::Framing {
            code: e.code,
            message: e.message,
        }
    }
}

impl From<RedisError> for Error {
    /// Redis unreachable, slow or overloaded is a retryable 503, and so is an error
    /// reply that says the server cannot write now (out of memory, its disk failing
    /// the AOF, loading, a replica, a cluster in change or still redirecting); any other error reply means a
    /// bug or a broken deployment, a 500.
    fn from(e: RedisError) -> Self {
        const TRANSIENT: [&str; 10] = [
            "OOM ",
            "MISCONF ",
            "LOADING ",
            "BUSY ",
            "TRYAGAIN ",
            "READONLY ",
            "MASTERDOWN ",
            "CLUSTERDOWN ",
            // Redirections still left after the client followed its share of them.
            "MOVED ",
            "ASK ",
        ];
        match e {
            RedisError::Server(ref m) if TRANSIENT.iter().any(|p| m.starts_with(p)) => {
                Self::Unavailable {
                    message: "storage unavailable, retry",
                    cause: e.to_string(),
                }
            }
            RedisError::Server(_) | RedisError::Protocol(_) => Self::Internal {
                message: "storage error",
                cause: e.to_string(),
            },
            RedisError::Disconnected
            | RedisError::Timeout
            | RedisError::Overloaded
            | RedisError::Io(_)
            | RedisError::Tls(_)
            | RedisError::Closed => Self::Unavailable {
                message: "storage unavailable, retry",
                cause: e.to_string(),
            },
        }
    }
}

impl From<Unexpected> for Error {
    fn from(e: Unexpected) -> Self {
        Self::Internal {
            message: "unexpected reply from storage",
            cause: e.to_string(),
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

    pub fn unavailable(message: &'static str, cause: impl std::fmt::Display) -> Self {
        Self::Unavailable {
            message,
            cause: cause.to_string(),
        }
    }

    pub const fn code(&self) -> ErrorCode {
        match self {
            Self::Framing { code, .. }
            | Self::Request { code, .. }
            | Self::Invalid { code, .. } => *code,
            Self::RetryLater { code, .. } => *code,
            Self::MethodNotAllowed { .. } => ErrorCode::MethodNotAllowed,
            Self::Unavailable { .. } => ErrorCode::Unavailable,
            Self::Internal { .. } => ErrorCode::Internal,
        }
    }

    /// What went wrong on the server's side, for the log; `None` for the request's
    /// own faults and for refusals by design.
    pub fn cause(&self) -> Option<&str> {
        match self {
            Self::Unavailable { cause, .. } | Self::Internal { cause, .. } => Some(cause),
            _ => None,
        }
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
            Self::Unavailable { .. } => reply.header("retry-after", b"1"),
            Self::Framing { .. }
            | Self::Request { .. }
            | Self::Invalid { .. }
            | Self::Internal { .. } => {}
        }
        let body = reply.json_body();
        body.extend_from_slice(b"{\"error\":{\"code\":\"");
        body.extend_from_slice(code.as_str().as_bytes());
        body.extend_from_slice(b"\",\"message\":");
        codec::json::write_str(body, self.to_string().as_bytes());
        body.extend_from_slice(b"}}");
    }
}
