--[[
  migrate.lua — convert one record written by schema 1 or 2 to this
  schema, in place and atomically.

  Schema 2 → 3: the record is validated as every script does and written
  anew with its opaque data in pieces of at most 64 bytes (data.lua) and
  its PTTL kept, so that it is a listpack under the default
  hash-max-listpack-value; a transition in flight stays in flight.

  Schema 1 → 3: the lease moves into the record (refused while a
  schema-1 lease is live: migrate while no transition is in flight), the
  record joins the schema-2 indexes (ids, tombs; expiry is the same in both),
  the team's schema-1 fence counter becomes the team's floor, and the team
  joins its slot's team set. A schema-1 `last_action` of "unknown" (an
  abandonment with no recorded action) takes the record's `action`.
  A record already at this schema has its lifecycle digest re-stamped when
  ARGV[4] is "1" (adopting this coordinator's rule table), else it is left.

  Input:
    KEYS[1] record       <ns>:{<team>}:rec:<id>
    KEYS[2] schema-1 lease <ns>:{<team>}:lease:<id>
    KEYS[3..6]           <ns>:{<team>}:expiry, :tombs, :ids, :team
    KEYS[7] schema-1 fence counter <ns>:{<team>}:fence
    KEYS[8] slot teams   <ns>:{<tag of the team's slot>}:teams
    KEYS[9] slot listed  <ns>:{<tag of the team's slot>}:listed
    ARGV[1] team prefix  "<ns>:{<team>}:"
    ARGV[2] sandbox id
    ARGV[3] team id
    ARGV[4] "1" to re-stamp the lifecycle digest of schema-2 records, else "0"
    ARGV[5] slot prefix "<ns>:{<tag of the team's slot>}:"

  Output:
    {"migrated", slot_unlisted} | {"current"} | {"restamped", previous_digest}
                                  (slot_unlisted: "0" from schema 2)
    {"busy", fence, action}       a schema-1 lease is live
    {"not_found"} | {"corrupt", detail} | {"schema", version}

  Example:
    redis-cli --eval DIR/migrate.lua 'sbx:{t}:rec:s1' 'sbx:{t}:lease:s1' 'sbx:{t}:expiry' 'sbx:{t}:tombs' \
      'sbx:{t}:ids' 'sbx:{t}:team' 'sbx:{t}:fence' 'sbx:{#557}:teams' 'sbx:{#557}:listed' , \
      'sbx:{t}:' s1 t 0 'sbx:{#557}:'
]]

local REC, TP, ID = KEYS[1], ARGV[1], ARGV[2]
local TEAM, RESTAMP, SLOT = ARGV[3], ARGV[4] == '1', ARGV[5]

--!generated
--!include errors.lua
--!include clock.lua
--!include record.lua
--!include data.lua
--!include indexes.lua

-- Writes record `key` anew as this schema lays it out: `v`, the data in
-- pieces, every other field as it is, its PTTL kept (write_record, as if
-- the record held a long value: the one it held was the data).
local function relayout(key)
  local fields = {'v', SCHEMA}
  put_data(fields, redis.call('HGET', key, 'data') or '')
  write_record(key, {long = true}, fields)
end

local now = clock()
local v = redis.pcall('HGET', REC, 'v')
if type(v) == 'table' then return wrongtype(v, REC, 'hash') end
if not v then return {'not_found'} end
if v == SCHEMA then
  local r, err = load_record(REC)
  if err then return err end
  if RESTAMP and r.lc ~= LIFECYCLE then
    redis.call('HSET', REC, 'lc', LIFECYCLE)
    return {'restamped', r.lc}
  end
  return {'current'}
end
if v == '2' then
  -- The fields of schema 2 are those of this schema, under the same rules.
  local x = redis.call('HMGET', REC, unpack(FIELDS))
  x[1] = SCHEMA
  local _, err = record_of(REC, x)
  if err then return err end
  relayout(REC)
  return {'migrated', '0'}
end
if v ~= '1' then return {'schema', v} end

local x = redis.call('HMGET', REC, 'state', 'exec', 'end_ms', 'fence', 'action', 'last_fence',
                     'last_action', 'last_outcome')
local state, exec, end_ms, fence, action = x[1] or '', x[2] or '', x[3] or '', x[4] or '', x[5] or ''
local last_fence, last_action, last_outcome = x[6] or '', x[7] or '', x[8] or ''
if class_of(state) == nil then return {'corrupt', REC .. ': unknown state "' .. state .. '"'} end
if exec == '' or not uint(end_ms) or not uint(fence) then return {'corrupt', REC .. ' lacks exec, end_ms or fence'} end
if action ~= '' and not is_action(action) then return {'corrupt', REC .. ': unknown action "' .. action .. '"'} end

local lease = redis.pcall('GET', TP .. 'lease:' .. ID)
if type(lease) == 'string' then
  local lf, la = string.match(lease, '^(%d+) (%S+) ')
  return {'busy', lf or '', la or ''}
end

local fields = {'v', SCHEMA, 'lc', LIFECYCLE, 'holder', '', 'until_ms', '', 'queue', '', 'resv', ''}
if last_fence ~= '' then
  if not uint(last_fence) or not is_outcome(last_outcome) then
    return {'corrupt', REC .. ': last transition "' .. last_fence .. ' ' .. last_outcome .. '"'}
  end
  if not is_action(last_action) then
    if action == '' then return {'corrupt', REC .. ': last_action "' .. last_action .. '" and no action'} end
    fields[#fields + 1] = 'last_action'
    fields[#fields + 1] = action
  end
end
-- Every key written below must be of its type: checked before the first
-- write (Redis does not roll back a script that fails half-way).
local bad = foreign_indexes(TP, {'expiry', 'tombs', 'ids', 'team'}, {{SLOT .. 'teams', 'set'}})
if bad then return bad end
redis.call('HSET', REC, unpack(fields))
relayout(REC)

redis.call('ZADD', TP .. 'ids', 0, ID)
if is_tombstone(state) then
  redis.call('ZREM', TP .. 'expiry', ID)
  local pttl = redis.call('PTTL', REC)
  local expires = MAX_INT
  if pttl > 0 then expires = now + pttl end
  redis.call('ZADD', TP .. 'tombs', expires, ID)
else
  redis.call('ZADD', TP .. 'expiry', end_ms, ID)
end
local raw_counter = redis.pcall('GET', TP .. 'fence')
local counter = type(raw_counter) == 'string' and uint(raw_counter)
if counter then
  local floor = uint(redis.call('HGET', TP .. 'team', 'floor') or '') or 0
  if counter > floor then redis.call('HSET', TP .. 'team', 'floor', int(counter)) end
end
redis.call('SADD', SLOT .. 'teams', TEAM)
redis.call('HSET', TP .. 'team', 'listed', '1')
local unlisted = '0'
if redis.call('EXISTS', SLOT .. 'listed') == 0 then unlisted = '1' end
return {'migrated', unlisted}
