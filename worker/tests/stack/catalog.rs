//! `worker seed` and `worker rebuild-redis` against the stack's database and Redis.

use std::time::Instant;

use codec::keys::{self, Catalog, CatalogSection};
use tokio_postgres::error::SqlState;
use worker::{
    catalog::{self, SeedSpec},
    redis::Conn,
    Error,
};

use super::support::{drop_event, flush_event, integer, pg, redis, text, unique};

/// Status records live this long (the edge's default `IDEMPOTENCY_TTL_MS`).
const TTL: std::time::Duration = std::time::Duration::from_secs(86_400);

fn spec(event_id: &str) -> SeedSpec {
    let mut spec = SeedSpec::new(event_id);
    spec.name = "Integration test".into();
    spec.currency = "USD".into();
    spec.sections = vec![
        CatalogSection {
            id: "VIP".into(),
            seats: 100,
            price: 99_000,
        },
        CatalogSection {
            id: "Floor_1".into(),
            seats: 2_500,
            price: 45_000,
        },
        CatalogSection {
            id: "B".into(),
            seats: 7,
            price: 0,
        },
    ];
    spec.open_at_ms = catalog::now_ms() + 3_600_000;
    spec.rate = 123;
    spec
}

fn expected_catalog(spec: &SeedSpec) -> Catalog {
    Catalog {
        event_id: spec.event_id.clone(),
        currency: spec.currency.clone(),
        sections: spec.sections.clone(),
    }
}

async fn redis_catalog(redis: &mut Conn, event_id: &str) -> Option<Catalog> {
    let json = text(
        &redis
            .query(&[b"GET", keys::catalog(event_id).as_bytes()])
            .await
            .expect("GET catalog"),
    )?;
    Some(serde_json::from_str(&json).expect("catalog JSON"))
}

/// `(openAtMs, rate)` of the admission hash.
async fn admission(redis: &mut Conn, event_id: &str) -> (Option<String>, Option<String>) {
    let key = keys::admission(event_id);
    let reply = redis
        .query(&[b"HMGET", key.as_bytes(), b"openAtMs", b"rate"])
        .await
        .expect("HMGET");
    let worker::redis::Frame::Array(fields) = reply else {
        panic!("HMGET reply {reply:?}")
    };
    (text(&fields[0]), text(&fields[1]))
}

async fn sold_bit(redis: &mut Conn, event_id: &str, section: &str, n: u32) -> i64 {
    let key = keys::sold(event_id, section);
    integer(
        &redis
            .query(&[b"GETBIT", key.as_bytes(), n.to_string().as_bytes()])
            .await
            .expect("GETBIT"),
    )
}

/// Sells `seat_ids` to one order, straight in PostgreSQL (what the consumer will do).
async fn sell(pg: &tokio_postgres::Client, event_id: &str, seat_ids: &[&str]) {
    let order_id: i64 = pg
        .query_one(
            "INSERT INTO orders (idem, user_id, event_id, intent_id, seat_ids, amount, currency, status)
             VALUES ($1, 'u1', $2, 'pi1', $3, 0, 'USD', 'CONFIRMED') RETURNING order_id",
            &[&super::support::unique("idem"), &event_id, &seat_ids],
        )
        .await
        .expect("insert order")
        .get(0);
    for seat in seat_ids {
        pg.execute(
            "INSERT INTO sold_seats (event_id, seat_id, order_id) VALUES ($1, $2, $3)",
            &[&event_id, seat, &order_id],
        )
        .await
        .expect("insert sold seat");
    }
}

#[tokio::test]
async fn seed_projects_what_was_asked_into_redis() {
    let (mut pg, mut redis) = (pg().await, redis().await);
    let event = unique("seed");
    let spec = spec(&event);

    let report = catalog::seed(&mut pg, &mut redis, &spec)
        .await
        .expect("seed");
    assert_eq!(report.projection.catalog, expected_catalog(&spec));
    assert_eq!(
        redis_catalog(&mut redis, &event).await,
        Some(expected_catalog(&spec))
    );
    assert_eq!(
        admission(&mut redis, &event).await,
        (Some(spec.open_at_ms.to_string()), Some("123".into()))
    );
    for s in &spec.sections {
        let exists = redis
            .query(&[b"EXISTS", keys::sold(&event, &s.id).as_bytes()])
            .await
            .expect("EXISTS");
        assert_eq!(
            integer(&exists),
            0,
            "a fresh event has nothing sold in {}",
            s.id
        );
    }
    let row = pg
        .query_one(
            "SELECT name, currency, (extract(epoch FROM open_at) * 1000)::bigint, admission_rate FROM events WHERE event_id = $1",
            &[&event],
        )
        .await
        .expect("event row");
    let (name, currency, open_at_ms, rate): (String, String, i64, i32) =
        (row.get(0), row.get(1), row.get(2), row.get(3));
    assert_eq!(
        (name.as_str(), currency.as_str(), open_at_ms as u64, rate),
        ("Integration test", "USD", spec.open_at_ms, 123)
    );

    drop_event(&pg, &mut redis, &event).await;
}

#[tokio::test]
async fn seeding_twice_does_not_duplicate_and_takes_the_new_values() {
    let (mut pg, mut redis) = (pg().await, redis().await);
    let event = unique("reseed");
    let mut spec = spec(&event);
    catalog::seed(&mut pg, &mut redis, &spec)
        .await
        .expect("first seed");
    catalog::seed(&mut pg, &mut redis, &spec)
        .await
        .expect("same seed again");
    spec.sections[1].price = 46_000;
    spec.sections.swap(0, 2);
    spec.rate = 500;
    catalog::seed(&mut pg, &mut redis, &spec)
        .await
        .expect("changed seed");

    let count = |sql: &'static str| {
        let pg = &pg;
        let event = event.clone();
        async move {
            pg.query_one(sql, &[&event])
                .await
                .expect("count")
                .get::<_, i64>(0)
        }
    };
    assert_eq!(
        count("SELECT count(*) FROM events WHERE event_id = $1").await,
        1
    );
    assert_eq!(
        count("SELECT count(*) FROM sections WHERE event_id = $1").await,
        3
    );
    assert_eq!(
        redis_catalog(&mut redis, &event).await,
        Some(expected_catalog(&spec)),
        "new prices, new order"
    );
    assert_eq!(
        admission(&mut redis, &event).await.1.as_deref(),
        Some("500")
    );

    drop_event(&pg, &mut redis, &event).await;
}

#[tokio::test]
async fn a_million_seat_event_seeds() {
    let (mut pg, mut redis) = (pg().await, redis().await);
    let event = unique("million");
    let mut spec = SeedSpec::new(&event);
    for s in &mut spec.sections {
        s.seats = 200_000;
    }
    let started = Instant::now();
    let report = catalog::seed(&mut pg, &mut redis, &spec)
        .await
        .expect("seed");
    let took = started.elapsed();
    println!(
        "seeding {} seats took {took:?} (PostgreSQL {:?}, Redis {:?})",
        report.projection.seats(),
        report.postgres,
        report.redis
    );
    assert_eq!(report.projection.seats(), 1_000_000);
    let projected = redis_catalog(&mut redis, &event).await.expect("catalog");
    assert_eq!(
        projected
            .sections
            .iter()
            .map(|s| u64::from(s.seats))
            .sum::<u64>(),
        1_000_000
    );

    drop_event(&pg, &mut redis, &event).await;
}

#[tokio::test]
async fn rebuild_restores_catalog_admission_and_sold_bits_after_a_flush() {
    let (mut pg, mut redis) = (pg().await, redis().await);
    let event = unique("rebuild");
    let spec = spec(&event);
    catalog::seed(&mut pg, &mut redis, &spec)
        .await
        .expect("seed");
    sell(&pg, &event, &["Floor_1-42", "Floor_1-2500", "B-1"]).await;

    flush_event(&mut redis, &event).await;
    assert_eq!(redis_catalog(&mut redis, &event).await, None, "flushed");
    // A worker sells B-7 while the rebuild runs: its bit lands in Redis before the
    // rebuild's projection (which read PostgreSQL before the sale) and must survive it.
    redis
        .query(&[b"SETBIT", keys::sold(&event, "B").as_bytes(), b"7", b"1"])
        .await
        .expect("SETBIT");
    let projections = catalog::rebuild_redis(&mut pg, &mut redis, Some(&event), TTL)
        .await
        .expect("rebuild");
    assert_eq!(projections.len(), 1);
    assert_eq!(projections[0].sold, 3);

    assert_eq!(
        redis_catalog(&mut redis, &event).await,
        Some(expected_catalog(&spec))
    );
    assert_eq!(
        admission(&mut redis, &event).await,
        (Some(spec.open_at_ms.to_string()), Some("123".into()))
    );
    for (section, n, bit) in [
        ("Floor_1", 42, 1),
        ("Floor_1", 2500, 1),
        ("Floor_1", 41, 0),
        ("B", 1, 1),
        ("B", 7, 1),
        ("VIP", 42, 0),
    ] {
        assert_eq!(
            sold_bit(&mut redis, &event, section, n).await,
            bit,
            "{section}-{n}"
        );
    }
    let count = redis
        .query(&[b"BITCOUNT", keys::sold(&event, "Floor_1").as_bytes()])
        .await
        .expect("BITCOUNT");
    assert_eq!(integer(&count), 2);

    drop_event(&pg, &mut redis, &event).await;
}

#[tokio::test]
async fn rebuild_of_every_event_keeps_an_operators_rate() {
    let (mut pg, mut redis) = (pg().await, redis().await);
    let event = unique("operator");
    catalog::seed(&mut pg, &mut redis, &spec(&event))
        .await
        .expect("seed");
    // The edge's admin endpoint changes the rate in Redis only.
    redis
        .query(&[b"HSET", keys::admission(&event).as_bytes(), b"rate", b"77"])
        .await
        .expect("HSET");
    let projections = catalog::rebuild_redis(&mut pg, &mut redis, None, TTL)
        .await
        .expect("rebuild all");
    assert!(projections.iter().any(|p| p.catalog.event_id == event));
    assert_eq!(admission(&mut redis, &event).await.1.as_deref(), Some("77"));

    let err = catalog::rebuild_redis(&mut pg, &mut redis, Some(&unique("absent")), TTL)
        .await
        .expect_err("unknown event");
    assert!(matches!(err, Error::Invalid(_)), "{err}");

    drop_event(&pg, &mut redis, &event).await;
}

#[tokio::test]
async fn a_seed_never_drops_a_sold_seat_and_projects_the_sold_ones() {
    let (mut pg, mut redis) = (pg().await, redis().await);
    let event = unique("keep");
    let mut spec = spec(&event);
    catalog::seed(&mut pg, &mut redis, &spec)
        .await
        .expect("seed");
    sell(&pg, &event, &["VIP-100"]).await;

    let mut shrunk = spec.clone();
    shrunk.sections[0].seats = 99;
    let mut dropped = spec.clone();
    dropped.sections.remove(0);
    for bad in [shrunk, dropped] {
        let err = catalog::seed(&mut pg, &mut redis, &bad)
            .await
            .expect_err("refused");
        assert!(
            matches!(&err, Error::Invalid(m) if m.contains("VIP-100")),
            "{err}"
        );
    }
    assert_eq!(
        redis_catalog(&mut redis, &event).await,
        Some(expected_catalog(&spec)),
        "unchanged"
    );

    // Dropping an unsold section is fine, and a re-seed projects the sold bit.
    spec.sections.remove(2);
    let report = catalog::seed(&mut pg, &mut redis, &spec)
        .await
        .expect("drop section B");
    assert_eq!(report.removed_sections, ["B"]);
    assert_eq!(report.projection.sold, 1);
    assert_eq!(sold_bit(&mut redis, &event, "VIP", 100).await, 1);

    drop_event(&pg, &mut redis, &event).await;
}

#[tokio::test]
async fn postgres_refuses_a_seat_that_does_not_exist_or_is_sold_twice() {
    let (mut pg, mut redis) = (pg().await, redis().await);
    let event = unique("guard");
    catalog::seed(&mut pg, &mut redis, &spec(&event))
        .await
        .expect("seed");
    sell(&pg, &event, &["B-7"]).await;
    let order_id: i64 = pg
        .query_one("SELECT order_id FROM orders WHERE event_id = $1", &[&event])
        .await
        .expect("order")
        .get(0);
    // Each refused for its own reason: a failure of another kind (a typo in the SQL, a
    // lost connection) must not pass for the guarantee.
    for (seat, why, code, constraint) in [
        (
            "B-7",
            "sold twice",
            SqlState::UNIQUE_VIOLATION,
            Some("sold_seats_pkey"),
        ),
        (
            "B-8",
            "beyond the section",
            SqlState::FOREIGN_KEY_VIOLATION,
            None,
        ),
        (
            "Z-1",
            "no such section",
            SqlState::FOREIGN_KEY_VIOLATION,
            None,
        ),
        (
            "B-0",
            "seat 0",
            SqlState::CHECK_VIOLATION,
            Some("sold_seats_seat_id_check"),
        ),
    ] {
        let err = pg
            .execute(
                "INSERT INTO sold_seats (event_id, seat_id, order_id) VALUES ($1, $2, $3)",
                &[&event, &seat, &order_id],
            )
            .await
            .expect_err(&format!("{seat}: {why} must be refused"));
        let db = err
            .as_db_error()
            .unwrap_or_else(|| panic!("{seat}: {err:?}"));
        assert_eq!(
            (db.code(), db.constraint()),
            (&code, constraint),
            "{seat}: {why}: {db:?}"
        );
    }
    // An Idempotency-Key is the buyer's: the same key from another buyer is another
    // order, from the same buyer a redelivery.
    let order = |user: &'static str| {
        let (pg, event) = (&pg, event.clone());
        async move {
            pg.execute(
                "INSERT INTO orders (idem, user_id, event_id, intent_id, seat_ids, amount, currency, status, reason)
                 VALUES ('key-1', $1, $2, 'pi', '{B-1}', 0, 'USD', 'REJECTED', 'SEAT_SOLD')",
                &[&user, &event],
            )
            .await
        }
    };
    order("alice").await.expect("alice's key-1");
    order("bob").await.expect("bob's key-1 is his own");
    let again = order("alice")
        .await
        .expect_err("alice's key-1 again is the same order");
    let db = again.as_db_error().expect("refused by PostgreSQL");
    assert_eq!(
        (db.code(), db.constraint()),
        (
            &SqlState::UNIQUE_VIOLATION,
            Some("orders_event_id_user_id_idem_key")
        ),
        "{db:?}"
    );

    drop_event(&pg, &mut redis, &event).await;
}
