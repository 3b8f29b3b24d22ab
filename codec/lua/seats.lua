-- KEYS: sold bitmap, section's held zset. Returns {bitmap or false, held seat ids}.
return {redis.call('GET', KEYS[1]), redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. now, '+inf')}
