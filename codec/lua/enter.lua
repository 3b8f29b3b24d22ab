-- KEYS, per call: the event's line keys (line.lua). ARGV, per call: user.
-- Returns per call the user's position, the same on every call while the place lasts;
-- a user whose place was left (done, abandoned) gets a new one at the back.
-- 0: entered a `random` pre-queue (the draw at the opening decides the place);
-- -1: the room takes no entries (`reject`); -2: the pre-queue has not opened yet.
-- The edge batches calls by event (edge/src/store.rs), so the event's state is read
-- once a batch.
local out = {}
draw(line_keys(1))
local f = redis.call('HMGET', KEYS[1], 'queueing', 'prequeueAtMs', 'openAtMs', 'activeLimit')
for i = 1, #ARGV do
  local L, user = line_keys(6 * i - 5), ARGV[i]
  local p = place(L, user)
  if p < 0 then
    if f[1] == 'reject' then
      p = -1
    elseif now < (tonumber(f[2]) or 0) then
      p = -2
    elseif f[1] == 'random' and now < (tonumber(f[3]) or 0) then
      redis.call('ZADD', L.pre, 0, user)
      p = 0
    else
      p = redis.call('INCR', L.queue)
      redis.call('HSET', L.pos, user, p)
    end
  end
  if p > 0 and (tonumber(f[4]) or 0) > 0 then redis.call('ZADD', L.seen, now, user) end
  out[i] = p
end
return out
