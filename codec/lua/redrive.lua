-- KEYS: dead-letter stream, target stream. ARGV: dead-letter entry id, msg.
-- Appends the message to its stream again (a new entry, delivered afresh) and drops
-- the dead letter, atomically.
if redis.call('XDEL', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('XADD', KEYS[2], '*', 'msg', ARGV[2])
return 1
