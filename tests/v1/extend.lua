--[[
  extend.lua — extend the lease of transition <fence> (the watchdog's call).
  Fenced: refused when the lease is gone or belongs to another fence.

  Input:
    KEYS[1] lease   <ns>:{<team>}:lease:<id>
    ARGV[1] fence of the caller's transition
    ARGV[2] new lease length in ms (from now, by the server clock)

  Output:
    {"extended", pttl_ms}
    {"fenced", live_fence_or_empty}   nothing written
    {"corrupt", detail}

  Example:
    redis-cli --eval lua/extend.lua 'sbx:{t}:lease:s1' , 1 30000
]]

local raw = redis.pcall('GET', KEYS[1])
if type(raw) == 'table' and raw.err then return {'corrupt', KEYS[1] .. ' is not a string'} end
local live = raw and string.match(raw, '^(%d+) ') or nil
if live ~= ARGV[1] then return {'fenced', live or ''} end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return {'extended', tostring(redis.call('PTTL', KEYS[1]))}
