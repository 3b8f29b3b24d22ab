//! An event's projection from PostgreSQL into Redis, written once for both of the
//! processes that make it: the worker (`seed`, `rebuild-redis`) and the edge, which
//! repairs an event whose catalog Redis lost when `summary` or `seats` asks for it
//! (README "Reads when Redis has no copy").
//!
//! [`SNAPSHOT_SQL`] reads the event in one statement (so one consistent snapshot) as a
//! JSON [`Snapshot`]; [`Snapshot::write_projection`] says the Redis commands that
//! project it, which the caller sends inside one `MULTI`/`EXEC` so that nobody sees half
//! of it:
//! - `ev:{E}:catalog`: the [`Catalog`] JSON (sections in catalog order, sizes, prices);
//! - `ev:{E}:adm`: `openAtMs` and `rate` ([`AdmissionWrite`]);
//! - `ev:{E}:sold:{S}`: the sold bits ORed into Redis's bitmap (`BITOP OR` with the
//!   snapshot in a scratch key of the same hash tag): a seat is never unsold, and a bit
//!   a worker set after the snapshot was read must not be overwritten by it;
//! - `ev:{E}:hold:{S}:{n}`: [`SOLD`] for each sold seat, which a hold's `SET ... NX`
//!   refuses.
//!
//! The catalog is written in the same transaction as the bitmaps: while it is in Redis,
//! so are they (Redis runs with `maxmemory-policy noeviction`), which is why a missing
//! catalog is the one sign the edge needs that the projection is missing.

use serde::Deserialize;

use crate::{
    keys::{self, Catalog},
    store::SOLD,
};

/// One row, one text column: the event as a [`Snapshot`]'s JSON, or no row when there
/// is no such event. `$1` is the event id. Only confirmed orders' seats are sold: an
/// order awaiting its payment (`PAYMENT_MODE=provider`) keeps its seats in `sold_seats`
/// while Redis holds them, and its rejection frees them without clearing any bit.
pub const SNAPSHOT_SQL: &str = "\
SELECT json_build_object(
  'name', e.name,
  'openAtMs', floor(extract(epoch FROM e.open_at) * 1000)::bigint,
  'rate', e.admission_rate,
  'catalog', json_build_object(
    'eventId', e.event_id,
    'currency', rtrim(e.currency),
    'sections', (SELECT coalesce(json_agg(json_build_object('id', s.section_id, 'seats', s.seats, 'price', s.price)
                                          ORDER BY s.position, s.section_id), '[]')
                   FROM sections s WHERE s.event_id = e.event_id)),
  'sold', (SELECT coalesce(json_agg(coalesce(g.numbers, '[]') ORDER BY s.position, s.section_id), '[]')
             FROM sections s
             LEFT JOIN (SELECT ss.section_id, json_agg(ss.n ORDER BY ss.n) AS numbers
                          FROM sold_seats ss JOIN orders o USING (order_id)
                         WHERE ss.event_id = e.event_id AND o.status = 'CONFIRMED'
                         GROUP BY ss.section_id) g
                    USING (section_id)
            WHERE s.event_id = e.event_id)
)::text
FROM events e WHERE e.event_id = $1";

/// Sold markers per `MSET`: a sold-out event of a million seats is 100 commands, not
/// one of a million keys.
const SOLD_PER_MSET: usize = 10_000;

/// An event as PostgreSQL holds it (the JSON of [`SNAPSHOT_SQL`]).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Snapshot {
    pub name: String,
    pub open_at_ms: u64,
    pub rate: u32,
    pub catalog: Catalog,
    /// The sold seat numbers of each section, in catalog order.
    pub sold: Vec<Vec<u32>>,
}

/// How a projection treats the admission hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdmissionWrite {
    /// A seed says what the admission is: the hash is replaced, all but the pre-queue's
    /// seed and draw (`crate::fairness`): a re-seed must not let anyone pick a new seed
    /// after seeing the list.
    Replace,
    /// A rebuild or a repair fills missing fields only: a rate an operator changed since
    /// the seed lives only in Redis, and survives unless Redis lost it too.
    FillMissing,
}

impl Snapshot {
    pub fn parse(json: &str) -> Result<Snapshot, serde_json::Error> {
        let snapshot: Snapshot = serde_json::from_str(json)?;
        if snapshot.sold.len() != snapshot.catalog.sections.len() {
            return Err(serde::de::Error::custom("one list of sold seats a section"));
        }
        Ok(snapshot)
    }

    /// The sold seat numbers of section `i` of the catalog.
    pub fn sold_in(&self, i: usize) -> &[u32] {
        self.sold.get(i).map_or(&[], Vec::as_slice)
    }

    /// Seats sold, all sections.
    pub fn sold_total(&self) -> u64 {
        self.sold.iter().map(|s| s.len() as u64).sum()
    }

    /// The commands of this event's projection, each given to `push` (to go between
    /// `MULTI` and `EXEC`); the sold bitmaps of `removed_sections` are deleted (a seed
    /// removes only sections with no seat sold).
    pub fn write_projection(
        &self,
        admission: AdmissionWrite,
        removed_sections: &[String],
        mut push: impl FnMut(&[&[u8]]),
    ) {
        let event = self.catalog.event_id.as_str();
        // Serializing a struct of strings and numbers cannot fail.
        let catalog_json = serde_json::to_vec(&self.catalog).unwrap_or_default();
        let (open_at_ms, rate) = (self.open_at_ms.to_string(), self.rate.to_string());
        let (catalog_key, admission_key) = (keys::catalog(event), keys::admission(event));
        let adm = admission_key.as_bytes();
        match admission {
            AdmissionWrite::Replace => {
                push(&[
                    b"HDEL",
                    adm,
                    b"baseMs",
                    b"baseAdmitted",
                    b"prequeueAtMs",
                    b"queueing",
                    b"activeLimit",
                    b"frontier",
                ]);
                push(&[
                    b"HSET",
                    adm,
                    b"openAtMs",
                    open_at_ms.as_bytes(),
                    b"rate",
                    rate.as_bytes(),
                ]);
            }
            AdmissionWrite::FillMissing => {
                push(&[b"HSETNX", adm, b"openAtMs", open_at_ms.as_bytes()]);
                push(&[b"HSETNX", adm, b"rate", rate.as_bytes()]);
            }
        }
        let mut markers: Vec<Vec<u8>> = Vec::new();
        for (i, s) in self.catalog.sections.iter().enumerate() {
            let numbers = self.sold_in(i);
            if numbers.is_empty() {
                continue;
            }
            let key = keys::sold(event, &s.id);
            let scratch = format!("{key}:projecting");
            push(&[b"SET", scratch.as_bytes(), &sold_bitmap(numbers)]);
            push(&[
                b"BITOP",
                b"OR",
                key.as_bytes(),
                key.as_bytes(),
                scratch.as_bytes(),
            ]);
            push(&[b"DEL", scratch.as_bytes()]);
            markers.extend(
                numbers
                    .iter()
                    .map(|&n| keys::hold(event, &s.id, n).into_bytes()),
            );
        }
        for chunk in markers.chunks(SOLD_PER_MSET) {
            let mut args: Vec<&[u8]> = Vec::with_capacity(1 + 2 * chunk.len());
            args.push(b"MSET");
            for key in chunk {
                args.extend([key.as_slice(), SOLD]);
            }
            push(&args);
        }
        for section in removed_sections {
            push(&[b"DEL", keys::sold(event, section).as_bytes()]);
        }
        // Last: a reader that finds the catalog finds everything above with it.
        push(&[b"SET", catalog_key.as_bytes(), &catalog_json]);
    }
}

/// A Redis bitmap with bit n set for each n: Redis numbers bits from the most
/// significant bit of the first byte (`SETBIT`, `GETBIT`, `BITCOUNT` agree).
pub fn sold_bitmap(numbers: &[u32]) -> Vec<u8> {
    let Some(&max) = numbers.iter().max() else {
        return Vec::new();
    };
    let mut bitmap = vec![0u8; max as usize / 8 + 1];
    for &n in numbers {
        let n = n as usize;
        bitmap[n / 8] |= 0x80 >> (n % 8);
    }
    bitmap
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::CatalogSection;

    fn snapshot(sold: Vec<Vec<u32>>) -> Snapshot {
        let section = |id: &str| CatalogSection {
            id: id.into(),
            seats: 10,
            price: 100,
        };
        Snapshot {
            name: "Demo".into(),
            open_at_ms: 1_000,
            rate: 50,
            catalog: Catalog {
                event_id: "demo".into(),
                currency: "KRW".into(),
                sections: vec![section("A"), section("B")],
            },
            sold,
        }
    }

    fn commands(s: &Snapshot, admission: AdmissionWrite) -> Vec<String> {
        let mut out = Vec::new();
        s.write_projection(admission, &["Z".into()], |args| {
            let words: Vec<String> = args
                .iter()
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            out.push(words.join(" "));
        });
        out
    }

    #[test]
    fn bitmaps_use_redis_bit_order() {
        assert_eq!(sold_bitmap(&[]), Vec::<u8>::new());
        // SETBIT k 1 1 -> 0b0100_0000; SETBIT k 8 1 -> second byte's top bit.
        assert_eq!(sold_bitmap(&[1]), [0x40]);
        assert_eq!(sold_bitmap(&[8, 1, 15]), [0x40, 0x81]);
    }

    #[test]
    fn the_projection_ors_the_sold_bits_marks_sold_holds_and_writes_the_catalog_last() {
        let s = snapshot(vec![vec![1, 8], vec![]]);
        let got = commands(&s, AdmissionWrite::FillMissing);
        let bitmap = String::from_utf8_lossy(&sold_bitmap(&[1, 8])).into_owned();
        assert_eq!(
            got,
            [
                "HSETNX ev:{demo}:adm openAtMs 1000".to_owned(),
                "HSETNX ev:{demo}:adm rate 50".into(),
                format!("SET ev:{{demo}}:sold:A:projecting {bitmap}"),
                "BITOP OR ev:{demo}:sold:A ev:{demo}:sold:A ev:{demo}:sold:A:projecting".into(),
                "DEL ev:{demo}:sold:A:projecting".into(),
                "MSET ev:{demo}:hold:A:1 sold ev:{demo}:hold:A:8 sold".into(),
                "DEL ev:{demo}:sold:Z".into(),
                r#"SET ev:{demo}:catalog {"eventId":"demo","currency":"KRW","sections":[{"id":"A","seats":10,"price":100},{"id":"B","seats":10,"price":100}]}"#.into(),
            ]
        );
        let replaced = commands(&s, AdmissionWrite::Replace);
        assert!(replaced[0].starts_with("HDEL ev:{demo}:adm baseMs"));
        assert_eq!(replaced[1], "HSET ev:{demo}:adm openAtMs 1000 rate 50");
    }

    #[test]
    fn a_snapshot_parses_from_the_statements_json_and_needs_a_list_a_section() {
        let json = r#"{"name":"Demo","openAtMs":1000,"rate":50,
            "catalog":{"eventId":"demo","currency":"KRW","sections":[
              {"id":"A","seats":10,"price":100},{"id":"B","seats":10,"price":100}]},
            "sold":[[1,8],[]]}"#;
        let s = Snapshot::parse(json).expect("parses");
        assert_eq!(s, snapshot(vec![vec![1, 8], vec![]]));
        assert_eq!(
            (s.sold_in(0), s.sold_in(1), s.sold_total()),
            (&[1, 8][..], &[][..], 2)
        );
        let short = json.replace("[[1,8],[]]", "[[1,8]]");
        assert!(Snapshot::parse(&short).is_err());
    }
}
