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
