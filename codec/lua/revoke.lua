-- An operator revokes a buyer (POST /admin/events/{E}/revoke).
-- KEYS: revoked zset, buyer's holds zset, then per held seat its hold key and its
-- section's held zset. ARGV: user, then per held seat its number and its id.
-- Records the buyer in the revoked zset with the next sequence number (members are
-- never removed, so the count is the last number; each edge core reads the entries
-- after the last one it has), and releases the buyer's holds (compare-and-delete, so a
-- hold someone else has on the seat since stays). Returns the number of holds released.
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  redis.call('ZADD', KEYS[1], redis.call('ZCARD', KEYS[1]) + 1, ARGV[1])
end
local released = 0
for i = 1, (#KEYS - 2) / 2 do
  local hold = redis.call('GET', KEYS[1 + 2 * i])
  if hold and hold_of(hold, ARGV[1]) then
    redis.call('DEL', KEYS[1 + 2 * i])
    redis.call('ZREM', KEYS[2 + 2 * i], ARGV[1 + 2 * i])
    released = released + 1
  end
  redis.call('ZREM', KEYS[2], ARGV[1 + 2 * i])
end
return released
