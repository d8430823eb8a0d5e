--[[
  settle.lua — tell how transition <fence> ended; if its lease expired and no
  outcome was recorded, record `abandoned` (record + outcome hash) and publish
  it, atomically. Waiters call this on every re-check; operators call it with
  mode "force" to abandon a live transition whose holder is known dead.

  Input:
    KEYS[1] record    <ns>:{<team>}:rec:<id>
    KEYS[2] lease     <ns>:{<team>}:lease:<id>
    KEYS[3] outcomes  <ns>:{<team>}:out:<id>

    ARGV[1] schema version
    ARGV[2] team id
    ARGV[3] sandbox id
    ARGV[4] fence of the transition
    ARGV[5] mode: "expired" (only a transition without a live lease) |
            "force" (also delete a live lease that carries this fence)
    ARGV[6] reason recorded with `abandoned` (e.g. "lease expired")
    ARGV[7] notification channel
    ARGV[8] outcome retention in ms
    ARGV[9] state classes (as in register.lua), to validate the record

  Output:
    {"outcome", action, outcome, reason}  already ended: outcome is
                                          succeeded|failed|abandoned, nothing written
    {"abandoned", action, "abandoned", reason}
                                          this call recorded `abandoned` (the lease had
                                          expired, or mode "force") and published it
    {"live", lease_pttl, action}          still in flight (mode "expired")
    {"unknown"}                           no outcome can be known: the record was
                                          removed, or moved on and the outcome aged out
    {"corrupt", detail} | {"schema", found_version}

  Example:
    redis-cli --eval lua/settle.lua 'sbx:{t}:rec:s1' 'sbx:{t}:lease:s1' 'sbx:{t}:out:s1' , \
      1 t s1 7 expired 'lease expired' sbx:notify 600000 \
      'running=live,pausing=inflight,paused=resumable,killing=inflight,killed=final,snapshotting=inflight'
]]

local rec_key, lease_key, out_key = KEYS[1], KEYS[2], KEYS[3]
local schema, team, id, fence, mode = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local reason, channel, retention = ARGV[6], ARGV[7], tonumber(ARGV[8])
local OUT_KEEP = 8

local recorded = redis.pcall('HGET', out_key, fence)
if type(recorded) == 'table' and recorded.err then return {'corrupt', out_key .. ' is not a hash'} end
if recorded then
  local a, o, why = string.match(recorded, '^(%S+) (%S+) ?(.*)$')
  return {'outcome', a or '', o or '', why or ''}
end

local vals = redis.pcall('HMGET', rec_key, 'v', 'fence', 'action', 'last_fence', 'last_action', 'last_outcome',
                         'last_reason', 'state', 'exec', 'end_ms')
if vals.err then return {'corrupt', rec_key .. ' is not a hash'} end
if redis.call('EXISTS', rec_key) == 0 then return {'unknown'} end
if vals[1] ~= schema then return {'schema', vals[1] or ''} end
local classes = {}
for k, v in string.gmatch(ARGV[9], '([^,=]+)=([^,]+)') do classes[k] = v end
if classes[vals[8] or ''] == nil then return {'corrupt', rec_key .. ' has unknown state "' .. (vals[8] or '') .. '"'} end
if not vals[9] or vals[9] == '' or not tonumber(vals[10] or '') or not tonumber(vals[2] or '') then
  return {'corrupt', rec_key .. ' lacks exec, end_ms or fence'}
end
if vals[4] == fence then return {'outcome', vals[5] or '', vals[6] or '', vals[7] or ''} end
if vals[2] ~= fence then return {'unknown'} end

local raw = redis.pcall('GET', lease_key)
if type(raw) == 'table' and raw.err then return {'corrupt', lease_key .. ' is not a string'} end
if raw then
  local lf, la = string.match(raw, '^(%d+) (%S+) ')
  if lf == fence then
    if mode ~= 'force' then return {'live', tostring(redis.call('PTTL', lease_key)), la} end
    redis.call('DEL', lease_key)
  end
end

-- The transition is over and nobody recorded how: its holder vanished.
local action = vals[3] or 'unknown'
redis.call('HSET', rec_key, 'last_fence', fence, 'last_action', action,
           'last_outcome', 'abandoned', 'last_reason', reason)
redis.call('HSET', out_key, fence, action .. ' abandoned ' .. reason)
if redis.call('HLEN', out_key) > OUT_KEEP then
  local oldest
  for _, f in ipairs(redis.call('HKEYS', out_key)) do
    if oldest == nil or tonumber(f) < tonumber(oldest) then oldest = f end
  end
  redis.call('HDEL', out_key, oldest)
end
redis.call('PEXPIRE', out_key, retention)
redis.call('PUBLISH', channel, team .. ' ' .. id .. ' ' .. fence .. ' ' .. action .. ' abandoned ' .. reason)
return {'abandoned', action, 'abandoned', reason}
