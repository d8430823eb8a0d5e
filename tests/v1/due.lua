--[[
  due.lua — the sandboxes whose end time has passed by the Redis server
  clock, oldest first (read-only). Only live records are in the index.

  Input:
    KEYS[1] expiry index  <ns>:{<team>}:expiry
    ARGV[1] maximum number of ids to return

  Output:
    {now_ms, id1, id2, ...}
    {"corrupt", detail}      the key holds another type

  Example:
    redis-cli --eval lua/due.lua 'sbx:{t}:expiry' , 100
]]

local kind = redis.call('TYPE', KEYS[1])['ok']
if kind ~= 'none' and kind ~= 'zset' then return {'corrupt', KEYS[1] .. ' holds a ' .. kind .. ', expected a zset'} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
table.insert(ids, 1, tostring(now))
return ids
