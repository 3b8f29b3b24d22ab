-- KEYS: admission hash, queue counter. ARGV: new openAtMs, rate, prequeueAtMs, queueing, activeLimit
-- (each '' to keep it), then a fresh seed and its SHA-256 (stored with the first
-- pre-queue only, never replaced: codec/src/fairness.rs).
-- Keeps everyone admitted so far admitted (`baseAdmitted` at `baseMs`), unless the
-- opening moves into the future, which closes the room again.
-- Refuses, changing nothing: -1 a pre-queue not before the opening; -2 moving an open
-- pre-queue or changing the queueing while it is open and not drawn yet (the list
-- would no longer be the one the commitment was made for).
-- Returns {openAtMs, rate, baseMs, baseAdmitted, prequeueAtMs, queueing, activeLimit,
-- seedHash or false}.
local f = redis.call('HMGET', KEYS[1], 'openAtMs', 'rate', 'baseMs', 'baseAdmitted',
  'prequeueAtMs', 'queueing', 'activeLimit', 'seedHash', 'drawn')
local open = tonumber(f[1]) or 0
local rate = tonumber(f[2]) or 0
local base = tonumber(f[3]) or open
local admitted = tonumber(f[4]) or 0
local pre = tonumber(f[5]) or 0
local queueing = f[6] or 'fifo'
local limit = tonumber(f[7]) or 0
if now >= open then
  admitted = admitted + math.floor((now - math.max(base, open)) * rate / 1000)
else
  admitted = 0
end
local new_pre = tonumber(ARGV[3]) or pre
local new_queueing = ARGV[4] ~= '' and ARGV[4] or queueing
if pre > 0 and now >= pre and not f[9] and (new_pre ~= pre or new_queueing ~= queueing) then
  return -2
end
open = tonumber(ARGV[1]) or open
rate = tonumber(ARGV[2]) or rate
if new_pre > 0 and new_pre >= open then return -1 end
local new_limit = tonumber(ARGV[5]) or limit
if new_limit > 0 and limit == 0 then
  -- Those admitted by the rate so far (of those in line) stay admitted under it.
  local queued = tonumber(redis.call('GET', KEYS[2])) or 0
  redis.call('HSET', KEYS[1], 'frontier', math.min(admitted, queued))
end
if open > now then
  base = open
  admitted = 0
else
  base = now
end
local seed_hash = f[8]
if (new_pre > 0 or new_queueing == 'random') and not seed_hash then
  seed_hash = ARGV[7]
  redis.call('HSET', KEYS[1], 'seed', ARGV[6], 'seedHash', seed_hash)
end
redis.call('HSET', KEYS[1], 'openAtMs', open, 'rate', rate, 'baseMs', base,
  'baseAdmitted', admitted, 'prequeueAtMs', new_pre, 'queueing', new_queueing,
  'activeLimit', new_limit)
return {open, rate, base, admitted, new_pre, new_queueing, new_limit, seed_hash or false}
