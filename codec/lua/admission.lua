-- KEYS: admission hash. ARGV: new openAtMs or '', new rate or ''.
-- Keeps everyone admitted so far admitted (`baseAdmitted` at `baseMs`), unless the
-- opening moves into the future, which closes the room again.
-- Returns {openAtMs, rate, baseMs, baseAdmitted}.
local f = redis.call('HMGET', KEYS[1], 'openAtMs', 'rate', 'baseMs', 'baseAdmitted')
local open = tonumber(f[1]) or 0
local rate = tonumber(f[2]) or 0
local base = tonumber(f[3]) or open
local admitted = tonumber(f[4]) or 0
if now >= open then
  admitted = admitted + math.floor((now - math.max(base, open)) * rate / 1000)
else
  admitted = 0
end
open = tonumber(ARGV[1]) or open
rate = tonumber(ARGV[2]) or rate
if open > now then
  base = open
  admitted = 0
else
  base = now
end
redis.call('HSET', KEYS[1], 'openAtMs', open, 'rate', rate, 'baseMs', base, 'baseAdmitted', admitted)
return {open, rate, base, admitted}
