-- After SQS refused a `begin` of commit.lua: KEYS idem, user's bought hash; ARGV
-- fingerprint, idem. Frees the key and the order's seats in the purchase limit.
if redis.call('GET', KEYS[1]) ~= 'inflight|' .. ARGV[1] .. '|' then return 0 end
redis.call('HDEL', KEYS[2], ARGV[2])
return redis.call('DEL', KEYS[1])
