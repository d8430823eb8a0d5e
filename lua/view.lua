--[[
  view.lua — one page of a team for a team view (src/view/), read in the
  same atomic step as the team's sequence <tp>seq: the page is the team as
  it was at that sequence, and the view applies every announcement after
  it (notify.lua). Each row has the format of an announced change
  "s <id> <state> <exec> <fence> <end_ms> <action> <holder> <until_ms>
  <resv_ms> <ttl_ms>" ("-" for an empty field), so one parser reads both.
  Records are validated as inspect.lua does; an index entry whose record is
  missing is skipped (records are not declared keys: a script that read
  them while the team's slot is being migrated could miss some, so it
  writes nothing on what it did not find).
  The first page (ARGV[2] "") also carries the team's reservations and its
  own limit. Page size 0 reads the sequence only (a view's poll).

  Input:
    KEYS[1] id index     <ns>:{<team>}:ids
    KEYS[2] sequence     <ns>:{<team>}:seq
    KEYS[3] reservations <ns>:{<team>}:resv
    KEYS[4] team hash    <ns>:{<team>}:team
    ARGV[1] team prefix  "<ns>:{<team>}:"
    ARGV[2] "" to start, or the last id of the previous page
    ARGV[3] page size (0: the sequence only)

  Output:
    {"page", seq, now_ms, next_or_empty, limit_or_empty, r, then r times: id, deadline_ms,
     n, then n rows}          r is 0 after the first page
    {"corrupt", detail} | {"schema", version}

  Example:
    redis-cli --eval DIR/view.lua 'sbx:{t}:ids' 'sbx:{t}:seq' 'sbx:{t}:resv' 'sbx:{t}:team' , 'sbx:{t}:' '' 500
]]

local TP, AFTER, COUNT = ARGV[1], ARGV[2], tonumber(ARGV[3])

--!generated
--!include errors.lua
--!include clock.lua
--!include record.lua

local now = clock()
local seq = redis.pcall('GET', KEYS[2])
if type(seq) == 'table' then return wrongtype(seq, KEYS[2], 'string') end
if not seq then seq = '0' end
local out = {'page', seq, int(now)}
if COUNT == 0 then
  for _, v in ipairs({'', '', '0', '0'}) do out[#out + 1] = v end
  return out
end
local ids = redis.pcall('ZRANGEBYLEX', KEYS[1], AFTER == '' and '-' or '(' .. AFTER, '+', 'LIMIT', 0, COUNT)
if ids.err then return wrongtype(ids, KEYS[1], 'sorted set') end
local next_id = ''
if #ids == COUNT then next_id = ids[#ids] end
out[#out + 1] = next_id
local resv = {}
local limit = ''
if AFTER == '' then
  resv = redis.pcall('ZRANGEBYSCORE', KEYS[3], '(' .. int(now), '+inf', 'WITHSCORES')
  if resv.err then return wrongtype(resv, KEYS[3], 'sorted set') end
  local l = redis.pcall('HGET', KEYS[4], 'limit')
  if type(l) == 'table' then return wrongtype(l, KEYS[4], 'hash') end
  limit = l or ''
end
out[#out + 1] = limit
out[#out + 1] = int(#resv / 2)
for _, v in ipairs(resv) do out[#out + 1] = v end
local rows = {}
for _, id in ipairs(ids) do
  local key = TP .. 'rec:' .. id
  local r, err = load_record(key)
  if err then return err end
  if r then
    local words = {'s', id}
    for _, f in ipairs({r.state, r.exec, r.fence, r.end_ms, r.action, r.holder, r.until_ms}) do
      if f == '' then f = '-' end
      words[#words + 1] = f
    end
    if r.resv_n > 0 then words[#words + 1] = int(r.resv_n) else words[#words + 1] = '-' end
    local ttl = redis.call('PTTL', key)
    if ttl > 0 then words[#words + 1] = int(ttl) else words[#words + 1] = '-' end
    rows[#rows + 1] = table.concat(words, ' ')
  end
end
out[#out + 1] = int(#rows)
for _, v in ipairs(rows) do out[#out + 1] = v end
return out
