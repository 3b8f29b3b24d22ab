//! URL pieces both binaries need: percent-encoding (RFC 3986 section 2.1) and
//! `redis://` connection URLs.

/// Appends `s` with everything but unreserved characters percent-encoded.
pub fn percent_encode(out: &mut Vec<u8>, s: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in s {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b);
        } else {
            out.extend_from_slice(&[b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 0xf)]]);
        }
    }
}

/// Decodes `%XX` escapes (and `+` as a space when `plus_is_space`, as in a query
/// string); `None` for a broken escape or a result that is not UTF-8.
pub fn percent_decode(s: &str, plus_is_space: bool) -> Option<String> {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        out.push(match b {
            b'%' => {
                let digit = |c: Option<u8>| (c? as char).to_digit(16);
                (digit(bytes.next())? * 16 + digit(bytes.next())?) as u8
            }
            b'+' if plus_is_space => b' ',
            b => b,
        });
    }
    String::from_utf8(out).ok()
}

/// `redis://[user[:password]@]host[:port][/db]`, or `rediss://` for TLS; a Redis
/// Cluster is `redis-cluster://[user[:password]@]host[:port][,host[:port]...]` (or
/// `rediss-cluster://`): seed nodes, any of which tells the client the rest.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisUrl {
    /// `host:port` (the first seed of a cluster).
    pub addr: String,
    /// `redis-cluster://`: `seeds` are nodes of a Redis Cluster.
    pub cluster: bool,
    /// Every `host:port` given (one for `redis://`).
    pub seeds: Vec<String>,
    /// `rediss://`: TLS (ElastiCache in-transit encryption).
    pub tls: bool,
    pub username: Option<String>,
    pub password: Option<String>,
    pub db: u32,
}

impl std::fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisUrl")
            .field("addr", &self.addr)
            .field("cluster", &self.cluster)
            .field("seeds", &self.seeds)
            .field("tls", &self.tls)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("db", &self.db)
            .finish()
    }
}

impl RedisUrl {
    pub fn parse(url: &str) -> Result<Self, &'static str> {
        let (tls, cluster, rest) = match url.split_once("://") {
            Some(("redis", rest)) => (false, false, rest),
            Some(("rediss", rest)) => (true, false, rest),
            Some(("redis-cluster", rest)) => (false, true, rest),
            Some(("rediss-cluster", rest)) => (true, true, rest),
            _ => return Err("expected redis[s]://[user[:password]@]host[:port][/db] or redis[s]-cluster://[user[:password]@]host[:port],..."),
        };
        let (authority, db) = rest.split_once('/').unwrap_or((rest, ""));
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((userinfo, hostport)) => (Some(userinfo), hostport),
            None => (None, authority),
        };
        let decode = |s| percent_decode(s, false).ok_or("bad percent-encoding in the credentials");
        let (username, password) = match userinfo.map(|u| u.split_once(':').unwrap_or(("", u))) {
            None => (None, None),
            Some((user, password)) => (
                Some(decode(user)?).filter(|u| !u.is_empty()),
                Some(decode(password)?),
            ),
        };
        let seeds = if cluster {
            hostport
                .split(',')
                .map(with_port)
                .collect::<Result<Vec<_>, _>>()?
        } else if hostport.contains(',') {
            return Err("several nodes: use redis-cluster://");
        } else {
            vec![with_port(hostport)?]
        };
        let db = if db.is_empty() {
            0
        } else {
            db.parse().map_err(|_| "db must be a number")?
        };
        if cluster && db != 0 {
            return Err("a Redis Cluster has only database 0");
        }
        Ok(Self {
            addr: seeds[0].clone(),
            cluster,
            seeds,
            tls,
            username,
            password,
            db,
        })
    }
}

/// `host[:port]` as `host:port` (6379 when left out).
fn with_port(hostport: &str) -> Result<String, &'static str> {
    if hostport.is_empty() || hostport.starts_with(':') {
        return Err("no host");
    }
    // `[::1]:7000` has a port, `[::1]` does not.
    let has_port = hostport
        .rfind(':')
        .is_some_and(|i| !hostport[i..].contains(']'));
    Ok(if has_port {
        hostport.to_owned()
    } else {
        format!("{hostport}:6379")
    })
}

/// The host of a `host:port` address (`[::1]:7000` -> `::1`): the name a TLS server's
/// certificate must carry.
pub fn host(addr: &str) -> &str {
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
    host.trim_start_matches('[').trim_end_matches(']')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_urls_give_address_credentials_and_db() {
        let u = RedisUrl::parse("redis://127.0.0.1:16379").expect("url");
        assert_eq!(
            (u.addr.as_str(), u.username, u.password, u.db),
            ("127.0.0.1:16379", None, None, 0)
        );
        let u = RedisUrl::parse("redis://app:p%40ss:w@cache.local/3").expect("url");
        assert_eq!(u.addr, "cache.local:6379");
        assert_eq!(
            (u.username.as_deref(), u.password.as_deref()),
            (Some("app"), Some("p@ss:w"))
        );
        assert_eq!(u.db, 3);
        let u = RedisUrl::parse("redis://:secret@[::1]:7000").expect("url");
        assert_eq!(
            (
                u.addr.as_str(),
                u.username.as_deref(),
                u.password.as_deref()
            ),
            ("[::1]:7000", None, Some("secret"))
        );
        assert_eq!(
            RedisUrl::parse("redis://[::1]").expect("url").addr,
            "[::1]:6379"
        );
        assert_eq!(host("[::1]:7000"), "::1");
        assert_eq!(
            host("master.cache.amazonaws.com:6379"),
            "master.cache.amazonaws.com"
        );
        assert_eq!(host("127.0.0.1:6379"), "127.0.0.1");
        let u = RedisUrl::parse("rediss://cache.example:6380").expect("url");
        assert!(u.tls && u.addr == "cache.example:6380");
        assert!(
            !format!("{u:?}").contains("secret"),
            "Debug hides the password"
        );
    }

    #[test]
    fn cluster_urls_list_seed_nodes() {
        let u =
            RedisUrl::parse("redis-cluster://127.0.0.1:17001,127.0.0.1:17002,[::1]").expect("url");
        assert!(u.cluster && !u.tls);
        assert_eq!(
            u.seeds,
            ["127.0.0.1:17001", "127.0.0.1:17002", "[::1]:6379"]
        );
        assert_eq!(u.addr, "127.0.0.1:17001");
        let u = RedisUrl::parse("rediss-cluster://:pw@cfg.cache.amazonaws.com").expect("url");
        assert!(u.cluster && u.tls);
        assert_eq!(u.seeds, ["cfg.cache.amazonaws.com:6379"]);
        assert_eq!(u.password.as_deref(), Some("pw"));
        let u = RedisUrl::parse("redis://h:1").expect("url");
        assert!(!u.cluster);
        assert_eq!(u.seeds, ["h:1"]);
    }

    #[test]
    fn bad_redis_urls_are_refused() {
        for url in [
            "redis-cluster://h:1,",
            "redis-cluster://h:1,:2",
            "redis-cluster://h:1/2",
            "redis://h:1,h:2",
            "http://h",
            "redis://",
            "redis://:1",
            "redis://h/x",
            "redis://u:%zz@h",
            "127.0.0.1:6379",
        ] {
            assert!(RedisUrl::parse(url).is_err(), "{url}");
        }
    }

    #[test]
    fn percent_encoding_round_trips() {
        for s in ["plain-key_1.2~", "with space", "a/b?c=d&e#f%", "ÿ"] {
            let mut out = Vec::new();
            percent_encode(&mut out, s.as_bytes());
            assert!(out.iter().all(|b| b.is_ascii_graphic()));
            let out = String::from_utf8(out).expect("ascii");
            assert_eq!(percent_decode(&out, false).as_deref(), Some(s));
        }
        assert_eq!(percent_decode("a+b", true).as_deref(), Some("a b"));
        assert_eq!(percent_decode("%4", false), None);
        assert_eq!(percent_decode("%zz", false), None);
    }
}
