-- KEYS: sold bitmap, section's holds zset. Returns {bitmap or false, held seat numbers}.
return {redis.call('GET', KEYS[1]), redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. now, '+inf')}
