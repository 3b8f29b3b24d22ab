//! The Lua scripts of `/confirm/*`. Each request is one script, atomic, so an
//! Idempotency-Key can never produce two effects and nothing is left half-done.
//! Key layout: `codec::keys`. Stored outcomes: `state|fingerprint|body`.

use crate::redis::Script;

pub struct Scripts {
    pub intent: Script,
    pub commit: Script,
    pub commit_finish: Script,
    pub commit_abort: Script,
}

impl Default for Scripts {
    fn default() -> Self {
        Self {
            intent: Script::new(INTENT),
            commit: Script::new(COMMIT),
            commit_finish: Script::new(COMMIT_FINISH),
            commit_abort: Script::new(COMMIT_ABORT),
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
/// status prefix, response body, mode, in-flight ttl ms, then per seat its number and
/// its id.
/// Checks the intent (404/409/410) and that the holds are still the intent's, extends
/// them to cover processing. Mode `stream`: appends the commit message to the stream
/// and records the order PENDING, returns {1, body}. Mode `begin` (SQS, sent by the
/// edge after this): marks the key in flight, returns {2, message, status}; then
/// `COMMIT_FINISH` or `COMMIT_ABORT`. Errors: {0, stored body} replay, {-1, seatId},
/// {-404}, {-409}, {-410}, {-422}, {-4090} (intent of another user, event or seats).
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
    return {-1, ARGV[10 + 2 * i]}
  end
end
local exp = now + tonumber(ARGV[4])
for i = 1, seats do
  redis.call('PEXPIRE', KEYS[4 + 2 * i], ARGV[4])
  redis.call('ZADD', KEYS[5 + 2 * i], 'XX', exp, ARGV[9 + 2 * i])
  redis.call('ZADD', KEYS[5], 'XX', exp, ARGV[10 + 2 * i])
end
if redis.call('PTTL', KEYS[5]) < tonumber(ARGV[4]) then redis.call('PEXPIRE', KEYS[5], ARGV[4]) end
local tail = ',\"amount\":' .. intent[4] .. ',\"currency\":\"' .. intent[5] .. '\"'
local msg = ARGV[6] .. ',\"holdIds\":' .. cjson.encode(holds) .. tail .. ',\"acceptedAt\":' .. now .. '}'
local status = ARGV[7] .. tail .. ',\"reason\":null,\"updatedAt\":' .. now
  .. '},\"payment\":{\"status\":\"PENDING\"' .. tail .. '}}'
if ARGV[9] == 'begin' then
  redis.call('SET', KEYS[1], 'inflight|' .. ARGV[1] .. '|', 'PX', ARGV[10])
  return {2, msg, status}
end
redis.call('XADD', KEYS[4], '*', 'msg', msg)
redis.call('SET', KEYS[3], status, 'PX', ARGV[5])
redis.call('SET', KEYS[1], 'done|' .. ARGV[1] .. '|' .. ARGV[8], 'PX', ARGV[5])
return {1, ARGV[8]}
"
);

/// After SQS accepted a `begin`: KEYS idem, status; ARGV fingerprint, body, status,
/// ttl ms. The status is only written if the worker has not written a later one yet.
const COMMIT_FINISH: &str = "
if redis.call('GET', KEYS[1]) ~= 'inflight|' .. ARGV[1] .. '|' then return 0 end
redis.call('SET', KEYS[2], ARGV[3], 'PX', ARGV[4], 'NX')
redis.call('SET', KEYS[1], 'done|' .. ARGV[1] .. '|' .. ARGV[2], 'PX', ARGV[4])
return 1
";

/// After SQS refused a `begin`: KEYS idem; ARGV fingerprint. Frees the key.
const COMMIT_ABORT: &str = "
if redis.call('GET', KEYS[1]) ~= 'inflight|' .. ARGV[1] .. '|' then return 0 end
return redis.call('DEL', KEYS[1])
";
