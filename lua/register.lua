--[[
  register.lua — create a sandbox record, or a new incarnation over a
  resumable tombstone (a resume), in one atomic step with every index of
  the team and its place under the team's limit.

  Refuses while a transition holds the lease ("busy"), over a live record of another execution and over a final
  (killed) tombstone ("exists"): a kill is final while its tombstone lasts.
  The same execution again is idempotent. When the team's places are all
  taken (records that are not tombstones, plus live reservations) it
  refuses with "team_limit". A live reservation of this id is consumed (its
  place becomes the record's) when the call carries its token (ARGV[10]);
  without it, or with another, the id is "busy" (someone else holds it). Fences never go back: a new record
  keeps the team's floor (the highest fence of a removed record) and its
  first fence is above it.

  A team's first record puts the team in its slot's team set (for
  due_for_eviction_all); the reply's last field says whether the slot
  still has to be put in the namespace's slot registry (another slot, so
  the client does that after this script).

  Input (every key the script touches, all in the team's slot):
    KEYS[1] record       <ns>:{<team>}:rec:<id>
    KEYS[2..6]           <ns>:{<team>}:expiry, :tombs, :ids, :resv, :team
    KEYS[7] slot teams   <ns>:{<tag of the team's slot>}:teams
    KEYS[8] slot listed  <ns>:{<tag of the team's slot>}:listed
    KEYS[9] sequence     <ns>:{<team>}:seq (the team view's sequence, notify.lua)
    ARGV[1] team prefix  "<ns>:{<team>}:"
    ARGV[2] sandbox id
    ARGV[3] execution id
    ARGV[4] end time mode: "at" (ARGV[5] is ms since the Unix epoch) |
            "in" (ARGV[5] ms after the server's now)
    ARGV[5] end time value, ms
    ARGV[6] opaque data (stored in pieces of at most 64 bytes: data.lua)
    ARGV[7] default team limit, or "" for none
    ARGV[8] team id
    ARGV[9] slot prefix "<ns>:{<tag of the team's slot>}:"
    ARGV[10] the token of this id's reservation, or ""

  Output (rows marked [rec] end with the record as inspect.lua replies it:
  now_ms, record_pttl, the fields of record.lua, data):
    {"created",  slot_unlisted, "", [rec]}
    {"resumed",  slot_unlisted, previous_exec, [rec]}
    {"existing", "0", "", [rec]}                 same execution: nothing written
    {"busy", fence, action}                      a lease is live, or another's reservation
    {"exists", exec, state}
    {"team_limit", taken, limit}
    {"corrupt", detail} | {"schema", version} | {"lifecycle", digest}
    slot_unlisted is "1" when the client must add the slot to <ns>:slots.

  Example:
    redis-cli --eval DIR/register.lua 'sbx:{t}:rec:s1' 'sbx:{t}:expiry' 'sbx:{t}:tombs' 'sbx:{t}:ids' \
      'sbx:{t}:resv' 'sbx:{t}:team' 'sbx:{#557}:teams' 'sbx:{#557}:listed' 'sbx:{t}:seq' , \
      'sbx:{t}:' s1 e1 in 3600000 '{}' '' t 'sbx:{#557}:' ''
]]

local REC, TP, ID = KEYS[1], ARGV[1], ARGV[2]
local EXEC, END_MODE, END_VALUE, DATA = ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local DEFAULT_LIMIT, TEAM, SLOT, TOKEN = ARGV[7], ARGV[8], ARGV[9], ARGV[10]

--!generated
--!include errors.lua
--!include clock.lua
--!include record.lua
--!include data.lua
--!include notify.lua
--!include outcome.lua
--!include indexes.lua
--!include record_reply.lua

-- The reply of a registration: the record as it now is.
local function registered(code, unlisted, extra, now)
  local r = load_record(REC)
  local out = {code, unlisted, extra, int(now)}
  record_reply(out, REC, r)
  return out
end

local now = clock()
local end_n = tonumber(END_VALUE)
if END_MODE == 'in' then end_n = now + end_n end
local r, err = load_record(REC)
if err then return err end
err = foreign_indexes(TP, {'expiry', 'tombs', 'ids', 'resv', 'team'}, {{SLOT .. 'teams', 'set'}})
if err then return err end
if r then
  if r.lc ~= LIFECYCLE then return {'lifecycle', r.lc} end
  if r.holder ~= '' and r.until_n > now then return {'busy', r.fence, r.action} end
  local class = class_of(r.state)
  if class == 'final' then return {'exists', r.exec, r.state} end
  if r.exec == EXEC then return registered('existing', '0', '', now) end
  if class ~= 'resumable' then return {'exists', r.exec, r.state} end
end

local team = redis.call('HMGET', TP .. 'team', 'limit', 'listed', 'floor', 'tok:' .. ID)
local held = redis.call('ZSCORE', TP .. 'resv', ID)
if held and tonumber(held) > now and team[4] ~= TOKEN then return {'busy', '0', 'reserve'} end
local limit = team_limit(team[1], DEFAULT_LIMIT)
if limit then
  local taken = places_taken(TP, now, ID)
  if taken + 1 > limit then return {'team_limit', int(taken), int(limit)} end
end

-- (announce() below must not fail after the writes.)
err = sequence_refusal(TP)
if err then return err end

-- Every check has passed: the writes begin (expired reservations first).
sweep_reservations(TP, now)

-- Consume this id's reservation, if any: its place is now the record's.
redis.call('ZREM', TP .. 'resv', ID)
redis.call('HDEL', TP .. 'team', 'tok:' .. ID)
redis.call('ZADD', TP .. 'expiry', end_n, ID)

local unlisted = '0'
if team[2] ~= '1' then
  redis.call('SADD', SLOT .. 'teams', TEAM)
  redis.call('HSET', TP .. 'team', 'listed', '1')
end
if redis.call('EXISTS', SLOT .. 'listed') == 0 then unlisted = '1' end

if r then
  redis.call('ZREM', TP .. 'tombs', ID)
  local fields = {'state', INITIAL, 'exec', EXEC, 'end_ms', int(end_n), 'resv', ''}
  local after = put_data(fields, DATA)
  write_record(REC, r, fields)
  drop_data_from(REC, after)
  redis.call('PERSIST', REC)
  announce(TP, record_change(TP, ID), 'c ' .. ID, now)
  return registered('resumed', unlisted, r.exec, now)
end

local floor = uint(team[3] or '') or 0
local fields = {'v', SCHEMA, 'lc', LIFECYCLE, 'state', INITIAL, 'exec', EXEC,
                'end_ms', int(end_n), 'fence', '0'}
put_data(fields, DATA)
if floor > 0 then
  fields[#fields + 1] = 'floor'
  fields[#fields + 1] = int(floor)
end
redis.call('HSET', REC, unpack(fields))
redis.call('ZADD', TP .. 'ids', 0, ID)
redis.call('ZREM', TP .. 'tombs', ID)
announce(TP, record_change(TP, ID), nil, now)
return registered('created', unlisted, '', now)
