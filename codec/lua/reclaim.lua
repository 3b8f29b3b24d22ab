-- KEYS: stream. ARGV: group, consumer, min idle ms, count, sweep idle ms.
-- Claims entries idle at least min idle ms and returns {id, fields, deliveries} each
-- (deliveries counted by Redis, this claim included). Then removes the group's other
-- consumers that hold nothing and were idle longer than sweep idle ms: every worker
-- process names its consumers anew (`host-pid-n`), so each restart would leave its
-- old ones behind. A consumer with pending entries is kept until they are claimed;
-- one removed while alive costs nothing, its next read recreates it.
local claimed = redis.call('XAUTOCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], '0-0', 'COUNT', ARGV[4])
local out = {}
for _, e in ipairs(claimed[2]) do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], e[1], e[1], 1)
  local n = 0
  if p[1] then n = p[1][4] end
  out[#out + 1] = {e[1], e[2], n}
end
for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
  local f = {}
  for i = 1, #c, 2 do f[c[i]] = c[i + 1] end
  if f['name'] ~= ARGV[2] and f['pending'] == 0 and f['idle'] > tonumber(ARGV[5]) then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], f['name'])
  end
end
return out
