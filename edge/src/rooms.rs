//! Each core's event streams (`crate::sse`), grouped by event: a room per event whose
//! admission changes wake its streams, a batch at a time.

use std::{
    cell::{Cell, RefCell},
    collections::HashMap,
    rc::Rc,
    task::Waker,
    time::Duration,
};

use monoio::time::sleep;
use slab::Slab;

/// Streams woken at once by a push; the next batch waits one timer tick.
pub const PUSH_BATCH: usize = 256;

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
                sleep(Duration::from_millis(1)).await;
            }
            batch.iter().for_each(Waker::wake_by_ref);
        }
    }
}

/// Each core's rooms, by event.
#[derive(Default)]
pub struct Rooms {
    pub(crate) map: RefCell<HashMap<String, Rc<Room>>>,
}

impl Rooms {
    /// Streams open on this core.
    pub fn streams(&self) -> usize {
        self.map.borrow().values().map(|r| r.len()).sum()
    }
}
