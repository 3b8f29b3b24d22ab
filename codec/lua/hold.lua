-- KEYS, per hold: the seat's hold key, the section's held zset, the buyer's holds zset.
-- ARGV: ttl ms, limit, then per hold: the hold value (`holdId user`), seatId.
-- Returns per hold its expiresAtMs, or -1 sold, -2 held, -3 over the limit; sold is
-- said first, then the limit, then held.
--
-- One `SET ... NX GET` takes the hold or answers what is in the way: `sold` for good
-- (the worker's projection of a sale) or another hold. The buyer's live holds are
-- counted before, by `ZCARD` (expired members only add to it) and, at the limit, by
-- `ZCOUNT` from now. Each section's held zset gets one `ZADD` for all the holds of a
-- batch. Expired members are counted out, never swept: a section's
-- zset has one member a seat, overwritten by the seat's next hold, so it cannot
-- outgrow the section; the buyer's gains at most `limit` members a hold TTL and
-- expires with the buyer's last hold.
--
-- callgrind of redis-server (scripts fed directly, 3,200 holds of 800 buyers on
-- 200,000-seat sections; perf/results/callgrind-redis-hold.md): the former script (sold
-- bit, count, SET NX, two ZADDs, PEXPIRE a hold; four keys and four arguments) cost
-- 101k instructions a hold alone and 61k in batches of 32; this one 90k and 45k. The
-- buyer's holds as a string of records parsed in Lua cost more (53k): Lua work costs
-- Redis more than a small command.
local limit = tonumber(ARGV[2])
local exp = now + tonumber(ARGV[1])
local exps = string.format('%d', exp)
local from = '(' .. string.format('%d', now)
local zadds, out = {}, {}
for i = 1, #KEYS / 3 do
  local hold, buyer, seat = KEYS[3 * i - 2], KEYS[3 * i], ARGV[2 * i + 2]
  if redis.call('ZCARD', buyer) >= limit and redis.call('ZCOUNT', buyer, from, '+inf') >= limit then
    -- Over the limit: one read more, so that a sold seat is still said first.
    out[i] = redis.call('GET', hold) == SOLD and -1 or -3
  else
    local prior = redis.call('SET', hold, ARGV[2 * i + 1], 'NX', 'GET', 'PXAT', exps)
    if prior == SOLD then out[i] = -1
    elseif prior then out[i] = -2
    else
      redis.call('ZADD', buyer, exps, seat)
      redis.call('PEXPIREAT', buyer, exps)
      local held = KEYS[3 * i - 1]
      local z = zadds[held]
      if not z then z = {}; zadds[held] = z end
      z[#z + 1] = exps
      z[#z + 1] = seat
      out[i] = exp
    end
  end
end
for held, z in pairs(zadds) do redis.call('ZADD', held, unpack(z)) end
return out
