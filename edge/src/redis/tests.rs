//! Sans-socket tests of reply matching: replies fed split at every byte.

use bytes::BytesMut;

use super::*;

fn inner() -> Inner {
    Inner {
        config: RedisConfig::from_url("redis://127.0.0.1:1").expect("url"),
        connected: true,
        wbuf: Vec::new(),
        unwritten: 0,
        fifo: VecDeque::new(),
        slots: Slab::new(),
        writer: None,
        on_connect: Vec::new(),
        stalled: false,
        stats: Stats::default(),
    }
}

const REPLIES: &[u8] = b"+OK\r\n$5\r\nhello\r\n-WRONGTYPE Operation against a key\r\n:42\r\n$-1\r\n*2\r\n$1\r\na\r\n:7\r\n$0\r\n\r\n";

fn expected() -> Vec<Result<Frame, RedisError>> {
    vec![
        Ok(Frame::SimpleString("OK".into())),
        Ok(Frame::BulkString("hello".into())),
        Err(RedisError::Server(
            "WRONGTYPE Operation against a key".into(),
        )),
        Ok(Frame::Integer(42)),
        Ok(Frame::Null),
        Ok(Frame::Array(vec![
            Frame::BulkString("a".into()),
            Frame::Integer(7),
        ])),
        Ok(Frame::BulkString("".into())),
    ]
}

#[test]
fn replies_split_at_every_byte_reach_their_commands_in_order() {
    for split in 0..=REPLIES.len() {
        let mut inner = inner();
        let slots: Vec<usize> = (0..expected().len())
            .map(|_| {
                let slot = inner.slots.insert(Slot::Waiting(None));
                inner.fifo.push_back(slot);
                slot
            })
            .collect();
        let mut rbuf = BytesMut::new();
        for part in [&REPLIES[..split], &REPLIES[split..]] {
            rbuf.extend_from_slice(part);
            driver::deliver_all(&mut inner, &mut rbuf).expect("valid replies");
        }
        assert!(rbuf.is_empty() && inner.fifo.is_empty(), "split at {split}");
        for (slot, want) in slots.into_iter().zip(expected()) {
            match inner.slots.remove(slot) {
                Slot::Done(got) => assert_eq!(got, want, "split at {split}"),
                _ => panic!("slot {slot} not answered (split at {split})"),
            }
        }
        assert_eq!(inner.stats.server_errors, 1);
    }
}

#[test]
fn abandoned_slots_drop_their_reply_and_the_next_command_gets_its_own() {
    let mut inner = inner();
    let first = inner.slots.insert(Slot::Abandoned);
    let second = inner.slots.insert(Slot::Waiting(None));
    inner.fifo.extend([first, second]);
    let mut rbuf = BytesMut::from(&b":1\r\n:2\r\n"[..]);
    driver::deliver_all(&mut inner, &mut rbuf).expect("valid");
    assert!(!inner.slots.contains(first));
    assert!(matches!(
        inner.slots.remove(second),
        Slot::Done(Ok(Frame::Integer(2)))
    ));
}

#[test]
fn a_reply_nobody_waits_for_is_a_protocol_error() {
    let mut inner = inner();
    let mut rbuf = BytesMut::from(&b"+OK\r\n"[..]);
    assert!(matches!(
        driver::deliver_all(&mut inner, &mut rbuf),
        Err(RedisError::Protocol(_))
    ));
}

#[test]
fn disconnect_fails_every_waiter() {
    let mut inner = inner();
    let waiting = inner.slots.insert(Slot::Waiting(None));
    let abandoned = inner.slots.insert(Slot::Abandoned);
    inner.fifo.extend([waiting, abandoned]);
    inner.wbuf.extend_from_slice(b"*1\r\n$4\r\nPING\r\n");
    inner.on_disconnected();
    assert!(!inner.connected && inner.wbuf.is_empty() && inner.fifo.is_empty());
    assert!(matches!(
        inner.slots.remove(waiting),
        Slot::Done(Err(RedisError::Disconnected))
    ));
    assert!(inner.slots.is_empty());
}

#[test]
fn depth_buckets_are_powers_of_two() {
    let mut stats = Stats::default();
    for commands in [1, 2, 3, 4, 7, 8, 1000] {
        stats.record_write(commands);
    }
    assert_eq!(&stats.depth[..4], &[1, 2, 2, 1]);
    assert_eq!(stats.depth[9], 1);
}
