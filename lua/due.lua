--[[
  due.lua — the ids of one team whose end time has passed by the server
  clock, oldest first (due_team.lua; sweeps stale index entries).

  Input:
    KEYS[1] expiry index <ns>:{<team>}:expiry
    ARGV[1] team prefix  "<ns>:{<team>}:"
    ARGV[2] maximum number of ids

  Output:
    {"due", now_ms, id1, end_ms1, id2, end_ms2, ...}

  Example:
    redis-cli --eval DIR/due.lua 'sbx:{t}:expiry' , 'sbx:{t}:' 100
]]

local TP, LIMIT = ARGV[1], tonumber(ARGV[2])

--!generated
--!include clock.lua
--!include due_team.lua

local now = clock()
local out = {'due', int(now)}
local _, refused = due_team(TP, LIMIT, now, out, nil)
if refused then return refused end
return out
