//! Redis Cluster's rules as the clients need them, sans-IO: which slot a key lives in
//! (CRC16 with hash tags), what a redirection says (`MOVED`, `ASK`), and who serves
//! which slots (`CLUSTER SLOTS`). The spec: <https://redis.io/docs/latest/operate/oss_and_stack/reference/cluster-spec/>.

use crate::store::Frame;

/// Slots of a cluster: a key's slot is `CRC16(key) mod 16384`.
pub const SLOTS: usize = 16384;

/// CRC16-CCITT (XMODEM): polynomial 0x1021, initial value 0, no reflection, as in the
/// spec's appendix A (`CRC16("123456789")` = 0x31C3).
pub fn crc16(bytes: &[u8]) -> u16 {
    let mut crc = 0u16;
    for &b in bytes {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// The slot of `key`. A hash tag (the bytes between the first `{` and the first `}`
/// after it, when there are any) is hashed instead of the whole key, so `ev:{E}:...`
/// keys of one event share a slot.
pub fn key_slot(key: &[u8]) -> u16 {
    let hashed = match key.iter().position(|&b| b == b'{') {
        Some(open) => match key[open + 1..].iter().position(|&b| b == b'}') {
            Some(len) if len > 0 => &key[open + 1..open + 1 + len],
            _ => key,
        },
        None => key,
    };
    crc16(hashed) % SLOTS as u16
}

/// What an error reply tells a cluster client to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Redirect<'a> {
    /// `MOVED slot host:port`: the slot lives there now; update the map and retry there.
    Moved { slot: u16, addr: &'a str },
    /// `ASK slot host:port`: this one command is for there, after `ASKING` (the slot is
    /// being migrated; the map does not change).
    Ask { slot: u16, addr: &'a str },
    /// `TRYAGAIN`: a multi-key command met a slot half migrated; retry shortly.
    TryAgain,
    /// `CLUSTERDOWN`: the cluster serves no slot of this now (a failover under way).
    ClusterDown,
}

/// Reads an error reply (without its `-`); `None` when it is no redirection.
pub fn redirect(message: &str) -> Option<Redirect<'_>> {
    let mut words = message.split(' ');
    let kind = words.next()?;
    match kind {
        "TRYAGAIN" => return Some(Redirect::TryAgain),
        "CLUSTERDOWN" => return Some(Redirect::ClusterDown),
        "MOVED" | "ASK" => {}
        _ => return None,
    }
    let slot: u16 = words.next()?.parse().ok()?;
    let addr = words.next()?;
    if usize::from(slot) >= SLOTS || addr.is_empty() {
        return None;
    }
    Some(if kind == "MOVED" {
        Redirect::Moved { slot, addr }
    } else {
        Redirect::Ask { slot, addr }
    })
}

/// A range of slots and who serves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotRange {
    pub start: u16,
    pub end: u16,
    /// `host:port` of the primary.
    pub primary: String,
    pub replicas: Vec<String>,
}

/// Parses a `CLUSTER SLOTS` reply (RESP2): an array of `[start, end, primary,
/// replica...]`, each node an array `[host, port, id, ...]`. A node with an empty host
/// (`""`, or `?` when it does not know its address) is on `asked_host`, the host the
/// reply came from, as the spec says.
pub fn parse_slots(reply: &Frame, asked_host: &str) -> Result<Vec<SlotRange>, &'static str> {
    let Frame::Array(ranges) = reply else {
        return Err("CLUSTER SLOTS: not an array");
    };
    let slot = |f: Option<&Frame>| match f {
        Some(Frame::Integer(n)) if (0..SLOTS as i64).contains(n) => Ok(*n as u16),
        _ => Err("CLUSTER SLOTS: a slot number out of range"),
    };
    let node = |f: &Frame| -> Result<String, &'static str> {
        let Frame::Array(parts) = f else {
            return Err("CLUSTER SLOTS: a node is not an array");
        };
        let host = match parts.first() {
            Some(Frame::BulkString(h)) => std::str::from_utf8(h).map_err(|_| "host not UTF-8")?,
            _ => return Err("CLUSTER SLOTS: a node has no host"),
        };
        let host = if host.is_empty() || host == "?" {
            asked_host
        } else {
            host
        };
        let port = match parts.get(1) {
            Some(Frame::Integer(p)) if (1..=65535).contains(p) => *p,
            _ => return Err("CLUSTER SLOTS: a node has no port"),
        };
        Ok(if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        })
    };
    ranges
        .iter()
        .map(|range| {
            let Frame::Array(parts) = range else {
                return Err("CLUSTER SLOTS: a range is not an array");
            };
            let (start, end) = (slot(parts.first())?, slot(parts.get(1))?);
            if start > end {
                return Err("CLUSTER SLOTS: a range ends before it starts");
            }
            let primary = node(
                parts
                    .get(2)
                    .ok_or("CLUSTER SLOTS: a range has no primary")?,
            )?;
            let replicas = parts[3..].iter().map(node).collect::<Result<_, _>>()?;
            Ok(SlotRange {
                start,
                end,
                primary,
                replicas,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc16_is_xmodem() {
        assert_eq!(crc16(b"123456789"), 0x31C3);
        assert_eq!(crc16(b""), 0);
    }

    /// Answers of `CLUSTER KEYSLOT` from redis-server 7.0.15 (the local cluster).
    #[test]
    fn key_slots_match_redis() {
        for (key, slot) in [
            (&b"123456789"[..], 12739),
            (b"ev:{demo}:x", 903),
            (b"demo", 903),
            (b"foo", 12182),
            (b"{user1000}.following", 3443),
            (b"{user1000}.followers", 3443),
            (b"foo{}{bar}", 8363),
            (b"foo{{bar}}zap", 4015),
            (b"foo{bar}{zap}", 5061),
            (b"{bar", 4015),
            (b"", 0),
        ] {
            assert_eq!(key_slot(key), slot, "{}", String::from_utf8_lossy(key));
        }
    }

    #[test]
    fn redirections_are_read() {
        assert_eq!(
            redirect("MOVED 3999 127.0.0.1:6381"),
            Some(Redirect::Moved {
                slot: 3999,
                addr: "127.0.0.1:6381"
            })
        );
        assert_eq!(
            redirect("ASK 16383 [::1]:7000"),
            Some(Redirect::Ask {
                slot: 16383,
                addr: "[::1]:7000"
            })
        );
        assert_eq!(
            redirect("TRYAGAIN Multiple keys request during rehashing of slot"),
            Some(Redirect::TryAgain)
        );
        assert_eq!(
            redirect("CLUSTERDOWN The cluster is down"),
            Some(Redirect::ClusterDown)
        );
        for not in [
            "ERR unknown command",
            "MOVED",
            "MOVED x 1.2.3.4:1",
            "MOVED 16384 1.2.3.4:1",
            "ASK 1",
            "NOSCRIPT No matching script",
        ] {
            assert_eq!(redirect(not), None, "{not}");
        }
    }

    fn bulk(s: &str) -> Frame {
        Frame::BulkString(s.as_bytes().to_vec().into())
    }

    fn node(host: &str, port: i64) -> Frame {
        Frame::Array(vec![bulk(host), Frame::Integer(port), bulk("id")])
    }

    #[test]
    fn cluster_slots_replies_are_parsed() {
        let reply = Frame::Array(vec![
            Frame::Array(vec![
                Frame::Integer(0),
                Frame::Integer(5460),
                node("127.0.0.1", 17101),
                node("127.0.0.1", 17104),
            ]),
            Frame::Array(vec![
                Frame::Integer(5461),
                Frame::Integer(16383),
                node("", 17102),
            ]),
        ]);
        let ranges = parse_slots(&reply, "10.0.0.9").expect("parses");
        assert_eq!(
            ranges,
            vec![
                SlotRange {
                    start: 0,
                    end: 5460,
                    primary: "127.0.0.1:17101".into(),
                    replicas: vec!["127.0.0.1:17104".into()],
                },
                SlotRange {
                    start: 5461,
                    end: 16383,
                    primary: "10.0.0.9:17102".into(),
                    replicas: vec![],
                },
            ]
        );
        for bad in [
            Frame::Integer(1),
            Frame::Array(vec![Frame::Array(vec![
                Frame::Integer(5),
                Frame::Integer(1),
            ])]),
            Frame::Array(vec![Frame::Array(vec![
                Frame::Integer(0),
                Frame::Integer(16384),
                node("h", 1),
            ])]),
            Frame::Array(vec![Frame::Array(vec![
                Frame::Integer(0),
                Frame::Integer(1),
                node("h", 0),
            ])]),
        ] {
            assert!(parse_slots(&bad, "h").is_err(), "{bad:?}");
        }
    }
}
