-- KEYS: sold bitmap, section's held zset, the event's catalog. Returns {bitmap or
-- false, held seat ids}, or {} when the catalog is missing (as summary.lua).
if redis.call('EXISTS', KEYS[3]) == 0 then return {} end
return {redis.call('GET', KEYS[1]), redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. now, '+inf')}
