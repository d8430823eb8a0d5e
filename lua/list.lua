--[[
  list.lua — one page of a team's sandboxes, by id, from the team's id index
  (never SCAN). Each record is read and validated as inspect.lua does; an
  index entry whose record is missing is skipped (the records are not
  declared keys, so a script that read them while the team's slot is being
  migrated could miss some: it must not write on what it did not find).

  Input:
    KEYS[1] id index     <ns>:{<team>}:ids
    ARGV[1] team prefix  "<ns>:{<team>}:"
    ARGV[2] "" to start, or the last id of the previous page
    ARGV[3] page size

  Output:
    {"page", next_or_empty, now_ms, n, then n times: id, record_pttl, <FIELDS...>, data}
    {"corrupt", detail} | {"schema", version}

  Example:
    redis-cli --eval DIR/list.lua 'sbx:{t}:ids' , 'sbx:{t}:' '' 100
]]

local TP, AFTER, COUNT = ARGV[1], ARGV[2], tonumber(ARGV[3])

--!generated
--!include errors.lua
--!include clock.lua
--!include record.lua
--!include record_reply.lua

local now = clock()
local from = '-'
if AFTER ~= '' then from = '(' .. AFTER end
local ids = redis.pcall('ZRANGEBYLEX', KEYS[1], from, '+', 'LIMIT', 0, COUNT)
if ids.err then return wrongtype(ids, KEYS[1], 'sorted set') end
local rows, n = {}, 0
for _, id in ipairs(ids) do
  local key = TP .. 'rec:' .. id
  local r, data, err = load_record_and_data(key)
  if err then return err end
  if r then
    rows[#rows + 1] = id
    record_reply(rows, key, r, data)
    n = n + 1
  end
end
local next_id = ''
if #ids == COUNT then next_id = ids[#ids] end
local out = {'page', next_id, int(now), int(n)}
for _, v in ipairs(rows) do out[#out + 1] = v end
return out
