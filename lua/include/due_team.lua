-- due_team.lua — the ids of one team whose end time has passed by the
-- server clock, oldest first, at most `limit`, appended to `out` as
-- (id, end_ms) pairs. An entry whose record is missing is skipped (so it
-- cannot starve real evictions under a limit) and appended to `orphans`,
-- as are tombstone entries whose record expired: the client sweeps them
-- with sweep.lua, which declares the record key (this script reads the
-- records without declaring them, so it never writes on what it did not
-- find: under a slot migration a record may just not be here yet).
-- `tp` is the team prefix; the keys are in the team's slot. Returns the
-- count, or nil and a refusal (an index of another type) — then nothing
-- was appended, so a caller reading many teams can skip this one.

-- An index score as a due end time: a damaged score (negative, -inf) is
-- due at 0, never a number the client cannot read.
local function due_ms(score)
  local n = tonumber(score)
  if not n or n ~= n or n < 0 then return '0' end
  return int(math.floor(n))
end

local function due_team(tp, limit, now, out, team, orphans)
  local expiry = tp .. 'expiry'
  -- Tombstones past their retention have expired (PEXPIRE); their entries
  -- are dropped. Read first: both reads can refuse, and neither appends
  -- anything before both have answered.
  local gone = redis.pcall('ZRANGEBYSCORE', tp .. 'tombs', '-inf', now, 'LIMIT', 0, 100)
  if gone.err then return nil, wrongtype(gone, tp .. 'tombs', 'sorted set') end
  local first = redis.pcall('ZRANGEBYSCORE', expiry, '-inf', now, 'WITHSCORES', 'LIMIT', 0, limit)
  if first.err then return nil, wrongtype(first, expiry, 'sorted set') end
  local got, skipped = 0, 0
  local batch = first
  while true do
    local want = limit - got
    local kept = 0
    for i = 1, #batch, 2 do
      local id = batch[i]
      if redis.call('EXISTS', tp .. 'rec:' .. id) == 1 then
        if team then out[#out + 1] = team end
        out[#out + 1] = id
        out[#out + 1] = due_ms(batch[i + 1])
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
    if #batch < 2 * want or got >= limit then break end
    batch = redis.call('ZRANGEBYSCORE', expiry, '-inf', now, 'WITHSCORES', 'LIMIT', got + skipped, limit - got)
  end
  for _, id in ipairs(gone) do
    if redis.call('EXISTS', tp .. 'rec:' .. id) == 0 then
      if team then orphans[#orphans + 1] = team end
      orphans[#orphans + 1] = id
    end
  end
  return got, nil
end
