--[[
  minimal_begin.lua — BENCH ONLY, NOT THE LIBRARY. The floor of a begin
  that keeps the library's essential guarantees for an uncontended
  snapshot: read the record's decision fields, read the server clock,
  look the decision up in the action's rule row, take a new fence from
  the team's counter, and open the transition (state, fence, lease
  deadline, holder, start) in one HSET. It is the work no design can skip,
  not a design: no validation of the record, no queue, no stuck-holder
  handling, no schema or lifecycle check, no expiry index.

  Input:
    KEYS[1] record        <ns>:{<team>}:rec:<id>
    KEYS[2] team fence    <ns>:{<team>}:fence (INCR)
    ARGV[1] holder id
    ARGV[2] lease length, ms

  Output:
    {"started", fence, lease_ms, exec}
    {"join", fence, lease_left_ms, holder}   the same action is in flight
    {<decision>, state}                      anything else: nothing written
]]

-- The rule row of `snapshot` in Lifecycle::sandbox(): state -> decision
-- (a live lease on an in-flight state turns 'start' into the second word).
local RULE = {running = 'start', snapshotting = 'join', pausing = 'invalid', paused = 'invalid',
              killing = 'invalid', killed = 'invalid'}

local r = redis.call('HMGET', KEYS[1], 'state', 'exec', 'holder', 'until_ms', 'fence')
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local live = r[3] and r[3] ~= '' and tonumber(r[4]) > now
local decision = RULE[r[1]] or 'invalid'
if decision == 'join' and not live then decision = 'start' end
if decision == 'join' then return {'join', r[5], tostring(tonumber(r[4]) - now), r[3]} end
if decision ~= 'start' then return {decision, r[1] or ''} end
-- Numbers go to Redis as '%d' strings (a Lua number argument would be
-- formatted with '%.17g', which costs more).
local fence = string.format('%d', redis.call('INCR', KEYS[2]))
redis.call('HSET', KEYS[1], 'state', 'snapshotting', 'fence', fence,
           'until_ms', string.format('%d', now + tonumber(ARGV[2])), 'holder', ARGV[1],
           'started_ms', string.format('%d', now))
return {'started', fence, ARGV[2], r[2]}
