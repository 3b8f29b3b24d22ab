-- KEYS: sold bitmap, section's holds zset. Returns {sold, live holds}.
return {redis.call('BITCOUNT', KEYS[1]), redis.call('ZCOUNT', KEYS[2], '(' .. now, '+inf')}
