use std::{
    collections::VecDeque,
    pin::Pin,
    task::{Context, Poll},
};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, ReadBuf};

use super::{decode, read_frame, Frame, Pipeline, RedisConfig, RedisError};

/// Replies of every RESP2 type, nested arrays, a bulk string holding CRLF, empties.
const REPLIES: &[u8] =
    b"+OK\r\n-ERR wrong\r\n:-42\r\n$5\r\nhe\r\nl\r\n$0\r\n\r\n$-1\r\n*0\r\n*-1\r\n\
*3\r\n:1\r\n*2\r\n$1\r\na\r\n+QUEUED\r\n$-1\r\n";

fn expected() -> Vec<Frame> {
    let bulk = |s: &'static [u8]| Frame::BulkString(Bytes::from_static(s));
    vec![
        Frame::SimpleString(Bytes::from_static(b"OK")),
        Frame::Error("ERR wrong".into()),
        Frame::Integer(-42),
        bulk(b"he\r\nl"),
        bulk(b""),
        Frame::Null,
        Frame::Array(vec![]),
        Frame::Null,
        Frame::Array(vec![
            Frame::Integer(1),
            Frame::Array(vec![
                bulk(b"a"),
                Frame::SimpleString(Bytes::from_static(b"QUEUED")),
            ]),
            Frame::Null,
        ]),
    ]
}

/// A reader that hands out its chunks one `read` at a time, as a socket might.
struct Chunks(VecDeque<Vec<u8>>);

impl AsyncRead for Chunks {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if let Some(mut chunk) = self.0.pop_front() {
            let n = chunk.len().min(buf.remaining());
            buf.put_slice(&chunk[..n]);
            if n < chunk.len() {
                self.0.push_front(chunk.split_off(n));
            }
        }
        Poll::Ready(Ok(()))
    }
}

async fn read_all(chunks: Vec<Vec<u8>>) -> Result<Vec<Frame>, RedisError> {
    // An empty read means end of stream, so no empty chunks.
    let mut reader = Chunks(chunks.into_iter().filter(|c| !c.is_empty()).collect());
    let mut rbuf = BytesMut::new();
    let mut frames = Vec::new();
    for _ in 0..expected().len() {
        frames.push(read_frame(&mut reader, &mut rbuf).await?);
    }
    assert!(rbuf.is_empty(), "bytes left over: {rbuf:?}");
    Ok(frames)
}

#[tokio::test]
async fn replies_split_at_every_byte_decode_the_same() {
    for at in 0..=REPLIES.len() {
        let chunks = vec![REPLIES[..at].to_vec(), REPLIES[at..].to_vec()];
        assert_eq!(
            read_all(chunks).await.expect("decodes"),
            expected(),
            "split at {at}"
        );
    }
    let bytewise = REPLIES.iter().map(|&b| vec![b]).collect();
    assert_eq!(read_all(bytewise).await.expect("decodes"), expected());
}

#[test]
fn a_partial_reply_is_not_an_error_and_stays_buffered() {
    // Every proper prefix of one reply: "need more bytes", the prefix kept whole.
    let reply = b"*2\r\n$3\r\nabc\r\n:7\r\n";
    for at in 0..reply.len() {
        let mut rbuf = BytesMut::from(&reply[..at]);
        assert_eq!(
            decode(&mut rbuf).expect("no error"),
            None,
            "prefix of {at} bytes"
        );
        assert_eq!(&rbuf[..], &reply[..at]);
    }
}

#[tokio::test]
async fn a_closed_stream_mid_reply_is_closed_not_a_hang() {
    let mut reader = Chunks(vec![b"$10\r\nabc".to_vec()].into());
    let err = read_frame(&mut reader, &mut BytesMut::new())
        .await
        .expect_err("closed");
    assert!(matches!(err, RedisError::Closed), "{err:?}");
}

#[test]
fn garbage_is_a_protocol_error() {
    let mut rbuf = BytesMut::from(&b"?what\r\n"[..]);
    assert!(matches!(decode(&mut rbuf), Err(RedisError::Protocol(_))));
}

#[test]
fn pipelines_are_commands_back_to_back() {
    let mut p = Pipeline::new();
    p.push(&[b"SET", b"k", b"v"]).push(&[b"GET", b"k"]);
    assert_eq!(p.len(), 2);
    assert_eq!(
        p.buf,
        b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"
    );
}

#[test]
fn urls_give_address_credentials_and_db() {
    let c = RedisConfig::from_url("redis://127.0.0.1:16379").expect("url");
    assert_eq!(
        (c.addr.as_str(), c.username, c.password, c.db),
        ("127.0.0.1:16379", None, None, 0)
    );
    let c = RedisConfig::from_url("redis://app:p%40ss:w@cache.local/3").expect("url");
    assert_eq!(c.addr, "cache.local:6379");
    assert_eq!(
        (c.username.as_deref(), c.password.as_deref(), c.db),
        (Some("app"), Some("p@ss:w"), 3)
    );
    assert!(!c.tls);
    let c = RedisConfig::from_url("rediss://master.cache.amazonaws.com").expect("url");
    assert!(c.tls);
    let c = RedisConfig::from_url("redis://:secret@[::1]:7000").expect("url");
    assert_eq!(
        (c.addr.as_str(), c.username, c.password.as_deref()),
        ("[::1]:7000", None, Some("secret"))
    );
    assert_eq!(
        RedisConfig::from_url("redis://[::1]").expect("url").addr,
        "[::1]:6379"
    );
    assert!(!format!(
        "{:?}",
        RedisConfig::from_url("redis://:hunter2@h").expect("url")
    )
    .contains("hunter2"));
}

#[test]
fn bad_urls_are_refused() {
    for url in [
        "http://h",
        "redis://",
        "redis://:6379",
        "redis://h/x",
        "redis://u:%zz@h",
        "127.0.0.1:6379",
    ] {
        assert!(RedisConfig::from_url(url).is_err(), "{url}");
    }
}
