-- The line's shared parts (README "Fair admission"); prefixed after now.lua.
-- L: an event's line keys, in this order, from KEYS starting at `at`.
local function line_keys(at)
  return {adm = KEYS[at], pre = KEYS[at + 1], pos = KEYS[at + 2], queue = KEYS[at + 3],
    left = KEYS[at + 4], seen = KEYS[at + 5]}
end

-- The pre-queue's draw (codec/src/fairness.rs documents the function and recomputes
-- it): once, at the first call at or after openAtMs of a `random` event with a seed.
-- The ids stay in `pre` for the verifier; places go after those handed out before.
local function draw(L)
  local f = redis.call('HMGET', L.adm, 'queueing', 'openAtMs', 'seed', 'drawn', 'activeLimit')
  if f[1] ~= 'random' or f[4] or not f[3] or now < (tonumber(f[2]) or 0) then return end
  local ids = redis.call('ZRANGE', L.pre, 0, -1)
  local list = redis.sha1hex(#ids == 0 and '' or table.concat(ids, '\n') .. '\n')
  local keyed = {}
  for i, id in ipairs(ids) do
    local k = redis.sha1hex(f[3] .. '\n' .. list .. '\n' .. id)
    -- 160 bits as four exact 40-bit numbers: no locale-dependent string compare.
    keyed[i] = {tonumber(k:sub(1, 10), 16), tonumber(k:sub(11, 20), 16),
      tonumber(k:sub(21, 30), 16), tonumber(k:sub(31, 40), 16), id}
  end
  table.sort(keyed, function(a, b)
    for j = 1, 4 do
      if a[j] ~= b[j] then return a[j] < b[j] end
    end
    return a[5] < b[5]
  end)
  local base = tonumber(redis.call('GET', L.queue)) or 0
  local track = (tonumber(f[5]) or 0) > 0
  for i, e in ipairs(keyed) do
    redis.call('HSET', L.pos, e[5], base + i)
    if track then redis.call('ZADD', L.seen, now, e[5]) end
  end
  redis.call('SET', L.queue, base + #keyed)
  redis.call('HSET', L.adm, 'drawn', now, 'drawBase', base, 'listDigest', list,
    'prequeued', #keyed)
end

-- The buyer's live place: a position, 0 while pre-queued, -1 when gone (never
-- entered, or the place was left: done or abandoned).
local function place(L, user)
  local p = redis.call('HGET', L.pos, user)
  if not p then
    if redis.call('ZSCORE', L.pre, user) then return 0 end
    return -1
  end
  if redis.call('ZSCORE', L.left, p) then return -1 end
  return tonumber(p)
end
