//! The cached reads: `GET /public/summary/{eventId}/{section}` and
//! `GET /public/seats/{eventId}`, rendered at most once per `PUBLIC_CACHE_MS` per core
//! ([`crate::cache`]).

use codec::{
    error_code::ErrorCode,
    json::{write_str, write_u64},
    store::Section,
};

use crate::{
    api::request::valid_event,
    core::Core,
    error::Error,
    http::{Head, Reply},
    metrics,
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
    let event = core.events.get(&core.redis, event_id).await?;
    let Some(sec) = event.section(section) else {
        return Err(Error::request(ErrorCode::EventNotFound, "no such section"));
    };
    let parts = ["summary", event_id, section];
    let rendered = core
        .cache
        .serve(head, &parts, reply, || async {
            let (sold, held) = core
                .store
                .counts(&Section {
                    event: event_id,
                    section,
                })
                .await?;
            let total = u64::from(sec.seats);
            let mut out = Vec::with_capacity(160);
            out.extend_from_slice(b"{\"eventId\":");
            write_str(&mut out, event_id.as_bytes());
            out.extend_from_slice(b",\"section\":");
            write_str(&mut out, section.as_bytes());
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
            write_str(&mut out, event.catalog.currency.as_bytes());
            out.push(b'}');
            Ok(out)
        })
        .await?;
    core.metrics.cached(metrics::CACHED_SUMMARY, rendered);
    Ok(())
}

/// `GET /public/seats/{eventId}`: one character a seat, `A`vailable, `H`eld, `S`old.
pub async fn seats(
    core: &Core,
    head: &Head<'_>,
    event_id: &str,
    reply: &mut Reply,
) -> Result<(), Error> {
    valid_event(event_id)?;
    let event = core.events.get(&core.redis, event_id).await?;
    let rendered = core
        .cache
        .serve(head, &["seats", event_id], reply, || async {
            let catalog = &event.catalog.sections;
            let sections: Vec<Section<'_>> = catalog
                .iter()
                .map(|s| Section {
                    event: event_id,
                    section: &s.id,
                })
                .collect();
            let mut out = Vec::new();
            out.extend_from_slice(b"{\"eventId\":");
            write_str(&mut out, event_id.as_bytes());
            out.extend_from_slice(b",\"sections\":[");
            core.store
                .seat_states(&sections, |i, states| {
                    let section = &catalog[i];
                    if i > 0 {
                        out.push(b',');
                    }
                    out.extend_from_slice(b"{\"section\":");
                    write_str(&mut out, section.id.as_bytes());
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
                })
                .await?;
            out.extend_from_slice(b"]}");
            Ok(out)
        })
        .await?;
    core.metrics.cached(metrics::CACHED_SEATS, rendered);
    Ok(())
}
