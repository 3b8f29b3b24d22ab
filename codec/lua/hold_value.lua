-- The value of a seat's hold key is `holdId user` (built by codec::store::write_hold_value)
-- while held, and `sold` for good once the worker has projected the seat's sale: the one
-- `SET ... NX` of a hold then answers sold, held or taken. `hold_of` is the only Lua that
-- reads it.
local SOLD = 'sold'

-- The hold id of a hold key's value `v` when `user` holds it, else nil.
local function hold_of(v, user)
  if not v then return nil end
  local sp = string.find(v, ' ', 1, true)
  if not sp or string.sub(v, sp + 1) ~= user then return nil end
  return string.sub(v, 1, sp - 1)
end
