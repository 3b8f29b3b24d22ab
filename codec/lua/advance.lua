-- Each core's refresh of an event (edge/src/events.rs): runs the draw when due,
-- frees the places of buyers not seen for ARGV[1] ms, and moves the frontier of an
-- active-limited line on. KEYS: the event's line keys (line.lua).
-- The frontier F is the highest position that may be admitted with `activeLimit`
-- buyers admitted and not done: F = activeLimit + (places left at or below F), a
-- fixed point reached from below, and it never moves back (those admitted stay so).
-- Returns {openAtMs, rate, baseMs, baseAdmitted, prequeueAtMs, queueing, activeLimit,
-- frontier, seedHash, seed (once drawn), listDigest, prequeued}; absent: false.
local L = line_keys(1)
draw(L)
local limit = tonumber(redis.call('HGET', L.adm, 'activeLimit')) or 0
if limit > 0 then
  local abandon = tonumber(ARGV[1]) or 0
  if abandon > 0 then
    -- Bounded per call; the next refresh takes the rest.
    local gone = redis.call('ZRANGEBYSCORE', L.seen, '-inf', now - abandon, 'LIMIT', 0, 1000)
    for _, user in ipairs(gone) do
      local p = redis.call('HGET', L.pos, user)
      if p then redis.call('ZADD', L.left, p, p) end
      redis.call('ZREM', L.seen, user)
    end
  end
  local f = math.max(tonumber(redis.call('HGET', L.adm, 'frontier')) or 0, limit)
  for _ = 1, 64 do
    local next = limit + redis.call('ZCOUNT', L.left, 1, f)
    if next <= f then break end
    f = next
  end
  redis.call('HSET', L.adm, 'frontier', f)
end
local f = redis.call('HMGET', L.adm, 'openAtMs', 'rate', 'baseMs', 'baseAdmitted',
  'prequeueAtMs', 'queueing', 'activeLimit', 'frontier', 'seedHash', 'seed', 'drawn',
  'listDigest', 'prequeued')
if not f[11] then f[10] = false end
return {f[1], f[2], f[3], f[4], f[5], f[6], f[7], f[8], f[9], f[10], f[12], f[13]}
