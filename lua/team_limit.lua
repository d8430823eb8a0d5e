--[[
  team_limit.lua — set or clear a team's limit of places (records that are
  not tombstones, plus live reservations). Every server enforces the same
  number, read from here in the same script that registers or reserves.
  Lowering a limit below what is taken refuses new places only; nothing is
  evicted. Waiters for a free place are told. (A limit does not put the
  team in its slot's team set: that set holds the teams that have records,
  for fleet-wide eviction.)

  Input:
    KEYS[1] team hash    <ns>:{<team>}:team
    KEYS[2] sequence     <ns>:{<team>}:seq (the team view's sequence, notify.lua)
    ARGV[1] team prefix  "<ns>:{<team>}:"
    ARGV[2] the limit, or "" to clear it

  Output:
    {"ok", previous_or_empty}
    {"corrupt", detail}        the team hash is not a hash, or the team's
                               sequence is damaged; nothing written

  Example:
    redis-cli --eval DIR/team_limit.lua 'sbx:{t}:team' 'sbx:{t}:seq' , 'sbx:{t}:' 10
]]

local TP, LIMIT = ARGV[1], ARGV[2]

--!generated
--!include errors.lua
--!include notify.lua

local before = redis.pcall('HGET', KEYS[1], 'limit')
if type(before) == 'table' then return wrongtype(before, KEYS[1], 'hash') end
local bad = sequence_refusal(TP)
if bad then return bad end
if LIMIT == '' then
  redis.call('HDEL', KEYS[1], 'limit')
else
  redis.call('HSET', KEYS[1], 'limit', LIMIT)
end
local shown = LIMIT
if shown == '' then shown = '-' end
announce(TP, 'l ' .. shown, 'c')
return {'ok', before or ''}
