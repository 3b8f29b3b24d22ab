-- A buyer polls (room-status): KEYS, per call: the event's line keys (line.lua);
-- ARGV, per call: user. Records that the buyer is still there and returns per call
-- the live place (line.lua `place`): a position, 0 while pre-queued, -1 when gone.
-- Batched by event (edge/src/store.rs): the draw is checked once a batch.
local out = {}
draw(line_keys(1))
for i = 1, #ARGV do
  local L, user = line_keys(6 * i - 5), ARGV[i]
  local p = place(L, user)
  if p > 0 then redis.call('ZADD', L.seen, now, user) end
  out[i] = p
end
return out
