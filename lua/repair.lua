--[[
  repair.lua — find and fix drift between one team's records and its
  indexes (an operator's DEL, maxmemory eviction, a partial restore, a bug):
    ids     an entry without a record is dropped; a record missing is added
    expiry  must hold exactly the records that are not tombstones, scored by
            their end_ms (dangling, missing and wrongly scored entries fixed)
    tombs   must hold exactly the tombstones, scored by when they expire
            (record PTTL; "forever" without one), within 2 s
    resv    each reservation needs its token in the team hash and vice versa;
            a record's `resv` field must name a live reservation
    teams   a team with records is in its slot's team set
  Every check is made on the state at the time the script runs (ids found
  by the client's SCAN are only candidates), so a repair beside live
  traffic changes nothing that is right. With ARGV[2] = "1" nothing is
  written (dry run).

  Input:
    KEYS[1] id index     <ns>:{<team>}:ids
    KEYS[2] sequence     <ns>:{<team>}:seq (a repair that wrote announces "*":
                         team views re-read the team)
    ARGV[1] team prefix  "<ns>:{<team>}:"
    ARGV[2] "1" for a dry run, else "0"
    ARGV[3] team id
    ARGV[4] slot prefix "<ns>:{<tag of the team's slot>}:"
    ARGV[5..] record ids found by SCAN (candidates)

  Output:
    {"repaired", n, then n times: index, problem, id}
      problem: dangling | missing | score | token | field
    {"corrupt", detail}

  Example:
    redis-cli --eval DIR/repair.lua 'sbx:{t}:ids' 'sbx:{t}:seq' , 'sbx:{t}:' 1 t 'sbx:{#557}:' s1 s2
]]

local TP, DRY, TEAM, SLOT = ARGV[1], ARGV[2] == '1', ARGV[3], ARGV[4]

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

for _, key in ipairs({'ids', 'expiry', 'tombs', 'resv'}) do
  local t = redis.call('TYPE', TP .. key)['ok']
  if t ~= 'none' and t ~= 'zset' then return {'corrupt', TP .. key .. ' holds a ' .. t} end
end

local candidates, seen = {}, {}
for _, id in ipairs(redis.call('ZRANGE', TP .. 'ids', 0, -1)) do
  if not seen[id] then seen[id] = true; candidates[#candidates + 1] = id end
end
for _, key in ipairs({'expiry', 'tombs'}) do
  for _, id in ipairs(redis.call('ZRANGE', TP .. key, 0, -1)) do
    if not seen[id] then seen[id] = true; candidates[#candidates + 1] = id end
  end
end
for i = 5, #ARGV do
  local id = ARGV[i]
  if not seen[id] then seen[id] = true; candidates[#candidates + 1] = id end
end

local records = 0
for _, id in ipairs(candidates) do
  local key = TP .. 'rec:' .. id
  local state = redis.pcall('HGET', key, 'state')
  if type(state) == 'table' or (state and class_of(state) == nil) then
    note('record', 'corrupt', id)
  elseif not state then
    for _, index in ipairs({'ids', 'expiry', 'tombs'}) do
      if redis.call('ZSCORE', TP .. index, id) then
        note(index, 'dangling', id)
        write('ZREM', TP .. index, id)
      end
    end
  else
    records = records + 1
    if not redis.call('ZSCORE', TP .. 'ids', id) then
      note('ids', 'missing', id)
      write('ZADD', TP .. 'ids', 0, id)
    end
    local in_expiry = redis.call('ZSCORE', TP .. 'expiry', id)
    local in_tombs = redis.call('ZSCORE', TP .. 'tombs', id)
    if is_tombstone(state) then
      if in_expiry then
        note('expiry', 'dangling', id)
        write('ZREM', TP .. 'expiry', id)
      end
      local pttl = redis.call('PTTL', key)
      local expires = MAX_INT
      if pttl > 0 then expires = now + pttl end
      if not in_tombs then
        note('tombs', 'missing', id)
        write('ZADD', TP .. 'tombs', expires, id)
      elseif math.abs(tonumber(in_tombs) - expires) > 2000 then
        note('tombs', 'score', id)
        write('ZADD', TP .. 'tombs', expires, id)
      end
    else
      local end_ms = uint(redis.call('HGET', key, 'end_ms') or '')
      if not end_ms then
        note('record', 'corrupt', id)
      elseif not in_expiry then
        note('expiry', 'missing', id)
        write('ZADD', TP .. 'expiry', end_ms, id)
      elseif tonumber(in_expiry) ~= end_ms then
        note('expiry', 'score', id)
        write('ZADD', TP .. 'expiry', end_ms, id)
      end
      if in_tombs then
        note('tombs', 'dangling', id)
        write('ZREM', TP .. 'tombs', id)
      end
    end
    local resv = redis.call('HGET', key, 'resv') or ''
    if resv ~= '' then
      local token = string.match(resv, '^([^@]+)@')
      local deadline = redis.call('ZSCORE', TP .. 'resv', id)
      if not token or not deadline or redis.call('HGET', TP .. 'team', 'tok:' .. id) ~= token then
        note('record', 'field', id)
        write('HSET', key, 'resv', '')
      end
    end
  end
end

for _, id in ipairs(redis.call('ZRANGE', TP .. 'resv', 0, -1)) do
  if not redis.call('HGET', TP .. 'team', 'tok:' .. id) then
    note('resv', 'token', id)
    write('ZREM', TP .. 'resv', id)
  end
end
local team = redis.call('HGETALL', TP .. 'team')
for i = 1, #team, 2 do
  local id = string.match(team[i], '^tok:(.+)$')
  if id and not redis.call('ZSCORE', TP .. 'resv', id) then
    note('team', 'token', id)
    write('HDEL', TP .. 'team', team[i])
  end
end
if records > 0 and redis.call('SISMEMBER', SLOT .. 'teams', TEAM) == 0 then
  note('teams', 'missing', TEAM)
  write('SADD', SLOT .. 'teams', TEAM)
  write('HSET', TP .. 'team', 'listed', '1')
end
if not DRY and #found > 0 then announce('*') end
local out = {'repaired', int(#found / 3)}
for _, v in ipairs(found) do out[#out + 1] = v end
return out
