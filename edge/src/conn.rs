//! One HTTP/1.1 connection: read, answer every complete request in the buffer in
//! order, write all their answers with one write, repeat.
//!
//! Timeouts: an idle keep-alive connection closes after `keepalive`; a request must
//! arrive whole within `request_timeout` of its first byte (slowloris), else 408.

use std::{rc::Rc, time::Instant};

use codec::error_code::ErrorCode;
use monoio::{
    buf::IoBufMut,
    io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt},
    net::TcpStream,
    time::timeout,
};

use crate::{
    core::{Core, Registration},
    error::Error,
    http::{self, Method, Reply},
    router,
};

/// What a read buffer grows by when a read would have less than [`MIN_READ_BYTES`].
const READ_BUF_BYTES: usize = 16 * 1024;
/// A read gets at least this much spare capacity; a new connection starts with just
/// this (most requests fit), and no write buffer until its first answer: a flood of
/// connections that become event streams then never holds 32 KiB each.
const MIN_READ_BYTES: usize = 4 * 1024;
/// After the last answer on a closing connection, what the client still sends is read
/// and dropped for this long, so the close does not reset the connection and destroy
/// the answer in flight (RFC 9112 section 9.6).
const LINGER: std::time::Duration = std::time::Duration::from_secs(2);
const LINGER_MAX_BYTES: usize = 256 * 1024;

pub(crate) async fn serve(stream: TcpStream, core: Rc<Core>, peer: std::net::IpAddr) {
    let registration = core.register(&stream);
    let mut conn = Conn {
        registration,
        stream,
        core,
        peer,
        rbuf: Vec::with_capacity(MIN_READ_BYTES),
        wbuf: Vec::new(),
        reply: Reply::default(),
    };
    match conn.run().await {
        End::Close => {}
        End::Linger => conn.linger().await,
        End::Stream(sub) => {
            // A task of its own, so the stream keeps none of this one's buffers.
            let Conn {
                registration,
                stream,
                core,
                ..
            } = conn;
            monoio::spawn(crate::sse::stream(registration, stream, core, sub));
        }
    }
}

/// How a connection's request loop ends.
enum End {
    Close,
    /// Answers were sent and the client may still be sending.
    Linger,
    /// It became an event stream (`room-events`), its head written.
    Stream(Box<crate::http::Subscription>),
}

struct Conn {
    // Dropped before `stream`, so that the core never sees a closed fd.
    registration: Registration,
    stream: TcpStream,
    core: Rc<Core>,
    /// The socket's peer: the client, or the nearest proxy (`limits::client_addr`).
    peer: std::net::IpAddr,
    rbuf: Vec<u8>,
    wbuf: Vec<u8>,
    reply: Reply,
}

impl Conn {
    /// Serves requests until the connection ends.
    async fn run(&mut self) -> End {
        let mut request_started: Option<Instant> = None;
        loop {
            let idle = self.rbuf.is_empty();
            let limit = if idle {
                if self.core.draining() {
                    return End::Linger;
                }
                request_started = None;
                self.core.config.keepalive
            } else {
                let started = *request_started.get_or_insert_with(Instant::now);
                self.core
                    .config
                    .request_timeout
                    .saturating_sub(started.elapsed())
            };
            self.registration.slot.idle.set(idle);
            let read = timeout(
                limit,
                read_more(&mut self.stream, std::mem::take(&mut self.rbuf)),
            );
            let read = read.await;
            self.registration.slot.idle.set(false);
            match read {
                Ok((Ok(n), buf)) if n > 0 => {
                    self.core.metrics.received(n);
                    self.rbuf = buf;
                }
                // End of stream, reset, or an idle connection timed out.
                Ok(_) => return End::Close,
                Err(_elapsed) if idle => return End::Close,
                Err(_elapsed) => {
                    let e =
                        Error::framing(ErrorCode::RequestTimeout, "request not received in time");
                    refused(&self.core, &mut self.reply, &e);
                    http::write_response(&mut self.wbuf, &self.reply, None, false, false);
                    return if self.flush().await {
                        End::Linger
                    } else {
                        End::Close
                    };
                }
            }
            let (progress, close) = self.answer_buffered().await;
            if progress {
                request_started = None;
            }
            if !self.flush().await {
                return End::Close;
            }
            if let Some(sub) = self.reply.stream.take() {
                return End::Stream(sub);
            }
            if close {
                return End::Linger;
            }
        }
    }

    /// Answers every complete request in the read buffer, in order, into the write
    /// buffer, up to one that becomes an event stream (`reply.stream`: its head is
    /// written, what follows it in the buffer is dropped). Returns (whether any request
    /// was consumed, whether to close).
    async fn answer_buffered(&mut self) -> (bool, bool) {
        let mut consumed = 0;
        let mut close = false;
        while consumed < self.rbuf.len() {
            let mut head = match http::parse_head(&self.rbuf[consumed..]) {
                Ok(Some(head)) => head,
                Ok(None) => break,
                Err(e) => {
                    refused(&self.core, &mut self.reply, &Error::from(e));
                    http::write_response(&mut self.wbuf, &self.reply, None, false, false);
                    close = true;
                    break;
                }
            };
            if head.content_length > self.core.config.max_body_bytes {
                let e = Error::framing(ErrorCode::PayloadTooLarge, "request body too large");
                refused(&self.core, &mut self.reply, &e);
                http::write_response(&mut self.wbuf, &self.reply, head.request_id, false, false);
                close = true;
                break;
            }
            let end = consumed + head.len + head.content_length;
            if end > self.rbuf.len() {
                break;
            }
            let body = &self.rbuf[consumed + head.len..end];
            head.peer = Some(self.peer);
            router::dispatch(&self.core, &head, body, &mut self.reply).await;
            if self.reply.stream.is_some() {
                crate::sse::write_head(&mut self.wbuf, head.request_id, self.reply.headers());
                if head.method == Method::Head {
                    self.reply.stream = None;
                    close = true;
                }
                consumed = end;
                break;
            }
            let keep_alive = head.keep_alive && !self.core.draining();
            let head_only = head.method == Method::Head;
            http::write_response(
                &mut self.wbuf,
                &self.reply,
                head.request_id,
                keep_alive,
                head_only,
            );
            consumed = end;
            if !keep_alive {
                close = true;
                break;
            }
        }
        self.rbuf.drain(..consumed);
        (consumed > 0, close)
    }

    /// Writes the write buffer out; false if the connection is gone.
    async fn flush(&mut self) -> bool {
        if self.wbuf.is_empty() {
            return true;
        }
        let limit = self.core.config.request_timeout;
        self.core.metrics.sent(self.wbuf.len());
        match timeout(limit, self.stream.write_all(std::mem::take(&mut self.wbuf))).await {
            Ok((Ok(_), mut buf)) => {
                buf.clear();
                self.wbuf = buf;
                true
            }
            _ => false,
        }
    }

    /// Half-closes, then reads and drops what the client still sends until it closes,
    /// [`LINGER`] passes or [`LINGER_MAX_BYTES`] arrive.
    async fn linger(mut self) {
        if self.stream.shutdown().await.is_err() {
            return;
        }
        let deadline = Instant::now() + LINGER;
        let mut buf = std::mem::take(&mut self.rbuf);
        let mut dropped = 0;
        while dropped < LINGER_MAX_BYTES {
            buf.clear();
            let left = deadline.saturating_duration_since(Instant::now());
            match timeout(left, read_more(&mut self.stream, buf)).await {
                Ok((Ok(n), back)) if n > 0 => {
                    dropped += n;
                    buf = back;
                }
                _ => return,
            }
        }
    }
}

/// Renders a request refused before it reached the router, and counts it.
fn refused(core: &Core, reply: &mut Reply, e: &Error) {
    e.render(reply);
    let route = crate::metrics::route_of("");
    core.metrics
        .request(route, reply.status(), 0, Some(e.code()));
}

/// Reads into the spare capacity of `buf` (monoio reads write from the start of the
/// buffer they are given, so the unparsed bytes must stay out of its way).
async fn read_more(stream: &mut TcpStream, mut buf: Vec<u8>) -> (std::io::Result<usize>, Vec<u8>) {
    if buf.capacity() - buf.len() < MIN_READ_BYTES {
        buf.reserve(READ_BUF_BYTES);
    }
    let (len, cap) = (buf.len(), buf.capacity());
    let (res, slice) = stream.read(buf.slice_mut(len..cap)).await;
    (res, slice.into_inner())
}
