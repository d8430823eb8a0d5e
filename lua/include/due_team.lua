-- due_team.lua — the ids of one team whose end time has passed by the
-- server clock, oldest first, at most `limit`, appended to `out` as
-- (id, end_ms) pairs. An entry whose record is missing is skipped (so it
-- cannot starve real evictions under a limit) and appended to `orphans`,
-- as are tombstone entries whose record expired: the client sweeps them
-- with sweep.lua, which declares the record key (this script reads the
-- records without declaring them, so it never writes on what it did not
-- find: under a slot migration a record may just not be here yet).
-- `tp` is the team prefix; the keys are in the team's slot. Returns the
-- count, or nil and a refusal (an index of another type).

local function due_team(tp, limit, now, out, team, orphans)
  local expiry = tp .. 'expiry'
  local got, skipped = 0, 0
  while got < limit do
    local want = limit - got
    local batch = redis.pcall('ZRANGEBYSCORE', expiry, '-inf', now, 'WITHSCORES', 'LIMIT', got + skipped, want)
    if batch.err then return nil, wrongtype(batch, expiry, 'sorted set') end
    local kept = 0
    for i = 1, #batch, 2 do
      local id = batch[i]
      if redis.call('EXISTS', tp .. 'rec:' .. id) == 1 then
        if team then out[#out + 1] = team end
        out[#out + 1] = id
        out[#out + 1] = batch[i + 1]
        kept = kept + 1
      else
        skipped = skipped + 1
        if team then orphans[#orphans + 1] = team end
        orphans[#orphans + 1] = id
      end
    end
    got = got + kept
    -- Fewer than asked: nothing more is due. Otherwise the skipped entries
    -- left room; look again after them.
    if #batch < 2 * want then break end
  end
  -- Tombstones past their retention have expired (PEXPIRE); drop their entries.
  local gone = redis.pcall('ZRANGEBYSCORE', tp .. 'tombs', '-inf', now, 'LIMIT', 0, 100)
  if gone.err then return nil, wrongtype(gone, tp .. 'tombs', 'sorted set') end
  for _, id in ipairs(gone) do
    if redis.call('EXISTS', tp .. 'rec:' .. id) == 0 then
      if team then orphans[#orphans + 1] = team end
      orphans[#orphans + 1] = id
    end
  end
  return got, nil
end
