-- notify.lua — wake-ups on the team's channel <tp>notify, published in the
-- same atomic step as the change they announce (PUBLISH, or SPUBLISH on
-- Redis Cluster, where the channel is in the team's slot and the message
-- never crosses the cluster bus):
--   "o <id> <fence> <action> <outcome> <reason>"   a transition ended
--   "c <id>"                                       the record changed for its
--                                                  waiters (queue head, resume,
--                                                  removal, reservation)
--   "c"                                            the team's places changed

local function notify(tp, message)
  redis.call(PUBLISH, tp .. 'notify', message)
end

-- Announcements for team views (src/view/): every change a reader of the
-- team sees INCRs the team's sequence <tp>seq (declared in the KEYS of every
-- script that announces) and is published with it, in the same message as
-- the wake-up above, if any:
--   "=<seq> <ms> <change>" [ "\n" <wake-up> ]     (ms: the server's time, as
--                                                 the script read it)
-- <change>:
--   "s <id> <state> <exec> <fence> <end_ms> <action> <holder> <until_ms> <resv_ms> <ttl_ms>"
--                          the record as it now is, "-" for an empty field
--                          (resv_ms: its reservation's deadline; ttl_ms: a
--                          tombstone's time left)
--   "x <id>"               the record is gone
--   "r <id> <deadline_ms>" a reservation of the id held ("-": released)
--   "l <limit>"            the team's limit ("-": none)
--   "*"                    anything else (a repair): re-read the team
-- Sequence numbers follow each other without a gap, so a reader that sees
-- one missing knows it missed a change.

-- A refusal if the team's sequence cannot take announce()'s INCR: a key of
-- another type, or a string that is no sequence number (or one at the end
-- of its range). announce() runs after a script's writes and Redis does not
-- roll back a script that fails half-way, so every path that announces
-- calls this before its first write and returns the refusal, nothing
-- written. nil when the sequence is fine (or absent).
local function sequence_refusal(tp)
  local seq = redis.pcall('GET', tp .. 'seq')
  if type(seq) == 'table' then return wrongtype(seq, tp .. 'seq', 'string') end
  -- What INCR takes (no sign, no leading zero) and leaves below 2^53, the
  -- last integer a Lua number holds exactly.
  if seq and not ((seq == '0' or string.match(seq, '^[1-9]%d*$')) and #seq < 17
                  and tonumber(seq) < 9007199254740991) then
    return {'corrupt', tp .. 'seq is not a sequence number'}
  end
  return nil
end

-- The team's next sequence number, taken (INCR) as the last check before a
-- script's first write, by a script that announces on every path past it:
-- returns the number (a string) and nil, or nil and a refusal when the
-- sequence cannot take the INCR (a key of another type, a string that is
-- no number, the end of its range, a negative number, a number past 2^53),
-- nothing written. One command where
-- sequence_refusal() and announce() take two. Any other error (READONLY,
-- OOM, NOPERM) is raised as Redis gave it (errors.lua).
local function claim_sequence(tp)
  local seq = redis.pcall('INCR', tp .. 'seq')
  if type(seq) == 'number' then
    if seq > 0 and seq <= 9007199254740991 then return string.format('%d', seq), nil end
    -- A negative sequence, or one past what a Lua number holds exactly:
    -- the INCR is undone (Redis counts in 64-bit integers: exactly).
    redis.call('DECR', tp .. 'seq')
    return nil, {'corrupt', tp .. 'seq is not a sequence number'}
  end
  if string.find(seq.err, 'WRONGTYPE', 1, true) then return nil, wrongtype(seq, tp .. 'seq', 'string') end
  if string.find(seq.err, 'not an integer', 1, true) or string.find(seq.err, 'overflow', 1, true) then
    return nil, {'corrupt', tp .. 'seq is not a sequence number'}
  end
  error(seq)
end

-- `now`: the script's clock (ms) when it read one (clock.lua); a script
-- that did not is the only one that pays a TIME here. `seq`: the number
-- claim_sequence() took, or nil to take it here (after sequence_refusal()).
local function announce(tp, change, message, now, seq)
  if not now then
    local t = redis.call('TIME')
    now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  end
  seq = seq or redis.call('INCR', tp .. 'seq')
  local text = '=' .. seq .. ' ' .. string.format('%d', now) .. ' ' .. change
  if message then text = text .. '\n' .. message end
  redis.call(PUBLISH, tp .. 'notify', text)
end

-- The change "s ..." (or "x <id>") of record <id> as it is now, read back
-- after the script's writes, so the announcement is exactly what is stored.
local function record_change(tp, id)
  local key = tp .. 'rec:' .. id
  local f = redis.call('HMGET', key, 'state', 'exec', 'fence', 'end_ms', 'action', 'holder', 'until_ms', 'resv')
  if not f[1] then return 'x ' .. id end
  local words = {'s', id}
  for i = 1, 7 do
    local v = f[i]
    if not v or v == '' then v = '-' end
    words[#words + 1] = v
  end
  words[#words + 1] = (f[8] and string.match(f[8], '@(%d+)$')) or '-'
  -- (Only tombstones expire: the others skip the PTTL.)
  local ttl = -1
  if is_tombstone(f[1]) then ttl = redis.call('PTTL', key) end
  if ttl > 0 then words[#words + 1] = tostring(ttl) else words[#words + 1] = '-' end
  return table.concat(words, ' ')
end

-- The same change without reading the record back, from the values the
-- caller has just written (or left as they were): for a script that wrote
-- the record in one HSET and knows its expiry. state, exec, fence, end_ms
-- are never empty in a valid record; `resv` is the record's resv field as
-- stored ("token@deadline" or ""); `ttl` its time to live in ms as the
-- script left it (nil: it does not expire). One concatenation: no table.
local function change_line(id, state, exec, fence, end_ms, action, holder, until_ms, resv, ttl)
  if action == '' then action = '-' end
  if holder == '' then holder = '-' end
  if until_ms == '' then until_ms = '-' end
  local resv_ms = '-'
  if resv ~= '' then resv_ms = string.match(resv, '@(%d+)$') or '-' end
  local ttl_ms = '-'
  if ttl and ttl > 0 then ttl_ms = string.format('%d', ttl) end
  return 's ' .. id .. ' ' .. state .. ' ' .. exec .. ' ' .. fence .. ' ' .. end_ms .. ' ' .. action .. ' ' ..
    holder .. ' ' .. until_ms .. ' ' .. resv_ms .. ' ' .. ttl_ms
end
