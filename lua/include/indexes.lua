-- indexes.lua — the team's indexes, kept exact by the scripts that change a
-- record (all in the team's slot, named from the team prefix `tp` that
-- each function takes):
--   <tp>expiry  zset  id -> end_ms of every record that is not a tombstone
--                     (running or in flight): the evictor's index, and its
--                     cardinality is the team's live count for limits
--   <tp>tombs   zset  id -> expiry time (ms) of every tombstone
--   <tp>ids     zset  every record id, score 0 (lexicographic paging)
--   <tp>resv    zset  id -> deadline (ms) of every reservation
--   <tp>team    hash  limit, floor (highest fence of a removed record),
--                     listed ("1" once the team is in its slot's team set),
--                     tok:<id> (the token of a reservation)

-- A refusal if `key` holds something other than `want` (none is fine):
-- the paths that write several indexes check them all before the first
-- write, since Redis does not roll back a script that fails half-way.
local function foreign(key, want)
  local t = redis.call('TYPE', key)['ok']
  if t ~= 'none' and t ~= want then return {'corrupt', key .. ' holds a ' .. t .. ', expected a ' .. want} end
  return nil
end

-- The first refusal of foreign(), for the team's index keys `names`
-- (suffixes of tp) and the other keys in `extra` ({key, type} pairs).
local function foreign_indexes(tp, names, extra)
  for _, name in ipairs(names) do
    local want = 'zset'
    if name == 'team' then want = 'hash' end
    local bad = foreign(tp .. name, want)
    if bad then return bad end
  end
  for _, kt in ipairs(extra or {}) do
    local bad = foreign(kt[1], kt[2])
    if bad then return bad end
  end
  return nil
end

-- Removes an id whose record vanished behind the library's back
-- (maxmemory eviction, an operator's DEL) from every index.
-- (pcall: an index of another type is left for repair, not an error here.)
local function drop_from_indexes(tp, id)
  redis.pcall('ZREM', tp .. 'expiry', id)
  redis.pcall('ZREM', tp .. 'tombs', id)
  redis.pcall('ZREM', tp .. 'ids', id)
end

-- A team whose last record went (no entry left in ids, expiry or tombs)
-- leaves its slot's team set `teams_key` (and its `listed` mark, so that
-- its next record lists it again): fleet-wide eviction reads only teams
-- that have records. (pcall: an index of another type leaves the team
-- listed, for repair to report.)
local function unlist_if_empty(tp, teams_key, team)
  for _, name in ipairs({'ids', 'expiry', 'tombs'}) do
    local n = redis.pcall('ZCARD', tp .. name)
    if type(n) ~= 'number' or n > 0 then return end
  end
  redis.pcall('SREM', teams_key, team)
  redis.pcall('HDEL', tp .. 'team', 'listed')
end

-- Expired reservations no longer hold a place: forget them.
local function sweep_reservations(tp, now)
  local gone = redis.call('ZRANGEBYSCORE', tp .. 'resv', '-inf', now)
  for _, id in ipairs(gone) do
    redis.call('ZREM', tp .. 'resv', id)
    redis.call('HDEL', tp .. 'team', 'tok:' .. id)
  end
end

-- The team's limit: its own (set_team_limit) or the coordinator's default
-- (`default`, "" for none). nil when unlimited.
local function team_limit(own, default)
  local n = uint(own or '')
  if n then return n end
  return uint(default)
end

-- Places taken: records that are not tombstones, plus live reservations
-- other than `except_id`'s (whose place a register consumes).
local function places_taken(tp, now, except_id)
  local taken = redis.call('ZCARD', tp .. 'expiry') + redis.call('ZCOUNT', tp .. 'resv', '(' .. int(now), '+inf')
  if except_id then
    local mine = redis.call('ZSCORE', tp .. 'resv', except_id)
    if mine and tonumber(mine) > now then taken = taken - 1 end
  end
  return taken
end
