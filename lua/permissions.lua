--[[
  permissions.lua — which of the commands the library needs the current
  user may not run on the namespace's keys and channels
  (`redis.acl_check_cmd`, which runs nothing). `build()` calls it once, so
  that a user with too few ACL rules is refused at start with the missing
  commands named, instead of a script being refused part-way later (Redis
  does not roll back a script).

  Input:
    KEYS[1] a key of the namespace (any; it routes the call on a cluster)
    ARGV[1] a channel of the namespace
    ARGV[2..] one command each: "NAME|arg|arg..." where "$K" stands for
              KEYS[1] and "$C" for ARGV[1]

  Output:
    {"refused", name1, name2, ...}     (none refused: {"refused"})

  Example:
    redis-cli --eval DIR/permissions.lua 'sbx:{t}:probe' , 'sbx:{t}:notify' 'HSET|$K|f|v' 'PUBLISH|$C|m'
]]

--!generated

local out = {'refused'}
for i = 2, #ARGV do
  local parts = {}
  for part in string.gmatch(ARGV[i], '[^|]+') do
    if part == '$K' then part = KEYS[1] elseif part == '$C' then part = ARGV[1] end
    parts[#parts + 1] = part
  end
  local ok, allowed = pcall(redis.acl_check_cmd, unpack(parts))
  if not ok or not allowed then out[#out + 1] = string.lower(parts[1]) end
end
return out
