-- notify.lua — wake-ups on the team's channel <tp>notify, published in the
-- same atomic step as the change they announce (PUBLISH, or SPUBLISH on
-- Redis Cluster, where the channel is in the team's slot and the message
-- never crosses the cluster bus):
--   "o <id> <fence> <action> <outcome> <reason>"   a transition ended
--   "c <id>"                                       the record changed for its
--                                                  waiters (queue head, resume,
--                                                  removal, reservation)
--   "c"                                            the team's places changed

local function notify(message)
  redis.call(PUBLISH, TP .. 'notify', message)
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
local function sequence_refusal()
  local seq = redis.pcall('GET', TP .. 'seq')
  if type(seq) == 'table' then return wrongtype(seq, TP .. 'seq', 'string') end
  if seq and not (string.match(seq, '^%d+$') and #seq < 19) then
    return {'corrupt', TP .. 'seq is not a sequence number'}
  end
  return nil
end

-- `now`: the script's clock (ms) when it read one (clock.lua); a script
-- that did not is the only one that pays a TIME here.
local function announce(change, message, now)
  if not now then
    local t = redis.call('TIME')
    now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  end
  local ms = string.format('%d', now)
  local text = '=' .. redis.call('INCR', TP .. 'seq') .. ' ' .. ms .. ' ' .. change
  if message then text = text .. '\n' .. message end
  redis.call(PUBLISH, TP .. 'notify', text)
end

-- The change "s ..." (or "x <id>") of record <id> as it is now, read back
-- after the script's writes, so the announcement is exactly what is stored.
local function record_change(id)
  local key = TP .. 'rec:' .. id
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
