--[[
  begin.lua — decide a requested action against a sandbox record and, when
  the rule says "start", open the transition in the same atomic step:
  bump the fence, set the in-flight state, create the lease.

  The script holds no policy of its own: the rule for every state of the
  requested action comes in ARGV (built from `Lifecycle` in Rust). All time
  decisions use the Redis server clock (TIME), never a client's.

  A record that sits in an in-flight state without a lease is "stuck": its
  holder failed or died. If that transition has no recorded outcome yet, this
  script records `abandoned` for it (record + outcome hash) and publishes it
  before deciding, so its waiters learn it at once.

  Input:
    KEYS[1] record        <ns>:{<team>}:rec:<id>     (hash)
    KEYS[2] lease         <ns>:{<team>}:lease:<id>   (string "<fence> <action> <holder>", PX TTL)
    KEYS[3] outcomes      <ns>:{<team>}:out:<id>     (hash fence -> "<action> <outcome> <reason>")
    KEYS[4] expiry index  <ns>:{<team>}:expiry       (zset id -> end_ms)
    KEYS[5] fence counter <ns>:{<team>}:fence        (integer, INCR)

    ARGV[1]  schema version the caller speaks (e.g. "1")
    ARGV[2]  team id (for the notification payload)
    ARGV[3]  sandbox id
    ARGV[4]  action name (e.g. "pause")
    ARGV[5]  in-flight state of the action (e.g. "pausing")
    ARGV[6]  "1" to pull end_ms to now if later (pause/kill), else "0"
    ARGV[7]  lease length in ms
    ARGV[8]  holder id, unique per begin call (no spaces); a retried call
             whose lease is already held under this id gets "started" again
    ARGV[9]  "1" for an eviction request, else "0"
    ARGV[10] expected execution id, or "" for any
    ARGV[11] notification channel
    ARGV[12] outcome retention in ms
    ARGV[13] state classes: "running=live,pausing=inflight,paused=resumable,..."
    ARGV[14] rules for this action: "<state>=<if lease live>/<if stuck>,..."
             decisions: start | join | wait | same | absorbed | invalid

  Output (array of strings; rows marked [rec] end with the 14 record fields
  state, exec, end_ms, fence, data, last_fence, last_action, last_outcome,
  last_reason, lease, lease_pttl, record_pttl, now_ms, started_ms — the
  server time the latest transition started):
    {"started",  fence, lease_pttl, [rec]} transition opened with this fence
    {"join",     fence, lease_pttl, [rec]} same action in flight: wait for its outcome
    {"wait",     fence, lease_pttl, [rec]} other action in flight: wait, then decide again
    {"same",     "", "", [rec]}            already in the target state, nothing written
    {"absorbed", "", "", [rec]}            the state already covers the request, nothing written
    {"invalid",  state}
    {"not_found"}
    {"exec_mismatch", actual_exec}
    {"eviction_in_progress", lease_fence, lease_action}
    {"eviction_not_needed", end_ms, now_ms}
    {"corrupt", detail} | {"schema", found_version}

  Example:
    redis-cli --eval lua/begin.lua 'sbx:{t}:rec:s1' 'sbx:{t}:lease:s1' 'sbx:{t}:out:s1' 'sbx:{t}:expiry' 'sbx:{t}:fence' , \
      1 t s1 pause pausing 1 30000 cli 0 '' sbx:notify 600000 \
      'running=live,pausing=inflight,paused=resumable,killing=inflight,killed=final,snapshotting=inflight' \
      'running=start/start,pausing=join/start,paused=same/same,killing=invalid/invalid,killed=invalid/invalid,snapshotting=wait/start'
]]

-- A key of ours holding another type is corruption: refuse before writing.
local function foreign(key, want)
  local t = redis.call('TYPE', key)['ok']
  if t ~= 'none' and t ~= want then return {'corrupt', key .. ' holds a ' .. t .. ', expected a ' .. want} end
  return nil
end

local rec_key, lease_key, out_key, expiry_key, fence_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local schema, team, id, action, in_flight = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local pull_end, lease_ms, holder, eviction = ARGV[6] == '1', tonumber(ARGV[7]), ARGV[8], ARGV[9] == '1'
local expect_exec, channel, retention = ARGV[10], ARGV[11], tonumber(ARGV[12])
local OUT_KEEP = 8

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- The value of `name` in a "k=v,k=v" list (ARGV[13], ARGV[14]), or nil.
-- Looks up the one state needed instead of parsing the lists into tables
-- (a tenth of the script's cost); a plain search, so a state read from a
-- corrupt record cannot act as a pattern.
local function lookup(list, name)
  local from = string.find(',' .. list, ',' .. name .. '=', 1, true)
  if not from then return nil end
  return string.match(list, '^[^,]*', from + #name + 1)
end

local FIELDS = {'v', 'state', 'exec', 'end_ms', 'fence', 'action', 'data',
                'last_fence', 'last_action', 'last_outcome', 'last_reason', 'started_ms'}

-- Reads and validates the record: nil if absent, or an error reply.
local function load(key)
  local vals = redis.pcall('HMGET', key, unpack(FIELDS))
  if vals.err then return nil, {'corrupt', key .. ' is not a hash'} end
  -- Every record has `v`; without it the key is absent (or corrupt).
  if not vals[1] and redis.call('EXISTS', key) == 0 then return nil, nil end
  local r = {}
  for i, f in ipairs(FIELDS) do r[f] = vals[i] or '' end
  if r.v ~= schema then return nil, {'schema', r.v} end
  if lookup(ARGV[13], r.state) == nil then return nil, {'corrupt', key .. ' has unknown state "' .. r.state .. '"'} end
  if r.exec == '' or not tonumber(r.end_ms) or not tonumber(r.fence) then
    return nil, {'corrupt', key .. ' lacks exec, end_ms or fence'}
  end
  return r, nil
end

-- Reads the lease: raw value, fence, action, pttl (nil when absent).
local function load_lease(key)
  local raw = redis.pcall('GET', key)
  if type(raw) == 'table' and raw.err then return nil, {'corrupt', key .. ' is not a string'} end
  if not raw then return {}, nil end
  local f, a, h = string.match(raw, '^(%d+) (%S+) (%S+)$')
  if not f then return nil, {'corrupt', key .. ' holds "' .. raw .. '"'} end
  return {raw = raw, fence = f, action = a, holder = h, pttl = redis.call('PTTL', key)}, nil
end

-- `record_pttl`: the record's PTTL if known, else nil (then asked).
local function record_reply(code, a, b, r, lease, now, record_pttl)
  return {code, tostring(a), tostring(b), r.state, r.exec, r.end_ms, r.fence, r.data,
          r.last_fence, r.last_action, r.last_outcome, r.last_reason,
          lease.raw or '', tostring(lease.pttl or -2), tostring(record_pttl or redis.call('PTTL', rec_key)),
          tostring(now), r.started_ms}
end

-- Records the outcome of transition `fence` in the record and the outcome
-- hash (keeping the newest OUT_KEEP), then publishes it.
local function record_outcome(r, fence, act, outcome, reason)
  redis.call('HSET', rec_key, 'last_fence', fence, 'last_action', act,
             'last_outcome', outcome, 'last_reason', reason)
  r.last_fence, r.last_action, r.last_outcome, r.last_reason = fence, act, outcome, reason
  redis.call('HSET', out_key, fence, act .. ' ' .. outcome .. ' ' .. reason)
  if redis.call('HLEN', out_key) > OUT_KEEP then
    local oldest
    for _, f in ipairs(redis.call('HKEYS', out_key)) do
      if oldest == nil or tonumber(f) < tonumber(oldest) then oldest = f end
    end
    redis.call('HDEL', out_key, oldest)
  end
  redis.call('PEXPIRE', out_key, retention)
  redis.call('PUBLISH', channel, team .. ' ' .. id .. ' ' .. fence .. ' ' .. act .. ' ' .. outcome .. ' ' .. reason)
end

local r, err = load(rec_key)
if err then return err end
if not r then return {'not_found'} end
local lease
lease, err = load_lease(lease_key)
if err then return err end
local live = lease.raw ~= nil
local class = lookup(ARGV[13], r.state)
if live and (class ~= 'inflight' or lease.fence ~= r.fence) then
  return {'corrupt', lease_key .. ' (fence ' .. lease.fence .. ') does not match record state ' .. r.state .. ' fence ' .. r.fence}
end
if expect_exec ~= '' and r.exec ~= expect_exec then return {'exec_mismatch', r.exec} end
local now = now_ms()

-- A retry of a begin whose reply was lost: the lease is already ours.
if live and lease.holder == holder and lease.action == action then
  return record_reply('started', lease.fence, lease.pttl, r, lease, now)
end

local rule = lookup(ARGV[14], r.state)
if not rule then return {'corrupt', 'no rule for state ' .. r.state} end
local on_live, on_stuck = string.match(rule, '^(%a+)/(%a+)$')
local decision = live and on_live or on_stuck

-- Keys of another type are refused before the first write, on the paths
-- that write (a check costs a command; join, wait and the refusals write
-- nothing). A start also checks the outcomes hash its finish will write:
-- never start work that could not be recorded.
local stuck = not live and class == 'inflight' and r.last_fence ~= r.fence and tonumber(r.fence) > 0
local starts = decision == 'start' and not (eviction and (live or tonumber(r.end_ms) > now))
local bad = (stuck or starts) and foreign(out_key, 'hash')
if bad then return bad end
bad = starts and foreign(expiry_key, 'zset')
if bad then return bad end
-- The fence counter is the start path's first write: INCR itself refuses
-- a non-integer value or another type, before anything is written.
local fence
if starts then
  fence = redis.pcall('INCR', fence_key)
  if type(fence) == 'table' then
    return {'corrupt', fence_key .. ' is not a fence counter: ' .. tostring(fence.err)}
  end
end

-- A stuck transition whose outcome was never recorded: its holder vanished.
if stuck then
  record_outcome(r, r.fence, r.action ~= '' and r.action or 'unknown', 'abandoned', 'lease expired')
end

if eviction then
  if live then return {'eviction_in_progress', lease.fence, lease.action} end
  if tonumber(r.end_ms) > now then return {'eviction_not_needed', r.end_ms, tostring(now)} end
end

if decision == 'start' then
  if fence <= tonumber(r.fence) then
    -- The counter was lost (eviction, partial restore): never reuse a fence.
    fence = tonumber(r.fence) + 1
    redis.call('SET', fence_key, fence)
  end
  r.fence, r.state = tostring(fence), in_flight
  if pull_end and tonumber(r.end_ms) > now then r.end_ms = tostring(now) end
  r.started_ms = tostring(now)
  redis.call('HSET', rec_key, 'state', in_flight, 'fence', fence, 'action', action, 'end_ms', r.end_ms,
             'started_ms', r.started_ms)
  redis.call('PERSIST', rec_key)
  redis.call('ZADD', expiry_key, r.end_ms, id)
  local raw = fence .. ' ' .. action .. ' ' .. holder
  redis.call('SET', lease_key, raw, 'PX', lease_ms)
  return record_reply('started', fence, lease_ms, r, {raw = raw, pttl = lease_ms}, now, -1)
elseif decision == 'join' or decision == 'wait' then
  if not live then return {'corrupt', 'rule ' .. decision .. ' needs a live lease'} end
  return record_reply(decision, lease.fence, lease.pttl, r, lease, now)
elseif decision == 'same' or decision == 'absorbed' then
  return record_reply(decision, '', '', r, lease, now)
elseif decision == 'invalid' then
  return {'invalid', r.state}
end
return {'corrupt', 'unknown decision ' .. tostring(decision)}
