//! Versioned, re-runnable schema migrations (`worker migrate`).
//!
//! Migrations are the SQL files `worker/migrations/NNNN_name.sql`, compiled in. Each is
//! applied in a transaction of its own together with its row in
//! `schema_migrations(version, name, checksum, applied_at)`, so it lands whole or not at
//! all. A session advisory lock serializes concurrent runs (two tasks starting at once):
//! the second waits, then finds nothing left to do. An applied migration whose file has
//! changed since is refused rather than silently skipped: write a new migration instead.

use tokio_postgres::Client;
use tracing::{info, warn};

use crate::error::Error;

/// One migration file.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    pub version: i32,
    /// The file name without `.sql`: `NNNN_name`, NNNN being the version.
    pub name: &'static str,
    pub sql: &'static str,
}

macro_rules! migration {
    ($version:literal, $name:literal) => {
        Migration {
            version: $version,
            name: $name,
            sql: include_str!(concat!("../migrations/", $name, ".sql")),
        }
    };
}

/// Every migration, in order. A unit test checks this list against the directory.
pub const MIGRATIONS: &[Migration] = &[
    migration!(1, "0001_init"),
    migration!(2, "0002_rules"),
    migration!(3, "0003_rules_validate"),
    migration!(4, "0004_amount_rule"),
    migration!(5, "0005_amount_rule_validate"),
    migration!(6, "0006_payment_callback"),
    migration!(7, "0007_payment_callback_validate"),
];

/// Key of the advisory lock taken while migrating (any constant works; this one reads
/// "maxtps_m" in ASCII so it is recognisable in `pg_locks`).
const LOCK_KEY: i64 = 0x6d61_7874_7073_5f6d;

/// What a run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Versions applied by this run, in order (empty when the schema was current).
    pub applied: Vec<i32>,
    /// The schema's version afterwards.
    pub current: i32,
}

/// Applies every migration the database does not have yet.
pub async fn run(client: &mut Client) -> Result<Report, Error> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&LOCK_KEY])
        .await?;
    let result = apply_missing(client).await;
    // On error the session may be gone; closing the connection releases the lock anyway.
    let unlocked = client
        .execute("SELECT pg_advisory_unlock($1)", &[&LOCK_KEY])
        .await;
    let report = result?;
    unlocked?;
    Ok(report)
}

async fn apply_missing(client: &mut Client) -> Result<Report, Error> {
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                 version    integer     PRIMARY KEY,
                 name       text        NOT NULL,
                 checksum   bigint      NOT NULL,
                 applied_at timestamptz NOT NULL DEFAULT now()
             )",
        )
        .await?;
    let rows = client
        .query(
            "SELECT version, name, checksum FROM schema_migrations ORDER BY version",
            &[],
        )
        .await?;
    let mut applied_before = Vec::with_capacity(rows.len());
    for row in rows {
        let (version, name, stored): (i32, String, i64) = (row.get(0), row.get(1), row.get(2));
        match MIGRATIONS.iter().find(|m| m.version == version) {
            Some(m) if checksum(m.sql) != stored => {
                return Err(Error::Schema(format!(
                    "migration {name} was applied from a different file than this binary's; \
                     never edit an applied migration, add a new one"
                )));
            }
            Some(_) => {}
            // A newer binary migrated this database (a rolling deploy): its schema is a
            // superset of ours, so carry on.
            None => warn!(
                version,
                name, "database has a migration this binary does not know"
            ),
        }
        applied_before.push(version);
    }
    let mut report = Report {
        applied: Vec::new(),
        current: applied_before.iter().copied().max().unwrap_or(0),
    };
    for m in MIGRATIONS
        .iter()
        .filter(|m| !applied_before.contains(&m.version))
    {
        let tx = client.transaction().await?;
        tx.batch_execute(m.sql).await?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
            &[&m.version, &m.name, &checksum(m.sql)],
        )
        .await?;
        tx.commit().await?;
        info!(version = m.version, name = m.name, "migration applied");
        report.applied.push(m.version);
        report.current = report.current.max(m.version);
    }
    Ok(report)
}

/// FNV-1a (64 bit) of the migration's text: enough to notice an edited file.
fn checksum(sql: &str) -> i64 {
    let hash = sql.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    hash as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_matches_the_migrations_directory() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/migrations");
        let mut files: Vec<String> = std::fs::read_dir(dir)
            .expect("migrations directory")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .filter(|f| f.ends_with(".sql"))
            .collect();
        files.sort();
        let listed: Vec<String> = MIGRATIONS
            .iter()
            .map(|m| format!("{}.sql", m.name))
            .collect();
        assert_eq!(
            files, listed,
            "add each new migrations/NNNN_name.sql to MIGRATIONS"
        );
        for m in MIGRATIONS {
            assert!(
                m.name.starts_with(&format!("{:04}_", m.version)),
                "{} is not version {}",
                m.name,
                m.version
            );
        }
        assert!(
            MIGRATIONS.windows(2).all(|w| w[0].version < w[1].version),
            "versions must increase"
        );
    }

    #[test]
    fn checksums_notice_any_change() {
        assert_ne!(
            checksum("CREATE TABLE a ();"),
            checksum("CREATE TABLE a ( );")
        );
        assert_eq!(checksum(""), 0xcbf2_9ce4_8422_2325_u64 as i64);
    }
}
