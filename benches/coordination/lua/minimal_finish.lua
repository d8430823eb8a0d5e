--[[
  minimal_finish.lua — BENCH ONLY, NOT THE LIBRARY. The floor of a finish
  that keeps the library's essential guarantees: read the record, read
  the server clock, refuse unless fence and holder match and the lease
  deadline has not passed, then in the same atomic step apply the
  resulting state and release the lease (one HSET), record the outcome
  for late joiners (SET with a TTL) and publish the wake-up.

  Input:
    KEYS[1] record        <ns>:{<team>}:rec:<id>
    KEYS[2] outcome       <ns>:{<team>}:out:<id>:<fence>
    ARGV[1] fence
    ARGV[2] holder id
    ARGV[3] outcome ("succeeded" | "failed")
    ARGV[4] notification channel
    ARGV[5] sandbox id
    ARGV[6] outcome retention, ms

  Output:
    {"finished", state} | {"fenced", current_fence}
]]

local r = redis.call('HMGET', KEYS[1], 'fence', 'holder', 'until_ms')
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
if r[1] ~= ARGV[1] or r[2] ~= ARGV[2] or not tonumber(r[3]) or tonumber(r[3]) <= now then
  return {'fenced', r[1] or ''}
end
-- snapshot ends in running, whatever the outcome.
redis.call('HSET', KEYS[1], 'state', 'running', 'holder', '', 'until_ms', '',
           'last_fence', ARGV[1], 'last_outcome', ARGV[3])
redis.call('SET', KEYS[2], 'snapshot ' .. ARGV[3], 'PX', ARGV[6])
redis.call('PUBLISH', ARGV[4], 'o ' .. ARGV[5] .. ' ' .. ARGV[1] .. ' snapshot ' .. ARGV[3])
return {'finished', 'running'}
