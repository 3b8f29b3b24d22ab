//! A small Redis connection for the worker's projections, on tokio.
//!
//! Commands are encoded with `codec::resp::write_command` and replies decoded with
//! `redis-protocol` (RESP2, <https://redis.io/docs/latest/develop/reference/protocol-spec/>).
//! A [`Pipeline`] is written with one write and its N replies read back in order;
//! [`Conn::transaction`] wraps one in `MULTI`/`EXEC` so a projection lands whole.
//!
//! This is not the edge's client (per-core, automatically pipelined, reconnecting):
//! the worker issues few, large batches, so one connection that waits for its replies
//! is enough. A connection that timed out or lost sync is dead; make a new one.

use std::{io, path::PathBuf, sync::Arc, time::Duration};

use bytes::BytesMut;
use redis_protocol::resp2::decode::decode_bytes_mut;
pub use redis_protocol::resp2::types::BytesFrame as Frame;
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::TcpStream,
};
use tokio_rustls::{
    rustls::{
        self,
        pki_types::{CertificateDer, Der, ServerName, TrustAnchor},
    },
    TlsConnector,
};

/// Deadline of a connect and of each round trip (a whole pipeline). Projections write
/// at most a few MiB (bitmaps of 1,000,000 seats are 125 KiB), far inside it.
pub const ROUND_TRIP_TIMEOUT: Duration = Duration::from_secs(10);

/// Reads ask for at least this much spare room in the read buffer.
const MIN_READ_BYTES: usize = 16 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    #[error("redis: {0}")]
    Io(#[from] io::Error),
    #[error("redis: connection closed")]
    Closed,
    #[error("redis: no reply within {0:?}")]
    Timeout(Duration),
    /// An error reply (`-ERR ...`, `-WRONGTYPE ...`).
    #[error("redis: {0}")]
    Server(String),
    #[error("redis: protocol error: {0}")]
    Protocol(String),
}

impl RedisError {
    /// Connection trouble may pass; an error reply or garbage will not.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Io(_) | Self::Closed | Self::Timeout(_))
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Self::Io(_) | Self::Closed => "redis_disconnected",
            Self::Timeout(_) => "redis_timeout",
            Self::Server(_) => "redis_server",
            Self::Protocol(_) => "redis_protocol",
        }
    }
}

/// Where and how to connect: `redis://[user[:password]@]host[:port][/db]`, or
/// `rediss://` for TLS (ElastiCache in-transit encryption).
#[derive(Clone, PartialEq, Eq)]
pub struct RedisConfig {
    /// `host:port`.
    pub addr: String,
    pub username: Option<String>,
    pub password: Option<String>,
    pub db: u32,
    pub tls: bool,
    /// A PEM file of CA certificates trusted for `rediss://`, besides the Mozilla roots.
    pub tls_ca_file: Option<PathBuf>,
}

impl std::fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConfig")
            .field("addr", &self.addr)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("db", &self.db)
            .field("tls", &self.tls)
            .field("tls_ca_file", &self.tls_ca_file)
            .finish()
    }
}

impl RedisConfig {
    /// Parses with `codec::url` (shared with the edge).
    pub fn from_url(url: &str) -> Result<Self, &'static str> {
        let url = codec::url::RedisUrl::parse(url)?;
        if url.cluster {
            // Its stream reads and projections span slots; they are not split by node yet.
            return Err("the worker does not speak to a Redis Cluster yet: use redis://");
        }
        Ok(Self {
            addr: url.addr,
            username: url.username,
            password: url.password,
            db: url.db,
            tls: url.tls,
            tls_ca_file: None,
        })
    }

    /// The TLS client set-up of `rediss://`: the Mozilla roots (ElastiCache's
    /// certificates chain to Amazon's, which it holds) and those of `tls_ca_file`.
    pub fn tls_connector(&self) -> Result<TlsConnector, String> {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().map(|ta| TrustAnchor {
            subject: Der::from_slice(ta.subject),
            subject_public_key_info: Der::from_slice(ta.spki),
            name_constraints: ta.name_constraints.map(Der::from_slice),
        }));
        if let Some(path) = &self.tls_ca_file {
            let pem = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
            let certs = rustls_pemfile::certs(&mut pem.as_slice()).map_err(|e| e.to_string())?;
            let (added, _) =
                roots.add_parsable_certificates(certs.into_iter().map(CertificateDer::from));
            if added == 0 {
                return Err(format!("{}: no certificate in it", path.display()));
            }
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(TlsConnector::from(Arc::new(tls)))
    }
}

/// The socket under a [`Conn`]: plain TCP or TLS over it.
trait Stream: AsyncRead + AsyncWrite + Unpin + Send + std::fmt::Debug {}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + std::fmt::Debug> Stream for S {}

/// Commands to send with one write; their replies come back in the same order.
#[derive(Debug, Default)]
pub struct Pipeline {
    buf: Vec<u8>,
    len: usize,
}

impl Pipeline {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends one command (`args[0]` is its name).
    pub fn push(&mut self, args: &[&[u8]]) -> &mut Self {
        codec::resp::write_command(&mut self.buf, &[args]);
        self.len += 1;
        self
    }

    /// Commands queued.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// One connection: request, response, in order.
#[derive(Debug)]
pub struct Conn {
    stream: Box<dyn Stream>,
    rbuf: BytesMut,
    /// Set when a round trip was cut short: replies may still be on their way, so the
    /// next reply read would not be the next command's.
    dead: bool,
}

impl Conn {
    /// Connects (with a TLS handshake for `rediss://`), authenticates (`AUTH`) and
    /// selects the database, within [`ROUND_TRIP_TIMEOUT`] for each step.
    pub async fn connect(config: &RedisConfig) -> Result<Self, RedisError> {
        let tcp = tokio::time::timeout(ROUND_TRIP_TIMEOUT, TcpStream::connect(&config.addr))
            .await
            .map_err(|_| RedisError::Timeout(ROUND_TRIP_TIMEOUT))??;
        tcp.set_nodelay(true)?;
        let stream: Box<dyn Stream> = if config.tls {
            let invalid = |e: String| io::Error::new(io::ErrorKind::InvalidInput, e);
            let tls = config.tls_connector().map_err(invalid)?;
            let host = codec::url::host(&config.addr);
            let name = ServerName::try_from(host.to_owned())
                .map_err(|e| invalid(format!("{host}: {e}")))?;
            let handshake = tokio::time::timeout(ROUND_TRIP_TIMEOUT, tls.connect(name, tcp));
            Box::new(
                handshake
                    .await
                    .map_err(|_| RedisError::Timeout(ROUND_TRIP_TIMEOUT))??,
            )
        } else {
            Box::new(tcp)
        };
        let mut conn = Self {
            stream,
            rbuf: BytesMut::with_capacity(MIN_READ_BYTES),
            dead: false,
        };
        if let Some(password) = &config.password {
            let mut auth: Vec<&[u8]> = vec![b"AUTH"];
            auth.extend(config.username.as_deref().map(str::as_bytes));
            auth.push(password.as_bytes());
            conn.query(&auth).await?;
        }
        if config.db != 0 {
            conn.query(&[b"SELECT", config.db.to_string().as_bytes()])
                .await?;
        }
        Ok(conn)
    }

    /// True once a round trip was cut short: the connection is out of step for good.
    pub fn is_dead(&self) -> bool {
        self.dead
    }

    /// One command and its reply; an error reply is [`RedisError::Server`].
    pub async fn query(&mut self, args: &[&[u8]]) -> Result<Frame, RedisError> {
        let mut pipeline = Pipeline::new();
        pipeline.push(args);
        let mut replies = self.pipeline(&pipeline).await?;
        replies
            .pop()
            .ok_or_else(|| RedisError::Protocol("no reply".into()))
    }

    /// Writes every command of `pipeline` at once, then reads one reply for each. All
    /// replies are read even when one is an error (the connection stays in step); then
    /// the first error reply is returned as [`RedisError::Server`].
    pub async fn pipeline(&mut self, pipeline: &Pipeline) -> Result<Vec<Frame>, RedisError> {
        let replies = self.pipeline_replies(pipeline).await?;
        match replies.iter().find_map(error_reply) {
            Some(e) => Err(e),
            None => Ok(replies),
        }
    }

    /// Like [`Conn::pipeline`], but error replies stay in place among the others, for
    /// callers that expect some (`BUSYGROUP`).
    pub async fn pipeline_replies(
        &mut self,
        pipeline: &Pipeline,
    ) -> Result<Vec<Frame>, RedisError> {
        if self.dead {
            return Err(RedisError::Closed);
        }
        // Dead until the round trip completes: a timeout drops this future half-way.
        self.dead = true;
        let replies = tokio::time::timeout(ROUND_TRIP_TIMEOUT, async {
            self.stream.write_all(&pipeline.buf).await?;
            let mut replies = Vec::with_capacity(pipeline.len);
            for _ in 0..pipeline.len {
                replies.push(read_frame(&mut self.stream, &mut self.rbuf).await?);
            }
            Ok::<_, RedisError>(replies)
        })
        .await
        .map_err(|_| RedisError::Timeout(ROUND_TRIP_TIMEOUT))??;
        self.dead = false;
        Ok(replies)
    }

    /// Runs `pipeline` inside `MULTI`/`EXEC`: Redis applies all of it or none, and no
    /// other client sees a state in between. Returns the commands' replies; an error
    /// reply to any of them is [`RedisError::Server`] (Redis does not roll back the
    /// others then, so transactions should hold only commands that cannot fail).
    pub async fn transaction(&mut self, pipeline: &Pipeline) -> Result<Vec<Frame>, RedisError> {
        let mut wrapped = Pipeline::new();
        wrapped.push(&[b"MULTI"]);
        wrapped.buf.extend_from_slice(&pipeline.buf);
        wrapped.len += pipeline.len;
        wrapped.push(&[b"EXEC"]);
        let mut replies = self.pipeline(&wrapped).await?;
        match replies.pop() {
            Some(Frame::Array(results)) => match results.iter().find_map(error_reply) {
                Some(e) => Err(e),
                None => Ok(results),
            },
            Some(Frame::Null) => Err(RedisError::Server("EXEC aborted".into())),
            other => Err(RedisError::Protocol(format!(
                "unexpected reply to EXEC: {other:?}"
            ))),
        }
    }
}

/// A Lua script run by its SHA-1 (`EVALSHA`), loaded on the first `NOSCRIPT`.
#[derive(Debug, Clone)]
pub struct Script {
    source: &'static str,
    sha: String,
}

impl Script {
    pub fn new(source: &'static str) -> Self {
        Self {
            source,
            sha: sha1_smol::Sha1::from(source).digest().to_string(),
        }
    }

    /// Appends `EVALSHA sha numkeys keys... args...` to `pipeline`.
    pub fn push(&self, pipeline: &mut Pipeline, keys: &[&[u8]], args: &[&[u8]]) {
        let numkeys = keys.len().to_string();
        let mut command: Vec<&[u8]> = Vec::with_capacity(3 + keys.len() + args.len());
        command.extend([&b"EVALSHA"[..], self.sha.as_bytes(), numkeys.as_bytes()]);
        command.extend_from_slice(keys);
        command.extend_from_slice(args);
        pipeline.push(&command);
    }
}

impl Conn {
    /// Runs a pipeline of `script`'s `EVALSHA`s; when Redis does not have the script
    /// (`NOSCRIPT`: none of them ran), loads it and runs the pipeline again.
    pub async fn run_script(
        &mut self,
        script: &Script,
        pipeline: &Pipeline,
    ) -> Result<Vec<Frame>, RedisError> {
        match self.pipeline(pipeline).await {
            Err(RedisError::Server(message)) if message.starts_with("NOSCRIPT") => {
                self.query(&[b"SCRIPT", b"LOAD", script.source.as_bytes()])
                    .await?;
                self.pipeline(pipeline).await
            }
            result => result,
        }
    }
}

fn error_reply(frame: &Frame) -> Option<RedisError> {
    match frame {
        Frame::Error(message) => Some(RedisError::Server(message.to_string())),
        _ => None,
    }
}

/// Decodes the next whole reply at the front of `rbuf`. `Ok(None)` means not enough
/// bytes yet, which is normal; the partial reply stays in `rbuf`.
pub fn decode(rbuf: &mut BytesMut) -> Result<Option<Frame>, RedisError> {
    decode_bytes_mut(rbuf)
        .map(|decoded| decoded.map(|(frame, _, _)| frame))
        .map_err(|e| RedisError::Protocol(e.to_string()))
}

/// Reads until one whole reply is in `rbuf` and returns it, leaving any bytes after it.
pub async fn read_frame(
    reader: &mut (impl AsyncRead + Unpin),
    rbuf: &mut BytesMut,
) -> Result<Frame, RedisError> {
    loop {
        if let Some(frame) = decode(rbuf)? {
            return Ok(frame);
        }
        rbuf.reserve(MIN_READ_BYTES);
        if reader.read_buf(rbuf).await? == 0 {
            return Err(RedisError::Closed);
        }
    }
}

#[cfg(test)]
mod tests;
