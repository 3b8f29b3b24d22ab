-- KEYS: dead-letter stream, stream. ARGV: group, id, msg, reason, deliveries, at ms.
redis.call('XADD', KEYS[1], '*', 'msg', ARGV[3], 'reason', ARGV[4], 'stream', KEYS[2], 'id', ARGV[2],
  'deliveries', ARGV[5], 'at', ARGV[6])
redis.call('XACK', KEYS[2], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[2], ARGV[2])
return 1
