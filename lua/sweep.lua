--[[
  sweep.lua — drop an id from the team's indexes if its record is gone
  (deleted behind the library's back: an operator's DEL, maxmemory
  eviction, a tombstone's expiry). Does nothing if the record exists. The
  record is a declared key, so under a slot migration Redis runs this where
  the record really is (ASK): an index entry is never swept for a record
  that merely has not been migrated yet. The team's last record takes the
  team out of its slot's team set.

  Input:
    KEYS[1] record       <ns>:{<team>}:rec:<id>
    KEYS[2..5]           <ns>:{<team>}:expiry, :tombs, :ids, :team
    KEYS[6] slot teams   <ns>:{<tag of the team's slot>}:teams
    KEYS[7] sequence     <ns>:{<team>}:seq (the team view's sequence, notify.lua)
    ARGV[1] sandbox id
    ARGV[2] team prefix  "<ns>:{<team>}:"
    ARGV[3] team id

  Output:
    {"swept"} | {"present"}
    {"corrupt", detail}        the team's sequence is damaged; nothing written

  Example:
    redis-cli --eval DIR/sweep.lua 'sbx:{t}:rec:s1' 'sbx:{t}:expiry' 'sbx:{t}:tombs' 'sbx:{t}:ids' \
      'sbx:{t}:team' 'sbx:{#557}:teams' 'sbx:{t}:seq' , s1 'sbx:{t}:' t
]]

local TP = ARGV[2]

--!generated
--!include errors.lua
--!include indexes.lua
--!include notify.lua

if redis.call('EXISTS', KEYS[1]) == 1 then return {'present'} end
local bad = sequence_refusal(TP)
if bad then return bad end
local dropped = 0
for i = 2, 4 do
  local n = redis.pcall('ZREM', KEYS[i], ARGV[1])
  if type(n) == 'number' then dropped = dropped + n end
end
unlist_if_empty(TP, KEYS[6], ARGV[3])
if dropped > 0 then announce(TP, 'x ' .. ARGV[1]) end
return {'swept'}
