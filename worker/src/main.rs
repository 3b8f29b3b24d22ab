//! `worker COMMAND`: reads its configuration from the environment and runs one command
//! of [`worker::cli`] (see `worker help`).

use std::{
    io::IsTerminal,
    process::ExitCode,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use tokio::sync::watch;
use worker::{
    bench, catalog, cli,
    cli::{Command, DlqAction},
    config::Config,
    db, dlq, migrate,
    redis::Conn,
};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `EX_USAGE` from sysexits.h: the command line or the configuration is wrong.
const EXIT_USAGE: u8 = 64;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let command = match cli::parse(&args) {
        Ok(Command::Help) => {
            println!("{}", cli::USAGE);
            return ExitCode::SUCCESS;
        }
        Ok(command) => command,
        Err(e) => {
            eprintln!("worker: {e}\n\n{}", cli::USAGE);
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("worker: bad configuration: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let logs = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(config.log_level)
        .with_target(false)
        // A log line that cannot be written (disk full, the log pipe gone) is lost, not
        // fatal: by default the subscriber reports the failed write with `eprintln!` on
        // the same stderr, which panics, and panic=abort ends the consumer.
        .log_internal_errors(false);
    if config.log_json {
        logs.json().flatten_event(true).init();
    } else {
        logs.with_ansi(std::io::stderr().is_terminal()).init();
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("worker: cannot start the tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(&config, command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("worker: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: &Config, command: Command) -> anyhow::Result<()> {
    let started = Instant::now();
    match command {
        Command::Run => {
            let (stop, shutdown) = watch::channel(false);
            tokio::spawn(signals(stop));
            worker::run::run(config.clone(), shutdown, Default::default())
                .await
                .context("running the consumers")?;
            return Ok(());
        }
        Command::Dlq { action, event_id } => {
            let mut redis = connect_redis(config).await?;
            let events = match event_id {
                Some(event) => vec![event],
                None => event_ids(config).await?,
            };
            for event in &events {
                match action {
                    DlqAction::List => {
                        for letter in dlq::list(&mut redis, event).await? {
                            println!(
                                "{event} {} deliveries={} at={} from={} {}\n  reason: {}\n  msg: {}",
                                letter.id,
                                letter.deliveries,
                                letter.at_ms,
                                letter.stream,
                                letter.origin_id,
                                letter.reason,
                                String::from_utf8_lossy(&letter.msg)
                            );
                        }
                    }
                    DlqAction::Redrive => {
                        let moved = dlq::redrive(&mut redis, event).await?;
                        if moved > 0 || events.len() == 1 {
                            println!("dlq redrive: {event}: {moved} moved back to their streams");
                        }
                    }
                }
            }
            return Ok(());
        }
        _ => {}
    }
    let mut pg = db::connect(&config.database)
        .await
        .context("connecting to PostgreSQL (DATABASE_URL)")?;
    match command {
        Command::Migrate => {
            let report = migrate::run(&mut pg).await.context("migrating")?;
            match report.applied.as_slice() {
                [] => println!(
                    "migrate: schema at version {}, nothing to do",
                    report.current
                ),
                applied => println!(
                    "migrate: applied {applied:?}, schema at version {}",
                    report.current
                ),
            }
        }
        Command::Seed(spec) => {
            let mut redis = connect_redis(config).await?;
            let report = catalog::seed(&mut pg, &mut redis, &spec)
                .await
                .with_context(|| format!("seeding {}", spec.event_id))?;
            println!("seed: {}", report.projection);
            if !report.removed_sections.is_empty() {
                println!(
                    "seed: removed sections {}",
                    report.removed_sections.join(",")
                );
            }
            println!(
                "seed: PostgreSQL {} ms, Redis {} ms, total {} ms",
                report.postgres.as_millis(),
                report.redis.as_millis(),
                started.elapsed().as_millis()
            );
        }
        Command::RebuildRedis { event_id } => {
            let mut redis = connect_redis(config).await?;
            let projections = catalog::rebuild_redis(
                &mut pg,
                &mut redis,
                event_id.as_deref(),
                config.run.status_ttl,
            )
            .await
            .context("rebuilding Redis")?;
            for p in &projections {
                println!("rebuild-redis: {p}");
            }
            println!(
                "rebuild-redis: {} events in {} ms",
                projections.len(),
                started.elapsed().as_millis()
            );
        }
        Command::Bench(spec) => {
            let mut redis = connect_redis(config).await?;
            let report = bench::bench(config, &mut pg, &mut redis, &spec)
                .await
                .context("benchmarking")?;
            let run = &config.run;
            println!(
                "bench: {} orders in {:.2} s = {:.0} orders/s (batch {}, consumers {}, PostgreSQL connections {}, {} transactions; fill {} ms; event {})",
                report.orders,
                report.drain.as_secs_f64(),
                report.orders_per_sec(),
                run.batch,
                run.concurrency,
                run.pg_connections,
                report.transactions,
                report.fill.as_millis(),
                report.event_id
            );
        }
        Command::Run | Command::Dlq { .. } | Command::Help => println!("{}", cli::USAGE),
    }
    Ok(())
}

/// Every event id in PostgreSQL.
async fn event_ids(config: &Config) -> anyhow::Result<Vec<String>> {
    let pg = db::connect(&config.database)
        .await
        .context("connecting to PostgreSQL (DATABASE_URL)")?;
    let rows = pg
        .query("SELECT event_id FROM events ORDER BY event_id", &[])
        .await
        .context("reading the events")?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// The first SIGTERM or SIGINT asks the consumers to stop (finish the batch in hand,
/// ack it, exit); another one a second or more later exits at once. (One within the
/// second is the same request: Ctrl-C reaches the whole process group, and a supervisor
/// like `infra/local/run.sh` forwards a SIGTERM right after.)
async fn signals(stop: watch::Sender<bool>) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install the SIGTERM/SIGINT handlers");
        return;
    };
    let mut first: Option<Instant> = None;
    loop {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        match first {
            Some(at) if at.elapsed() >= Duration::from_secs(1) => {
                tracing::warn!("{name} again: exiting at once");
                std::process::exit(130);
            }
            Some(_) => {}
            None => {
                tracing::info!("{name}: finishing the batches in hand, then exiting");
                first = Some(Instant::now());
                let _ = stop.send(true);
            }
        }
    }
}

async fn connect_redis(config: &Config) -> anyhow::Result<Conn> {
    Conn::connect(&config.redis)
        .await
        .with_context(|| format!("connecting to Redis at {} (REDIS_URL)", config.redis.addr))
}
