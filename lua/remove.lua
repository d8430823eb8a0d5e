--[[
  remove.lua — delete a sandbox record and its index entries. Refused while
  a transition holds the lease or the id is reserved (waiters queued to
  re-decide then find the record gone).
  Outcome keys are left to expire (late joiners still learn how the last
  transitions ended). The record's fence is kept as the team's floor, so a
  later record with this id starts above it.

  Input:
    KEYS[1] record       <ns>:{<team>}:rec:<id>
    KEYS[2..5]           <ns>:{<team>}:expiry, :tombs, :ids, :team
    KEYS[6] sequence     <ns>:{<team>}:seq (the team view's sequence, notify.lua)
    ARGV[1] team prefix  "<ns>:{<team>}:"
    ARGV[2] sandbox id
    ARGV[3] expected execution id, or "" for any (pinned remove: a removal
            racing a resume cannot delete the new incarnation)

  Output:
    {"removed", state, exec}
    {"not_found"}                      (stale index entries are swept)
    {"busy", fence, action}
    {"exec_mismatch", exec}
    {"corrupt", detail} | {"schema", version}

  Example:
    redis-cli --eval DIR/remove.lua 'sbx:{t}:rec:s1' 'sbx:{t}:expiry' 'sbx:{t}:tombs' 'sbx:{t}:ids' \
      'sbx:{t}:team' 'sbx:{t}:seq' , 'sbx:{t}:' s1 ''
]]

local REC, TP, ID = KEYS[1], ARGV[1], ARGV[2]
local EXPECT = ARGV[3]

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
err = foreign_indexes({'expiry', 'tombs', 'ids', 'team'}, nil)
if err then return err end
if not r then
  drop_from_indexes(ID)
  return {'not_found'}
end
if r.holder ~= '' and r.until_n > now then return {'busy', r.fence, r.action} end
if r.resv_n > now then return {'busy', r.fence, 'reserve'} end
if EXPECT ~= '' and r.exec ~= EXPECT then return {'exec_mismatch', r.exec} end
local floor = uint(redis.call('HGET', TP .. 'team', 'floor') or '') or 0
local highest = math.max(r.fence_n, r.floor_n)
if highest > floor then redis.call('HSET', TP .. 'team', 'floor', int(highest)) end
redis.call('DEL', REC)
drop_from_indexes(ID)
announce(record_change(ID), 'c ' .. ID)
return {'removed', r.state, r.exec}
