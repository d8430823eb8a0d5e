--[[
  finish.lua — end transition <fence> with an outcome, in one atomic step:
  record the outcome (record + outcome hash), apply the resulting state,
  update the expiry index, delete the lease, publish the wake-up.

  Fenced: only the holder of the live lease with this fence may finish. A
  stale holder (lease expired, or another transition started) gets "fenced"
  and nothing is written. Retry-safe: if an outcome is already recorded for
  this fence (a retry after a dropped reply) that outcome is returned and
  nothing is written.

  Input:
    KEYS[1] record        <ns>:{<team>}:rec:<id>
    KEYS[2] lease         <ns>:{<team>}:lease:<id>
    KEYS[3] outcomes      <ns>:{<team>}:out:<id>
    KEYS[4] expiry index  <ns>:{<team>}:expiry

    ARGV[1]  schema version
    ARGV[2]  team id
    ARGV[3]  sandbox id
    ARGV[4]  fence of the transition
    ARGV[5]  action of the transition (e.g. "pause")
    ARGV[6]  outcome: "succeeded" | "failed"
    ARGV[7]  resulting state, or "" to leave the in-flight state (stuck)
    ARGV[8]  "1" if the resulting state is a tombstone (leaves the expiry
             index and expires after ARGV[9] ms), else "0"
    ARGV[9]  tombstone retention in ms (0 = keep forever)
    ARGV[10] reason ("" for success)
    ARGV[11] notification channel
    ARGV[12] outcome retention in ms
    ARGV[13] state classes (as in register.lua), to validate the record

  Output:
    {"finished", outcome, reason}          recorded, published, lease deleted
    {"recorded", outcome, reason}          outcome already recorded for this fence
    {"fenced", current_fence}              not the live holder; nothing written
    {"not_found"} | {"corrupt", detail} | {"schema", found_version}

  Example:
    redis-cli --eval lua/finish.lua 'sbx:{t}:rec:s1' 'sbx:{t}:lease:s1' 'sbx:{t}:out:s1' 'sbx:{t}:expiry' , \
      1 t s1 1 pause succeeded paused 1 86400000 '' sbx:notify 600000 \
      'running=live,pausing=inflight,paused=resumable,killing=inflight,killed=final,snapshotting=inflight'
]]

local rec_key, lease_key, out_key, expiry_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local schema, team, id, fence, action, outcome = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local next_state, tombstone, tombstone_ms = ARGV[7], ARGV[8] == '1', tonumber(ARGV[9])
local reason, channel, retention = ARGV[10], ARGV[11], tonumber(ARGV[12])
local OUT_KEEP = 8

-- The fields finish needs (validation, fencing, the retry answer).
local FIELDS = {'v', 'state', 'exec', 'end_ms', 'fence', 'last_fence', 'last_outcome', 'last_reason'}

-- Already recorded? (retry after a dropped reply, or marked abandoned)
local recorded = redis.pcall('HGET', out_key, fence)
if type(recorded) == 'table' and recorded.err then return {'corrupt', out_key .. ' is not a hash'} end
if recorded then
  local _, o, why = string.match(recorded, '^(%S+) (%S+) ?(.*)$')
  return {'recorded', o or '', why or ''}
end

local vals = redis.pcall('HMGET', rec_key, unpack(FIELDS))
if vals.err then return {'corrupt', rec_key .. ' is not a hash'} end
-- Every record has `v`; without it the key is absent (or corrupt).
if not vals[1] and redis.call('EXISTS', rec_key) == 0 then return {'not_found'} end
local r = {}
for i, f in ipairs(FIELDS) do r[f] = vals[i] or '' end
if r.v ~= schema then return {'schema', r.v} end
-- The state's class in ARGV[13], looked up without parsing the list (a
-- plain search: a corrupt state cannot act as a pattern).
if not string.find(',' .. ARGV[13], ',' .. r.state .. '=', 1, true) then return {'corrupt', rec_key .. ' has unknown state "' .. r.state .. '"'} end
if r.exec == '' or not tonumber(r.end_ms) or not tonumber(r.fence) then
  return {'corrupt', rec_key .. ' lacks exec, end_ms or fence'}
end
if r.last_fence == fence then return {'recorded', r.last_outcome, r.last_reason} end

local raw = redis.pcall('GET', lease_key)
if type(raw) == 'table' and raw.err then return {'corrupt', lease_key .. ' is not a string'} end
local lease_fence = raw and string.match(raw, '^(%d+) ') or nil
if lease_fence ~= fence or r.fence ~= fence then return {'fenced', r.fence} end

-- The expiry index is the first write: a key of another type makes it
-- fail before anything is written. (The outcomes hash was read above.)
local ok
if tombstone then
  ok = redis.pcall('ZREM', expiry_key, id)
else
  ok = redis.pcall('ZADD', expiry_key, r.end_ms, id)
end
if type(ok) == 'table' and ok.err then return {'corrupt', expiry_key .. ' is not a sorted set'} end

if next_state ~= '' then r.state = next_state end
redis.call('HSET', rec_key, 'state', r.state, 'last_fence', fence, 'last_action', action,
           'last_outcome', outcome, 'last_reason', reason)
redis.call('DEL', lease_key)
if tombstone and tombstone_ms > 0 then redis.call('PEXPIRE', rec_key, tombstone_ms) end
redis.call('HSET', out_key, fence, action .. ' ' .. outcome .. ' ' .. reason)
if redis.call('HLEN', out_key) > OUT_KEEP then
  local oldest
  for _, f in ipairs(redis.call('HKEYS', out_key)) do
    if oldest == nil or tonumber(f) < tonumber(oldest) then oldest = f end
  end
  redis.call('HDEL', out_key, oldest)
end
redis.call('PEXPIRE', out_key, retention)
redis.call('PUBLISH', channel, team .. ' ' .. id .. ' ' .. fence .. ' ' .. action .. ' ' .. outcome .. ' ' .. reason)

return {'finished', outcome, reason}
