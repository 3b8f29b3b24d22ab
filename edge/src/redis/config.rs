//! Redis connection settings from a `redis://[user[:password]@]host[:port][/db]` URL.

use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisConfig {
    /// `host:port`.
    pub addr: String,
    pub username: Option<String>,
    pub password: Option<String>,
    pub db: u32,
    /// Each command's deadline.
    pub timeout: Duration,
    pub connect_timeout: Duration,
    /// Past this many commands awaiting replies, new ones fail at once.
    pub max_in_flight: usize,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
}

impl RedisConfig {
    pub fn from_url(url: &str) -> Result<Self, &'static str> {
        let rest = match url.split_once("://") {
            Some(("redis", rest)) => rest,
            Some(("rediss", _)) => return Err("rediss:// (TLS) is not supported yet"),
            _ => return Err("expected redis://[user[:password]@]host[:port][/db]"),
        };
        let (authority, db) = rest.split_once('/').unwrap_or((rest, ""));
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((userinfo, hostport)) => (Some(userinfo), hostport),
            None => (None, authority),
        };
        let (username, password) = match userinfo.map(|u| u.split_once(':').unwrap_or(("", u))) {
            None => (None, None),
            Some((user, password)) => (
                Some(percent_decode(user)?).filter(|u| !u.is_empty()),
                Some(percent_decode(password)?),
            ),
        };
        if hostport.is_empty() {
            return Err("no host");
        }
        let has_port = match hostport.rfind(':') {
            Some(i) => !hostport[i..].contains(']'),
            None => false,
        };
        let addr = if has_port {
            hostport.to_owned()
        } else {
            format!("{hostport}:6379")
        };
        let db = if db.is_empty() {
            0
        } else {
            db.parse().map_err(|_| "db must be a number")?
        };
        Ok(Self {
            addr,
            username,
            password,
            db,
            timeout: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(1),
            max_in_flight: 32 * 1024,
            backoff_min: Duration::from_millis(50),
            backoff_max: Duration::from_secs(2),
        })
    }
}

fn percent_decode(s: &str) -> Result<String, &'static str> {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        if b != b'%' {
            out.push(b);
            continue;
        }
        let hex = [bytes.next(), bytes.next()];
        let [Some(hi), Some(lo)] = hex else {
            return Err("bad percent-encoding");
        };
        let digit = |c: u8| (c as char).to_digit(16).ok_or("bad percent-encoding");
        out.push((digit(hi)? * 16 + digit(lo)?) as u8);
    }
    String::from_utf8(out).map_err(|_| "credentials must be UTF-8")
}

#[cfg(test)]
mod tests {
    use super::RedisConfig;

    #[test]
    fn urls_give_address_credentials_and_db() {
        let c = RedisConfig::from_url("redis://127.0.0.1:16379").expect("url");
        assert_eq!(
            (c.addr.as_str(), c.username, c.password, c.db),
            ("127.0.0.1:16379", None, None, 0)
        );
        let c = RedisConfig::from_url("redis://app:p%40ss:w@cache.local/3").expect("url");
        assert_eq!(c.addr, "cache.local:6379");
        assert_eq!(
            (c.username.as_deref(), c.password.as_deref()),
            (Some("app"), Some("p@ss:w"))
        );
        assert_eq!(c.db, 3);
        let c = RedisConfig::from_url("redis://:secret@[::1]:7000").expect("url");
        assert_eq!(
            (c.addr.as_str(), c.username, c.password.as_deref()),
            ("[::1]:7000", None, Some("secret"))
        );
        let c = RedisConfig::from_url("redis://[::1]").expect("url");
        assert_eq!(c.addr, "[::1]:6379");
    }

    #[test]
    fn bad_urls_are_refused() {
        for url in [
            "http://h",
            "redis://",
            "redis://h/x",
            "redis://u:%zz@h",
            "127.0.0.1:6379",
        ] {
            assert!(RedisConfig::from_url(url).is_err(), "{url}");
        }
    }
}
