//! `edge`: reads its configuration from the environment and serves until SIGTERM or
//! SIGINT, then drains. Another signal a second or more later exits at once.

use std::{
    io::IsTerminal,
    process::ExitCode,
    time::{Duration, Instant},
};

use edge::{config::Config, server::Server};
use signal_hook::{
    consts::{SIGINT, SIGTERM},
    iterator::Signals,
};
use tracing::{error, info, warn};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `EX_USAGE` from sysexits.h: the configuration is wrong.
const EXIT_CONFIG: u8 = 64;

fn main() -> ExitCode {
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("edge: bad configuration: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let logs = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(config.log_level)
        .with_target(false)
        // A log line that cannot be written (disk full, the log pipe gone) is lost, not
        // fatal: by default the subscriber reports the failed write with `eprintln!` on
        // the same stderr, which panics, and panic=abort ends the process.
        .log_internal_errors(false);
    if config.log_json {
        logs.json().flatten_event(true).init();
    } else {
        logs.with_ansi(std::io::stderr().is_terminal()).init();
    }
    if config.room_token_secret == edge::config::LOCAL_ROOM_TOKEN_SECRET {
        warn!(
            "ROOM_TOKEN_SECRET is unset: room tokens use a local-only key; set it outside a laptop"
        );
    }
    // Registered before the cores start, so a signal never hits the default handler.
    let mut signals = match Signals::new([SIGTERM, SIGINT]) {
        Ok(signals) => signals,
        Err(e) => {
            error!(error = %e, "cannot install signal handlers");
            return ExitCode::FAILURE;
        }
    };
    let mut server = match Server::start(config) {
        Ok(server) => server,
        Err(e) => {
            error!(error = %e, "cannot start");
            return ExitCode::FAILURE;
        }
    };
    info!(addr = %server.local_addr(), drivers = ?server.drivers(), "listening");
    let mut drainer = server.drainer();
    std::thread::spawn(move || {
        let mut first: Option<Instant> = None;
        for signal in signals.forever() {
            match first {
                // One within the second is the same request: Ctrl-C reaches the whole
                // process group, and a supervisor like `infra/local/run.sh` forwards a
                // SIGTERM right after (the worker does the same).
                Some(at) if at.elapsed() < Duration::from_secs(1) => {}
                Some(_) => {
                    warn!(signal, "second signal, exiting now");
                    std::process::exit(130);
                }
                None => {
                    first = Some(Instant::now());
                    info!(
                        signal,
                        "draining: health is 503, finishing in-flight requests"
                    );
                    if let Some(drainer) = drainer.take() {
                        drainer.drain();
                    }
                }
            }
        }
    });
    server.join();
    info!("stopped");
    ExitCode::SUCCESS
}
