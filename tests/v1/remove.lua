--[[
  remove.lua — delete a sandbox record and its expiry entry. Refused while a
  transition holds the lease. The outcome hash is left to expire so late
  joiners still learn how the last transitions ended; fences keep counting
  per team, so a later record with this id gets higher fences.

  Input:
    KEYS[1] record        <ns>:{<team>}:rec:<id>
    KEYS[2] lease         <ns>:{<team>}:lease:<id>
    KEYS[3] expiry index  <ns>:{<team>}:expiry

    ARGV[1] schema version
    ARGV[2] sandbox id
    ARGV[3] expected execution id, or "" for any
    ARGV[4] state classes (as in register.lua)

  Output:
    {"removed", state, exec}
    {"not_found"}
    {"busy", lease_fence, lease_action}
    {"exec_mismatch", actual_exec}
    {"corrupt", detail} | {"schema", found_version}

  Example:
    redis-cli --eval lua/remove.lua 'sbx:{t}:rec:s1' 'sbx:{t}:lease:s1' 'sbx:{t}:expiry' , \
      1 s1 '' 'running=live,pausing=inflight,paused=resumable,killing=inflight,killed=final,snapshotting=inflight'
]]

-- A key of ours holding another type is corruption: refuse before writing.
local function foreign(key, want)
  local t = redis.call('TYPE', key)['ok']
  if t ~= 'none' and t ~= want then return {'corrupt', key .. ' holds a ' .. t .. ', expected a ' .. want} end
  return nil
end

local rec_key, lease_key, expiry_key = KEYS[1], KEYS[2], KEYS[3]
local schema, id, expect_exec = ARGV[1], ARGV[2], ARGV[3]
local classes = {}
for k, v in string.gmatch(ARGV[4], '([^,=]+)=([^,]+)') do classes[k] = v end

local bad = foreign(expiry_key, 'zset')
if bad then return bad end
local raw = redis.pcall('GET', lease_key)
if type(raw) == 'table' and raw.err then return {'corrupt', lease_key .. ' is not a string'} end
if raw then
  local lf, la = string.match(raw, '^(%d+) (%S+) %S+$')
  if not lf then return {'corrupt', lease_key .. ' holds "' .. raw .. '"'} end
  return {'busy', lf, la}
end
local vals = redis.pcall('HMGET', rec_key, 'v', 'state', 'exec', 'end_ms', 'fence')
if vals.err then return {'corrupt', rec_key .. ' is not a hash'} end
if redis.call('EXISTS', rec_key) == 0 then return {'not_found'} end
if vals[1] ~= schema then return {'schema', vals[1] or ''} end
if classes[vals[2] or ''] == nil then return {'corrupt', rec_key .. ' has unknown state "' .. (vals[2] or '') .. '"'} end
if not vals[3] or vals[3] == '' or not tonumber(vals[4] or '') or not tonumber(vals[5] or '') then
  return {'corrupt', rec_key .. ' lacks exec, end_ms or fence'}
end
if expect_exec ~= '' and vals[3] ~= expect_exec then return {'exec_mismatch', vals[3]} end
redis.call('DEL', rec_key)
redis.call('ZREM', expiry_key, id)
return {'removed', vals[2], vals[3]}
