--[[
  reference_start.lua — REFERENCE PROTOCOL BASELINE, NOT THIS LIBRARY
  (see reference.rs). Step 4 of the reference's begin, run under its lock:
  writes the record (a JSON string), the execution-id key, the transition
  key and an empty result key (both with a TTL); with an expected
  execution (ARGV[5]) only if the stored one still matches.

  Input:
    KEYS[1] record, KEYS[2] transition key, KEYS[3] result key,
    KEYS[4] execution-id key
    ARGV[1] record JSON, ARGV[2] transition id, ARGV[3] transition TTL s,
    ARGV[4] result TTL s, ARGV[5] expected execution or "", ARGV[6] execution

  Output: 1 written, 0 execution mismatch
]]
local expected = ARGV[5]
if expected ~= '' and redis.call('GET', KEYS[4]) ~= expected then return 0 end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('SET', KEYS[4], ARGV[6])
redis.call('SET', KEYS[2], ARGV[2], 'EX', ARGV[3])
redis.call('SET', KEYS[3], '', 'EX', ARGV[4])
return 1
