--[[
  due_slot.lua — for every team of one hash slot, the ids whose end time
  has passed by the server clock (due_team.lua), oldest first per team, at
  most `limit` per team. One call per slot: every key it touches is in that
  slot (the slot's team set and the teams' indexes), so it runs unchanged
  on Redis Cluster. A team left without records, reservations or limit
  leaves the slot's team set.

  Input:
    KEYS[1] the slot's team set  <ns>:{<tag of the slot>}:teams
    ARGV[1] namespace prefix     "<ns>"
    ARGV[2] maximum number of ids per team

  Output:
    {"due", now_ms, team1, id1, end_ms1, team2, id2, end_ms2, ...}

  Example:
    redis-cli --eval DIR/due_slot.lua 'sbx:{#9}:teams' , sbx 100
]]

local NS, LIMIT = ARGV[1], tonumber(ARGV[2])

--!generated
--!include clock.lua
--!include due_team.lua

local now = clock()
local out = {'due', int(now)}
local teams = redis.pcall('SMEMBERS', KEYS[1])
if teams.err then return {'corrupt', KEYS[1] .. ' is not a set'} end
for _, team in ipairs(teams) do
  local tp = NS .. ':{' .. team .. '}:'
  local _, refused = due_team(tp, LIMIT, now, out, team)
  if refused then return refused end
  if redis.call('EXISTS', tp .. 'ids', tp .. 'resv') == 0 and redis.call('HEXISTS', tp .. 'team', 'limit') == 0 then
    redis.call('SREM', KEYS[1], team)
    redis.call('HDEL', tp .. 'team', 'listed')
  end
end
return out
