-- The worker's projection of one stored order (worker/src/project.rs).
-- KEYS: status, buyer's holds zset, buyer's bought hash, the event's positions hash,
-- left places zset and presence zset, then per seat its section's sold bitmap, its hold
-- key and its section's held zset.
-- ARGV: status record, ttl ms, the order's state (`1` confirmed, `0` rejected, `2`
-- awaiting its payment, `3` the same, replacing the record), user, idem, then per seat n, seatId, holdId.
-- A CONFIRMED order sets its seats' sold bits and leaves `sold` in their hold keys for
-- good (whoever held them: the seat is sold, and a hold's one `SET ... NX` must say
-- so), out of the held zset; its buyer is done, so their place in the line is left,
-- freeing an active slot. Any other order gives its seats back to the buyer's purchase
-- limit and removes its own holds (another buyer's later hold on the seat stays). Then
-- the status record is written.
-- An order awaiting its payment (PAYMENT_MODE=provider) keeps its holds and its place
-- in the buyer's purchase limit: only its status record is written, and only where
-- there is none (the edge's PENDING record, or a later state the payment loop wrote,
-- stays) with `2`; the payment loop, which writes each change in order, uses `3`.
if ARGV[3] == '2' then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2], 'NX')
  return 1
elseif ARGV[3] == '3' then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
local confirmed = ARGV[3] == '1'
if confirmed then
  local p = redis.call('HGET', KEYS[4], ARGV[4])
  if p then redis.call('ZADD', KEYS[5], p, p) end
  redis.call('ZREM', KEYS[6], ARGV[4])
else
  redis.call('HDEL', KEYS[3], ARGV[5])
end
for i = 1, (#KEYS - 6) / 3 do
  local k, a = 3 * i + 4, 3 * i + 3
  if confirmed then
    redis.call('SETBIT', KEYS[k], ARGV[a], 1)
    redis.call('SET', KEYS[k + 1], SOLD)
    redis.call('ZREM', KEYS[k + 2], ARGV[a + 1])
  else
    local hold = redis.call('GET', KEYS[k + 1])
    if hold and hold_of(hold, ARGV[4]) == ARGV[a + 2] then
      redis.call('DEL', KEYS[k + 1])
      redis.call('ZREM', KEYS[k + 2], ARGV[a + 1])
    elseif not hold then
      redis.call('ZREM', KEYS[k + 2], ARGV[a + 1])
    end
  end
  redis.call('ZREM', KEYS[2], ARGV[a + 1])
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
