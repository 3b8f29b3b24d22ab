-- The value of a seat's hold key is `holdId user`: these two functions are the only
-- code that builds or reads it (codec::store, "hold value").
local function hold_value(hold_id, user)
  return hold_id .. ' ' .. user
end

-- The hold id of a hold key's value `v` when `user` holds it, else nil.
local function hold_of(v, user)
  if not v then return nil end
  local sp = string.find(v, ' ', 1, true)
  if not sp or string.sub(v, sp + 1) ~= user then return nil end
  return string.sub(v, 1, sp - 1)
end
