//! `worker migrate` on scratch databases.

use worker::{
    migrate::{self, MIGRATIONS},
    Error,
};

use super::support::ScratchDb;

async fn versions_table(
    client: &tokio_postgres::Client,
) -> Vec<(i32, String, i64, std::time::SystemTime)> {
    client
        .query(
            "SELECT version, name, checksum, applied_at FROM schema_migrations ORDER BY version",
            &[],
        )
        .await
        .expect("read schema_migrations")
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect()
}

#[tokio::test]
async fn migrating_twice_changes_nothing_the_second_time() {
    let db = ScratchDb::create().await;
    let mut client = db.connect().await;
    let latest = MIGRATIONS.last().expect("a migration").version;

    let first = migrate::run(&mut client).await.expect("first run");
    assert_eq!(
        first.applied,
        MIGRATIONS.iter().map(|m| m.version).collect::<Vec<_>>()
    );
    assert_eq!(first.current, latest);
    let after_first = versions_table(&client).await;
    assert_eq!(after_first.len(), MIGRATIONS.len());

    let second = migrate::run(&mut client).await.expect("second run");
    assert_eq!(second.applied, Vec::<i32>::new());
    assert_eq!(second.current, latest);
    assert_eq!(
        versions_table(&client).await,
        after_first,
        "the second run must not touch the versions table"
    );

    for table in ["events", "sections", "orders", "sold_seats", "payments"] {
        let found: Option<String> = client
            .query_one("SELECT to_regclass($1)::text", &[&table])
            .await
            .expect("to_regclass")
            .get(0);
        assert_eq!(found.as_deref(), Some(table));
    }
}

#[tokio::test]
async fn concurrent_migrations_all_succeed_and_apply_each_version_once() {
    let db = ScratchDb::create().await;
    let mut runs = Vec::new();
    for _ in 0..4 {
        let mut client = db.connect().await;
        runs.push(tokio::spawn(async move { migrate::run(&mut client).await }));
    }
    let mut applied = Vec::new();
    for run in runs {
        let report = run
            .await
            .expect("task")
            .expect("every concurrent run succeeds");
        applied.extend(report.applied);
    }
    applied.sort();
    assert_eq!(
        applied,
        MIGRATIONS.iter().map(|m| m.version).collect::<Vec<_>>(),
        "each version applied by exactly one run"
    );
    assert_eq!(
        versions_table(&db.connect().await).await.len(),
        MIGRATIONS.len()
    );
}

#[tokio::test]
async fn an_applied_migration_that_changed_is_refused() {
    let db = ScratchDb::create().await;
    let mut client = db.connect().await;
    migrate::run(&mut client).await.expect("first run");
    client
        .execute(
            "UPDATE schema_migrations SET checksum = checksum + 1 WHERE version = 1",
            &[],
        )
        .await
        .expect("tamper");
    let err = migrate::run(&mut client).await.expect_err("refused");
    assert!(matches!(err, Error::Schema(_)), "{err}");
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn rows_the_rules_refuse_stop_0003_by_name_and_new_ones_are_refused_meanwhile() {
    let db = ScratchDb::create().await;
    let mut client = db.connect().await;
    migrate::run(&mut client).await.expect("first run");
    // Back to the schema of 0001, with an order 0002's rules refuse (a user id with a
    // space), as a database written before them could hold.
    client
        .batch_execute(
            "ALTER TABLE orders DROP CONSTRAINT orders_idem_rule, DROP CONSTRAINT orders_user_id_rule,
                 DROP CONSTRAINT orders_intent_id_rule, DROP CONSTRAINT orders_currency_rule,
                 DROP CONSTRAINT orders_seat_ids_rule, DROP CONSTRAINT orders_amount_rule;
             ALTER TABLE payments DROP CONSTRAINT payments_intent_id_rule,
                 DROP CONSTRAINT payments_currency_rule, DROP CONSTRAINT payments_amount_rule;
             ALTER TABLE sections DROP CONSTRAINT sections_seats_rule,
                 DROP CONSTRAINT sections_price_rule;
             DROP FUNCTION seat_ids_ok;
             DROP TABLE payment_callbacks;
             DROP INDEX orders_intent;
             ALTER TABLE payments DROP COLUMN provider_payment_id, DROP COLUMN due_at,
                 DROP COLUMN hold_ids, DROP COLUMN projected;
             DELETE FROM schema_migrations WHERE version > 1;
             INSERT INTO events (event_id, name, currency, open_at, admission_rate)
                 VALUES ('e', 'e', 'USD', now(), 1);
             INSERT INTO orders (idem, user_id, event_id, intent_id, seat_ids, amount, currency, status)
                 VALUES ('k', 'a user', 'e', 'pi', '{A-1}', 0, 'USD', 'CONFIRMED');",
        )
        .await
        .expect("the schema of 0001 and an old row");

    let err = migrate::run(&mut client).await.expect_err("0003 refused");
    assert_eq!(
        err.sqlstate(),
        Some(&tokio_postgres::error::SqlState::CHECK_VIOLATION)
    );
    assert!(err.to_string().contains("orders_user_id_rule"), "{err}");
    // 0002 landed: new rows are checked already.
    let versions: Vec<i32> = versions_table(&client).await.iter().map(|v| v.0).collect();
    assert_eq!(versions, [1, 2]);
    let refused = client
        .execute(
            "INSERT INTO orders (idem, user_id, event_id, intent_id, seat_ids, amount, currency, status)
             VALUES ('k2', 'another user', 'e', 'pi', '{A-1}', 0, 'USD', 'CONFIRMED')",
            &[],
        )
        .await
        .expect_err("refused by 0002");
    assert_eq!(
        refused.code(),
        Some(&tokio_postgres::error::SqlState::CHECK_VIOLATION)
    );

    // The operator fixes the row; the next run validates.
    client
        .execute("UPDATE orders SET user_id = 'a_user'", &[])
        .await
        .expect("fix");
    let report = migrate::run(&mut client).await.expect("second run");
    assert_eq!(report.applied, [3, 4, 5, 6, 7]);
}
