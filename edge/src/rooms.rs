//! Each core's event streams (`crate::sse`), grouped by event: a room per event whose
//! admission changes wake its streams, a batch at a time; and the pace at which
//! streams whose clients left may end.

use std::{
    cell::{Cell, RefCell},
    collections::{HashMap, VecDeque},
    future::poll_fn,
    rc::Rc,
    task::{Poll, Waker},
    time::Duration,
};

use monoio::time::sleep;
use slab::Slab;

/// Streams woken at once by a push (or let end, [`Ends`]); the next batch waits for the
/// next timer tick, which comes after the core has polled its sockets, so requests that
/// arrived meanwhile are served between batches. A pushed frame costs the core about
/// 20 µs (most of it the kernel's TCP send): 64 of them hold it about 1.3 ms.
pub const PUSH_BATCH: usize = 64;
/// Between two batches.
const TICK: Duration = Duration::from_millis(1);

/// One event's streams on one core.
#[derive(Default)]
pub struct Room {
    pub(crate) generation: Cell<u64>,
    /// Per stream: its waker while it waits, and its user (for presence).
    pub(crate) members: RefCell<Slab<(Option<Waker>, Box<str>)>>,
}

impl Room {
    pub fn len(&self) -> usize {
        self.members.borrow().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Wakes every stream, [`PUSH_BATCH`] at a time, yielding to the core's I/O between
    /// batches.
    pub(crate) async fn push(&self) {
        self.generation.set(self.generation.get() + 1);
        let wakers: Vec<Waker> = self
            .members
            .borrow_mut()
            .iter_mut()
            .filter_map(|(_, (waker, _))| waker.take())
            .collect();
        for (i, batch) in wakers.chunks(PUSH_BATCH).enumerate() {
            if i > 0 {
                sleep(TICK).await;
            }
            batch.iter().for_each(Waker::wake_by_ref);
        }
    }
}

/// Each core's rooms, by event.
#[derive(Default)]
pub struct Rooms {
    pub(crate) map: RefCell<HashMap<String, Rc<Room>>>,
    pub(crate) ends: Rc<Ends>,
}

/// Paces the ends of streams whose clients left. When every client goes at once (a
/// client process or a proxy restarting), epoll hands the core 1,024 ended streams a
/// poll, and each end is a FIN and a deregistration (about as costly as a pushed
/// frame): unpaced, 18,500 ends held the core's requests back 0.2-1.5 s. Each end waits
/// for its turn, [`PUSH_BATCH`] a timer tick, first come first served.
#[derive(Default)]
pub struct Ends {
    /// Turns handed out, and turns let through.
    issued: Cell<u64>,
    allowed: Cell<u64>,
    /// By ticket, in the order they were handed out; a task polled again while it waits
    /// adds itself again (harmless: woken twice, or after it ended).
    waiters: RefCell<VecDeque<(u64, Waker)>>,
    pacing: Cell<bool>,
}

impl Ends {
    /// Until this stream may end.
    pub(crate) async fn turn(self: &Rc<Self>) {
        let ticket = self.issued.get();
        self.issued.set(ticket + 1);
        if !self.pacing.replace(true) {
            monoio::spawn(self.clone().pace());
        }
        poll_fn(|cx| {
            if ticket < self.allowed.get() {
                return Poll::Ready(());
            }
            self.waiters
                .borrow_mut()
                .push_back((ticket, cx.waker().clone()));
            Poll::Pending
        })
        .await
    }

    /// Lets [`PUSH_BATCH`] turns through a tick while any wait.
    async fn pace(self: Rc<Self>) {
        loop {
            let allowed = (self.allowed.get() + PUSH_BATCH as u64).min(self.issued.get());
            self.allowed.set(allowed);
            let mut batch = Vec::new();
            {
                let mut waiters = self.waiters.borrow_mut();
                while waiters.front().is_some_and(|(ticket, _)| *ticket < allowed) {
                    batch.extend(waiters.pop_front().map(|(_, waker)| waker));
                }
            }
            batch.into_iter().for_each(Waker::wake);
            if allowed == self.issued.get() {
                self.pacing.set(false);
                return;
            }
            sleep(TICK).await;
        }
    }
}

impl Rooms {
    /// Streams open on this core.
    pub fn streams(&self) -> usize {
        self.map.borrow().values().map(|r| r.len()).sum()
    }
}
