-- KEYS: sold bitmap, section's holds zset, the event's catalog. Returns {sold, live
-- holds}, or {} when the catalog is missing: Redis lost the event's projection, and a
-- bitmap without it may hold only the sales projected since.
if redis.call('EXISTS', KEYS[3]) == 0 then return {} end
return {redis.call('BITCOUNT', KEYS[1]), redis.call('ZCOUNT', KEYS[2], '(' .. now, '+inf')}
