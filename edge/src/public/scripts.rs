//! The Lua scripts of `/public/*`, one per state change, so each is one round trip and
//! atomic. Times come from the Redis server (`TIME`), the one clock every edge shares.
//! Key layout: `codec::keys`.

use crate::redis::Script;

/// The server's time in milliseconds.
macro_rules! now_ms {
    () => {
        "local t = redis.call('TIME')\nlocal now = t[1] * 1000 + math.floor(t[2] / 1000)\n"
    };
}

pub struct Scripts {
    pub enter: Script,
    pub hold: Script,
    pub release: Script,
    pub summary: Script,
    pub seats: Script,
    pub admission: Script,
}

impl Default for Scripts {
    fn default() -> Self {
        Self {
            enter: Script::new(ENTER),
            hold: Script::new(HOLD),
            release: Script::new(RELEASE),
            summary: Script::new(SUMMARY),
            seats: Script::new(SEATS),
            admission: Script::new(ADMISSION),
        }
    }
}

/// KEYS: positions hash, queue counter. ARGV: user. Returns the user's position, the
/// same on every call.
const ENTER: &str = "
local p = redis.call('HGET', KEYS[1], ARGV[1])
if p then return tonumber(p) end
p = redis.call('INCR', KEYS[2])
redis.call('HSET', KEYS[1], ARGV[1], p)
return p
";

/// KEYS: sold bitmap, seat's hold key, section's holds zset, user's holds zset.
/// ARGV: n, `holdId user`, ttl ms, limit, seatId.
/// Returns {1, expiresAtMs} or {-1} sold, {-2} held, {-3} over the limit.
///
/// Expired members are counted out (`ZCOUNT` from now), never swept: the section's
/// zset has one member a seat, overwritten by the seat's next hold, so it cannot
/// outgrow the section; the buyer's gains at most `limit` members a hold TTL and
/// expires with the buyer's last hold. Sweeping cost two more calls a hold: 12.5 -> 11.6 µs of Redis time per call without them
/// (`INFO commandstats`, 50,000 holds on a 1,000,000-seat event).
const HOLD: &str = concat!(
    now_ms!(),
    "
if redis.call('GETBIT', KEYS[1], ARGV[1]) == 1 then return {-1} end
if redis.call('EXISTS', KEYS[2]) == 1 then return {-2} end
if redis.call('ZCOUNT', KEYS[4], '(' .. now, '+inf') >= tonumber(ARGV[4]) then return {-3} end
local exp = now + tonumber(ARGV[3])
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
redis.call('ZADD', KEYS[3], exp, ARGV[1])
redis.call('ZADD', KEYS[4], exp, ARGV[5])
redis.call('PEXPIRE', KEYS[4], ARGV[3])
return {1, exp}
"
);

/// KEYS: seat's hold key, section's holds zset, user's holds zset.
/// ARGV: `holdId user`, n, seatId. Returns 1 when released, 0 when not the holder's.
const RELEASE: &str = "
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[2])
redis.call('ZREM', KEYS[3], ARGV[3])
return 1
";

/// KEYS: sold bitmap, section's holds zset. Returns {sold, live holds}.
const SUMMARY: &str = concat!(
    now_ms!(),
    "
return {redis.call('BITCOUNT', KEYS[1]), redis.call('ZCOUNT', KEYS[2], '(' .. now, '+inf')}
"
);

/// KEYS: sold bitmap, section's holds zset. Returns {bitmap or false, held seat numbers}.
const SEATS: &str = concat!(
    now_ms!(),
    "
return {redis.call('GET', KEYS[1]), redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. now, '+inf')}
"
);

/// KEYS: admission hash. ARGV: new openAtMs or '', new rate or ''.
/// Keeps everyone admitted so far admitted (`baseAdmitted` at `baseMs`), unless the
/// opening moves into the future, which closes the room again.
/// Returns {openAtMs, rate, baseMs, baseAdmitted}.
const ADMISSION: &str = concat!(
    now_ms!(),
    "
local f = redis.call('HMGET', KEYS[1], 'openAtMs', 'rate', 'baseMs', 'baseAdmitted')
local open = tonumber(f[1]) or 0
local rate = tonumber(f[2]) or 0
local base = tonumber(f[3]) or open
local admitted = tonumber(f[4]) or 0
if now >= open then
  admitted = admitted + math.floor((now - math.max(base, open)) * rate / 1000)
else
  admitted = 0
end
open = tonumber(ARGV[1]) or open
rate = tonumber(ARGV[2]) or rate
if open > now then
  base = open
  admitted = 0
else
  base = now
end
redis.call('HSET', KEYS[1], 'openAtMs', open, 'rate', rate, 'baseMs', base, 'baseAdmitted', admitted)
return {open, rate, base, admitted}
"
);
