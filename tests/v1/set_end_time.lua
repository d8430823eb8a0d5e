--[[
  set_end_time.lua — move a live sandbox's end time, updating the expiry
  index in the same step. Tombstones (resumable or final states) keep theirs.

  Input:
    KEYS[1] record        <ns>:{<team>}:rec:<id>
    KEYS[2] expiry index  <ns>:{<team>}:expiry

    ARGV[1] schema version
    ARGV[2] sandbox id
    ARGV[3] new end time, ms since the Unix epoch
    ARGV[4] expected execution id, or "" for any
    ARGV[5] state classes (as in register.lua)

  Output:
    {"ok", previous_end_ms}
    {"not_found"}
    {"exec_mismatch", actual_exec}
    {"settled", state}      a tombstone: nothing written
    {"corrupt", detail} | {"schema", found_version}

  Example:
    redis-cli --eval lua/set_end_time.lua 'sbx:{t}:rec:s1' 'sbx:{t}:expiry' , \
      1 s1 1893456000000 '' 'running=live,pausing=inflight,paused=resumable,killing=inflight,killed=final,snapshotting=inflight'
]]

-- A key of ours holding another type is corruption: refuse before writing.
local function foreign(key, want)
  local t = redis.call('TYPE', key)['ok']
  if t ~= 'none' and t ~= want then return {'corrupt', key .. ' holds a ' .. t .. ', expected a ' .. want} end
  return nil
end

local rec_key, expiry_key = KEYS[1], KEYS[2]
local schema, id, end_ms, expect_exec = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local classes = {}
for k, v in string.gmatch(ARGV[5], '([^,=]+)=([^,]+)') do classes[k] = v end

local bad = foreign(expiry_key, 'zset')
if bad then return bad end
local vals = redis.pcall('HMGET', rec_key, 'v', 'state', 'exec', 'end_ms', 'fence')
if vals.err then return {'corrupt', rec_key .. ' is not a hash'} end
if redis.call('EXISTS', rec_key) == 0 then return {'not_found'} end
if vals[1] ~= schema then return {'schema', vals[1] or ''} end
local class = classes[vals[2] or '']
if class == nil then return {'corrupt', rec_key .. ' has unknown state "' .. (vals[2] or '') .. '"'} end
if not vals[3] or not tonumber(vals[4] or '') or not tonumber(vals[5] or '') then
  return {'corrupt', rec_key .. ' lacks exec, end_ms or fence'}
end
if expect_exec ~= '' and vals[3] ~= expect_exec then return {'exec_mismatch', vals[3]} end
if class == 'resumable' or class == 'final' then return {'settled', vals[2]} end
redis.call('HSET', rec_key, 'end_ms', end_ms)
redis.call('ZADD', expiry_key, end_ms, id)
return {'ok', vals[4]}
