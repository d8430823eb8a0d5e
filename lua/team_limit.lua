--[[
  team_limit.lua — set or clear a team's limit of places (records that are
  not tombstones, plus live reservations). Every server enforces the same
  number, read from here in the same script that registers or reserves.
  Lowering a limit below what is taken refuses new places only; nothing is
  evicted. Waiters for a free place are told.

  Input:
    KEYS[1] team hash    <ns>:{<team>}:team
    KEYS[2] slot teams   <ns>:{<tag of the team's slot>}:teams
    KEYS[3] slot listed  <ns>:{<tag of the team's slot>}:listed
    KEYS[4] sequence     <ns>:{<team>}:seq (the team view's sequence, notify.lua)
    ARGV[1] team prefix  "<ns>:{<team>}:"
    ARGV[2] the limit, or "" to clear it
    ARGV[3] team id
    ARGV[4] slot prefix "<ns>:{<tag of the team's slot>}:"

  Output:
    {"ok", previous_or_empty, slot_unlisted}

  Example:
    redis-cli --eval DIR/team_limit.lua 'sbx:{t}:team' 'sbx:{#557}:teams' 'sbx:{#557}:listed' 'sbx:{t}:seq' , \
      'sbx:{t}:' 10 t 'sbx:{#557}:'
]]

local TP, LIMIT, TEAM, SLOT = ARGV[1], ARGV[2], ARGV[3], ARGV[4]


--!generated
--!include errors.lua
--!include notify.lua

local before = redis.pcall('HGET', KEYS[1], 'limit')
if type(before) == 'table' then return wrongtype(before, KEYS[1], 'hash') end
if LIMIT == '' then
  redis.call('HDEL', KEYS[1], 'limit')
else
  redis.call('HSET', KEYS[1], 'limit', LIMIT, 'listed', '1')
  redis.call('SADD', SLOT .. 'teams', TEAM)
end
local shown = LIMIT
if shown == '' then shown = '-' end
announce('l ' .. shown, 'c')
local unlisted = '0'
if redis.call('EXISTS', SLOT .. 'listed') == 0 then unlisted = '1' end
return {'ok', before or '', unlisted}
