-- finish_body.lua — ending the live transition of record `r` with an
-- outcome: the resulting state (by the lifecycle's action table), the lease
-- released, the outcome recorded and published (outcome.lua), and the
-- team's indexes updated, all in this one script. A tombstone (paused,
-- killed) leaves the expiry index (it no longer counts against the team's
-- limit), enters the tombstone index and expires after the retention.
--
-- The checks come first: a tombstone's index keys must be sorted sets (or
-- absent), then the team's sequence is claimed (notify.lua), and only then
-- is anything written, so a refusal leaves nothing written. The
-- announcement is built from what is written (no read back). Returns the
-- new state, or a refusal reply.

local function finish_transition(tp, id, r, outcome, reason, now)
  local next_state = after(r.action, outcome)
  if next_state == '' then next_state = r.state end
  local tomb = is_tombstone(next_state)
  if tomb then
    local bad = foreign_indexes(tp, {'expiry', 'tombs'}, nil)
    if bad then return nil, bad end
  end
  local seq, bad = claim_sequence(tp)
  if bad then return nil, bad end
  local ttl = nil
  if tomb then
    redis.call('ZREM', tp .. 'expiry', id)
    local expires = MAX_INT
    if TOMBSTONE_MS > 0 then
      expires = now + TOMBSTONE_MS
      ttl = TOMBSTONE_MS
    end
    redis.call('ZADD', tp .. 'tombs', expires, id)
  end
  record_outcome(tp, id, r, outcome, reason, {'state', next_state, 'holder', '', 'until_ms', ''}, now, seq,
                 change_line(id, next_state, r.exec, r.fence, r.end_ms, r.action, '', '', r.resv, ttl))
  if ttl then redis.call('PEXPIRE', r.key, ttl) end
  return next_state, nil
end
