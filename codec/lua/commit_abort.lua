-- After SQS refused a `begin` of commit.lua: KEYS idem; ARGV fingerprint. Frees the key.
if redis.call('GET', KEYS[1]) ~= 'inflight|' .. ARGV[1] .. '|' then return 0 end
return redis.call('DEL', KEYS[1])
