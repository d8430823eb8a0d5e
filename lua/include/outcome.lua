-- outcome.lua — how a transition ends, recorded once, in the same step that
-- applies it:
--   * the record's last_* fields (with the caller's other field changes in
--     the same write: record.lua's write_record),
--   * <tp>out:<id>:<fence>, kept for the outcome retention, so that a late
--     joiner or a finish retried after a lost reply reads it back however
--     many transitions ran meanwhile,
--   * the notification "o <id> <fence> <action> <outcome> <reason>" on the
--     team's channel (PUBLISH, or SPUBLISH on Redis Cluster: same slot),
--     announced with the record's new state (notify.lua's announce: the
--     including script declares <tp>seq).
-- Takes what it touches: `tp` the team prefix, `id` the sandbox, `r` the
-- record (r.key its key); uses notify.lua.
--
-- `r`: the record as load_record() read it (its live transition is the one
-- that ends); `fields`: the caller's other field changes; `seq`: the team
-- sequence number claim_sequence() took; `change`: the record's change as
-- the caller leaves it (notify.lua's change_line), announced with the
-- outcome.
local function record_outcome(tp, id, r, outcome, reason, fields, now, seq, change)
  local fence, act = r.fence, r.action
  fields[#fields + 1] = 'last_fence'
  fields[#fields + 1] = fence
  fields[#fields + 1] = 'last_action'
  fields[#fields + 1] = act
  fields[#fields + 1] = 'last_outcome'
  fields[#fields + 1] = outcome
  fields[#fields + 1] = 'last_reason'
  fields[#fields + 1] = reason
  write_record(r.key, r, fields)
  redis.call('SET', tp .. 'out:' .. id .. ':' .. fence, act .. ' ' .. outcome .. ' ' .. reason,
             'PX', OUTCOME_MS)
  announce(tp, change, 'o ' .. id .. ' ' .. fence .. ' ' .. act .. ' ' .. outcome .. ' ' .. reason, now, seq)
end

-- The outcome recorded for `fence` of record `r` (nil when absent):
-- action, outcome, reason.
local function recorded_outcome(tp, id, r, fence)
  if r and r.last_fence == fence then return r.last_action, r.last_outcome, r.last_reason end
  local raw = redis.pcall('GET', tp .. 'out:' .. id .. ':' .. fence)
  if type(raw) == 'table' and raw.err then wrongtype(raw, 'out', 'string') end
  if type(raw) ~= 'string' then return nil end
  local a, o, why = string.match(raw, '^(%S+) (%S+) ?(.*)$')
  if not a or not is_action(a) or not is_outcome(o) then return nil end
  return a, o, why
end
