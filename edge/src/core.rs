//! One core's state, shared by its tasks through `Rc`: what every handler takes. It
//! sits below the handlers and above the parts it holds (Redis client and scripts,
//! event copies, token keys, response cache, side thread), so a handler can be run
//! against a real Redis with a `Core` built in a test, no server needed.

use std::{
    cell::{Cell, RefCell},
    collections::HashMap,
    future::poll_fn,
    os::fd::{AsRawFd, RawFd},
    rc::Rc,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    task::{Poll, Waker},
};

use crate::{
    cache::Responses,
    config::Config,
    events::Events,
    metrics::{CoreMetrics, Registry},
    redis::Client,
    side::Side,
    store::Store,
    token::Keys,
};

/// State every core may read.
#[derive(Debug, Default)]
pub struct Shared {
    draining: AtomicBool,
    /// Every core's metrics, for the scrape.
    pub metrics: Registry,
}

impl Shared {
    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }
}

pub struct Core {
    pub id: usize,
    pub config: Arc<Config>,
    pub shared: Arc<Shared>,
    pub redis: Client,
    /// The scripts, run on `redis`.
    pub store: Store,
    pub events: Events,
    pub tokens: Keys,
    /// Rendered `summary` and `seats` bodies.
    pub cache: Responses,
    /// The side thread: SQS sends and the DynamoDB hold mirror (aws profile), order
    /// look-ups in PostgreSQL (`DATABASE_URL`).
    pub side: Option<Side>,
    /// This core's counters; only this core writes them.
    pub metrics: Arc<CoreMetrics>,
    conns: RefCell<HashMap<u64, Rc<ConnSlot>>>,
    next_conn: Cell<u64>,
    all_closed: RefCell<Option<Waker>>,
}

/// What the core knows of one of its connections, to close it when idle at drain.
pub struct ConnSlot {
    fd: RawFd,
    /// Waiting for the first byte of a request: closing it loses nothing.
    pub idle: Cell<bool>,
}

/// Keeps a connection in its core's registry while alive.
pub struct Registration {
    core: Rc<Core>,
    id: u64,
    pub slot: Rc<ConnSlot>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.core.metrics.closed();
        let mut conns = self.core.conns.borrow_mut();
        conns.remove(&self.id);
        if conns.is_empty() {
            if let Some(waker) = self.core.all_closed.take() {
                waker.wake();
            }
        }
    }
}

impl Core {
    /// Inside the core's runtime: the Redis driver task starts here.
    pub fn new(id: usize, config: Arc<Config>, shared: Arc<Shared>, side: Option<Side>) -> Self {
        let redis = Client::connect(config.redis.clone());
        let previous = config
            .room_token_secret_previous
            .as_deref()
            .map(str::as_bytes);
        Self {
            id,
            side,
            metrics: shared.metrics.core(),
            store: Store::new(
                redis.clone(),
                config.hold_ttl.as_millis() as u64,
                config.hold_limit,
            ),
            redis,
            events: Events::new(config.event_refresh),
            tokens: Keys::new(config.room_token_secret.as_bytes(), previous),
            cache: Responses::new(config.public_cache),
            config,
            shared,
            conns: RefCell::default(),
            next_conn: Cell::new(0),
            all_closed: RefCell::default(),
        }
    }

    /// True from the moment a drain starts, before this core has handled its stop.
    pub fn draining(&self) -> bool {
        self.shared.draining()
    }

    pub fn register(self: &Rc<Self>, stream: &impl AsRawFd) -> Registration {
        let id = self.next_conn.get();
        self.next_conn.set(id + 1);
        let slot = Rc::new(ConnSlot {
            fd: stream.as_raw_fd(),
            idle: Cell::new(false),
        });
        self.conns.borrow_mut().insert(id, slot.clone());
        self.metrics.opened();
        Registration {
            core: self.clone(),
            id,
            slot,
        }
    }

    /// Connections open now.
    pub fn open_connections(&self) -> usize {
        self.conns.borrow().len()
    }

    /// Shuts down every idle connection: the client sees the close at once and the
    /// pending read ends. Busy ones see `draining` after their answer and close.
    pub fn close_idle(&self) {
        for slot in self.conns.borrow().values().filter(|slot| slot.idle.get()) {
            // The fd is open: a registration is dropped before its stream closes.
            let _ = nix::sys::socket::shutdown(slot.fd, nix::sys::socket::Shutdown::Both);
        }
    }

    pub async fn all_closed(&self) {
        poll_fn(|cx| {
            if self.conns.borrow().is_empty() {
                return Poll::Ready(());
            }
            *self.all_closed.borrow_mut() = Some(cx.waker().clone());
            Poll::Pending
        })
        .await;
    }
}
