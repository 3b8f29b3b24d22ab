//! The cached reads: `GET /public/summary/{eventId}/{section}` and
//! `GET /public/seats/{eventId}`, rendered at most once per `PUBLIC_CACHE_MS` per core
//! ([`crate::cache`]).
//!
//! When Redis has no copy of the event (its catalog is missing: flushed, lost, not
//! rebuilt yet), they are rendered from PostgreSQL through the side thread
//! ([`crate::side::snapshots`]: one query per event at a time, its answer kept 2 s),
//! and the one request the side thread names writes the projection back into Redis
//! (`codec::projection`, the worker's own). Holds live only in Redis and went with it:
//! such an answer counts none.

use std::sync::Arc;

use codec::{
    error_code::ErrorCode,
    json::{write_str, write_u64},
    keys::{self, Catalog, CatalogSection},
    projection::{sold_bitmap, AdmissionWrite, Snapshot},
    store::{Frame, SeatStates, Section},
};
use tracing::{info, warn};

use crate::{
    api::request::valid_event,
    core::Core,
    error::Error,
    http::{Head, Reply},
    metrics,
    side::{Fetched, LookupError},
};

/// `GET /public/summary/{eventId}/{section}`.
pub async fn summary(
    core: &Core,
    head: &Head<'_>,
    event_id: &str,
    section: &str,
    reply: &mut Reply,
) -> Result<(), Error> {
    valid_event(event_id)?;
    let event = match core.events.get(&core.redis, event_id).await {
        Ok(event) => Some(event),
        Err(e) if e.code() == ErrorCode::EventNotFound && core.side.is_some() => None,
        Err(e) => return Err(e),
    };
    if let Some(event) = &event {
        if event.section(section).is_none() {
            return Err(no_section());
        }
    }
    let parts = ["summary", event_id, section];
    let rendered = core
        .cache
        .serve(head, &parts, reply, || async {
            if let Some(event) = &event {
                let at = Section {
                    event: event_id,
                    section,
                };
                if let Some((sold, held)) = core.store.counts(&at).await? {
                    let sec = event.section(section).ok_or_else(no_section)?;
                    return Ok(summary_body(&event.catalog, sec, sold, held));
                }
            }
            let snapshot = stored_event(core, event_id).await?;
            let sections = &snapshot.catalog.sections;
            let i = sections.iter().position(|s| s.id == section);
            let i = i.ok_or_else(no_section)?;
            let sold = snapshot.sold_in(i).len() as u64;
            Ok(summary_body(&snapshot.catalog, &sections[i], sold, 0))
        })
        .await?;
    core.metrics.cached(metrics::CACHED_SUMMARY, rendered);
    Ok(())
}

fn no_section() -> Error {
    Error::request(ErrorCode::EventNotFound, "no such section")
}

fn summary_body(catalog: &Catalog, sec: &CatalogSection, sold: u64, held: u64) -> Vec<u8> {
    let total = u64::from(sec.seats);
    let mut out = Vec::with_capacity(160);
    out.extend_from_slice(b"{\"eventId\":");
    write_str(&mut out, catalog.event_id.as_bytes());
    out.extend_from_slice(b",\"section\":");
    write_str(&mut out, sec.id.as_bytes());
    for (name, value) in [
        (&b",\"total\":"[..], total),
        (b",\"available\":", total.saturating_sub(sold + held)),
        (b",\"held\":", held),
        (b",\"sold\":", sold),
        (b",\"price\":", sec.price),
    ] {
        out.extend_from_slice(name);
        write_u64(&mut out, value);
    }
    out.extend_from_slice(b",\"currency\":");
    write_str(&mut out, catalog.currency.as_bytes());
    out.push(b'}');
    out
}

/// `GET /public/seats/{eventId}`: one character a seat, `A`vailable, `H`eld, `S`old.
pub async fn seats(
    core: &Core,
    head: &Head<'_>,
    event_id: &str,
    reply: &mut Reply,
) -> Result<(), Error> {
    valid_event(event_id)?;
    let event = match core.events.get(&core.redis, event_id).await {
        Ok(event) => Some(event),
        Err(e) if e.code() == ErrorCode::EventNotFound && core.side.is_some() => None,
        Err(e) => return Err(e),
    };
    let rendered = core
        .cache
        .serve(head, &["seats", event_id], reply, || async {
            let mut out = Vec::new();
            if let Some(event) = &event {
                let catalog = &event.catalog;
                let sections: Vec<Section<'_>> = catalog
                    .sections
                    .iter()
                    .map(|s| Section {
                        event: event_id,
                        section: &s.id,
                    })
                    .collect();
                start_map(&mut out, event_id);
                let found = core
                    .store
                    .seat_states(&sections, |i, states| {
                        write_section_map(&mut out, i, &catalog.sections[i], states)
                    })
                    .await?;
                if found {
                    out.extend_from_slice(b"]}");
                    return Ok(out);
                }
                out.clear();
            }
            let snapshot = stored_event(core, event_id).await?;
            start_map(&mut out, event_id);
            for (i, section) in snapshot.catalog.sections.iter().enumerate() {
                let sold = sold_bitmap(snapshot.sold_in(i));
                let states = SeatStates {
                    sold: &sold,
                    held: &[],
                };
                write_section_map(&mut out, i, section, states);
            }
            out.extend_from_slice(b"]}");
            Ok(out)
        })
        .await?;
    core.metrics.cached(metrics::CACHED_SEATS, rendered);
    Ok(())
}

fn start_map(out: &mut Vec<u8>, event_id: &str) {
    out.extend_from_slice(b"{\"eventId\":");
    write_str(out, event_id.as_bytes());
    out.extend_from_slice(b",\"sections\":[");
}

/// Section `i`'s entry of the seat map.
fn write_section_map(
    out: &mut Vec<u8>,
    i: usize,
    section: &CatalogSection,
    states: SeatStates<'_>,
) {
    if i > 0 {
        out.push(b',');
    }
    out.extend_from_slice(b"{\"section\":");
    write_str(out, section.id.as_bytes());
    out.extend_from_slice(b",\"seats\":\"");
    let start = out.len();
    out.resize(start + section.seats as usize, b'A');
    let map = &mut out[start..];
    for n in states.held() {
        if (1..=map.len()).contains(&(n as usize)) {
            map[n as usize - 1] = b'H';
        }
    }
    for (n, seat) in map.iter_mut().enumerate().map(|(i, s)| (i + 1, s)) {
        if states.is_sold(n) {
            *seat = b'S';
        }
    }
    out.extend_from_slice(b"\"}");
}

/// The event from PostgreSQL, Redis having no copy of it; the request the side thread
/// names repairs Redis with it. `EVENT_NOT_FOUND` when PostgreSQL has none either (or
/// there is no `DATABASE_URL`); 503 when PostgreSQL cannot tell now.
async fn stored_event(core: &Core, event_id: &str) -> Result<Arc<Snapshot>, Error> {
    let not_found = || Error::request(ErrorCode::EventNotFound, "no such event");
    let Some(side) = &core.side else {
        return Err(not_found());
    };
    match side.event_snapshot(event_id).await {
        Ok(Fetched {
            snapshot: Some(snapshot),
            repair,
        }) => {
            if repair {
                repair_projection(core, &snapshot).await;
            }
            Ok(snapshot)
        }
        Ok(Fetched { snapshot: None, .. }) | Err(LookupError::Unconfigured) => Err(not_found()),
        Err(error) => Err(Error::unavailable("event unavailable, retry", error)),
    }
}

/// Writes the event's projection back into Redis, in one transaction (filling the
/// admission hash's missing fields only, like `worker rebuild-redis`). A failure is
/// logged, not answered: the read has its answer, and the next window's first read
/// tries again.
async fn repair_projection(core: &Core, snapshot: &Snapshot) {
    let event = snapshot.catalog.event_id.as_str();
    let (mut commands, mut count) = (Vec::new(), 0);
    snapshot.write_projection(AdmissionWrite::FillMissing, &[], |args| {
        codec::resp::write_command(&mut commands, &[args]);
        count += 1;
    });
    match core
        .redis
        .transaction(keys::catalog(event).as_bytes(), &commands, count)
        .await
    {
        Ok(Frame::Array(results)) if !results.iter().any(|r| matches!(r, Frame::Error(_))) => {
            info!(
                event,
                sold = snapshot.sold_total(),
                "event projected again into Redis from PostgreSQL"
            );
        }
        Ok(other) => warn!(event, reply = ?other, "repairing the event in Redis failed"),
        Err(error) => warn!(event, %error, "repairing the event in Redis failed"),
    }
}
