//! A small keep-alive HTTP/1.1 client on monoio: one request in flight per connection,
//! the request written in one write from a reused buffer, the response read into the
//! spare capacity of a reused buffer and framed by `Content-Length` (RFC 9112 section
//! 6.3). Enough for the edge and nginx, no more: no chunked bodies, no redirects.

use std::{io, net::SocketAddr, time::Duration};

use monoio::{
    buf::IoBufMut,
    io::{AsyncReadRent, AsyncWriteRentExt},
    net::TcpStream,
};

/// Largest response head or body accepted; past it the connection is dropped.
const MAX_RESPONSE_BYTES: usize = 16 << 20;
/// Headers parsed per response.
const MAX_HEADERS: usize = 32;
/// Spare room the read buffer keeps before each read.
const READ_CHUNK: usize = 16 << 10;

/// Why a request got no HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    Connect,
    Io,
    Timeout,
    BadResponse,
}

impl Failure {
    /// The pseudo status the statistics count it under (below 100: never an HTTP status).
    pub fn code(self) -> u16 {
        match self {
            Failure::Connect => 1,
            Failure::Io => 2,
            Failure::Timeout => 3,
            Failure::BadResponse => 4,
        }
    }

    pub fn name(code: u16) -> Option<&'static str> {
        Some(match code {
            1 => "connect error",
            2 => "I/O error",
            3 => "timeout",
            4 => "bad response",
            _ => return None,
        })
    }
}

/// One keep-alive connection to `addr`, reconnected on demand.
pub struct Conn {
    addr: SocketAddr,
    stream: Option<TcpStream>,
    /// The next request: callers clear it and write the whole request into it.
    pub req: Vec<u8>,
    read: Vec<u8>,
    /// Bytes of `read` that belong to the last response (removed before the next read).
    consumed: usize,
    body_at: usize,
    status: u16,
    /// Whether the last response carried `Retry-After`.
    retry_after: bool,
    /// Connections (re)opened, for the report.
    pub connects: u64,
}

impl Conn {
    pub fn new(addr: SocketAddr) -> Conn {
        Conn {
            addr,
            stream: None,
            req: Vec::with_capacity(1024),
            read: Vec::with_capacity(READ_CHUNK * 2),
            consumed: 0,
            body_at: 0,
            status: 0,
            retry_after: false,
            connects: 0,
        }
    }

    /// The body of the last response; empty when the last request got none.
    pub fn body(&self) -> &[u8] {
        self.read
            .get(self.body_at..self.consumed)
            .unwrap_or_default()
    }

    /// Forgets the last response: from now until the next one, no status, no body.
    fn forget_response(&mut self) {
        self.read.drain(..self.consumed.min(self.read.len()));
        self.consumed = 0;
        self.body_at = 0;
        self.status = 0;
        self.retry_after = false;
    }

    pub fn status(&self) -> u16 {
        self.status
    }

    /// Whether the last response carried a `Retry-After` header.
    pub fn retry_after(&self) -> bool {
        self.retry_after
    }

    /// Opens the connection now if it is not open (so a run starts with warm sockets).
    pub async fn ensure_connected(&mut self) -> Result<(), Failure> {
        if self.stream.is_none() {
            let stream = TcpStream::connect(self.addr)
                .await
                .map_err(|_| Failure::Connect)?;
            let _ = stream.set_nodelay(true);
            self.stream = Some(stream);
            self.connects += 1;
            self.read.clear();
            self.consumed = 0;
            self.body_at = 0;
        }
        Ok(())
    }

    /// Sends `self.req` and reads the response; the status, or why there is none (the
    /// connection is then dropped and reopened by the next call).
    pub async fn send(&mut self, timeout: Duration) -> Result<u16, Failure> {
        // A failed request must not leave the previous answer's body to be read as its
        // own (nor its offsets into a buffer a reconnect cleared: a panic).
        self.forget_response();
        match monoio::time::timeout(timeout, self.exchange()).await {
            Ok(Ok(status)) => Ok(status),
            Ok(Err(f)) => {
                self.stream = None;
                Err(f)
            }
            Err(_) => {
                self.stream = None;
                Err(Failure::Timeout)
            }
        }
    }

    async fn exchange(&mut self) -> Result<u16, Failure> {
        self.ensure_connected().await?;
        let Some(stream) = self.stream.as_mut() else {
            return Err(Failure::Connect);
        };
        let req = std::mem::take(&mut self.req);
        let (res, req) = stream.write_all(req).await;
        self.req = req;
        res.map_err(|_| Failure::Io)?;
        loop {
            if let Some(Head {
                status,
                body_at,
                end,
                close,
                retry_after,
            }) = parse(&self.read)?
            {
                self.status = status;
                self.retry_after = retry_after;
                self.body_at = body_at;
                self.consumed = end;
                if close {
                    self.stream = None;
                }
                return Ok(status);
            }
            if self.read.len() > MAX_RESPONSE_BYTES {
                return Err(Failure::BadResponse);
            }
            let Some(stream) = self.stream.as_mut() else {
                return Err(Failure::Io);
            };
            let mut buf = std::mem::take(&mut self.read);
            buf.reserve(READ_CHUNK);
            let len = buf.len();
            // monoio reads into the start of the buffer it is given: hand it the spare
            // capacity only, so unparsed bytes stay.
            let (res, slice) = stream.read(buf.slice_mut(len..)).await;
            self.read = slice.into_inner();
            match res {
                Ok(0) => return Err(Failure::Io),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Err(Failure::Io),
            }
        }
    }
}

/// A complete response at the start of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Head {
    status: u16,
    /// Where the body starts and the response ends.
    body_at: usize,
    end: usize,
    /// The server closes the connection after it.
    close: bool,
    /// It carries `Retry-After`.
    retry_after: bool,
}

/// The complete response at the start of `buf`; `None`: not enough bytes yet.
fn parse(buf: &[u8]) -> Result<Option<Head>, Failure> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    let head = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(Failure::BadResponse),
    };
    let status = resp.code.ok_or(Failure::BadResponse)?;
    let mut length = 0usize;
    let mut close = resp.version == Some(0);
    let mut retry_after = false;
    for h in resp.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            length = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse().ok())
                .ok_or(Failure::BadResponse)?;
        } else if h.name.eq_ignore_ascii_case("connection") {
            close = h.value.eq_ignore_ascii_case(b"close");
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(Failure::BadResponse);
        } else if h.name.eq_ignore_ascii_case("retry-after") {
            retry_after = true;
        }
    }
    // RFC 9110 section 6.4.1: 1xx, 204 and 304 have no body.
    if status == 204 || status == 304 || (100..200).contains(&status) {
        length = 0;
    }
    if length > MAX_RESPONSE_BYTES {
        return Err(Failure::BadResponse);
    }
    let end = head + length;
    Ok((buf.len() >= end).then_some(Head {
        status,
        body_at: head,
        end,
        close,
        retry_after,
    }))
}

/// Appends a request: `METHOD path HTTP/1.1`, Host, the extra header lines (each ending
/// in CRLF) and, with a body, its Content-Length and the body.
pub fn write_request(out: &mut Vec<u8>, method: &str, path: &str, extra: &[u8], body: &[u8]) {
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(path.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\nHost: loadgen\r\n");
    out.extend_from_slice(extra);
    if !body.is_empty() || method == "POST" {
        out.extend_from_slice(b"Content-Type: application/json\r\nContent-Length: ");
        codec::json::write_u64(out, body.len() as u64);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_frames_by_content_length_at_every_split() {
        let two = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloHTTP/1.1 304 Not Modified\r\nETag: x\r\n\r\n";
        let first_end = two.len() - "HTTP/1.1 304 Not Modified\r\nETag: x\r\n\r\n".len();
        for cut in 0..first_end {
            assert_eq!(parse(&two[..cut]).expect("valid"), None, "cut {cut}");
        }
        let head = parse(two).expect("valid").expect("complete");
        assert_eq!(
            (head.status, &two[head.body_at..head.end], head.close),
            (200, &b"hello"[..], false)
        );
        let rest = &two[head.end..];
        assert_eq!(
            parse(rest).expect("valid"),
            Some(Head {
                status: 304,
                body_at: rest.len(),
                end: rest.len(),
                close: false,
                retry_after: false
            })
        );
        let closing = b"HTTP/1.1 503 x\r\nconnection: close\r\ncontent-length: 0\r\n\r\n";
        let head = parse(closing).expect("valid").expect("complete");
        assert!(head.close && !head.retry_after);
        let later = b"HTTP/1.1 503 x\r\nRetry-After: 1\r\ncontent-length: 0\r\n\r\n";
        assert!(parse(later).expect("valid").expect("complete").retry_after);
        assert_eq!(parse(b"garbage\r\n\r\n"), Err(Failure::BadResponse));
    }

    /// A server that answers the first request of its first connection with a body,
    /// then closes every connection at its first byte.
    fn answer_once_then_close() -> SocketAddr {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        std::thread::spawn(move || {
            for (i, stream) in listener.incoming().enumerate() {
                let Ok(mut stream) = stream else { return };
                let mut buf = [0u8; 4096];
                if i == 0 {
                    let _ = stream.read(&mut buf);
                    let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello");
                }
                let _ = stream.read(&mut buf);
            }
        });
        addr
    }

    #[test]
    fn a_failed_request_has_no_body_and_does_not_panic() {
        let addr = answer_once_then_close();
        let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let mut conn = Conn::new(addr);
            write_request(&mut conn.req, "GET", "/", b"", b"");
            assert_eq!(conn.send(Duration::from_secs(5)).await, Ok(200));
            assert_eq!(conn.body(), b"hello");
            // The server drops the connection, then every new one: I/O errors, and
            // the status poll that reads the body after one must find none.
            for _ in 0..3 {
                assert!(conn.send(Duration::from_secs(5)).await.is_err());
                assert_eq!((conn.status(), conn.body()), (0, &b""[..]));
                assert!(!conn.retry_after());
            }
        });
    }

    #[test]
    fn requests_carry_their_length() {
        let mut out = Vec::new();
        write_request(&mut out, "POST", "/x", b"a: b\r\n", b"{}");
        assert_eq!(
            out,
            b"POST /x HTTP/1.1\r\nHost: loadgen\r\na: b\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
        );
    }
}
