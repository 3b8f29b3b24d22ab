//! Redis connection settings: where (a `redis://` URL, parsed by `codec::url`) and the
//! client's deadlines and bounds.

use std::{path::PathBuf, time::Duration};

pub use codec::url::RedisUrl;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisConfig {
    pub url: RedisUrl,
    /// A PEM file of CA certificates trusted for `rediss://`, besides the Mozilla roots.
    pub tls_ca_file: Option<PathBuf>,
    /// Each command's deadline.
    pub timeout: Duration,
    pub connect_timeout: Duration,
    /// Past this many commands awaiting replies, new ones fail at once.
    pub max_in_flight: usize,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
}

impl RedisConfig {
    pub fn from_url(url: &str) -> Result<Self, &'static str> {
        Ok(Self {
            url: RedisUrl::parse(url)?,
            tls_ca_file: None,
            timeout: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(1),
            max_in_flight: 32 * 1024,
            backoff_min: Duration::from_millis(50),
            backoff_max: Duration::from_secs(2),
        })
    }
}
