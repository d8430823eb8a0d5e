--[[
  remove.lua — delete a sandbox record and its index entries. Refused while
  a transition holds the lease or the id is reserved. Requests queued to
  re-decide do not hold it back (a delete is final; a queue that never
  empties must not block it): they are told, and find the record gone.
  The team's last record takes the team out of its slot's team set.
  Outcome keys are left to expire (late joiners still learn how the last
  transitions ended). The record's fence is kept as the team's floor, so a
  later record with this id starts above it.

  Input:
    KEYS[1] record       <ns>:{<team>}:rec:<id>
    KEYS[2..5]           <ns>:{<team>}:expiry, :tombs, :ids, :team
    KEYS[6] slot teams   <ns>:{<tag of the team's slot>}:teams
    KEYS[7] sequence     <ns>:{<team>}:seq (the team view's sequence, notify.lua)
    ARGV[1] team prefix  "<ns>:{<team>}:"
    ARGV[2] sandbox id
    ARGV[3] expected execution id, or "" for any (pinned remove: a removal
            racing a resume cannot delete the new incarnation)
    ARGV[4] team id

  Output:
    {"removed", state, exec}
    {"not_found"}                      (stale index entries are swept)
    {"busy", fence, action}
    {"exec_mismatch", exec}
    {"corrupt", detail} | {"schema", version}

  Example:
    redis-cli --eval DIR/remove.lua 'sbx:{t}:rec:s1' 'sbx:{t}:expiry' 'sbx:{t}:tombs' 'sbx:{t}:ids' \
      'sbx:{t}:team' 'sbx:{#557}:teams' 'sbx:{t}:seq' , 'sbx:{t}:' s1 '' t
]]

local REC, TP, ID = KEYS[1], ARGV[1], ARGV[2]
local EXPECT, TEAM = ARGV[3], ARGV[4]

--!generated
--!include errors.lua
--!include clock.lua
--!include record.lua
--!include notify.lua
--!include outcome.lua
--!include indexes.lua

local now = clock()
local r, err = load_record(REC)
if err then return err end
err = foreign_indexes(TP, {'expiry', 'tombs', 'ids', 'team'}, {{KEYS[6], 'set'}})
if err then return err end
if not r then
  drop_from_indexes(TP, ID)
  return {'not_found'}
end
if r.holder ~= '' and r.until_n > now then return {'busy', r.fence, r.action} end
if r.resv_n > now then return {'busy', r.fence, 'reserve'} end
if EXPECT ~= '' and r.exec ~= EXPECT then return {'exec_mismatch', r.exec} end
err = sequence_refusal(TP)
if err then return err end
local floor = uint(redis.call('HGET', TP .. 'team', 'floor') or '') or 0
local highest = math.max(r.fence_n, r.floor_n)
if highest > floor then redis.call('HSET', TP .. 'team', 'floor', int(highest)) end
redis.call('DEL', REC)
drop_from_indexes(TP, ID)
unlist_if_empty(TP, KEYS[6], TEAM)
announce(TP, record_change(TP, ID), 'c ' .. ID, now)
return {'removed', r.state, r.exec}
