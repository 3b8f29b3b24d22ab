-- KEYS: idem, intent, then each seat's hold key (in the request's sorted order).
-- ARGV: fingerprint, user, intentId, amount, currency, idem ttl ms, intent ttl ms,
-- seat ids csv, then each seat id.
-- Checks every seat is held by the user, stores the intent with the holds' remaining
-- lifetime. Returns {1, body}, {0, stored body}, {-1, seatId} not held, {-409}, {-422}.
local holds = {}
local ttl = nil
for i = 3, #KEYS do
  local hold = hold_of(redis.call('GET', KEYS[i]), ARGV[2])
  if not hold then return {-1, ARGV[i + 6]} end
  holds[#holds + 1] = hold
  local p = redis.call('PTTL', KEYS[i])
  if not ttl or p < ttl then ttl = p end
end
local exp = now + ttl
redis.call('HSET', KEYS[2], 'user', ARGV[2], 'seats', ARGV[8], 'holds', table.concat(holds, ','),
  'amount', ARGV[4], 'currency', ARGV[5], 'expiresAt', exp)
redis.call('PEXPIRE', KEYS[2], ARGV[7])
local body = cjson.encode({intentId = ARGV[3], amount = tonumber(ARGV[4]), currency = ARGV[5],
  expiresAt = exp})
redis.call('SET', KEYS[1], 'done|' .. ARGV[1] .. '|' .. body, 'PX', ARGV[6])
return {1, body}
