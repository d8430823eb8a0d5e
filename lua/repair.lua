--[[
  repair.lua — find and fix drift between one team's records and its
  indexes (an operator's DEL, maxmemory eviction, a partial restore, a bug):
    ids     an entry without a record is dropped; a record missing is added
    expiry  must hold exactly the records that are not tombstones, scored by
            their end_ms (dangling, missing and wrongly scored entries fixed)
    tombs   must hold exactly the tombstones, scored by when they expire
            (record PTTL; "forever" without one), within 2 s
    record  a record that is not a tombstone has no TTL
    resv    each reservation needs its token in the team hash and vice versa;
            a record's `resv` field must name a live reservation
    teams   a team with records is in its slot's team set, a team without
            any is not (and its `listed` mark matches)
  A key of the team of another type is reported ("type") and the team is
  left as it is: the caller goes on with the other teams.

  Every key it touches is declared: the team's keys and the record of each
  candidate id (the client reads the indexes and SCANs for records first).
  Index entries of ids that are not candidates are left for the next run.
  Every check is made on the state at the time the script runs, so a
  repair beside live traffic changes nothing that is right, and under a
  slot migration Redis runs it where all its keys are, or refuses it
  (TRYAGAIN, retryable). With ARGV[2] = "1" nothing is written (dry run).

  Input:
    KEYS[1..5]           <ns>:{<team>}:ids, :expiry, :tombs, :resv, :team
    KEYS[6] slot teams   <ns>:{<tag of the team's slot>}:teams
    KEYS[7..]            <ns>:{<team>}:rec:<id> of each candidate, in ARGV order
    KEYS[last] sequence  <ns>:{<team>}:seq (after the records; a repair that wrote
                         announces "*": team views re-read the team)
    ARGV[1] team prefix  "<ns>:{<team>}:"
    ARGV[2] "1" for a dry run, else "0"
    ARGV[3] team id
    ARGV[4..] candidate record ids (KEYS[7..] are their records)

  Output:
    {"repaired", n, then n times: index, problem, id}
      problem: dangling | missing | score | token | field | ttl | corrupt | type
      (for "type" the id is the team's; index "seq": the team's sequence is
      damaged, and nothing is written, since the announcement would fail)

  Example:
    redis-cli --eval DIR/repair.lua 'sbx:{t}:ids' 'sbx:{t}:expiry' 'sbx:{t}:tombs' 'sbx:{t}:resv' \
      'sbx:{t}:team' 'sbx:{#557}:teams' 'sbx:{t}:rec:s1' 'sbx:{t}:seq' , 'sbx:{t}:' 1 t s1
]]

local TP, DRY, TEAM = ARGV[1], ARGV[2] == '1', ARGV[3]
local IDS, EXPIRY, TOMBS, RESV, TEAMHASH, TEAMS = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]

--!generated
--!include errors.lua
--!include clock.lua
--!include record.lua
--!include notify.lua

local now = clock()
local found = {}
local function note(index, problem, id)
  found[#found + 1] = index
  found[#found + 1] = problem
  found[#found + 1] = id
end
local function write(...)
  if not DRY then redis.call(...) end
end
local function reply()
  local out = {'repaired', int(#found / 3)}
  for _, v in ipairs(found) do out[#out + 1] = v end
  return out
end

local kinds = {{IDS, 'ids', 'zset'}, {EXPIRY, 'expiry', 'zset'}, {TOMBS, 'tombs', 'zset'},
               {RESV, 'resv', 'zset'}, {TEAMHASH, 'team', 'hash'}, {TEAMS, 'teams', 'set'}}
for _, k in ipairs(kinds) do
  local t = redis.call('TYPE', k[1])['ok']
  if t ~= 'none' and t ~= k[3] then note(k[2], 'type', TEAM) end
end
-- A damaged sequence: announce() would fail after the fixes (reported,
-- nothing written, like an index of another type).
if sequence_refusal(TP) then note('seq', 'type', TEAM) end
if #found > 0 then return reply() end

local candidates, seen = {}, {}
for i = 4, #ARGV do
  local id = ARGV[i]
  if not seen[id] then
    seen[id] = true
    candidates[#candidates + 1] = {id, KEYS[i + 3]}
  end
end

local records = 0
for _, c in ipairs(candidates) do
  local id, key = c[1], c[2]
  local state = redis.pcall('HGET', key, 'state')
  if type(state) == 'table' or (state and class_of(state) == nil) then
    records = records + 1
    note('record', 'corrupt', id)
  elseif not state then
    if redis.call('EXISTS', key) == 1 then
      records = records + 1
      note('record', 'corrupt', id)
    else
      for _, index in ipairs({{IDS, 'ids'}, {EXPIRY, 'expiry'}, {TOMBS, 'tombs'}}) do
        if redis.call('ZSCORE', index[1], id) then
          note(index[2], 'dangling', id)
          write('ZREM', index[1], id)
        end
      end
    end
  else
    records = records + 1
    if not redis.call('ZSCORE', IDS, id) then
      note('ids', 'missing', id)
      write('ZADD', IDS, 0, id)
    end
    local in_expiry = redis.call('ZSCORE', EXPIRY, id)
    local in_tombs = redis.call('ZSCORE', TOMBS, id)
    local pttl = redis.call('PTTL', key)
    if is_tombstone(state) then
      if in_expiry then
        note('expiry', 'dangling', id)
        write('ZREM', EXPIRY, id)
      end
      local expires = MAX_INT
      if pttl > 0 then expires = now + pttl end
      if not in_tombs then
        note('tombs', 'missing', id)
        write('ZADD', TOMBS, expires, id)
      elseif math.abs(tonumber(in_tombs) - expires) > 2000 then
        note('tombs', 'score', id)
        write('ZADD', TOMBS, expires, id)
      end
    else
      local end_ms = uint(redis.call('HGET', key, 'end_ms') or '')
      if not end_ms then
        note('record', 'corrupt', id)
      elseif not in_expiry then
        note('expiry', 'missing', id)
        write('ZADD', EXPIRY, end_ms, id)
      elseif tonumber(in_expiry) ~= end_ms then
        note('expiry', 'score', id)
        write('ZADD', EXPIRY, end_ms, id)
      end
      if in_tombs then
        note('tombs', 'dangling', id)
        write('ZREM', TOMBS, id)
      end
      if pttl > 0 then
        note('record', 'ttl', id)
        write('PERSIST', key)
      end
    end
    local resv = redis.call('HGET', key, 'resv') or ''
    if resv ~= '' then
      local token = string.match(resv, '^([^@]+)@')
      local deadline = redis.call('ZSCORE', RESV, id)
      if not token or not deadline or redis.call('HGET', TEAMHASH, 'tok:' .. id) ~= token then
        note('record', 'field', id)
        write('HSET', key, 'resv', '')
      end
    end
  end
end

for _, id in ipairs(redis.call('ZRANGE', RESV, 0, -1)) do
  if not redis.call('HGET', TEAMHASH, 'tok:' .. id) then
    note('resv', 'token', id)
    write('ZREM', RESV, id)
  end
end
local team = redis.call('HGETALL', TEAMHASH)
local listed = false
for i = 1, #team, 2 do
  local id = string.match(team[i], '^tok:(.+)$')
  if id and not redis.call('ZSCORE', RESV, id) then
    note('team', 'token', id)
    write('HDEL', TEAMHASH, team[i])
  end
  if team[i] == 'listed' and team[i + 1] == '1' then listed = true end
end

-- Whether every entry of the team's indexes was examined (an id added
-- since the client read them may have a record this call cannot see).
local function all_examined()
  for _, index in ipairs({IDS, EXPIRY, TOMBS}) do
    for _, id in ipairs(redis.call('ZRANGE', index, 0, -1)) do
      if not seen[id] then return false end
    end
  end
  return true
end
local member = redis.call('SISMEMBER', TEAMS, TEAM) == 1
if records > 0 and not member then
  note('teams', 'missing', TEAM)
  write('SADD', TEAMS, TEAM)
  write('HSET', TEAMHASH, 'listed', '1')
elseif records == 0 and (member or listed) and all_examined() then
  if member then note('teams', 'dangling', TEAM) else note('team', 'listed', TEAM) end
  write('SREM', TEAMS, TEAM)
  write('HDEL', TEAMHASH, 'listed')
end
if not DRY and #found > 0 then announce(TP, '*', nil, now) end
return reply()
