-- After SQS accepted a `begin` of commit.lua: KEYS idem, status; ARGV fingerprint,
-- body, status record, ttl ms. The status is only written if the worker has not
-- written a later one yet.
if redis.call('GET', KEYS[1]) ~= 'inflight|' .. ARGV[1] .. '|' then return 0 end
redis.call('SET', KEYS[2], ARGV[3], 'PX', ARGV[4], 'NX')
redis.call('SET', KEYS[1], 'done|' .. ARGV[1] .. '|' .. ARGV[2], 'PX', ARGV[4])
return 1
