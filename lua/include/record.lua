-- record.lua — reading and validating a sandbox record: the one check every
-- script runs before its first write (Redis does not roll back a script that
-- errors half-way). src/record.rs applies exactly the same rules in Rust;
-- tests/record_validation.rs keeps the two equal.
--
-- A record is refused ("corrupt") unless:
--   state        is a state of the lifecycle
--   exec         is non-empty
--   end_ms fence are decimal integers 0..2^53-1 (no sign, exponent, hex, nan)
--   action       is "" or an action name
--   holder       is "" or a word without spaces or '@'; until_ms is "" exactly
--                when holder is "", else an integer; a holder only on an
--                in-flight state
--   started_ms   is "" or an integer
--   last_fence   is "" (then last_action, last_outcome are "") or an integer
--                with last_action an action name and last_outcome one of
--                succeeded, failed, abandoned
--   queue        is "" or "holder@deadline_ms" words separated by one space
--   resv         is "" or "token@deadline_ms"
--   floor        is "" or an integer (the team's fence floor when the record
--                was created: its first fence is above it)
--   lc           is non-empty (the lifecycle digest; begin/finish/register
--                compare it with their own)
-- and `v` is this schema ("schema" refusal otherwise: another layout version).

local FIELDS = {'v', 'lc', 'state', 'exec', 'end_ms', 'fence', 'action', 'holder', 'until_ms',
                'started_ms', 'last_fence', 'last_action', 'last_outcome', 'last_reason', 'queue', 'resv',
                'floor'}
local MAX_INT = 9007199254740991 -- 2^53 - 1, the largest integer a Lua number holds exactly
-- Redis keeps a hash as a compact `listpack` while every value is at most
-- hash-max-listpack-value bytes (64 by default; managed Redis rarely lets
-- anyone change it) and turns it into a `hashtable`, for good, at the first
-- longer one. The record keeps each value within it: the opaque data in
-- pieces (data.lua), and a record that held a longer queue or reason is
-- written anew once they are short again (write_record).
local LISTPACK_VALUE = 64

-- The integer `s` spells, or nil unless it is a plain decimal in 0..MAX_INT.
local function uint(s)
  if s == nil or s == '' or #s > 16 or string.find(s, '^%d+$') == nil then return nil end
  local n = tonumber(s)
  if n > MAX_INT then return nil end
  return n
end

local function is_outcome(o)
  return o == 'succeeded' or o == 'failed' or o == 'abandoned'
end

-- "holder@deadline": the holder and the deadline, or nil.
local function stamp(s)
  local h, d = string.match(s, '^([^@%s]+)@(%d+)$')
  if not h then return nil end
  local n = uint(d)
  if not n then return nil end
  return h, n
end

-- The waiters queued on a record, oldest first: a list of {h = holder, d = deadline}
-- (r.q; nil when nobody is queued).
local function parse_queue(s)
  if string.find(s, '^ ') or string.find(s, ' $') or string.find(s, '  ', 1, true) then return nil end
  local q = {}
  for word in string.gmatch(s, '[^ ]+') do
    local h, d = stamp(word)
    if not h then return nil end
    q[#q + 1] = {h = h, d = d}
  end
  return q
end

-- What is wrong with record `r` (a table of FIELDS), or nil.
local function refusal(r)
  local class = class_of(r.state)
  if class == nil then return 'unknown state "' .. r.state .. '"' end
  if r.exec == '' then return 'no execution id' end
  r.end_n, r.fence_n = uint(r.end_ms), uint(r.fence)
  if not r.end_n then return 'end_ms "' .. r.end_ms .. '" is not an integer' end
  if not r.fence_n then return 'fence "' .. r.fence .. '" is not an integer' end
  if r.action ~= '' and not is_action(r.action) then return 'unknown action "' .. r.action .. '"' end
  if r.holder == '' then
    if r.until_ms ~= '' then return 'until_ms without a holder' end
    r.until_n = 0
  else
    if string.find(r.holder, '[%s@]') then return 'holder "' .. r.holder .. '" is not a word' end
    r.until_n = uint(r.until_ms)
    if not r.until_n then return 'until_ms "' .. r.until_ms .. '" is not an integer' end
    if class ~= 'inflight' then return 'a holder on settled state ' .. r.state end
  end
  if r.started_ms ~= '' and not uint(r.started_ms) then return 'started_ms is not an integer' end
  if r.last_fence == '' then
    if r.last_action ~= '' or r.last_outcome ~= '' then return 'last_action or last_outcome without last_fence' end
  else
    if not uint(r.last_fence) then return 'last_fence "' .. r.last_fence .. '" is not an integer' end
    if not is_action(r.last_action) then return 'unknown last_action "' .. r.last_action .. '"' end
    if not is_outcome(r.last_outcome) then return 'unknown last_outcome "' .. r.last_outcome .. '"' end
  end
  if r.queue ~= '' then
    r.q = parse_queue(r.queue)
    if not r.q then return 'queue "' .. r.queue .. '" is not "holder@deadline ..."' end
  end
  r.resv_n = 0
  if r.resv ~= '' then
    r.resv_token, r.resv_n = stamp(r.resv)
    if not r.resv_token then return 'resv "' .. r.resv .. '" is not "token@deadline"' end
  end
  r.floor_n = 0
  if r.floor ~= '' then
    r.floor_n = uint(r.floor)
    if not r.floor_n then return 'floor "' .. r.floor .. '" is not an integer' end
  end
  if r.lc == '' then return 'no lifecycle digest' end
  return nil
end

-- The record table of `x`, the values of FIELDS in order (false or nil:
-- absent), read from `key`: (record, nil) or (nil, refusal reply).
local function record_of(key, x)
  if not x[1] then return nil, {'corrupt', key .. ' has no schema version'} end
  if x[1] ~= SCHEMA then return nil, {'schema', x[1]} end
  -- One constructor with every field the record table will hold (the
  -- parsed ones too): built key by key, the table would grow and rehash
  -- five times (22k instructions per transition, lua_cost.py).
  local r = {v = x[1], lc = x[2] or '', state = x[3] or '', exec = x[4] or '', end_ms = x[5] or '',
             fence = x[6] or '', action = x[7] or '', holder = x[8] or '', until_ms = x[9] or '',
             started_ms = x[10] or '', last_fence = x[11] or '', last_action = x[12] or '',
             last_outcome = x[13] or '', last_reason = x[14] or '', queue = x[15] or '', resv = x[16] or '',
             floor = x[17] or '', end_n = 0, fence_n = 0, until_n = 0, resv_n = 0, floor_n = 0,
             q = false, resv_token = false, key = key,
             long = (x[14] and #x[14] > LISTPACK_VALUE) or (x[15] and #x[15] > LISTPACK_VALUE) or false}
  local bad = refusal(r)
  if bad then return nil, {'corrupt', key .. ': ' .. bad} end
  return r, nil
end

-- Reads the record at `key`. Returns (nil, nil) when it does not exist,
-- (nil, refusal reply) when no script may use it, else the record.
local function load_record(key)
  local x = redis.pcall('HMGET', key, unpack(FIELDS))
  if x.err then return nil, wrongtype(x, key, 'hash') end
  if x[1] == false and redis.call('EXISTS', key) == 0 then return nil, nil end
  return record_of(key, x)
end

-- Writes `fields` (name, value pairs; a value of false removes the field)
-- into the record `key` that `r` was read from. A record that holds a value
-- over LISTPACK_VALUE bytes (r.long: a queue or a reason) is a hashtable,
-- and Redis never makes a hash a listpack again; so once no long value is
-- left it is written anew (DEL, HSET, its PTTL kept) and is a listpack
-- again. Only the record's own fields are read, so the loops end.
local function write_record(key, r, fields)
  if r.long then
    local all = redis.call('HGETALL', key)
    local at = {}
    for i = 1, #all, 2 do at[all[i]] = i + 1 end
    for i = 1, #fields, 2 do
      local v = at[fields[i]]
      if v then
        all[v] = fields[i + 1]
      else
        all[#all + 1] = fields[i]
        all[#all + 1] = fields[i + 1]
      end
    end
    local kept, fits = {}, true
    for i = 1, #all, 2 do
      local v = all[i + 1]
      if v then
        if #v > LISTPACK_VALUE then
          fits = false
          break
        end
        kept[#kept + 1] = all[i]
        kept[#kept + 1] = v
      end
    end
    if fits and #kept <= 256 then
      local pttl = redis.call('PTTL', key)
      redis.call('DEL', key)
      redis.call('HSET', key, unpack(kept))
      if pttl > 0 then redis.call('PEXPIRE', key, pttl) end
      return
    end
    -- Still a hashtable whatever is written: the changes only (below).
  else
    local plain = true
    for i = 2, #fields, 2 do
      if not fields[i] then
        plain = false
        break
      end
    end
    if plain then
      redis.call('HSET', key, unpack(fields))
      return
    end
  end
  local set, gone = {}, {}
  for i = 1, #fields, 2 do
    if fields[i + 1] then
      set[#set + 1] = fields[i]
      set[#set + 1] = fields[i + 1]
    else
      gone[#gone + 1] = fields[i]
    end
  end
  if #gone > 0 then redis.call('HDEL', key, unpack(gone)) end
  if #set > 0 then redis.call('HSET', key, unpack(set)) end
end
