-- The stored outcome of this Idempotency-Key (KEYS[1], `state|fingerprint|body`; ARGV[1]
-- the request's fingerprint): another request -> {-422}; still in flight -> {-409};
-- done -> {0, stored body}. Otherwise the script goes on.
local prior = redis.call('GET', KEYS[1])
if prior then
  local state, fp, body = string.match(prior, '^(%a+)|(%x+)|(.*)$')
  if fp ~= ARGV[1] then return {-422} end
  if state ~= 'done' then return {-409} end
  return {0, body}
end
