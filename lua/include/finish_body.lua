-- finish_body.lua — ending the live transition of record `r` with an
-- outcome: the resulting state (by the lifecycle's action table), the lease
-- released, the outcome recorded and published (outcome.lua), and the
-- team's indexes updated, all in this one script. A tombstone (paused,
-- killed) leaves the expiry index (it no longer counts against the team's
-- limit), enters the tombstone index and expires after the retention.
--
-- The index writes come first and are the only ones that can fail (a key
-- of another type): the first failing leaves nothing written, the second
-- undoes the first exactly. Returns the new state, or a refusal reply.

local function finish_transition(r, outcome, reason, now)
  local bad = sequence_refusal()
  if bad then return nil, bad end
  local next_state = after(r.action, outcome)
  if next_state == '' then next_state = r.state end
  if is_tombstone(next_state) then
    local removed = redis.pcall('ZREM', TP .. 'expiry', ID)
    if type(removed) == 'table' then return nil, wrongtype(removed, TP .. 'expiry', 'sorted set') end
    local expires = MAX_INT
    if TOMBSTONE_MS > 0 then expires = now + TOMBSTONE_MS end
    local added = redis.pcall('ZADD', TP .. 'tombs', expires, ID)
    if type(added) == 'table' then
      if removed == 1 then redis.call('ZADD', TP .. 'expiry', r.end_ms, ID) end
      return nil, wrongtype(added, TP .. 'tombs', 'sorted set')
    end
  end
  -- (The expiry first: the announcement of record_outcome reads it back.)
  if is_tombstone(next_state) and TOMBSTONE_MS > 0 then redis.call('PEXPIRE', REC, TOMBSTONE_MS) end
  record_outcome(r.fence, r.action, outcome, reason, {'state', next_state, 'holder', '', 'until_ms', ''}, now)
  return next_state, nil
end
