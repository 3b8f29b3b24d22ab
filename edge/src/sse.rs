//! Server-Sent Events for the waiting room (`GET /public/room-events`, WHATWG HTML
//! section 9.2): `{position, etaSec, ready}` pushed instead of polled.
//!
//! Once `room-events` has checked the token, the connection's task hands the socket to
//! a task of its own ([`stream`]) and ends, so an idle stream keeps none of the
//! connection's buffers: what it holds is this small task, one boxed timer, a
//! [`CLOSED_READ_BYTES`] read buffer and its slot in its event's
//! [`Room`](crate::rooms::Room). A frame's buffer lives only while it is written.
//!
//! Each stream sends an event when its state changes (`data:` one JSON object, with an
//! `id:`), a comment every [`HEARTBEAT`] so proxies keep the connection, `retry:` once,
//! and ends after `ready` (sent once). Its own timer wakes it when the rate admits its
//! position; an admission change (the operator's, or an active-limited line moving on)
//! is seen by the room's watcher on the core's event refresh and pushed to every
//! stream of the event, [`PUSH_BATCH`](crate::rooms::PUSH_BATCH) at a time with a timer tick in between, so the
//! core serves requests (holds) between batches instead of after the whole push.
//! With an `activeLimit`, the watcher also records every streaming buyer as present
//! (`ev:{E}:seen`), so a connected buyer is never dropped for not polling.

use std::{
    future::poll_fn,
    rc::Rc,
    task::Poll,
    time::{Duration, Instant},
};

use codec::{
    json::{write_str, write_u64},
    keys, now_ms,
    store::{Place, Poll as PollCall},
};
use monoio::{
    io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt, OwnedReadHalf, Splitable},
    net::TcpStream,
    time::{sleep, Instant as TimerInstant},
};

use crate::{
    core::{Core, Registration},
    http::Subscription,
    rooms::Room,
    token::RoomToken,
};

/// A comment line this often keeps idle proxies (ALB: 60 s) from closing the stream.
pub const HEARTBEAT: Duration = Duration::from_secs(15);
/// What a client waits before reconnecting (`retry:`).
const RETRY_MS: u64 = 3_000;
/// A stream's write must finish within this, else the stream ends.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Presence members per `ZADD`.
const PRESENCE_BATCH: usize = 1_000;
/// A client sends nothing on an event stream; this buffer only sees the stream end.
const CLOSED_READ_BYTES: usize = 16;
/// An event's frame without a token fits (`id:` and `data:` lines, about 70 bytes).
const FRAME_BYTES: usize = 128;

/// The response head of an event stream: no length, the body ends when the
/// connection does (RFC 9112 section 6.3, rule 8). `headers`: the reply's own lines
/// (CORS's, for an `EventSource` on another origin).
pub fn write_head(out: &mut Vec<u8>, request_id: Option<&[u8]>, headers: &[u8]) {
    out.extend_from_slice(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-store\r\nx-request-id: ");
    match request_id {
        Some(id) => out.extend_from_slice(id),
        None => crate::ids::write_next(out),
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(headers);
    out.extend_from_slice(b"connection: close\r\n\r\nretry: ");
    write_u64(out, RETRY_MS);
    out.extend_from_slice(b"\n\n");
}

/// A stream's place in its room; leaves it when dropped.
struct Member {
    room: Rc<Room>,
    key: usize,
    seen: u64,
}

impl Member {
    fn join(core: &Rc<Core>, event: &str, user: &str) -> Member {
        let room = core.rooms.map.borrow().get(event).cloned();
        let room = room.unwrap_or_else(|| {
            let room = Rc::new(Room::default());
            core.rooms
                .map
                .borrow_mut()
                .insert(event.to_owned(), room.clone());
            // The state the first stream was answered from: a change after it, even
            // one before the watcher's first look, is pushed.
            let seen = core.events.cached(event).map(|e| state_of(&e));
            monoio::spawn(watch(core.clone(), event.to_owned(), room.clone(), seen));
            room
        });
        let key = room.members.borrow_mut().insert((None, user.into()));
        let seen = room.generation.get();
        Member { room, key, seen }
    }

    /// Until the next push.
    async fn changed(&mut self) {
        poll_fn(|cx| {
            let now = self.room.generation.get();
            if now != self.seen {
                self.seen = now;
                return Poll::Ready(());
            }
            if let Some((waker, _)) = self.room.members.borrow_mut().get_mut(self.key) {
                *waker = Some(cx.waker().clone());
            }
            Poll::Pending
        })
        .await
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.room.members.borrow_mut().try_remove(self.key);
    }
}

/// What a push is for: the admission state, and whether the draw is done.
type State = (crate::events::Admission, bool);

fn state_of(event: &crate::events::Event) -> State {
    (event.admission, event.fairness.seed.is_some())
}

/// A room's watcher: follows the event on the core's refresh, pushes every change of
/// its admission state to the room's streams, keeps them present in an active-limited
/// line; ends with the last stream.
async fn watch(core: Rc<Core>, event: String, room: Rc<Room>, mut last: Option<State>) {
    let mut presence_at = Instant::now();
    loop {
        sleep(core.config.event_refresh).await;
        if room.is_empty() {
            core.rooms.map.borrow_mut().remove(&event);
            return;
        }
        let Ok(e) = core.events.get(&core.redis, &event).await else {
            continue;
        };
        let state = state_of(&e);
        if last.is_some_and(|l| l != state) {
            room.push().await;
        }
        last = Some(state);
        let every = core.config.abandon_after / 3;
        if e.admission.active_limit > 0 && !every.is_zero() && presence_at.elapsed() >= every {
            presence_at = Instant::now();
            let users: Vec<Box<str>> = room
                .members
                .borrow()
                .iter()
                .map(|(_, (_, u))| u.clone())
                .collect();
            let (key, now) = (keys::seen(&event), now_ms().to_string());
            for chunk in users.chunks(PRESENCE_BATCH) {
                let mut args: Vec<&[u8]> = vec![b"ZADD", key.as_bytes(), b"XX"];
                for user in chunk {
                    args.extend([now.as_bytes(), user.as_bytes()]);
                }
                // Lost presence only risks a drop ABANDON_AFTER_MS later; the next
                // round retries.
                let _ = core.redis.query(&args).await;
            }
        }
    }
}

/// Reads until the client closes (or the drain shuts the socket): the stream's end.
async fn closed(mut read: OwnedReadHalf<TcpStream>) {
    let mut buf = Vec::with_capacity(CLOSED_READ_BYTES);
    loop {
        buf.clear();
        let (res, back) = read.read(buf).await;
        match res {
            Ok(n) if n > 0 => buf = back,
            _ => return,
        }
    }
}

/// The stream, until `ready` is sent, the client leaves, a write fails or the token
/// expires.
pub(crate) async fn stream(
    registration: Registration,
    stream: TcpStream,
    core: Rc<Core>,
    mut sub: Box<Subscription>,
) {
    // Idle from the core's point of view: a drain shuts it down, and `closed` ends.
    registration.slot.idle.set(true);
    let mut member = Member::join(&core, &sub.event, &sub.user);
    let (read, mut write) = stream.into_split();
    let mut closed = std::pin::pin!(closed(read));
    // One timer for the stream's life, re-armed for each wait (the write's deadline,
    // the next heartbeat or admission). Boxed: monoio's timer entry is 640 bytes
    // aligned to 128, and inline it would set the size and alignment of every idle
    // stream's task (1,920 bytes with two of them).
    let mut timer = Box::pin(sleep(HEARTBEAT));
    let mut last: Option<(u64, u64, bool)> = None;
    let mut last_write = Instant::now();
    loop {
        let now = now_ms();
        if now >= sub.expires_ms {
            return;
        }
        let Some(event) = core.events.cached(&sub.event) else {
            return;
        };
        if sub.position == 0 && event.fairness.seed.is_some() {
            // Drawn: this buyer's place, and a token that carries it. Boxed: the Redis
            // call's future is large and an idle stream never holds it.
            let place = Box::pin(core.store.poll(&PollCall {
                event: &sub.event,
                user: &sub.user,
            }))
            .await;
            match place {
                Ok(Place::At(p)) => {
                    sub.position = p;
                    sub.reissued = Some(core.tokens.sign(&RoomToken {
                        event: &sub.event,
                        user: &sub.user,
                        position: p,
                        issued_ms: sub.issued_ms,
                        expires_ms: sub.expires_ms,
                    }));
                }
                Ok(Place::Prequeued) => {}
                Ok(Place::Gone) | Err(_) => return,
            }
        }
        let wait_ms = event.admission.wait_ms(sub.position, now);
        let state = (sub.position, wait_ms.div_ceil(1000), wait_ms == 0);
        let mut out = Vec::new();
        if last != Some(state) {
            sub.last_id += 1;
            out.reserve(FRAME_BYTES);
            write_event(&mut out, sub.last_id, state, sub.reissued.take());
            last = Some(state);
        } else if last_write.elapsed() >= HEARTBEAT {
            out.extend_from_slice(b": heartbeat\n\n");
        }
        if !out.is_empty() {
            timer.as_mut().reset(TimerInstant::now() + WRITE_TIMEOUT);
            monoio::select! {
                (written, _) = write.write_all(out) => if written.is_err() { return },
                _ = &mut timer => return,
            }
            last_write = Instant::now();
        }
        if state.2 {
            // `ready` is sent once; the client goes on to hold.
            let _ = write.shutdown().await;
            return;
        }
        let until_heartbeat = HEARTBEAT.saturating_sub(last_write.elapsed());
        let nap = until_heartbeat.min(Duration::from_millis(wait_ms.max(1)));
        timer.as_mut().reset(TimerInstant::now() + nap);
        monoio::select! {
            _ = &mut closed => {
                // The client left: the stream ends in its turn (`Ends`), which keeps a
                // mass disconnect from holding the core.
                drop(member);
                core.rooms.ends.turn().await;
                return;
            },
            _ = member.changed() => {},
            _ = &mut timer => {},
        }
    }
}

fn write_event(
    out: &mut Vec<u8>,
    id: u64,
    (position, eta_sec, ready): (u64, u64, bool),
    token: Option<String>,
) {
    out.extend_from_slice(b"id: ");
    write_u64(out, id);
    out.extend_from_slice(b"\ndata: {\"position\":");
    write_u64(out, position);
    out.extend_from_slice(b",\"etaSec\":");
    write_u64(out, eta_sec);
    out.extend_from_slice(if ready {
        b",\"ready\":true"
    } else {
        b",\"ready\":false"
    });
    if let Some(token) = token {
        out.extend_from_slice(b",\"roomToken\":");
        write_str(out, token.as_bytes());
    }
    out.extend_from_slice(b"}\n\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn future_of<A, B, C, D, F>(_: fn(A, B, C, D) -> F) -> (usize, usize) {
        (std::mem::size_of::<F>(), std::mem::align_of::<F>())
    }

    /// Every idle stream is one of these tasks: a timer or a Redis call held inline
    /// would make each of them kilobytes (1,920 bytes, aligned to 128, with the
    /// write's and the wait's timers inline).
    #[test]
    fn an_idle_streams_task_stays_small() {
        let (size, align) = future_of(stream);
        assert!(size <= 1024, "stream task future: {size} bytes");
        assert!(align <= 16, "stream task future aligned to {align}");
    }
}
