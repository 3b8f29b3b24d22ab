//! The Lua scripts of `/confirm/*`. Each request is one script, atomic, so an
//! Idempotency-Key can never produce two effects and nothing is left half-done.
//! Key layout: `codec::keys`. Stored outcomes: `state|fingerprint|body`.

use crate::redis::Script;

pub struct Scripts {
    pub intent: Script,
    pub commit: Script,
}

impl Default for Scripts {
    fn default() -> Self {
        Self {
            intent: Script::new(INTENT),
            commit: Script::new(COMMIT),
        }
    }
}

/// Shared head: the server's time, and the stored outcome of this Idempotency-Key:
/// another body -> {-422}; still in flight -> {-409}; done -> {0, stored body}.
macro_rules! idempotent_prelude {
    () => {
        "
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local prior = redis.call('GET', KEYS[1])
if prior then
  local state, fp, body = string.match(prior, '^(%a+)|(%x+)|(.*)$')
  if fp ~= ARGV[1] then return {-422} end
  if state ~= 'done' then return {-409} end
  return {0, body}
end
"
    };
}

/// KEYS: idem, intent, then each seat's hold key (in the request's sorted order).
/// ARGV: fingerprint, user, intentId, amount, currency, idem ttl ms, intent ttl ms,
/// seat ids csv, then each seat id.
/// Checks every seat is held by the user, stores the intent with the holds' remaining
/// lifetime. Returns {1, body}, {0, stored body}, {-1, seatId} not held, {-409}, {-422}.
const INTENT: &str = concat!(
    idempotent_prelude!(),
    "
local holds = {}
local ttl = nil
for i = 3, #KEYS do
  local seat = ARGV[i + 6]
  local v = redis.call('GET', KEYS[i])
  if not v then return {-1, seat} end
  local sp = string.find(v, ' ', 1, true)
  if string.sub(v, sp + 1) ~= ARGV[2] then return {-1, seat} end
  holds[#holds + 1] = string.sub(v, 1, sp - 1)
  local p = redis.call('PTTL', KEYS[i])
  if not ttl or p < ttl then ttl = p end
end
local exp = now + ttl
redis.call('HSET', KEYS[2], 'user', ARGV[2], 'seats', ARGV[8], 'holds', table.concat(holds, ','),
  'amount', ARGV[4], 'currency', ARGV[5], 'expiresAt', exp)
redis.call('PEXPIRE', KEYS[2], ARGV[7])
local body = '{\"intentId\":\"' .. ARGV[3] .. '\",\"amount\":' .. ARGV[4] .. ',\"currency\":\"' .. ARGV[5]
  .. '\",\"expiresAt\":' .. exp .. '}'
redis.call('SET', KEYS[1], 'done|' .. ARGV[1] .. '|' .. body, 'PX', ARGV[6])
return {1, body}
"
);

/// KEYS: idem, intent, status, stream, user's holds zset, then per seat its hold key
/// and its section's holds zset.
/// ARGV: fingerprint, user, seat ids csv, extend ms, idem ttl ms, message prefix,
/// status prefix, response body, then per seat its number and its id.
/// Checks the intent (404/409/410) and that the holds are still the intent's, extends
/// them to cover processing, appends the commit message to the stream, records the
/// order PENDING. Returns {1, body}, {0, stored body}, {-1, seatId}, {-404}, {-409},
/// {-410}, {-422}, {-4090} (intent of another user, event or seats).
const COMMIT: &str = concat!(
    idempotent_prelude!(),
    "
local intent = redis.call('HMGET', KEYS[2], 'user', 'seats', 'holds', 'amount', 'currency', 'expiresAt')
if not intent[1] then return {-404} end
if intent[1] ~= ARGV[2] or intent[2] ~= ARGV[3] then return {-4090} end
if tonumber(intent[6]) <= now then return {-410} end
local holds = {}
for h in string.gmatch(intent[3], '[^,]+') do holds[#holds + 1] = h end
local seats = (#KEYS - 5) / 2
for i = 1, seats do
  if redis.call('GET', KEYS[4 + 2 * i]) ~= holds[i] .. ' ' .. ARGV[2] then
    return {-1, ARGV[8 + 2 * i]}
  end
end
local exp = now + tonumber(ARGV[4])
for i = 1, seats do
  redis.call('PEXPIRE', KEYS[4 + 2 * i], ARGV[4])
  redis.call('ZADD', KEYS[5 + 2 * i], 'XX', exp, ARGV[7 + 2 * i])
  redis.call('ZADD', KEYS[5], 'XX', exp, ARGV[8 + 2 * i])
end
if redis.call('PTTL', KEYS[5]) < tonumber(ARGV[4]) then redis.call('PEXPIRE', KEYS[5], ARGV[4]) end
local tail = ',\"amount\":' .. intent[4] .. ',\"currency\":\"' .. intent[5] .. '\"'
redis.call('XADD', KEYS[4], '*', 'msg',
  ARGV[6] .. ',\"holdIds\":' .. cjson.encode(holds) .. tail .. ',\"acceptedAt\":' .. now .. '}')
redis.call('SET', KEYS[3], ARGV[7] .. tail .. ',\"reason\":null,\"updatedAt\":' .. now
  .. '},\"payment\":{\"status\":\"PENDING\"' .. tail .. '}}', 'PX', ARGV[5])
redis.call('SET', KEYS[1], 'done|' .. ARGV[1] .. '|' .. ARGV[8], 'PX', ARGV[5])
return {1, ARGV[8]}
"
);
