//! Content codings of the cached reads: which one a request accepts
//! (`Accept-Encoding`, RFC 9110 section 12.5.3) and gzip (RFC 1952), made once per
//! rendering by flate2 on its pure-Rust backend (miniz_oxide).
//!
//! Only gzip: every HTTP client and CDN speaks it, and a seat map (long runs of one
//! character) shrinks ~100x with it; brotli would add a large crate for bytes that
//! are already few.

use std::io::Write;

use flate2::{write::GzEncoder, Compression};

/// The coding an answer is sent in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coding {
    Identity,
    Gzip,
}

/// Picks the coding for `accept` (the `Accept-Encoding` value). gzip when its
/// qvalue is above zero and at least that of identity where identity is weighed
/// (named, or by `*`); else identity, also when identity too is refused
/// (`identity;q=0` with no gzip), as RFC 9110 section 12.5.3 lets a server do rather
/// than fail a read. No header: identity (what a client that says nothing is sure to
/// read).
pub fn choose(accept: Option<&[u8]>) -> Coding {
    let Some(accept) = accept else {
        return Coding::Identity;
    };
    let (mut gzip, mut identity, mut any) = (None, None, None);
    for item in accept.split(|&b| b == b',') {
        let mut params = item.split(|&b| b == b';');
        let coding = params.next().unwrap_or_default().trim_ascii();
        // A weight that is not a qvalue makes the coding unacceptable, not preferred.
        let q = params
            .find_map(|p| {
                let p = p.trim_ascii();
                (p.len() >= 2 && p[..2].eq_ignore_ascii_case(b"q=")).then(|| &p[2..])
            })
            .map_or(Some(1000), qvalue)
            .unwrap_or(0);
        if coding.eq_ignore_ascii_case(b"gzip") || coding.eq_ignore_ascii_case(b"x-gzip") {
            gzip = Some(q);
        } else if coding.eq_ignore_ascii_case(b"identity") {
            identity = Some(q);
        } else if coding == b"*" {
            any = Some(q);
        }
    }
    let gzip = gzip.or(any).unwrap_or(0);
    // Unweighed identity is merely acceptable: any gzip weight beats it.
    let identity = identity.or(any).unwrap_or(0);
    if gzip > 0 && gzip >= identity {
        Coding::Gzip
    } else {
        Coding::Identity
    }
}

/// A qvalue (RFC 9110 section 12.4.2) in thousandths: `0`, `0.5`, `1.000`.
fn qvalue(v: &[u8]) -> Option<u16> {
    let (&first, rest) = v.split_first()?;
    let fraction = match rest {
        [] => &[][..],
        [b'.', digits @ ..] if digits.len() <= 3 && digits.iter().all(u8::is_ascii_digit) => digits,
        _ => return None,
    };
    let mut thousandths = 0u16;
    for i in 0..3 {
        thousandths = thousandths * 10 + fraction.get(i).map_or(0, |d| u16::from(d - b'0'));
    }
    match first {
        b'0' => Some(thousandths),
        b'1' if thousandths == 0 => Some(1000),
        _ => None,
    }
}

/// Bodies shorter than this are not gzipped (CloudFront's own lower bound): they save a
/// few bytes of a packet that goes out anyway, and each attempt costs a deflate state
/// (callgrind: a cached summary, ~130 bytes, spent 39% of its instructions zeroing one
/// at every rendering).
pub const GZIP_MIN_BYTES: usize = 1000;

/// `body` gzipped, when it is long enough and that is smaller.
pub fn gzip(body: &[u8]) -> Option<Vec<u8>> {
    if body.len() < GZIP_MIN_BYTES {
        return None;
    }
    let mut encoder = GzEncoder::new(
        Vec::with_capacity(body.len() / 8 + 64),
        Compression::default(),
    );
    encoder.write_all(body).ok()?;
    let gzipped = encoder.finish().ok()?;
    (gzipped.len() < body.len()).then_some(gzipped)
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    #[test]
    fn a_body_under_the_minimum_is_never_gzipped() {
        let short = vec![b'a'; GZIP_MIN_BYTES - 1];
        assert_eq!(gzip(&short), None);
        let long = vec![b'a'; GZIP_MIN_BYTES];
        let gz = gzip(&long).expect("1000 repeated bytes shrink");
        assert!(gz.len() < long.len());
    }

    #[test]
    fn chooses_by_qvalue() {
        use Coding::{Gzip, Identity};
        for (accept, want) in [
            (None, Identity),
            (Some(""), Identity),
            (Some("gzip"), Gzip),
            (Some("GZip"), Gzip),
            (Some("x-gzip"), Gzip),
            (Some("gzip, deflate, br, zstd"), Gzip),
            (Some("br;q=1.0, gzip;q=0.8, *;q=0.1"), Gzip),
            (Some("deflate, br"), Identity),
            (Some("*"), Gzip),
            (Some("gzip;q=0"), Identity),
            (Some("gzip;q=0.000"), Identity),
            (Some("gzip;q=0.001"), Gzip),
            (Some("gzip;Q=0.5, identity;q=0.9"), Identity),
            (Some("gzip;q=0.9, identity;q=0.9"), Gzip),
            (Some("gzip, identity;q=0"), Gzip),
            (Some("identity;q=0"), Identity),
            (Some("*;q=0"), Identity),
            (Some("*;q=0, gzip"), Gzip),
            (Some("*;q=0.5, identity"), Identity),
            (Some("gzip;q=2"), Identity),
            (Some("gzip;q=0.5x"), Identity),
            (Some("gzip;q=1.001"), Identity),
            (Some("gzip;q=1.000"), Gzip),
            (Some("gzip;level=9;q=0.5"), Gzip),
            (Some(" , ;, gzip ; q=0.5 "), Gzip),
        ] {
            assert_eq!(choose(accept.map(str::as_bytes)), want, "{accept:?}");
        }
    }

    #[test]
    fn gzip_round_trips_and_skips_what_it_cannot_shrink() {
        let map = [b'A'; 10_000];
        let gzipped = gzip(&map).expect("a seat map shrinks");
        assert!(gzipped.len() < 200, "{}", gzipped.len());
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(&gzipped[..])
            .read_to_end(&mut back)
            .expect("gunzip");
        assert_eq!(back, map);
        assert_eq!(gzip(br#"{"a":1}"#), None);
    }
}
