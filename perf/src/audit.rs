//! After a run that buys: was speed paid for with correctness?
//!
//! 1. Every commit answered 202 must reach a final status (`CONFIRMED` or `REJECTED`):
//!    polled through `/confirm/status` until it does or the wait runs out.
//! 2. No seat in two `CONFIRMED` orders (PostgreSQL, `orders.seat_ids`; the primary key
//!    of `sold_seats` forbids it too, this checks the orders themselves).
//! 3. Every accepted commit has its order row; every sold seat belongs to a confirmed
//!    order; the summary's `sold` (Redis projection, through the edge) equals the seats
//!    of confirmed orders (PostgreSQL).

use std::{
    cell::RefCell,
    net::SocketAddr,
    rc::Rc,
    time::{Duration, Instant},
};

use monoio::{IoUringDriver, LegacyDriver, RuntimeBuilder};
use serde::{Deserialize, Serialize};

use crate::{
    client::{write_request, Conn},
    run::Driver,
    scenario::{outcome, status_request, summary_path, Accepted, Plan},
};

/// Connections the status polling uses.
const POLL_CONNECTIONS: usize = 16;
/// Between rounds of status polls.
const POLL_EVERY: Duration = Duration::from_millis(250);
/// Summary reads while they still differ from PostgreSQL (the edge caches them ~1 s).
const SUMMARY_TRIES: usize = 5;

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct AuditReport {
    pub event: String,
    /// Commits answered 202.
    pub accepted: u64,
    pub confirmed: u64,
    pub rejected: u64,
    /// Accepted commits never seen final within the wait: must be 0.
    pub never_final: u64,
    pub waited_s: f64,
    /// Seats in two or more CONFIRMED orders of the event: must be 0.
    pub double_sold_seats: Option<i64>,
    /// Order rows for the accepted commits (must equal `accepted` once all are final).
    pub orders_for_accepted: Option<i64>,
    pub confirmed_orders: Option<i64>,
    /// Seats of CONFIRMED orders of the event (all runs, not only this one).
    pub confirmed_seats: Option<i64>,
    pub sold_seat_rows: Option<i64>,
    /// Sold seats whose order is not CONFIRMED: must be 0.
    pub sold_without_confirmed_order: Option<i64>,
    /// `sold` summed over the sections' summaries, through the edge.
    pub summary_sold: Option<u64>,
    pub passed: bool,
    pub problems: Vec<String>,
}

#[derive(Deserialize)]
struct Summary {
    sold: u64,
}

/// Runs the audit; `accepted` gets the outcomes seen.
pub fn audit(
    addr: SocketAddr,
    plan: &Plan,
    accepted: &mut [Accepted],
    wait: Duration,
    database_url: Option<&str>,
    driver: Driver,
) -> AuditReport {
    let started = Instant::now();
    let mut report = AuditReport {
        event: plan.event.clone(),
        accepted: accepted.len() as u64,
        ..Default::default()
    };
    let polled = on_runtime(driver, poll_statuses(addr, accepted.to_vec(), wait));
    for (a, o) in accepted.iter_mut().zip(&polled) {
        if a.outcome.is_none() {
            a.outcome = *o;
        }
    }
    report.waited_s = started.elapsed().as_secs_f64();
    report.confirmed = accepted
        .iter()
        .filter(|a| a.outcome == Some("CONFIRMED"))
        .count() as u64;
    report.rejected = accepted
        .iter()
        .filter(|a| a.outcome == Some("REJECTED"))
        .count() as u64;
    report.never_final = report.accepted - report.confirmed - report.rejected;
    if report.never_final > 0 {
        report.problems.push(format!(
            "{} accepted commits (202) not final after {:.0} s",
            report.never_final, report.waited_s
        ));
    }

    match database_url {
        Some(url) => {
            let idems: Vec<String> = accepted.iter().map(|a| a.idem.clone()).collect();
            match database_checks(url, &plan.event, idems) {
                Ok(db) => {
                    report.double_sold_seats = Some(db.double_sold);
                    report.orders_for_accepted = Some(db.orders_for_accepted);
                    report.confirmed_orders = Some(db.confirmed_orders);
                    report.confirmed_seats = Some(db.confirmed_seats);
                    report.sold_seat_rows = Some(db.sold_rows);
                    report.sold_without_confirmed_order = Some(db.sold_unconfirmed);
                }
                Err(e) => report.problems.push(format!("PostgreSQL: {e}")),
            }
        }
        None => report
            .problems
            .push("DATABASE_URL not set: the database checks did not run".to_owned()),
    }

    // The summary is cached by the edge for a short time: read again while it differs.
    for attempt in 0..SUMMARY_TRIES {
        if attempt > 0 {
            std::thread::sleep(Duration::from_millis(1100));
        }
        report.summary_sold = on_runtime(driver, summary_sold(addr, plan.clone()));
        if report.summary_sold.map(|s| s as i64) == report.confirmed_seats {
            break;
        }
    }

    if let Some(n) = report.double_sold_seats.filter(|n| *n != 0) {
        report
            .problems
            .push(format!("{n} seats in two CONFIRMED orders"));
    }
    if let Some(n) = report.orders_for_accepted {
        if n as u64 != report.confirmed + report.rejected || n as u64 != report.accepted {
            report.problems.push(format!(
                "{n} order rows for {} accepted commits ({} seen final)",
                report.accepted,
                report.confirmed + report.rejected
            ));
        }
    }
    if let Some(n) = report.sold_without_confirmed_order.filter(|n| *n != 0) {
        report
            .problems
            .push(format!("{n} sold seats without a CONFIRMED order"));
    }
    if let (Some(s), Some(c)) = (report.summary_sold, report.confirmed_seats) {
        if s as i64 != c {
            report.problems.push(format!(
                "summary says {s} sold, PostgreSQL has {c} seats in CONFIRMED orders"
            ));
        }
    } else if report.summary_sold.is_none() {
        report.problems.push("summary not readable".to_owned());
    }
    report.passed = report.problems.is_empty();
    report
}

fn on_runtime<F: std::future::Future>(driver: Driver, f: F) -> F::Output {
    match driver {
        Driver::Uring => match RuntimeBuilder::<IoUringDriver>::new()
            .enable_timer()
            .build()
        {
            Ok(mut rt) => rt.block_on(f),
            Err(_) => RuntimeBuilder::<LegacyDriver>::new()
                .enable_timer()
                .build()
                .expect("an epoll runtime")
                .block_on(f),
        },
        Driver::Epoll => RuntimeBuilder::<LegacyDriver>::new()
            .enable_timer()
            .build()
            .expect("an epoll runtime")
            .block_on(f),
    }
}

/// Polls every commit not yet final until all are or `wait` is over.
async fn poll_statuses(
    addr: SocketAddr,
    accepted: Vec<Accepted>,
    wait: Duration,
) -> Vec<Option<&'static str>> {
    let deadline = Instant::now() + wait;
    let outcomes: Rc<RefCell<Vec<Option<&'static str>>>> =
        Rc::new(RefCell::new(accepted.iter().map(|a| a.outcome).collect()));
    let accepted = Rc::new(accepted);
    loop {
        let todo: Vec<usize> = outcomes
            .borrow()
            .iter()
            .enumerate()
            .filter(|(_, o)| o.is_none())
            .map(|(i, _)| i)
            .collect();
        if todo.is_empty() || Instant::now() > deadline {
            break;
        }
        let todo = Rc::new(todo);
        let tasks: Vec<_> = (0..POLL_CONNECTIONS)
            .map(|k| {
                let (todo, accepted, outcomes) = (todo.clone(), accepted.clone(), outcomes.clone());
                monoio::spawn(async move {
                    let mut conn = Conn::new(addr);
                    for &i in todo.iter().skip(k).step_by(POLL_CONNECTIONS) {
                        let a = &accepted[i];
                        conn.req.clear();
                        status_request(&mut conn.req, &a.token, &a.idem);
                        if let Ok(200) = conn.send(Duration::from_secs(10)).await {
                            if let Some(o) = outcome(conn.body()) {
                                outcomes.borrow_mut()[i] = Some(o);
                            }
                        }
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await;
        }
        monoio::time::sleep(POLL_EVERY).await;
    }
    let out = outcomes.borrow().clone();
    out
}

async fn summary_sold(addr: SocketAddr, plan: Plan) -> Option<u64> {
    let mut conn = Conn::new(addr);
    let mut sold = 0;
    for section in &plan.sections {
        conn.req.clear();
        write_request(
            &mut conn.req,
            "GET",
            &summary_path(&plan.event, section),
            b"",
            b"",
        );
        match conn.send(Duration::from_secs(10)).await {
            Ok(200) => sold += serde_json::from_slice::<Summary>(conn.body()).ok()?.sold,
            _ => return None,
        }
    }
    Some(sold)
}

struct DbCounts {
    double_sold: i64,
    orders_for_accepted: i64,
    confirmed_orders: i64,
    confirmed_seats: i64,
    sold_rows: i64,
    sold_unconfirmed: i64,
}

fn database_checks(url: &str, event: &str, idems: Vec<String>) -> Result<DbCounts, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?;
    rt.block_on(async {
        let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let driver = tokio::spawn(connection);
        let one = |sql: &'static str| {
            let client = &client;
            async move {
                client
                    .query_one(sql, &[&event])
                    .await
                    .map_err(|e| format!("{sql}: {e}"))
            }
        };
        let double_sold: i64 = one(
            "SELECT count(*) FROM (SELECT seat FROM orders o, unnest(o.seat_ids) seat \
             WHERE o.event_id = $1 AND o.status = 'CONFIRMED' GROUP BY seat HAVING count(*) > 1) d",
        )
        .await?
        .get(0);
        let confirmed = one(
            "SELECT count(*), coalesce(sum(cardinality(seat_ids)), 0)::bigint FROM orders \
             WHERE event_id = $1 AND status = 'CONFIRMED'",
        )
        .await?;
        let sold_rows: i64 = one("SELECT count(*) FROM sold_seats WHERE event_id = $1")
            .await?
            .get(0);
        let sold_unconfirmed: i64 = one(
            "SELECT count(*) FROM sold_seats s JOIN orders o ON o.order_id = s.order_id \
             WHERE s.event_id = $1 AND o.status <> 'CONFIRMED'",
        )
        .await?
        .get(0);
        let orders_for_accepted: i64 = client
            .query_one(
                "SELECT count(*) FROM orders WHERE event_id = $1 AND idem = ANY($2)",
                &[&event, &idems],
            )
            .await
            .map_err(|e| format!("orders for accepted: {e}"))?
            .get(0);
        drop(client);
        let _ = driver.await;
        Ok(DbCounts {
            double_sold,
            orders_for_accepted,
            confirmed_orders: confirmed.get(0),
            confirmed_seats: confirmed.get(1),
            sold_rows,
            sold_unconfirmed,
        })
    })
}
