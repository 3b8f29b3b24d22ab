//! The Lua scripts of `/public/*`, one per state change, so each is one round trip and
//! atomic. Times come from the Redis server (`TIME`), the one clock every edge shares.
//! Key layout: `codec::keys`.

use crate::redis::{BatchScript, Script};

/// The server's time in milliseconds.
macro_rules! now_ms {
    () => {
        "local t = redis.call('TIME')\nlocal now = t[1] * 1000 + math.floor(t[2] / 1000)\n"
    };
}

pub struct Scripts {
    pub release: Script,
    pub summary: Script,
    pub seats: Script,
    pub admission: Script,
}

impl Default for Scripts {
    fn default() -> Self {
        Self {
            release: Script::new(RELEASE),
            summary: Script::new(SUMMARY),
            seats: Script::new(SEATS),
            admission: Script::new(ADMISSION),
        }
    }
}

/// The most calls in one batch of `enter` or `hold`: 64 keep Redis busy a few hundred µs.
const BATCH: usize = 64;

/// The enter script, batched like [`hold`]: at the opening of a sale everyone enters
/// at once. `callgrind` of redis-server, 1,600 new buyers: 29.9k instructions an
/// entry one script call each, 22.9k in batches of 8, 20.6k of 32 (36.8k alone in a
/// batch: at low load, where Redis has time to spare).
pub fn enter() -> BatchScript {
    BatchScript::new(ENTER, Vec::new(), BATCH)
}

/// KEYS, per call: positions hash, queue counter. ARGV, per call: user. Returns per
/// call the user's position, the same on every call.
const ENTER: &str = "
local out = {}
for i = 1, #ARGV do
  local p = redis.call('HGET', KEYS[2 * i - 1], ARGV[i])
  if not p then
    p = redis.call('INCR', KEYS[2 * i])
    redis.call('HSET', KEYS[2 * i - 1], ARGV[i], p)
  end
  out[i] = tonumber(p)
end
return out
";

/// The hold script, run for every hold a core takes before its next write to Redis
/// ([`BatchScript`]): the script call's fixed cost and the clock are paid once a
/// batch. `callgrind` of redis-server, 1,600 holds on a 1,000,000-seat event: 104k
/// instructions a hold one script call each, 60k in batches of 8, 55k of 32.
pub fn hold(ttl_ms: u128, limit: u32) -> BatchScript {
    let shared = vec![
        ttl_ms.to_string().into_bytes(),
        limit.to_string().into_bytes(),
    ];
    BatchScript::new(HOLD, shared, BATCH)
}

/// KEYS, per hold: sold bitmap, seat's hold key, section's holds zset, user's holds
/// zset. ARGV: ttl ms, limit, then per hold: n, `holdId user`, seatId.
/// Returns per hold its expiresAtMs, or -1 sold, -2 held, -3 over the limit.
///
/// Expired members are counted out (`ZCOUNT` from now), never swept: the section's
/// zset has one member a seat, overwritten by the seat's next hold, so it cannot
/// outgrow the section; the buyer's gains at most `limit` members a hold TTL and
/// expires with the buyer's last hold. Sweeping cost two more calls a hold: 12.5 ->
/// 11.6 µs of Redis time per call without them (`INFO commandstats`, 50,000 holds).
/// `SET NX` is the held check and the write in one call; scores are formatted once.
const HOLD: &str = concat!(
    now_ms!(),
    "
local ttl = ARGV[1]
local limit = tonumber(ARGV[2])
local exp = now + tonumber(ttl)
local score = string.format('%d', exp)
local from = '(' .. now
local out = {}
for i = 1, #KEYS / 4 do
  local k, a = i * 4 - 4, i * 3
  if redis.call('GETBIT', KEYS[k + 1], ARGV[a]) == 1 then out[i] = -1
  elseif redis.call('ZCOUNT', KEYS[k + 4], from, '+inf') >= limit then out[i] = -3
  elseif not redis.call('SET', KEYS[k + 2], ARGV[a + 1], 'NX', 'PX', ttl) then out[i] = -2
  else
    redis.call('ZADD', KEYS[k + 3], score, ARGV[a])
    redis.call('ZADD', KEYS[k + 4], score, ARGV[a + 2])
    redis.call('PEXPIRE', KEYS[k + 4], ttl)
    out[i] = exp
  end
end
return out
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
