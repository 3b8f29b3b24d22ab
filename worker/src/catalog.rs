//! The event catalog: PostgreSQL holds it (`events`, `sections`), Redis serves it
//! (`codec::keys`). [`seed`] writes an event into PostgreSQL and then projects it;
//! [`rebuild_redis`] projects again from PostgreSQL after Redis lost its data.
//!
//! A projection (`codec::projection`, shared with the edge's repair) writes the
//! catalog, the admission hash (a seed replaces it; a rebuild only fills fields that
//! are missing, keeping an operator's later rate change), each section's sold bitmap
//! and `sold` in each sold seat's hold key, in one `MULTI`/`EXEC` so the edge never
//! sees half of it.
//!
//! A rebuild also writes the order status records again (`project::rebuild_statuses`).
//!
//! Seats are not rows: seat `{S}-{n}` exists for 1 <= n <= the section's size (see
//! `migrations/0001_init.sql`), which is why a 1,000,000-seat event seeds in
//! milliseconds.

use std::{
    fmt,
    time::{Duration, Instant, UNIX_EPOCH},
};

use codec::{
    keys::{Catalog, CatalogSection},
    projection::Snapshot,
    rules,
};
use tokio_postgres::Client;

use crate::{
    error::Error,
    redis::{Conn, Pipeline},
};

/// Most sections one event may have.
pub const MAX_SECTIONS: usize = 1_000;

/// What `worker seed` is asked to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedSpec {
    pub event_id: String,
    pub name: String,
    /// ISO 4217 code, three capital letters.
    pub currency: String,
    /// In catalog order.
    pub sections: Vec<CatalogSection>,
    /// When the waiting room starts admitting, epoch milliseconds.
    pub open_at_ms: u64,
    /// New users admitted a second.
    pub rate: u32,
    /// The pre-queue, queueing and active limit (README "Fair admission"), applied
    /// after the projection by `admission.lua`; Redis only.
    pub line: crate::fairness::LineSpec,
}

impl SeedSpec {
    /// The defaults of `worker seed EVENT`: sections A to E of 10,000 seats, prices
    /// descending from 150,000 KRW by 30,000, open now, 10,000 users a second.
    pub fn new(event_id: &str) -> Self {
        let ids = ["A", "B", "C", "D", "E"].map(str::to_owned);
        Self {
            event_id: event_id.to_owned(),
            name: event_id.to_owned(),
            currency: "KRW".to_owned(),
            sections: sections(&ids, 10_000, &default_prices(ids.len())),
            open_at_ms: now_ms(),
            rate: 10_000,
            line: crate::fairness::LineSpec::default(),
        }
    }

    /// Refuses what PostgreSQL or the key layout would refuse, with the reason.
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |what: String| Err(Error::Invalid(what));
        let bad_field = |what: &str, e: rules::Invalid| Err(Error::Invalid(format!("{what}: {e}")));
        if let Err(e) = rules::event_id(&self.event_id) {
            return bad_field(&format!("event id {:?}", self.event_id), e);
        }
        if self.name.trim().is_empty() || self.name.len() > 200 {
            return bad(format!(
                "event name {:?}: expected 1 to 200 bytes",
                self.name
            ));
        }
        if let Err(e) = rules::currency(&self.currency) {
            return bad_field(&format!("currency {:?}", self.currency), e);
        }
        if self.sections.is_empty() || self.sections.len() > MAX_SECTIONS {
            return bad(format!(
                "{} sections: expected 1 to {MAX_SECTIONS}",
                self.sections.len()
            ));
        }
        for (i, s) in self.sections.iter().enumerate() {
            if let Err(e) = rules::section_id(&s.id) {
                return bad_field(&format!("section id {:?}", s.id), e);
            }
            if self.sections[..i].iter().any(|t| t.id == s.id) {
                return bad(format!("section {} named twice", s.id));
            }
            if let Err(e) = rules::section_seats(s.seats) {
                return bad_field(&format!("section {}: {} seats", s.id, s.seats), e);
            }
            if let Err(e) = rules::amount(s.price) {
                return bad_field(
                    &format!("section {}: price {}", s.id, s.price),
                    e.named("price"),
                );
            }
        }
        if let Err(e) = rules::admission_rate(u64::from(self.rate)) {
            return bad_field(&format!("rate {}", self.rate), e);
        }
        if let Err(e) = rules::epoch_ms(self.open_at_ms) {
            return bad_field(&format!("opening time {} ms", self.open_at_ms), e);
        }
        if let Some(at) = self.line.prequeue_at_ms {
            if let Err(e) = rules::prequeue_at_ms(at) {
                return bad_field(&format!("pre-queue time {at} ms"), e);
            }
            if at >= self.open_at_ms {
                return bad("the pre-queue must open before the opening".into());
            }
        }
        if let Some(limit) = self.line.active_limit {
            if let Err(e) = rules::active_limit(limit) {
                return bad_field(&format!("active limit {limit}"), e);
            }
        }
        Ok(())
    }
}

/// Sections named `ids`, each with `seats` seats, priced `prices[i]`.
pub fn sections(ids: &[String], seats: u32, prices: &[u64]) -> Vec<CatalogSection> {
    ids.iter()
        .zip(prices)
        .map(|(id, &price)| CatalogSection {
            id: id.clone(),
            seats,
            price,
        })
        .collect()
}

/// 30,000 steps down to 30,000 for the last section: A=150000 ... E=30000 for five.
pub fn default_prices(sections: usize) -> Vec<u64> {
    (0..sections)
        .map(|i| 30_000 * (sections - i) as u64)
        .collect()
}

pub use crate::now_ms;

/// What a projection wrote for one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Projection {
    pub catalog: Catalog,
    pub name: String,
    pub open_at_ms: u64,
    pub rate: u32,
    /// Sold seats, all sections.
    pub sold: u64,
    /// Order status records written (`rebuild_redis` only; a seed writes none).
    pub statuses: u64,
}

impl Projection {
    pub fn seats(&self) -> u64 {
        self.catalog
            .sections
            .iter()
            .map(|s| u64::from(s.seats))
            .sum()
    }
}

impl fmt::Display for Projection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.catalog;
        write!(
            f,
            "event {} ({:?}): {} sections, {} seats, {} sold; ",
            c.event_id,
            self.name,
            c.sections.len(),
            self.seats(),
            self.sold
        )?;
        for (i, s) in c.sections.iter().enumerate() {
            let sep = if i == 0 { "" } else { ", " };
            write!(f, "{sep}{}={}x{}", s.id, s.seats, s.price)?;
        }
        write!(f, " {}; opens at {} ms (", c.currency, self.open_at_ms)?;
        match (self.open_at_ms as i64 - now_ms() as i64) / 1000 {
            0 => write!(f, "now")?,
            secs if secs > 0 => write!(f, "in {secs} s")?,
            secs => write!(f, "{} s ago", -secs)?,
        }
        write!(f, "), {} users/s", self.rate)?;
        if self.statuses > 0 {
            write!(f, "; {} order statuses", self.statuses)?;
        }
        Ok(())
    }
}

/// What `seed` did and how long each half took.
#[derive(Debug, Clone)]
pub struct SeedReport {
    pub projection: Projection,
    /// Sections of the event that the seed dropped (none had a sold seat).
    pub removed_sections: Vec<String>,
    pub postgres: Duration,
    pub redis: Duration,
}

/// Upserts the event and its sections in PostgreSQL (re-runnable: a second run with
/// the same spec changes nothing but `updated_at`), then projects the event into Redis.
/// A seed never drops a sold seat: removing a section, or shrinking one below a sold
/// seat's number, is refused.
pub async fn seed(pg: &mut Client, redis: &mut Conn, spec: &SeedSpec) -> Result<SeedReport, Error> {
    spec.validate()?;
    let started = Instant::now();
    let removed_sections = upsert(pg, spec).await?;
    let postgres = started.elapsed();
    let started = Instant::now();
    let projection = project(
        pg,
        redis,
        &spec.event_id,
        Admission::Replace,
        &removed_sections,
    )
    .await?
    .ok_or_else(|| {
        Error::Invalid(format!(
            "event {} vanished while being seeded",
            spec.event_id
        ))
    })?;
    Ok(SeedReport {
        projection,
        removed_sections,
        postgres,
        redis: started.elapsed(),
    })
}

/// The PostgreSQL half of [`seed`], one transaction; returns the sections removed.
async fn upsert(pg: &mut Client, spec: &SeedSpec) -> Result<Vec<String>, Error> {
    let tx = pg.transaction().await?;
    let open_at = UNIX_EPOCH + Duration::from_millis(spec.open_at_ms);
    let rate = spec.rate as i32;
    tx.execute(
        "INSERT INTO events (event_id, name, currency, open_at, admission_rate) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (event_id) DO UPDATE SET name = EXCLUDED.name, currency = EXCLUDED.currency,
             open_at = EXCLUDED.open_at, admission_rate = EXCLUDED.admission_rate, updated_at = now()",
        &[&spec.event_id, &spec.name, &spec.currency, &open_at, &rate],
    )
    .await?;
    // Lock the event's sections against a concurrent sale (selling a seat takes a key
    // share lock on its section through sold_seats' foreign key), so that the check
    // below sees every sold seat and no new one lands beyond a shrunk section.
    tx.execute(
        "SELECT 1 FROM sections WHERE event_id = $1 FOR UPDATE",
        &[&spec.event_id],
    )
    .await?;
    let ids: Vec<&str> = spec.sections.iter().map(|s| s.id.as_str()).collect();
    let seats: Vec<i32> = spec.sections.iter().map(|s| s.seats as i32).collect();
    let prices: Vec<i64> = spec.sections.iter().map(|s| s.price as i64).collect();
    let lost = tx
        .query_opt(
            "SELECT ss.seat_id FROM sold_seats ss
               LEFT JOIN unnest($2::text[], $3::int[]) AS s (id, seats) ON s.id = ss.section_id
              WHERE ss.event_id = $1 AND (s.id IS NULL OR ss.n > s.seats)
              LIMIT 1",
            &[&spec.event_id, &ids, &seats],
        )
        .await?;
    if let Some(row) = lost {
        let seat: String = row.get(0);
        return Err(Error::Invalid(format!(
            "seat {seat} of event {} is sold and this seed has no such seat; a seed must keep every sold seat",
            spec.event_id
        )));
    }
    tx.execute(
        "INSERT INTO sections (event_id, section_id, position, seats, price)
         SELECT $1, s.id, (s.ord - 1)::int, s.seats, s.price
           FROM unnest($2::text[], $3::int[], $4::bigint[]) WITH ORDINALITY AS s (id, seats, price, ord)
         ON CONFLICT (event_id, section_id) DO UPDATE
            SET position = EXCLUDED.position, seats = EXCLUDED.seats, price = EXCLUDED.price",
        &[&spec.event_id, &ids, &seats, &prices],
    )
    .await?;
    let removed = tx
        .query(
            "DELETE FROM sections WHERE event_id = $1 AND section_id <> ALL ($2::text[]) RETURNING section_id",
            &[&spec.event_id, &ids],
        )
        .await?;
    tx.commit().await?;
    Ok(removed.iter().map(|row| row.get(0)).collect())
}

use codec::projection::AdmissionWrite as Admission;

/// Re-projects the catalog, the admission state and the sold bitmaps of one event
/// (`Some`) or of every event (`None`) from PostgreSQL into Redis, after Redis lost
/// its data (a `FLUSHALL`, a failover to an empty replica), then the status records
/// of the event's orders younger than `status_ttl` (`project::rebuild_statuses`).
/// Returns one [`Projection`] per event; an unknown event is [`Error::Invalid`].
///
/// Workers may keep selling meanwhile: the sold bits are ORed into what Redis has
/// ([`project`]), so a seat sold after the snapshot was read keeps the bit its worker
/// set.
pub async fn rebuild_redis(
    pg: &mut Client,
    redis: &mut Conn,
    event_id: Option<&str>,
    status_ttl: std::time::Duration,
) -> Result<Vec<Projection>, Error> {
    let ids: Vec<String> = match event_id {
        Some(id) => vec![id.to_owned()],
        None => pg
            .query("SELECT event_id FROM events ORDER BY event_id", &[])
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect(),
    };
    let mut projections = Vec::with_capacity(ids.len());
    for id in &ids {
        match project(pg, redis, id, Admission::FillMissing, &[]).await? {
            Some(mut p) => {
                p.statuses = crate::project::rebuild_statuses(pg, redis, id, status_ttl).await?;
                projections.push(p);
            }
            // Deleted since the listing: nothing of it to project.
            None if event_id.is_none() => {}
            None => return Err(Error::Invalid(format!("no event {id} in PostgreSQL"))),
        }
    }
    Ok(projections)
}

/// Reads one event from PostgreSQL (one statement, so one consistent snapshot) and
/// writes its projection into Redis in one transaction (`codec::projection`, which the
/// edge's repair shares); `None` when the event does not exist. `removed_sections`'
/// sold bitmaps are deleted (a seed removes only sections with no seat sold).
async fn project(
    pg: &mut Client,
    redis: &mut Conn,
    event_id: &str,
    admission: Admission,
    removed_sections: &[String],
) -> Result<Option<Projection>, Error> {
    let Some(row) = pg
        .query_opt(codec::projection::SNAPSHOT_SQL, &[&event_id])
        .await?
    else {
        return Ok(None);
    };
    let snapshot = Snapshot::parse(row.get(0))
        .map_err(|e| Error::Invalid(format!("event {event_id} read back: {e}")))?;
    let mut p = Pipeline::new();
    snapshot.write_projection(admission, removed_sections, |args| {
        p.push(args);
    });
    redis.transaction(&p).await?;
    Ok(Some(Projection {
        sold: snapshot.sold_total(),
        name: snapshot.name,
        open_at_ms: snapshot.open_at_ms,
        rate: snapshot.rate,
        statuses: 0,
        catalog: snapshot.catalog,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_the_demo_event() {
        let spec = SeedSpec::new("demo");
        spec.validate().expect("valid");
        let summary: Vec<(&str, u32, u64)> = spec
            .sections
            .iter()
            .map(|s| (s.id.as_str(), s.seats, s.price))
            .collect();
        assert_eq!(
            summary,
            [
                ("A", 10_000, 150_000),
                ("B", 10_000, 120_000),
                ("C", 10_000, 90_000),
                ("D", 10_000, 60_000),
                ("E", 10_000, 30_000)
            ]
        );
        assert_eq!(spec.currency, "KRW");
        assert!(spec.open_at_ms.abs_diff(now_ms()) < 60_000);
    }

    #[test]
    fn bad_specs_are_refused_with_the_reason() {
        type Break = fn(&mut SeedSpec);
        let cases: [(&str, Break); 10] = [
            ("event id", |s| s.event_id = "a{b}".into()),
            ("currency", |s| s.currency = "krw".into()),
            ("section id", |s| s.sections[0].id = "A-1".into()),
            ("named twice", |s| s.sections[1].id = "A".into()),
            ("seats", |s| s.sections[0].seats = 0),
            ("price", |s| s.sections[0].price = u64::MAX),
            ("rate", |s| s.rate = 0),
            ("rate", |s| s.rate = 10_000_001),
            ("opening time", |s| s.open_at_ms = u64::MAX),
            ("sections", |s| s.sections.clear()),
        ];
        for (what, break_it) in cases {
            let mut spec = SeedSpec::new("demo");
            break_it(&mut spec);
            let err = spec.validate().expect_err(what).to_string();
            assert!(err.contains(what), "{what}: {err}");
        }
    }
}
