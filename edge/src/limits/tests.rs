use std::net::{IpAddr, Ipv4Addr};

use super::*;

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

const PEER: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 9));

#[test]
fn without_trusted_hops_the_header_is_ignored() {
    assert_eq!(client_addr(Some(b"1.2.3.4"), PEER, 0), PEER);
    assert_eq!(client_addr(None, PEER, 1), PEER);
}

#[test]
fn the_rightmost_untrusted_hop_is_the_client() {
    // The client sent a made-up entry; the ALB appended the real address.
    let xff = b"6.6.6.6, 203.0.113.7";
    assert_eq!(client_addr(Some(xff), PEER, 1), ip("203.0.113.7"));
    // CloudFront appended the viewer, then the ALB appended CloudFront.
    let xff = b"6.6.6.6,198.51.100.1,  130.176.0.5 ";
    assert_eq!(client_addr(Some(xff), PEER, 2), ip("198.51.100.1"));
    assert_eq!(client_addr(Some(xff), PEER, 3), ip("6.6.6.6"));
}

#[test]
fn fewer_entries_than_hops_or_garbage_falls_back_to_the_peer() {
    assert_eq!(client_addr(Some(b"203.0.113.7"), PEER, 2), PEER);
    assert_eq!(client_addr(Some(b"1.1.1.1, unknown"), PEER, 1), PEER);
    assert_eq!(client_addr(Some(b""), PEER, 1), PEER);
    assert_eq!(client_addr(Some(b"1.1.1.1,"), PEER, 1), PEER);
    let long = vec![b'1'; MAX_FORWARDED_FOR_BYTES + 1];
    assert_eq!(client_addr(Some(&long), PEER, 1), PEER);
}

#[test]
fn entries_with_ports_and_brackets_parse() {
    for (entry, want) in [
        (&b"203.0.113.7:4431"[..], "203.0.113.7"),
        (b"[2001:db8::1]:443", "2001:db8::1"),
        (b"[2001:db8::1]", "2001:db8::1"),
        (b"2001:db8::1", "2001:db8::1"),
        (b" 192.0.2.1 ", "192.0.2.1"),
    ] {
        assert_eq!(client_addr(Some(entry), PEER, 1), ip(want), "{entry:?}");
    }
}

#[test]
fn an_ipv6_client_is_counted_by_its_64() {
    assert_eq!(
        address_bytes(ip("2001:db8:1:2::1")),
        address_bytes(ip("2001:db8:1:2:ffff::9"))
    );
    assert_ne!(
        address_bytes(ip("2001:db8:1:2::1")),
        address_bytes(ip("2001:db8:1:3::1"))
    );
    assert_eq!(
        address_bytes(ip("::ffff:192.0.2.1")),
        address_bytes(ip("192.0.2.1"))
    );
    assert_ne!(
        address_bytes(ip("192.0.2.1")),
        address_bytes(ip("192.0.2.2"))
    );
}

fn limits(per_sec: u32, burst: u32, slots: usize) -> Limits {
    let rate = Rate { per_sec, burst };
    Limits::new(Some(RateLimits {
        address: rate,
        buyer: rate,
        slots,
    }))
}

#[test]
fn a_bucket_allows_its_burst_then_its_rate() {
    let l = limits(10, 3, 64);
    let s = l.settings.expect("on");
    let t = l.tag(1, b"u");
    let t0 = 5_000_000;
    for _ in 0..3 {
        assert_eq!(l.take_at(&s, t, s.buyer, t0), Ok(()));
    }
    // 10/s: one every 100 ms.
    assert_eq!(l.take_at(&s, t, s.buyer, t0), Err(100_000));
    assert_eq!(l.take_at(&s, t, s.buyer, t0 + 99_999), Err(1));
    assert_eq!(l.take_at(&s, t, s.buyer, t0 + 100_000), Ok(()));
    assert!(l.take_at(&s, t, s.buyer, t0 + 100_000).is_err());
    // Idle for a second: the whole burst again, no more.
    let t1 = t0 + 1_200_000;
    for _ in 0..3 {
        assert_eq!(l.take_at(&s, t, s.buyer, t1), Ok(()));
    }
    assert!(l.take_at(&s, t, s.buyer, t1).is_err());
}

#[test]
fn over_the_limit_is_429_with_retry_after() {
    let l = limits(1, 1, 64);
    assert!(l.buyer("u").is_ok());
    let e = l.buyer("u").expect_err("limited");
    assert_eq!(e.code(), ErrorCode::RateLimited);
    assert_eq!(e.code().status(), 429);
    assert!(matches!(
        e,
        Error::RetryLater {
            retry_after_secs: 1,
            ..
        }
    ));
    // Another buyer, and an address, have buckets of their own.
    assert!(l.buyer("v").is_ok());
    assert!(l.address(ip("192.0.2.1")).is_ok());
}

#[test]
fn off_limits_nothing() {
    let l = Limits::new(None);
    for _ in 0..10_000 {
        assert!(l.buyer("u").is_ok());
    }
}

#[test]
fn memory_is_bounded_and_a_limited_client_keeps_its_slot() {
    // 16 slots: 4 sets of 4.
    let l = limits(1, 2, 16);
    let s = l.settings.expect("on");
    assert_eq!(l.table.borrow().len(), 16);
    let abuser = l.tag(0, b"abuser");
    let now = 10_000_000;
    assert!(l.take_at(&s, abuser, s.address, now).is_ok());
    assert!(l.take_at(&s, abuser, s.address, now).is_ok());
    assert!(l.take_at(&s, abuser, s.address, now).is_err());
    // A flood of fresh keys, each taking one request: every set churns, but a fresh
    // key's bucket (1 taken of 2) is fuller than the abuser's (empty).
    for i in 0..100_000u32 {
        let t = l.tag(0, &i.to_le_bytes());
        assert!(l.take_at(&s, t, s.address, now).is_ok());
    }
    assert_eq!(l.table.borrow().len(), 16);
    assert!(l.take_at(&s, abuser, s.address, now).is_err());
}
