//! Who the buyer is at `POST /public/enter` (`IDENTITY`); the room token then carries
//! that user, and every later call is bound to it.
//!
//! - `none` (local default): the body's `userId`, believed as sent.
//! - `jwt`: the `sub` of the bearer JWT in `Authorization` that the ticket site's login
//!   issued: HS256 with `IDENTITY_JWT_SECRET`, ES256/RS256 with keys from the JWKS file
//!   `IDENTITY_JWKS_FILE`; `exp`/`nbf` with `IDENTITY_LEEWAY_MS`, `iss` and `aud` when
//!   `IDENTITY_ISSUER` / `IDENTITY_AUDIENCE` are set.
//! - `alb-oidc`: the `sub` of `x-amzn-oidc-data`, which an ALB `authenticate-oidc`
//!   action adds: ES256, `signer` = `IDENTITY_ALB_ARN`, keys by `kid` from
//!   `IDENTITY_ALB_KEY_DIR`.
//!
//! Verification is computation only: the key thread ([`keys::start`]) reads
//! files, cores read its published key set.
//!
//! # Layout
//! - [`jwt`]: compact JWS checking, sans-IO (fuzzed: `edge/fuzz`, target `identity`).
//! - [`keys`]: the keys, the JWKS and PEM parsers, the key thread.

pub mod jwt;
pub mod keys;

use std::{path::PathBuf, time::Duration};

use codec::error_code::ErrorCode;

use crate::{error::Error, http::Head};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    None,
    Jwt,
    AlbOidc,
}

#[derive(Debug, Clone)]
pub struct IdentityConfig {
    /// `IDENTITY`: `none`, `jwt` or `alb-oidc`.
    pub mode: Mode,
    /// `IDENTITY_JWT_SECRET`: HS256 key (at least 32 bytes, RFC 7518 section 3.2).
    pub jwt_secret: Option<String>,
    /// `IDENTITY_JWKS_FILE`: ES256/RS256 public keys by `kid`, re-read on change.
    pub jwks_file: Option<PathBuf>,
    /// `IDENTITY_ISSUER`: the `iss` a token must carry, when set.
    pub issuer: Option<String>,
    /// `IDENTITY_AUDIENCE`: the `aud` a token must name, when set (`jwt` only).
    pub audience: Option<String>,
    /// `IDENTITY_LEEWAY_MS`: clock skew allowed on `exp` and `nbf`.
    pub leeway_ms: u64,
    /// `IDENTITY_ALB_ARN`: the load balancer whose `signer` is trusted.
    pub alb_arn: Option<String>,
    /// `IDENTITY_ALB_KEY_DIR`: ALB's public keys, one PEM file a `kid`.
    pub alb_key_dir: Option<PathBuf>,
    /// `IDENTITY_KEYS_REFRESH_MS`: how often the key thread re-reads the key files.
    pub keys_refresh: Duration,
}

impl IdentityConfig {
    /// Body `userId` only: the local default.
    pub fn none() -> Self {
        Self {
            mode: Mode::None,
            jwt_secret: None,
            jwks_file: None,
            issuer: None,
            audience: None,
            leeway_ms: 0,
            alb_arn: None,
            alb_key_dir: None,
            keys_refresh: Duration::from_secs(1),
        }
    }
}

/// The header `Authorization: Bearer <token>` carries (RFC 6750 section 2.1; the
/// scheme is case-insensitive, RFC 9110 section 11.1).
fn bearer(value: &[u8]) -> Option<&[u8]> {
    let (scheme, token) = value.split_at_checked(7)?;
    scheme
        .eq_ignore_ascii_case(b"bearer ")
        .then(|| token.trim_ascii())
}

/// The verified user of this request, or `None` with `IDENTITY=none`. A user that
/// fails the user-id rule is an invalid identity, not a bad request.
pub fn verify(
    config: &IdentityConfig,
    keys: &keys::CoreKeys,
    head: &Head<'_>,
    now_ms: u64,
) -> Result<Option<String>, Error> {
    let (token, rules) = match config.mode {
        Mode::None => return Ok(None),
        Mode::Jwt => {
            let value = head
                .authorization
                .ok_or(missing("Authorization: Bearer is required"))?;
            let token = bearer(value).ok_or(invalid("Authorization is not a Bearer token"))?;
            let rules = jwt::Rules {
                issuer: config.issuer.as_deref(),
                audience: config.audience.as_deref(),
                signer: None,
                leeway_ms: config.leeway_ms,
                padded: false,
            };
            (token, rules)
        }
        Mode::AlbOidc => {
            let token = head
                .oidc_data
                .ok_or(missing("x-amzn-oidc-data is required"))?;
            let rules = jwt::Rules {
                issuer: config.issuer.as_deref(),
                audience: None,
                signer: config.alb_arn.as_deref(),
                leeway_ms: config.leeway_ms,
                padded: true,
            };
            (token, rules)
        }
    };
    let user = keys
        .with(|set| jwt::verify(token, set, &rules, now_ms))
        .map_err(|refusal| match refusal {
            jwt::Refusal::Expired => Error::request(
                ErrorCode::IdentityExpired,
                "identity expired; sign in again",
            ),
            jwt::Refusal::Invalid(why) => invalid(why),
        })?;
    codec::rules::user_id(&user).map_err(|_| invalid("the subject is not a valid user id"))?;
    Ok(Some(user))
}

fn missing(message: &'static str) -> Error {
    Error::request(ErrorCode::IdentityMissing, message)
}

fn invalid(message: &'static str) -> Error {
    Error::request(ErrorCode::IdentityInvalid, message)
}
