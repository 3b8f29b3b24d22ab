-- KEYS: idem, intent, status, stream, user's holds zset, user's bought hash, then per
-- seat its hold key and its section's held zset.
-- ARGV: fingerprint, user, seat ids csv, extend ms, idem ttl ms, amount, currency,
-- status record (PENDING), response body, mode, in-flight ttl ms, message version,
-- idem, intentId, eventId, purchase limit (0: none), then per seat its number and its
-- id.
-- Checks the intent (404/409/410), that it is this user's for these seats at this
-- price, that the holds are still the intent's, and that the buyer's seats in accepted
-- orders stay within the purchase limit; records this order's seats there (the worker
-- removes them if the order ends REJECTED) and extends the holds to cover processing.
-- The commit message is encoded here, from these fields and the intent's holds.
-- Mode `stream`: appends it to the stream and records the order PENDING, returns
-- {1, body}. Mode `begin` (SQS, sent by the edge after this): marks the key in flight,
-- returns {2, message}; then `commit_finish.lua` or `commit_abort.lua`.
-- Errors: {0, stored body} replay, {-1, seatId}, {-404}, {-409}, {-410}, {-422},
-- {-4090} (intent of another user, event, seats or amount), {-4091} purchase limit.
local intent = redis.call('HMGET', KEYS[2], 'user', 'seats', 'holds', 'amount', 'currency', 'expiresAt')
if not intent[1] then return {-404} end
if intent[1] ~= ARGV[2] or intent[2] ~= ARGV[3] or intent[4] ~= ARGV[6] or intent[5] ~= ARGV[7] then
  return {-4090}
end
if tonumber(intent[6]) <= now then return {-410} end
local holds = {}
for h in string.gmatch(intent[3], '[^,]+') do holds[#holds + 1] = h end
local seats = (#KEYS - 6) / 2
local seat_ids = {}
for i = 1, seats do
  seat_ids[i] = ARGV[16 + 2 * i]
  if hold_of(redis.call('GET', KEYS[5 + 2 * i]), ARGV[2]) ~= holds[i] then
    return {-1, seat_ids[i]}
  end
end
local limit = tonumber(ARGV[16])
if limit > 0 then
  -- At most `limit` fields (each order has a seat or more): a short sum.
  local bought = 0
  for _, n in ipairs(redis.call('HVALS', KEYS[6])) do bought = bought + tonumber(n) end
  if bought + seats > limit then return {-4091} end
  redis.call('HSET', KEYS[6], ARGV[13], seats)
  redis.call('PEXPIRE', KEYS[6], ARGV[5])
end
local exp = now + tonumber(ARGV[4])
for i = 1, seats do
  redis.call('PEXPIRE', KEYS[5 + 2 * i], ARGV[4])
  redis.call('ZADD', KEYS[6 + 2 * i], 'XX', exp, seat_ids[i])
  redis.call('ZADD', KEYS[5], 'XX', exp, seat_ids[i])
end
if redis.call('PTTL', KEYS[5]) < tonumber(ARGV[4]) then redis.call('PEXPIRE', KEYS[5], ARGV[4]) end
local msg = cjson.encode({v = tonumber(ARGV[12]), idem = ARGV[13], intentId = ARGV[14],
  eventId = ARGV[15], userId = ARGV[2], seatIds = seat_ids, holdIds = holds,
  amount = tonumber(ARGV[6]), currency = ARGV[7], acceptedAt = now})
if ARGV[10] == 'begin' then
  redis.call('SET', KEYS[1], 'inflight|' .. ARGV[1] .. '|', 'PX', ARGV[11])
  return {2, msg}
end
redis.call('XADD', KEYS[4], '*', 'msg', msg)
redis.call('SET', KEYS[3], ARGV[8], 'PX', ARGV[5])
redis.call('SET', KEYS[1], 'done|' .. ARGV[1] .. '|' .. ARGV[9], 'PX', ARGV[5])
return {1, ARGV[9]}
