//! Threads, runtimes and listeners: one monoio runtime per core, each with its own
//! `SO_REUSEPORT` listener and its own state; nothing shared but read-only config and
//! the draining flag.
//!
//! Shutdown (SIGTERM/SIGINT, see `main.rs`): [`Drainer::drain`] turns health to 503,
//! then every core closes its listener, closes its idle keep-alive connections, lets
//! busy ones finish their request (answered with `connection: close`), and returns
//! once none is left or the grace period ends.

use std::{
    io,
    net::SocketAddr,
    rc::Rc,
    sync::{atomic::Ordering, mpsc, Arc},
    thread::JoinHandle,
    time::Duration,
};

use futures_channel::oneshot;
use monoio::{
    net::{ListenerOpts, TcpListener},
    time::TimeDriver,
    Driver, IoUringDriver, LegacyDriver, Runtime, RuntimeBuilder,
};
use tracing::{info, warn};

use crate::{
    config::{Config, DriverChoice},
    core::{Core, Shared},
    identity::{self, Mode},
    metrics,
    side::Side,
};

/// Pending connections the kernel queues per listener.
const LISTEN_BACKLOG: i32 = 4096;

/// A running edge: its core threads and the address they listen on.
pub struct Server {
    addr: SocketAddr,
    metrics_addr: Option<SocketAddr>,
    side: Option<Side>,
    drivers: Vec<&'static str>,
    threads: Vec<JoinHandle<()>>,
    drainer: Option<Drainer>,
}

/// Starts a graceful shutdown of every core; `Send`, for the signal thread.
pub struct Drainer {
    shared: Arc<Shared>,
    stops: Vec<oneshot::Sender<()>>,
}

impl Drainer {
    pub fn drain(self) {
        self.shared.start_draining();
        for stop in self.stops {
            let _ = stop.send(());
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("core {core}: cannot build the {driver} runtime: {source}")]
    Runtime {
        core: usize,
        driver: &'static str,
        source: io::Error,
    },
    #[error("core {core}: cannot listen on {addr}: {source}")]
    Bind {
        core: usize,
        addr: SocketAddr,
        source: io::Error,
    },
    #[error("cannot start a core thread: {0}")]
    Thread(io::Error),
    #[error("core {0} died while starting")]
    Died(usize),
    #[error("cannot start the side thread: {0}")]
    Side(io::Error),
    #[error("identity keys: {0}")]
    Identity(String),
    #[error("cannot serve metrics on {addr} (METRICS_ADDR; `off` serves none): {source}")]
    Metrics { addr: SocketAddr, source: io::Error },
}

type Ready = Result<(SocketAddr, &'static str), StartError>;

impl Server {
    /// Starts one thread per configured core and returns once each listens. Core 0
    /// binds first, so that port 0 resolves to one port that every core then shares.
    pub fn start(config: Config) -> Result<Server, StartError> {
        let config = Arc::new(config);
        let shared = Arc::new(Shared::default());
        // Keys are read here, before any core runs, then by the key thread only.
        if config.identity.mode != Mode::None {
            identity::keys::start(config.identity.clone(), shared.identity_keys.clone())
                .map_err(StartError::Identity)?;
        }
        let side = config
            .side
            .clone()
            .map(Side::start)
            .transpose()
            .map_err(StartError::Side)?;
        if let Some(side) = &side {
            shared
                .metrics
                .side(side.stats.clone(), side.mirror_pending());
        }
        let mut server = Server {
            addr: config.addr,
            metrics_addr: None,
            side: side.clone(),
            drivers: Vec::new(),
            threads: Vec::new(),
            drainer: Some(Drainer {
                shared: shared.clone(),
                stops: Vec::new(),
            }),
        };
        for id in 0..config.threads {
            let (ready_tx, ready_rx) = mpsc::channel::<Ready>();
            let (stop_tx, stop_rx) = oneshot::channel();
            let (config, shared, addr) = (config.clone(), shared.clone(), server.addr);
            let side = side.clone();
            let thread = std::thread::Builder::new()
                .name(format!("edge-core-{id}"))
                .spawn(move || run_core(id, addr, config, shared, side, ready_tx, stop_rx))
                .map_err(StartError::Thread)?;
            server.threads.push(thread);
            if let Some(drainer) = server.drainer.as_mut() {
                drainer.stops.push(stop_tx);
            }
            // On an error, dropping `server` drops the stop senders: started cores exit.
            let (addr, driver) = ready_rx.recv().map_err(|_| StartError::Died(id))??;
            info!(core = id, driver, %addr, "core listening");
            server.addr = addr;
            server.drivers.push(driver);
        }
        if let Some(addr) = config.metrics_addr {
            let listener = std::net::TcpListener::bind(addr)
                .map_err(|source| StartError::Metrics { addr, source })?;
            server.metrics_addr = listener.local_addr().ok();
            let registry = shared.clone();
            std::thread::Builder::new()
                .name("edge-metrics".into())
                .spawn(move || metrics::serve(listener, &registry.metrics))
                .map_err(StartError::Thread)?;
        }
        if let Some(interval) = config.metrics_emf {
            let registry = shared.clone();
            std::thread::Builder::new()
                .name("edge-emf".into())
                .spawn(move || metrics::emit(&registry.metrics, interval))
                .map_err(StartError::Thread)?;
        }
        Ok(server)
    }

    /// Where `GET /metrics` is served, if anywhere.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The io driver of each core, in core order.
    pub fn drivers(&self) -> &[&'static str] {
        &self.drivers
    }

    /// The handle that starts a graceful shutdown; there is one.
    pub fn drainer(&mut self) -> Option<Drainer> {
        self.drainer.take()
    }

    /// Waits until every core has shut down.
    pub fn join(self) {
        for thread in self.threads {
            let _ = thread.join();
        }
        if let Some(side) = &self.side {
            let s = &side.stats;
            let load = |counter: &std::sync::atomic::AtomicU64| counter.load(Ordering::Relaxed);
            info!(
                sqs_batches = load(&s.sqs_batches),
                sqs_messages = load(&s.sqs_messages),
                sqs_failed = load(&s.sqs_failed),
                mirror_written = load(&s.mirror_written),
                mirror_dropped = load(&s.mirror_dropped),
                mirror_failed = load(&s.mirror_failed),
                order_lookups = load(&s.lookups),
                order_lookups_failed = load(&s.lookups_failed),
                db_reads = load(&s.db_reads),
                db_reads_failed = load(&s.db_reads_failed),
                "side thread totals"
            );
        }
    }
}

fn run_core(
    id: usize,
    addr: SocketAddr,
    config: Arc<Config>,
    shared: Arc<Shared>,
    side: Option<Side>,
    ready: mpsc::Sender<Ready>,
    stop: oneshot::Receiver<()>,
) {
    let (entries, coop) = (config.uring_entries, config.uring_coop_taskrun);
    let uring = || {
        let build = |coop: bool| {
            let mut ring = io_uring::IoUring::builder();
            if coop {
                ring.setup_coop_taskrun().setup_taskrun_flag();
            }
            RuntimeBuilder::<IoUringDriver>::new()
                .with_entries(entries)
                .uring_builder(ring)
                .enable_timer()
                .build()
        };
        build(coop).or_else(|e| {
            // A kernel before 5.19 refuses the unknown setup flags with EINVAL; a
            // seccomp profile refuses io_uring_setup itself (ENOSYS, EPERM), with
            // or without flags, so that goes straight to the caller's fallback.
            if !coop || e.kind() != std::io::ErrorKind::InvalidInput {
                return Err(e);
            }
            warn!(core = id, error = %e, "io_uring without COOP_TASKRUN (kernel before 5.19?)");
            build(false)
        })
    };
    let epoll = || RuntimeBuilder::<LegacyDriver>::new().enable_timer().build();
    let core = (id, config.clone(), shared, side);
    let fail = |driver, source| {
        let _ = ready.send(Err(StartError::Runtime {
            core: id,
            driver,
            source,
        }));
    };
    match config.driver {
        DriverChoice::Uring => match uring() {
            Ok(rt) => block_on(rt, "io_uring", core, addr, ready, stop),
            Err(e) => fail("io_uring", e),
        },
        DriverChoice::Epoll => match epoll() {
            Ok(rt) => block_on(rt, "epoll", core, addr, ready, stop),
            Err(e) => fail("epoll", e),
        },
        DriverChoice::Auto => match uring() {
            Ok(rt) => block_on(rt, "io_uring", core, addr, ready, stop),
            Err(e) => {
                // Container seccomp profiles (Docker's default, Fargate) refuse
                // io_uring_setup: epoll is the production path there.
                warn!(core = id, error = %e, "io_uring unavailable, falling back to epoll");
                match epoll() {
                    Ok(rt) => block_on(rt, "epoll", core, addr, ready, stop),
                    Err(e) => fail("epoll", e),
                }
            }
        },
    }
}

fn block_on<D: Driver>(
    mut rt: Runtime<TimeDriver<D>>,
    driver: &'static str,
    (id, config, shared, side): (usize, Arc<Config>, Arc<Shared>, Option<Side>),
    addr: SocketAddr,
    ready: mpsc::Sender<Ready>,
    stop: oneshot::Receiver<()>,
) {
    rt.block_on(async move {
        let core = Rc::new(Core::new(id, config, shared, side));
        let opts = ListenerOpts::new().reuse_port(true).backlog(LISTEN_BACKLOG);
        let listener = match TcpListener::bind_with_config(addr, &opts) {
            Ok(listener) => listener,
            Err(source) => {
                let _ = ready.send(Err(StartError::Bind {
                    core: core.id,
                    addr,
                    source,
                }));
                return;
            }
        };
        // Ready once this core's Redis answers (its connection counts after a PING), so
        // the first requests do not find it still connecting; without Redis, after the
        // connect deadline: health then says NOT_READY until it comes.
        let connect_timeout = core.config.redis.connect_timeout;
        let _ = monoio::time::timeout(connect_timeout, core.redis.wait_connected()).await;
        let _ = ready.send(
            listener
                .local_addr()
                .map(|a| (a, driver))
                .map_err(|source| StartError::Bind {
                    core: core.id,
                    addr,
                    source,
                }),
        );
        drop(ready);
        monoio::spawn(publish_redis_stats(core.clone()));
        // A dropped sender (the server was dropped) stops the core like a drain does.
        monoio::select! {
            _ = accept_loop(&core, &listener) => {},
            _ = stop => {},
        }
        drop(listener);
        core.close_idle();
        info!(
            core = core.id,
            open = core.open_connections(),
            "core draining"
        );
        let grace = core.config.shutdown_grace;
        if monoio::time::timeout(grace, core.all_closed())
            .await
            .is_err()
        {
            warn!(
                core = core.id,
                open = core.open_connections(),
                "shutdown grace over, closing"
            );
        }
        let r = core.redis.stats();
        info!(
            core = core.id,
            redis_commands = r.commands,
            redis_batched = r.batched,
            redis_writes = r.writes,
            redis_written = r.written,
            redis_mean_depth = format_args!("{:.1}", r.mean_depth()),
            redis_depth = ?r.depth,
            redis_replies = r.replies,
            redis_server_errors = r.server_errors,
            redis_protocol_errors = r.protocol_errors,
            redis_io_errors = r.io_errors,
            redis_tls_errors = r.tls_errors,
            redis_closed_by_server = r.closed_by_server,
            redis_timeouts = r.timeouts,
            redis_overloaded = r.overloaded,
            redis_disconnected = r.disconnected,
            redis_reconnects = r.reconnects,
            redis_noscript_retries = r.noscript_retries,
            "core stopped"
        );
    });
}

/// Copies the core's Redis client counters into its metrics every second (the client
/// keeps them in plain fields, which only this core may read).
async fn publish_redis_stats(core: Rc<Core>) {
    loop {
        core.metrics.publish_redis(&core.redis.stats());
        monoio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn accept_loop(core: &Rc<Core>, listener: &TcpListener) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                monoio::spawn(crate::conn::serve(stream, core.clone(), peer.ip()));
            }
            Err(e) => {
                // Out of file descriptors or memory: back off instead of spinning.
                warn!(core = core.id, error = %e, "accept failed");
                monoio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}
