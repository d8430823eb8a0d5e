-- clock.lua — the server's time, read once per script.
--
-- Every deadline is decided by the Redis server clock (TIME inside the
-- script), never by a client's. `clock()` returns milliseconds (deadlines,
-- end times) and microseconds (the floor of every new fence).
--
-- Numbers are written with `int()`: Lua's tostring keeps 14 significant
-- digits, and a microsecond fence has 16.

local function clock()
  local t = redis.call('TIME')
  local s, us = tonumber(t[1]), tonumber(t[2])
  return s * 1000 + math.floor(us / 1000), s * 1000000 + us
end

local function int(n)
  return string.format('%d', n)
end
