--[[
  inspect.lua — read a sandbox's record, lease and TTLs in one atomic step
  (read-only).

  Input:
    KEYS[1] record  <ns>:{<team>}:rec:<id>
    KEYS[2] lease   <ns>:{<team>}:lease:<id>
    ARGV[1] schema version

  Output:
    {"record", "", "", state, exec, end_ms, fence, data, last_fence,
     last_action, last_outcome, last_reason, lease, lease_pttl,
     record_pttl, now_ms, started_ms}   (record_pttl -1: no expiry;
                                         started_ms: start of the latest transition)
    {"not_found", lease, lease_pttl}
    {"corrupt", detail} | {"schema", found_version}

  Example:
    redis-cli --eval lua/inspect.lua 'sbx:{t}:rec:s1' 'sbx:{t}:lease:s1' , 1
]]

local rec_key, lease_key, schema = KEYS[1], KEYS[2], ARGV[1]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

local lease = redis.pcall('GET', lease_key)
if type(lease) == 'table' and lease.err then return {'corrupt', lease_key .. ' is not a string'} end
local lease_pttl = tostring(redis.call('PTTL', lease_key))
local vals = redis.pcall('HMGET', rec_key, 'v', 'state', 'exec', 'end_ms', 'fence', 'data',
                         'last_fence', 'last_action', 'last_outcome', 'last_reason', 'started_ms')
if vals.err then return {'corrupt', rec_key .. ' is not a hash'} end
if redis.call('EXISTS', rec_key) == 0 then return {'not_found', lease or '', lease_pttl} end
if vals[1] ~= schema then return {'schema', vals[1] or ''} end
if not vals[3] or vals[3] == '' or not tonumber(vals[4] or '') or not tonumber(vals[5] or '') then
  return {'corrupt', rec_key .. ' lacks exec, end_ms or fence'}
end
local out = {'record', '', ''}
for i = 2, 10 do out[#out + 1] = vals[i] or '' end
out[#out + 1] = lease or ''
out[#out + 1] = lease_pttl
out[#out + 1] = tostring(redis.call('PTTL', rec_key))
out[#out + 1] = tostring(now)
out[#out + 1] = vals[11] or ''
return out
