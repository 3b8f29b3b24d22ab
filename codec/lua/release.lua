-- KEYS: seat's hold key, section's held zset, user's holds zset.
-- ARGV: holdId, user, seatId. Returns 1 when released, 0 when not the holder's.
if hold_of(redis.call('GET', KEYS[1]), ARGV[2]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[3])
redis.call('ZREM', KEYS[3], ARGV[3])
return 1
