//! `worker COMMAND`: reads its configuration from the environment and runs one command
//! of [`worker::cli`] (see `worker help`).

use std::{io::IsTerminal, process::ExitCode, time::Instant};

use anyhow::Context as _;
use worker::{catalog, cli, cli::Command, config::Config, db, migrate, redis::Conn};

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
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(config.log_level)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
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
            let projections = catalog::rebuild_redis(&mut pg, &mut redis, event_id.as_deref())
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
        Command::Help => println!("{}", cli::USAGE),
    }
    Ok(())
}

async fn connect_redis(config: &Config) -> anyhow::Result<Conn> {
    Conn::connect(&config.redis)
        .await
        .with_context(|| format!("connecting to Redis at {} (REDIS_URL)", config.redis.addr))
}
