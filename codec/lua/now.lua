-- The server's time in milliseconds: the one clock every edge and worker shares.
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
