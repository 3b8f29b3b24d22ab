-- KEYS, per call: positions hash, queue counter. ARGV, per call: user. Returns per
-- call the user's position, the same on every call.
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
