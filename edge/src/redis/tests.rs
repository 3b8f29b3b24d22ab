//! Sans-socket tests of reply matching: replies fed split at every byte.

use bytes::BytesMut;

use super::*;

fn inner() -> Inner {
    Inner {
        config: RedisConfig::from_url("redis://127.0.0.1:1").expect("url"),
        connected: true,
        was_connected: true,
        wbuf: Vec::new(),
        unwritten: 0,
        open: Vec::new(),
        fifo: VecDeque::new(),
        slots: Slab::new(),
        waiting: 0,
        writer: None,
        on_connect: Vec::new(),
        stalled: false,
        closed: false,
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

/// One waiting command for each reply of [`REPLIES`], in order.
fn waiting_for_replies(inner: &mut Inner) -> Vec<usize> {
    (0..expected().len())
        .map(|_| {
            let slot = inner.slots.insert(Slot::Waiting(None));
            inner.fifo.push_back(Waiters::One(slot));
            inner.waiting += 1;
            slot
        })
        .collect()
}

fn assert_each_got_its_reply(inner: &mut Inner, slots: Vec<usize>, how: &str) {
    assert!(inner.fifo.is_empty(), "{how}");
    for (slot, want) in slots.into_iter().zip(expected()) {
        match inner.slots.remove(slot) {
            Slot::Done(got) => assert_eq!(got, want, "{how}"),
            _ => panic!("slot {slot} not answered ({how})"),
        }
    }
}

#[test]
fn replies_split_at_every_byte_reach_their_commands_in_order() {
    for split in 0..=REPLIES.len() {
        let mut inner = inner();
        let slots = waiting_for_replies(&mut inner);
        let mut rbuf = BytesMut::new();
        for part in [&REPLIES[..split], &REPLIES[split..]] {
            rbuf.extend_from_slice(part);
            driver::deliver_all(&mut inner, &mut rbuf).expect("valid replies");
        }
        assert!(rbuf.is_empty(), "split at {split}");
        assert_each_got_its_reply(&mut inner, slots, &format!("split at {split}"));
        assert_eq!(inner.stats.server_errors, 1);
    }
}

#[test]
fn replies_fed_a_byte_at_a_time_reach_their_commands_in_order() {
    let mut inner = inner();
    let slots = waiting_for_replies(&mut inner);
    let mut rbuf = BytesMut::new();
    for byte in REPLIES.chunks(1) {
        rbuf.extend_from_slice(byte);
        driver::deliver_all(&mut inner, &mut rbuf).expect("valid replies");
    }
    assert!(rbuf.is_empty());
    assert_each_got_its_reply(&mut inner, slots, "a byte at a time");
}

#[test]
fn abandoned_slots_drop_their_reply_and_the_next_command_gets_its_own() {
    let mut inner = inner();
    let first = inner.slots.insert(Slot::Abandoned);
    let second = inner.slots.insert(Slot::Waiting(None));
    inner
        .fifo
        .extend([Waiters::One(first), Waiters::One(second)]);
    inner.waiting = 2;
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
    inner
        .fifo
        .extend([Waiters::One(waiting), Waiters::One(abandoned)]);
    inner.waiting = 2;
    inner.wbuf.extend_from_slice(b"*1\r\n$4\r\nPING\r\n");
    inner.on_disconnected();
    assert!(!inner.connected && inner.wbuf.is_empty() && inner.fifo.is_empty());
    assert_eq!(inner.stats.disconnected, 2, "both failed in flight");
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
    assert_eq!(stats.mean_depth(), 1025.0 / 7.0);
}

fn batch(inner: &mut Inner, calls: usize) -> Vec<usize> {
    let slots: Vec<usize> = (0..calls)
        .map(|_| inner.slots.insert(Slot::Waiting(None)))
        .collect();
    inner.waiting += calls;
    inner.fifo.push_back(Waiters::Batch(slots.clone()));
    slots
}

fn take(inner: &mut Inner, slot: usize) -> Result<Frame, RedisError> {
    match inner.slots.remove(slot) {
        Slot::Done(reply) => reply,
        _ => panic!("slot {slot} not answered"),
    }
}

#[test]
fn a_batch_reply_is_shared_out_an_element_a_call_and_an_error_to_all() {
    let mut inner = inner();
    let ok = batch(&mut inner, 2);
    let failed = batch(&mut inner, 2);
    let misshapen = batch(&mut inner, 2);
    let mut rbuf = BytesMut::from(&b"*2\r\n:7\r\n$1\r\nb\r\n-ERR boom\r\n*1\r\n:1\r\n"[..]);
    driver::deliver_all(&mut inner, &mut rbuf).expect("valid replies");
    assert_eq!(take(&mut inner, ok[0]), Ok(Frame::Integer(7)));
    assert_eq!(take(&mut inner, ok[1]), Ok(Frame::BulkString("b".into())));
    for slot in failed {
        assert_eq!(
            take(&mut inner, slot),
            Err(RedisError::Server("ERR boom".into()))
        );
    }
    for slot in misshapen {
        assert!(matches!(
            take(&mut inner, slot),
            Err(RedisError::Protocol(_))
        ));
    }
    assert_eq!(inner.waiting, 0);
    let stats = inner.stats;
    assert_eq!(
        (stats.server_errors, stats.protocol_errors),
        (2, 2),
        "callers"
    );
}

#[test]
fn disconnect_fails_the_calls_of_open_and_sent_batches() {
    let mut inner = inner();
    let sent = batch(&mut inner, 2);
    let open = inner.slots.insert(Slot::Waiting(None));
    inner.waiting += 1;
    inner.open.push(OpenBatch {
        script: Rc::new(BatchScript::new("return {}", Vec::new(), 8)),
        group: Vec::new(),
        used: true,
        keys: Vec::new(),
        key_count: 0,
        args: Vec::new(),
        arg_count: 0,
        slots: vec![open],
    });
    inner.on_disconnected();
    for slot in sent.into_iter().chain([open]) {
        assert_eq!(take(&mut inner, slot), Err(RedisError::Disconnected));
    }
    assert!(inner.open[0].slots.is_empty() && inner.fifo.is_empty() && inner.waiting == 0);
}

#[test]
fn a_sealed_batch_is_one_evalsha_keys_then_shared_then_each_calls_arguments_once() {
    let mut inner = inner();
    let script = Rc::new(BatchScript::new("return {}", vec![b"s".to_vec()], 8));
    let mut batch = OpenBatch {
        script: script.clone(),
        group: Vec::new(),
        used: true,
        keys: Vec::new(),
        key_count: 2,
        args: Vec::new(),
        arg_count: 2,
        slots: vec![0],
    };
    codec::resp::write_bulks(&mut batch.keys, &[b"k1", b"k2"]);
    codec::resp::write_bulks(&mut batch.args, &[b"a1", b"a2"]);
    inner.open.push(batch);
    inner.seal(0);
    let mut want = Vec::new();
    codec::resp::write_command(
        &mut want,
        &[&[
            b"EVALSHA",
            script.script.sha().as_bytes(),
            b"2",
            b"k1",
            b"k2",
            b"s",
            b"a1",
            b"a2",
        ]],
    );
    assert_eq!(inner.wbuf, want);
    assert_eq!(inner.unwritten, 1);
    inner.seal(0);
    assert_eq!(inner.wbuf, want, "an emptied batch writes nothing");
    inner.seal_open();
    assert_eq!(inner.open.len(), 1, "it took a call since the last write");
    inner.wbuf.clear();
    inner.seal_open();
    assert_eq!(inner.open.len(), 1, "nothing to write, nothing dropped");
    inner.wbuf.extend_from_slice(b"*1\r\n$4\r\nPING\r\n");
    inner.seal_open();
    assert!(
        inner.open.is_empty(),
        "an idle group's batch goes with the next write"
    );
}

#[test]
fn a_transaction_is_written_whole_and_only_execs_reply_reaches_its_caller() {
    let client = Node {
        inner: Rc::new(RefCell::new(inner())),
    };
    let mut commands = Vec::new();
    codec::resp::write_command(&mut commands, &[&[b"SET", b"k", b"v"]]);
    codec::resp::write_command(&mut commands, &[&[b"INCR", b"n"]]);
    let mut pending = client.send_transaction(&commands, 2);
    {
        let inner = client.inner.borrow();
        let mut want = b"*1\r\n$5\r\nMULTI\r\n".to_vec();
        want.extend_from_slice(&commands);
        want.extend_from_slice(b"*1\r\n$4\r\nEXEC\r\n");
        assert_eq!(inner.wbuf, want);
        assert_eq!(
            (inner.unwritten, inner.waiting, inner.fifo.len()),
            (4, 4, 4)
        );
    }
    let mut rbuf = BytesMut::from(&b"+OK\r\n+QUEUED\r\n+QUEUED\r\n*2\r\n+OK\r\n:1\r\n"[..]);
    driver::deliver_all(&mut client.inner.borrow_mut(), &mut rbuf).expect("valid");
    let waker = std::task::Waker::noop();
    let reply = Pin::new(&mut pending).poll(&mut Context::from_waker(waker));
    assert_eq!(
        reply,
        Poll::Ready(Ok(Frame::Array(vec![
            Frame::SimpleString("OK".into()),
            Frame::Integer(1)
        ])))
    );
    let inner = client.inner.borrow();
    assert_eq!((inner.waiting, inner.slots.len()), (0, 0));
}

#[test]
fn a_transaction_past_the_in_flight_bound_is_refused_whole() {
    let mut bounded = inner();
    bounded.config.max_in_flight = 3;
    let client = Node {
        inner: Rc::new(RefCell::new(bounded)),
    };
    let mut commands = Vec::new();
    codec::resp::write_command(&mut commands, &[&[b"SET", b"k", b"v"]]);
    codec::resp::write_command(&mut commands, &[&[b"INCR", b"n"]]);
    let mut pending = client.send_transaction(&commands, 2);
    let waker = std::task::Waker::noop();
    let reply = Pin::new(&mut pending).poll(&mut Context::from_waker(waker));
    assert_eq!(reply, Poll::Ready(Err(RedisError::Overloaded)));
    let inner = client.inner.borrow();
    assert!(inner.wbuf.is_empty() && inner.fifo.is_empty());
}
