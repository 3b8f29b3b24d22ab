//! The command line: `worker COMMAND [ARGS]`, parsed into a [`Command`].

use codec::keys::CatalogSection;

use crate::{
    bench::BenchSpec,
    catalog::{self, SeedSpec},
};

pub const USAGE: &str = "\
usage: worker COMMAND

  migrate
      apply the schema migrations PostgreSQL does not have yet (safe to re-run, and
      to run twice at once)
  seed EVENT [--name TEXT] [--sections A,B,C,D,E] [--seats-per-section 10000]
             [--price P | --price PA,PB,...] [--currency KRW] [--open-in-secs 0]
             [--rate 10000] [--prequeue-in-secs S] [--queueing fifo|random|passthrough|reject]
             [--active-limit N]
      create or update EVENT in PostgreSQL, then project it into Redis (catalog,
      admission, sold bitmaps). Prices are minor units, one for every section or one
      each (default 150000, 120000, ... down by 30000); --open-in-secs may be negative;
      --rate is new users admitted a second; --prequeue-in-secs opens the pre-queue
      (before the opening); --queueing random draws the pre-queue's places at the
      opening; --active-limit caps buyers admitted and not done (0: none). See
      README, Fair admission
  verify-shuffle EVENT
      recompute the pre-queue's draw of EVENT from Redis (seed, its published SHA-256,
      the list and its digest) and check every drawn place; exit 1 if anything differs
  rebuild-redis [EVENT]
      re-project EVENT (default: every event) from PostgreSQL into Redis, after Redis
      lost its data: catalog, admission, sold seats and order statuses
  run
      drain the commit queue into PostgreSQL (PROFILE=local: the events' Redis
      Streams; PROFILE=aws: SQS_QUEUE_URL) until SIGTERM or SIGINT
  dlq list [EVENT]
      print the dead letters of EVENT (default: every event) with their reasons
  dlq redrive [EVENT]
      put the dead letters of EVENT (default: every event) back on their streams
  bench [--orders 50000] [--seats 1000000] [--keep]
      fill a fresh event's streams with --orders commits for distinct seats, drain
      them with the `run` consumers and print orders/s (then delete the event)

environment: DATABASE_URL, REDIS_URL, WORKER_LOG, PROFILE, COMMIT_SHARDS, WORKER_* (see
README.md)";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Migrate,
    Seed(SeedSpec),
    RebuildRedis {
        event_id: Option<String>,
    },
    Run,
    Dlq {
        action: DlqAction,
        event_id: Option<String>,
    },
    Bench(BenchSpec),
    VerifyShuffle {
        event_id: String,
    },
    Help,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DlqAction {
    List,
    Redrive,
}

/// A command line that does not parse; `main` prints it with [`USAGE`] and exits 64.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Parses the arguments after the program name.
pub fn parse(args: &[String]) -> Result<Command, UsageError> {
    let usage = |message: String| Err(UsageError(message));
    let Some((command, rest)) = args.split_first() else {
        return usage("no command given".into());
    };
    match command.as_str() {
        "migrate" => match rest {
            [] => Ok(Command::Migrate),
            _ => usage(format!("migrate takes no arguments, got {rest:?}")),
        },
        "seed" => parse_seed(rest),
        "rebuild-redis" => match rest {
            [] => Ok(Command::RebuildRedis { event_id: None }),
            [event] if !event.starts_with('-') => Ok(Command::RebuildRedis {
                event_id: Some(event.clone()),
            }),
            _ => usage(format!(
                "rebuild-redis takes at most one event id, got {rest:?}"
            )),
        },
        "run" => match rest {
            [] => Ok(Command::Run),
            _ => usage(format!("run takes no arguments, got {rest:?}")),
        },
        "dlq" => {
            let action = match rest.first().map(String::as_str) {
                Some("list") => DlqAction::List,
                Some("redrive") => DlqAction::Redrive,
                _ => return usage("dlq needs list or redrive".into()),
            };
            match &rest[1..] {
                [] => Ok(Command::Dlq {
                    action,
                    event_id: None,
                }),
                [event] if !event.starts_with('-') => Ok(Command::Dlq {
                    action,
                    event_id: Some(event.clone()),
                }),
                other => usage(format!("dlq takes at most one event id, got {other:?}")),
            }
        }
        "bench" => parse_bench(rest),
        "verify-shuffle" => match rest {
            [event] if !event.starts_with('-') => Ok(Command::VerifyShuffle {
                event_id: event.clone(),
            }),
            _ => usage(format!("verify-shuffle takes one event id, got {rest:?}")),
        },
        "help" | "-h" | "--help" => Ok(Command::Help),
        other => usage(format!("unknown command {other:?}")),
    }
}

fn parse_seed(args: &[String]) -> Result<Command, UsageError> {
    let Some((event_id, mut rest)) = args.split_first().filter(|(e, _)| !e.starts_with('-')) else {
        return Err(UsageError("seed needs an event id first".into()));
    };
    let mut spec = SeedSpec::new(event_id);
    let (mut ids, mut seats, mut prices, mut open_in_secs) = (None, 10_000, None, 0i64);
    let mut prequeue_in_secs: Option<i64> = None;
    while let [flag, tail @ ..] = rest {
        let (value, tail) = match tail.split_first() {
            Some((value, tail)) => (value.as_str(), tail),
            None => return Err(UsageError(format!("{flag} needs a value"))),
        };
        match flag.as_str() {
            "--name" => spec.name = value.to_owned(),
            "--sections" => {
                ids = Some(
                    value
                        .split(',')
                        .map(|s| s.trim().to_owned())
                        .collect::<Vec<_>>(),
                )
            }
            "--seats-per-section" => seats = number(flag, value)?,
            "--price" => {
                prices = Some(
                    value
                        .split(',')
                        .map(|p| number(flag, p.trim()))
                        .collect::<Result<Vec<u64>, _>>()?,
                )
            }
            "--currency" => spec.currency = value.to_owned(),
            "--open-in-secs" => open_in_secs = number(flag, value)?,
            "--rate" => spec.rate = number(flag, value)?,
            "--prequeue-in-secs" => prequeue_in_secs = Some(number(flag, value)?),
            "--queueing" => {
                spec.line.queueing = Some(
                    codec::contract::Queueing::parse(value.as_bytes()).ok_or_else(|| {
                        UsageError(format!(
                            "--queueing {value:?}: expected fifo, random, passthrough or reject"
                        ))
                    })?,
                )
            }
            "--active-limit" => spec.line.active_limit = Some(number(flag, value)?),
            other => return Err(UsageError(format!("seed: unknown option {other:?}"))),
        }
        rest = tail;
    }
    let ids = ids.unwrap_or_else(|| spec.sections.iter().map(|s| s.id.clone()).collect());
    let prices = match prices {
        None => catalog::default_prices(ids.len()),
        Some(one) if one.len() == 1 => vec![one[0]; ids.len()],
        Some(each) if each.len() == ids.len() => each,
        Some(other) => {
            return Err(UsageError(format!(
                "--price: {} prices for {} sections (give one, or one a section)",
                other.len(),
                ids.len()
            )))
        }
    };
    spec.sections = ids
        .into_iter()
        .zip(prices)
        .map(|(id, price)| CatalogSection { id, seats, price })
        .collect();
    let now = catalog::now_ms();
    spec.open_at_ms = now.saturating_add_signed(open_in_secs.saturating_mul(1000));
    spec.line.prequeue_at_ms =
        prequeue_in_secs.map(|s| now.saturating_add_signed(s.saturating_mul(1000)));
    Ok(Command::Seed(spec))
}

fn parse_bench(mut rest: &[String]) -> Result<Command, UsageError> {
    let mut spec = BenchSpec::default();
    while let [flag, tail @ ..] = rest {
        if flag == "--keep" {
            spec.keep = true;
            rest = tail;
            continue;
        }
        let Some((value, tail)) = tail.split_first() else {
            return Err(UsageError(format!("{flag} needs a value")));
        };
        match flag.as_str() {
            "--orders" => spec.orders = number(flag, value)?,
            "--seats" => spec.seats = number(flag, value)?,
            other => return Err(UsageError(format!("bench: unknown option {other:?}"))),
        }
        rest = tail;
    }
    if spec.orders == 0 || spec.seats < spec.orders {
        return Err(UsageError(
            "bench: --orders must be at least 1 and at most --seats".into(),
        ));
    }
    Ok(Command::Bench(spec))
}

fn number<T: std::str::FromStr>(flag: &str, value: &str) -> Result<T, UsageError> {
    value
        .parse()
        .map_err(|_| UsageError(format!("{flag} {value:?}: not a number in range")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Vec<String> {
        line.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn seed_defaults_make_the_demo_event() {
        let Ok(Command::Seed(spec)) = parse(&args("seed demo")) else {
            panic!("parses")
        };
        assert_eq!(spec.sections, SeedSpec::new("demo").sections);
        assert_eq!((spec.currency.as_str(), spec.rate), ("KRW", 10_000));
    }

    #[test]
    fn seed_options_land_in_the_spec() {
        let line = "seed perf --sections X,Y --seats-per-section 500000 --price 1000,2000 \
                    --currency USD --open-in-secs 3600 --rate 50 --name Perf";
        let Ok(Command::Seed(spec)) = parse(&args(line)) else {
            panic!("parses")
        };
        let sections: Vec<(&str, u32, u64)> = spec
            .sections
            .iter()
            .map(|s| (s.id.as_str(), s.seats, s.price))
            .collect();
        assert_eq!(sections, [("X", 500_000, 1000), ("Y", 500_000, 2000)]);
        assert_eq!(
            (spec.name.as_str(), spec.currency.as_str(), spec.rate),
            ("Perf", "USD", 50)
        );
        assert!(spec.open_at_ms.abs_diff(catalog::now_ms() + 3_600_000) < 60_000);
        let Ok(Command::Seed(spec)) = parse(&args("seed e --sections P,Q,R --price 7")) else {
            panic!("parses")
        };
        assert!(spec.sections.iter().all(|s| s.price == 7));
    }

    #[test]
    fn the_line_options_land_in_the_spec() {
        let line = "seed e --open-in-secs 600 --prequeue-in-secs 60 --queueing random \
                    --active-limit 500";
        let Ok(Command::Seed(spec)) = parse(&args(line)) else {
            panic!("parses")
        };
        let pre = spec.line.prequeue_at_ms.expect("pre-queue");
        assert_eq!(spec.open_at_ms - pre, 540_000);
        assert_eq!(
            (spec.line.queueing, spec.line.active_limit),
            (Some(codec::contract::Queueing::Random), Some(500))
        );
        assert!(spec.validate().is_ok());
        let Ok(Command::Seed(late)) = parse(&args("seed e --prequeue-in-secs 10")) else {
            panic!("parses")
        };
        assert!(late.validate().is_err(), "a pre-queue after the opening");
        assert_eq!(
            parse(&args("verify-shuffle e")),
            Ok(Command::VerifyShuffle {
                event_id: "e".into()
            })
        );
    }

    #[test]
    fn bad_command_lines_say_what_is_wrong() {
        for line in [
            "",
            "serve",
            "migrate now",
            "seed",
            "seed --rate 5",
            "seed e --rate",
            "seed e --rate many",
            "seed e --seats-per-section -1",
            "seed e --price 1,2",
            "seed e --colour red",
            "rebuild-redis a b",
            "run now",
            "dlq",
            "dlq purge",
            "dlq list a b",
            "bench --orders",
            "bench --orders 10 --seats 5",
            "seed e --queueing lottery",
            "seed e --active-limit -1",
            "verify-shuffle",
            "verify-shuffle a b",
        ] {
            assert!(parse(&args(line)).is_err(), "{line:?}");
        }
        assert_eq!(parse(&args("run")), Ok(Command::Run));
        assert_eq!(
            parse(&args("dlq redrive demo")),
            Ok(Command::Dlq {
                action: DlqAction::Redrive,
                event_id: Some("demo".into())
            })
        );
        assert_eq!(
            parse(&args("bench --orders 10 --keep")),
            Ok(Command::Bench(BenchSpec {
                orders: 10,
                seats: 1_000_000,
                keep: true
            }))
        );
        assert_eq!(
            parse(&args("rebuild-redis")),
            Ok(Command::RebuildRedis { event_id: None })
        );
        assert_eq!(
            parse(&args("rebuild-redis demo")),
            Ok(Command::RebuildRedis {
                event_id: Some("demo".into())
            })
        );
    }
}
