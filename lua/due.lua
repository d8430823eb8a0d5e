--[[
  due.lua — the ids of one team whose end time has passed by the server
  clock, oldest first, and the stale index entries met on the way
  (due_team.lua). Read-only. Records are checked (EXISTS), not declared
  keys (a team has any number): under a migration of the team's slot a
  record already moved reads as missing and its id as an orphan, which
  sweep.lua re-checks with the record declared before it removes anything;
  nothing is written here.

  Input:
    KEYS[1] expiry index <ns>:{<team>}:expiry
    KEYS[2] tombstones   <ns>:{<team>}:tombs
    ARGV[1] team prefix  "<ns>:{<team>}:"
    ARGV[2] maximum number of ids

  Output:
    {"due", now_ms, n, id1, end_ms1, ... (n pairs), orphan1, orphan2, ...}

  Example:
    redis-cli --eval DIR/due.lua 'sbx:{t}:expiry' 'sbx:{t}:tombs' , 'sbx:{t}:' 100
]]

local TP, LIMIT = ARGV[1], tonumber(ARGV[2])

--!generated
--!include errors.lua
--!include clock.lua
--!include due_team.lua

local now = clock()
local due, orphans = {}, {}
local n, refused = due_team(TP, LIMIT, now, due, nil, orphans)
if refused then return refused end
local out = {'due', int(now), int(n)}
for _, v in ipairs(due) do out[#out + 1] = v end
for _, v in ipairs(orphans) do out[#out + 1] = v end
return out
