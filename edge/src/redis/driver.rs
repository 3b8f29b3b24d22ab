//! The connection driver: connects (AUTH, SELECT), then runs a writer and a reader
//! over the socket until either fails, fails every waiting command, and reconnects
//! with capped exponential backoff and jitter.

use std::{
    cell::RefCell,
    future::poll_fn,
    hash::{BuildHasher, Hasher},
    io,
    rc::Rc,
    sync::Arc,
    task::Poll,
    time::Duration,
};

use bytes::BytesMut;
use monoio::{
    buf::IoBufMut,
    io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt, Split, Splitable},
    net::TcpStream,
};
use monoio_rustls::{ClientTlsStream, TlsConnector};
use redis_protocol::resp2::decode::decode_bytes_mut;
use tracing::{info, warn};

use super::{Frame, Inner, RedisConfig, RedisError};

const READ_BUF_BYTES: usize = 64 * 1024;
const MIN_READ_BYTES: usize = 4 * 1024;

/// A connection, plain or TLS (`rediss://`).
enum Stream {
    Plain(TcpStream),
    Tls(Box<ClientTlsStream<TcpStream>>),
}

pub(super) async fn run(inner: Rc<RefCell<Inner>>) {
    let config = inner.borrow().config.clone();
    let tls = match config.url.tls.then(|| tls_connector(&config)).transpose() {
        Ok(tls) => tls,
        Err(error) => {
            // The edge checks the CA file at start (`check_tls`); one changed since
            // then: no connection can ever be made, every command fails fast.
            warn!(%error, "redis TLS configuration unusable");
            return;
        }
    };
    let mut backoff = config.backoff_min;
    let mut jitter = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
        | 1;
    loop {
        if inner.borrow().closed {
            return;
        }
        match monoio::time::timeout(config.connect_timeout, connect(&config, tls.as_ref())).await {
            Ok(Ok(_)) if inner.borrow().closed => return,
            Ok(Ok(stream)) => {
                info!(addr = %config.url.addr, tls = config.url.tls, "redis connected");
                backoff = config.backoff_min;
                inner.borrow_mut().on_connected();
                let error = match stream {
                    Stream::Plain(s) => serve(&inner, s).await,
                    Stream::Tls(s) => serve(&inner, *s).await,
                };
                if inner.borrow().closed {
                    info!(addr = %config.url.addr, "redis connection closed: the node left");
                    inner.borrow_mut().on_disconnected();
                    return;
                }
                warn!(addr = %config.url.addr, %error, "redis connection lost");
                let mut inner = inner.borrow_mut();
                let stats = &mut inner.stats;
                match error {
                    RedisError::Protocol(_) => stats.protocol_errors += 1,
                    RedisError::Io(_) => stats.io_errors += 1,
                    RedisError::Tls(_) => stats.tls_errors += 1,
                    RedisError::Closed => stats.closed_by_server += 1,
                    _ => {}
                }
                inner.on_disconnected();
            }
            Ok(Err(error)) => warn!(addr = %config.url.addr, %error, "redis connect failed"),
            Err(_) => warn!(addr = %config.url.addr, "redis connect timed out"),
        }
        // xorshift: a delay in [backoff/2, backoff], so that every core (and every
        // task of a fleet) does not reconnect in the same instant.
        jitter ^= jitter << 13;
        jitter ^= jitter >> 7;
        jitter ^= jitter << 17;
        let half = backoff / 2;
        let delay = half + Duration::from_nanos(jitter % (half.as_nanos() as u64 + 1));
        monoio::time::sleep(delay).await;
        backoff = (backoff * 2).min(config.backoff_max);
    }
}

/// Trusted roots: the Mozilla set (ElastiCache's certificates chain to Amazon's roots,
/// which it holds), plus the PEM file `REDIS_TLS_CA_FILE` for a private CA.
pub(super) fn tls_connector(config: &RedisConfig) -> Result<TlsConnector, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add_trust_anchors(webpki_roots::TLS_SERVER_ROOTS.iter().map(|ta| {
        rustls::OwnedTrustAnchor::from_subject_spki_name_constraints(
            ta.subject,
            ta.spki,
            ta.name_constraints,
        )
    }));
    if let Some(path) = &config.tls_ca_file {
        let pem = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let certs = rustls_pemfile::certs(&mut pem.as_slice()).map_err(|e| e.to_string())?;
        let (added, _) = roots.add_parsable_certificates(&certs);
        if added == 0 {
            return Err(format!("{}: no certificate in it", path.display()));
        }
    }
    let tls = rustls::ClientConfig::builder()
        .with_safe_defaults()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(TlsConnector::from(Arc::new(tls)))
}

async fn connect(config: &RedisConfig, tls: Option<&TlsConnector>) -> Result<Stream, RedisError> {
    let tcp = TcpStream::connect(config.url.addr.as_str())
        .await
        .map_err(io_error)?;
    tcp.set_nodelay(true).map_err(io_error)?;
    let Some(tls) = tls else {
        return handshake(tcp, config).await.map(Stream::Plain);
    };
    let host = codec::url::host(&config.url.addr);
    let name = rustls::ServerName::try_from(host)
        .map_err(|_| RedisError::Tls(format!("{host}: not a TLS server name")))?;
    let stream = tls
        .connect(name, tcp)
        .await
        .map_err(|e| RedisError::Tls(e.to_string()))?;
    handshake(stream, config)
        .await
        .map(|s| Stream::Tls(Box::new(s)))
}

/// AUTH and SELECT from the URL, then a PING, before the connection is handed to the
/// driver: a server that accepts connections but does not answer (stopped, stalled,
/// still loading its data) is not connected, so requests fail fast meanwhile and
/// health says degraded.
async fn handshake<S: AsyncReadRent + AsyncWriteRent>(
    mut stream: S,
    config: &RedisConfig,
) -> Result<S, RedisError> {
    let mut rbuf = BytesMut::with_capacity(1024);
    if let Some(password) = &config.url.password {
        let user = config.url.username.as_deref().unwrap_or("default");
        let auth: [&[u8]; 3] = [b"AUTH", user.as_bytes(), password.as_bytes()];
        command(&mut stream, &mut rbuf, &auth).await?;
    }
    if config.url.db != 0 {
        let db = config.url.db.to_string();
        command(&mut stream, &mut rbuf, &[b"SELECT", db.as_bytes()]).await?;
    }
    command(&mut stream, &mut rbuf, &[b"PING"]).await?;
    Ok(stream)
}

/// One command and its reply.
async fn command<S: AsyncReadRent + AsyncWriteRent>(
    stream: &mut S,
    rbuf: &mut BytesMut,
    args: &[&[u8]],
) -> Result<(), RedisError> {
    let mut command = Vec::new();
    codec::resp::write_command(&mut command, &[args]);
    let (res, _) = stream.write_all(command).await;
    res.map_err(io_error)?;
    loop {
        if let Some((frame, _, _)) = decode_bytes_mut(rbuf).map_err(protocol_error)? {
            return match frame {
                Frame::Error(message) => Err(RedisError::Server(message.to_string())),
                _ => Ok(()),
            };
        }
        read_more(stream, rbuf).await?;
    }
}

async fn serve<S>(inner: &Rc<RefCell<Inner>>, stream: S) -> RedisError
where
    S: Split + AsyncReadRent + AsyncWriteRent,
{
    let (mut reader, mut writer) = stream.into_split();
    monoio::select! {
        error = read_replies(inner, &mut reader) => error,
        error = write_commands(inner, &mut writer) => error,
    }
}

/// Writes whatever commands are queued, all at once, until the connection fails.
async fn write_commands(
    inner: &Rc<RefCell<Inner>>,
    writer: &mut impl AsyncWriteRent,
) -> RedisError {
    let mut spare = Vec::with_capacity(64 * 1024);
    loop {
        let batch = poll_fn(|cx| {
            let mut inner = inner.borrow_mut();
            if inner.stalled || inner.closed {
                return Poll::Ready(None);
            }
            inner.seal_open();
            if inner.wbuf.is_empty() {
                inner.writer = Some(cx.waker().clone());
                return Poll::Pending;
            }
            let commands = std::mem::take(&mut inner.unwritten);
            inner.stats.record_write(commands);
            Poll::Ready(Some(std::mem::replace(
                &mut inner.wbuf,
                std::mem::take(&mut spare),
            )))
        })
        .await;
        let Some(batch) = batch else {
            return RedisError::Timeout;
        };
        let (res, mut batch) = writer.write_all(batch).await;
        if let Err(e) = res {
            return io_error(e);
        }
        batch.clear();
        spare = batch;
    }
}

/// Reads replies and hands each to its command, until the connection fails.
async fn read_replies(inner: &Rc<RefCell<Inner>>, reader: &mut impl AsyncReadRent) -> RedisError {
    let mut rbuf = BytesMut::with_capacity(READ_BUF_BYTES);
    loop {
        if let Err(e) = read_more(reader, &mut rbuf).await {
            return e;
        }
        if let Err(e) = deliver_all(&mut inner.borrow_mut(), &mut rbuf) {
            return e;
        }
    }
}

/// Decodes every complete reply in `rbuf` and delivers it; a partial reply stays.
pub(super) fn deliver_all(inner: &mut Inner, rbuf: &mut BytesMut) -> Result<(), RedisError> {
    while let Some((frame, _, _)) = decode_bytes_mut(rbuf).map_err(protocol_error)? {
        inner.deliver(frame)?;
    }
    Ok(())
}

/// Reads into the spare capacity of `rbuf`; end of stream is an error here.
async fn read_more(stream: &mut impl AsyncReadRent, rbuf: &mut BytesMut) -> Result<(), RedisError> {
    if rbuf.capacity() - rbuf.len() < MIN_READ_BYTES {
        rbuf.reserve(READ_BUF_BYTES);
    }
    let buf = std::mem::take(rbuf);
    let (len, cap) = (buf.len(), buf.capacity());
    let (res, slice) = stream.read(buf.slice_mut(len..cap)).await;
    *rbuf = slice.into_inner();
    match res {
        Ok(0) => Err(RedisError::Closed),
        Ok(_) => Ok(()),
        Err(e) => Err(io_error(e)),
    }
}

fn io_error(e: io::Error) -> RedisError {
    RedisError::Io(e.to_string())
}

fn protocol_error(e: redis_protocol::error::RedisProtocolError) -> RedisError {
    RedisError::Protocol(e.to_string())
}
