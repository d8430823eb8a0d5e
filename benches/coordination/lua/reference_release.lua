--[[
  reference_release.lua — REFERENCE PROTOCOL BASELINE, NOT THIS LIBRARY
  (see reference.rs). Steps 5 and 9: delete the lock only if it still
  holds our token (bsm/redislock's release).

  Input: KEYS[1] lock key; ARGV[1] token
  Output: 1 released, 0 not ours
]]
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
