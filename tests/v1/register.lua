--[[
  register.lua — create a sandbox record, or a new incarnation over a
  resumable tombstone (a resume), in one atomic step with its expiry entry.

  Refuses while a lease is live ("busy"), refuses to overwrite a live record
  of another execution and to bring back a final (killed) record while its
  tombstone lasts ("exists"). The same execution again is idempotent. The
  fence is never reset: fences come from the team's counter.

  Input:
    KEYS[1] record        <ns>:{<team>}:rec:<id>
    KEYS[2] lease         <ns>:{<team>}:lease:<id>
    KEYS[3] expiry index  <ns>:{<team>}:expiry

    ARGV[1] schema version
    ARGV[2] sandbox id
    ARGV[3] execution id
    ARGV[4] end time, ms since the Unix epoch
    ARGV[5] opaque data
    ARGV[6] initial state (e.g. "running")
    ARGV[7] state classes: "running=live,pausing=inflight,paused=resumable,killed=final,..."

  Output (rows marked [rec] end with the 14 record fields of begin.lua):
    {"created",  "", "", [rec]}
    {"existing", "", "", [rec]}           same execution: nothing written
    {"resumed",  previous_exec, "", [rec]}
    {"busy", lease_fence, lease_action}
    {"exists", exec, state}
    {"corrupt", detail} | {"schema", found_version}

  Example:
    redis-cli --eval lua/register.lua 'sbx:{t}:rec:s1' 'sbx:{t}:lease:s1' 'sbx:{t}:expiry' , \
      1 s1 e1 1893456000000 '{}' running \
      'running=live,pausing=inflight,paused=resumable,killing=inflight,killed=final,snapshotting=inflight'
]]

-- A key of ours holding another type is corruption: refuse before writing.
local function foreign(key, want)
  local t = redis.call('TYPE', key)['ok']
  if t ~= 'none' and t ~= want then return {'corrupt', key .. ' holds a ' .. t .. ', expected a ' .. want} end
  return nil
end

local rec_key, lease_key, expiry_key = KEYS[1], KEYS[2], KEYS[3]
local schema, id, exec, end_ms, data, initial = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local classes = {}
for k, v in string.gmatch(ARGV[7], '([^,=]+)=([^,]+)') do classes[k] = v end

local FIELDS = {'v', 'state', 'exec', 'end_ms', 'fence', 'data',
                'last_fence', 'last_action', 'last_outcome', 'last_reason', 'started_ms'}

local function reply(code, a, r)
  local lease = redis.call('GET', lease_key)
  return {code, a, '', r.state, r.exec, r.end_ms, r.fence, r.data,
          r.last_fence, r.last_action, r.last_outcome, r.last_reason,
          lease or '', tostring(redis.call('PTTL', lease_key)),
          tostring(redis.call('PTTL', rec_key)), tostring(now_ms()), r.started_ms}
end

local bad = foreign(expiry_key, 'zset')
if bad then return bad end
local raw = redis.pcall('GET', lease_key)
if type(raw) == 'table' and raw.err then return {'corrupt', lease_key .. ' is not a string'} end
if raw then
  local lf, la = string.match(raw, '^(%d+) (%S+) %S+$')
  if not lf then return {'corrupt', lease_key .. ' holds "' .. raw .. '"'} end
  return {'busy', lf, la}
end

local vals = redis.pcall('HMGET', rec_key, unpack(FIELDS))
if vals.err then return {'corrupt', rec_key .. ' is not a hash'} end
local r = {}
for i, f in ipairs(FIELDS) do r[f] = vals[i] or '' end

if redis.call('EXISTS', rec_key) == 1 then
  if r.v ~= schema then return {'schema', r.v} end
  local class = classes[r.state]
  if class == nil then return {'corrupt', rec_key .. ' has unknown state "' .. r.state .. '"'} end
  if r.exec == '' or not tonumber(r.end_ms) or not tonumber(r.fence) then
    return {'corrupt', rec_key .. ' lacks exec, end_ms or fence'}
  end
  if class == 'final' then return {'exists', r.exec, r.state} end
  if r.exec == exec then return reply('existing', '', r) end
  if class ~= 'resumable' then return {'exists', r.exec, r.state} end
  local previous = r.exec
  r.state, r.exec, r.end_ms, r.data = initial, exec, end_ms, data
  redis.call('HSET', rec_key, 'state', initial, 'exec', exec, 'end_ms', end_ms, 'data', data)
  redis.call('PERSIST', rec_key)
  redis.call('ZADD', expiry_key, end_ms, id)
  return reply('resumed', previous, r)
end

r = {state = initial, exec = exec, end_ms = end_ms, fence = '0', data = data,
     last_fence = '', last_action = '', last_outcome = '', last_reason = '', started_ms = ''}
redis.call('HSET', rec_key, 'v', schema, 'state', initial, 'exec', exec, 'end_ms', end_ms,
           'fence', '0', 'data', data)
redis.call('ZADD', expiry_key, end_ms, id)
return reply('created', '', r)
