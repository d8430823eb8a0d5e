--[[
  due_slot.lua — for every team of one hash slot, the ids whose end time
  has passed by the server clock (due_team.lua), oldest first per team, at
  most `limit` per team. One call per slot: every key it touches is in that
  slot (the slot's team set and the teams' indexes), so it runs unchanged
  on Redis Cluster. Read-only: the teams' keys are read without being
  declared, so under a migration of the slot this call may miss some (the
  next one finds them) and must not write; stale entries are returned for
  the client to sweep (sweep.lua). A team whose index is damaged (a key of
  another type) is skipped and named in the reply: one damaged team never
  stops the eviction of the others.

  Input:
    KEYS[1] the slot's team set  <ns>:{<tag of the slot>}:teams
    ARGV[1] namespace prefix     "<ns>"
    ARGV[2] maximum number of ids per team

  Output:
    {"due", now_ms, n, team1, id1, end_ms1, ... (n triples),
     d, damaged_team1, detail1, ... (d pairs), orphan_team1, orphan_id1, ...}
    {"corrupt", detail}       the slot's team set is not a set

  Example:
    redis-cli --eval DIR/due_slot.lua 'sbx:{#557}:teams' , sbx 100
]]

local NS, LIMIT = ARGV[1], tonumber(ARGV[2])

--!generated
--!include errors.lua
--!include clock.lua
--!include due_team.lua

local now = clock()
local due, orphans, damaged, n = {}, {}, {}, 0
local teams = redis.pcall('SMEMBERS', KEYS[1])
if teams.err then return wrongtype(teams, KEYS[1], 'set') end
for _, team in ipairs(teams) do
  local tp = NS .. ':{' .. team .. '}:'
  local got, refused = due_team(tp, LIMIT, now, due, team, orphans)
  if refused then
    damaged[#damaged + 1] = team
    damaged[#damaged + 1] = refused[2]
  else
    n = n + got
  end
end
local out = {'due', int(now), int(n)}
for _, v in ipairs(due) do out[#out + 1] = v end
out[#out + 1] = int(#damaged / 2)
for _, v in ipairs(damaged) do out[#out + 1] = v end
for _, v in ipairs(orphans) do out[#out + 1] = v end
return out
