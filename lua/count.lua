--[[
  count.lua — a team's sandboxes by state class, read from the team's id
  index (never SCAN): O(team size), atomic, read-only. Also the live
  reservations and the team's own limit. Index entries whose record is
  missing are not counted. Records are read, not declared keys (a team has
  any number): under a migration of the team's slot a record already moved
  is not found here and not counted; nothing is written on what was not
  found.

  Input:
    KEYS[1] id index     <ns>:{<team>}:ids
    KEYS[2..3]           <ns>:{<team>}:resv, :team
    ARGV[1] team prefix  "<ns>:{<team>}:"

  Output:
    {"count", live, in_flight, resumable, final, reserved, limit_or_empty}
    {"corrupt", detail}

  Example:
    redis-cli --eval DIR/count.lua 'sbx:{t}:ids' 'sbx:{t}:resv' 'sbx:{t}:team' , 'sbx:{t}:'
]]

local TP = ARGV[1]

--!generated
--!include errors.lua
--!include clock.lua
--!include record.lua
--!include indexes.lua

local now = clock()
local bad = foreign_indexes(TP, {'resv', 'team'}, nil)
if bad then return bad end
local ids = redis.pcall('ZRANGE', KEYS[1], 0, -1)
if ids.err then return wrongtype(ids, KEYS[1], 'sorted set') end
local n = {live = 0, inflight = 0, resumable = 0, final = 0}
for _, id in ipairs(ids) do
  local state = redis.pcall('HGET', TP .. 'rec:' .. id, 'state')
  if type(state) == 'table' then return wrongtype(state, TP .. 'rec:' .. id, 'hash') end
  if state then
    local class = class_of(state)
    if class == nil then return {'corrupt', TP .. 'rec:' .. id .. ': unknown state "' .. state .. '"'} end
    n[class] = n[class] + 1
  end
end
local reserved = redis.call('ZCOUNT', TP .. 'resv', '(' .. int(now), '+inf')
local limit = redis.call('HGET', TP .. 'team', 'limit') or ''
return {'count', int(n.live), int(n.inflight), int(n.resumable), int(n.final), int(reserved), limit}
