--[[
  begin.lua — decide a requested action against a sandbox record by the
  lifecycle's rule table and, when the rule says "start", open the
  transition in the same atomic step: a new fence, the in-flight state, the
  lease (holder and deadline, fields of the record). One script per action:
  the action's rule row, its in-flight state and the lifecycle's digest are
  generated into the text (`--!generated`), so the SHA names the lifecycle.

  Every time decision uses the server clock. A new fence is
  max(server time in µs, record fence + 1, record floor + 1): strictly above
  every earlier fence of the record and of a removed record of the same id
  (the floor), and above every fence handed out before a loss of data as
  long as the server clock does not go back.

  Starting from a tombstone (a rule such as `kill_deletes_paused`) makes
  the record live again in the same step: back in the expiry index, out of
  the tombstone index, its tombstone TTL cleared.

  A record in an in-flight state whose lease ended without an outcome is
  "stuck": its holder died. Nothing is decided on it until its outcome
  `abandoned` is recorded: the reply "stuck" names the transition, and the
  client records it with settle.lua (whose KEYS name that transition's
  outcome key) before calling begin again.

  Every key the script touches is in KEYS (Redis Cluster checks declared
  keys only when a slot is being migrated).

  Fair waiting: a request that must wait is queued (queue.lua) and only the
  head of the queue may start; see queue.lua. A queued caller answered with
  anything but "wait" or "stuck" has left the queue in the same step (the
  `queue` field is removed when it empties).

  Input:
    KEYS[1] record       <ns>:{<team>}:rec:<id>
    KEYS[2] expiry index <ns>:{<team>}:expiry
    KEYS[3] tombstones   <ns>:{<team>}:tombs
    KEYS[4] id index     <ns>:{<team>}:ids
    KEYS[5] sequence     <ns>:{<team>}:seq (the team view's sequence, notify.lua)
    ARGV[1] team prefix  "<ns>:{<team>}:" (the other keys of the team and its
                         channel are named from it; all in the team's slot)
    ARGV[2] sandbox id
    ARGV[3] holder id, unique per begin call (no spaces or '@'); a retried
            call whose lease is already held under this id gets "started" again
    ARGV[4] lease length, ms
    ARGV[5] expected execution id, or "" for any
    ARGV[6] "1" for the evictor (never waits; refuses while the end time is
            in the future), else "0"
    ARGV[7] how long a queued waiter keeps its place without a re-check, ms

  Output:
    {"started", fence, lease_ms, exec}          this call holds the transition
    {"join", fence, lease_left_ms, holder}      the same action is in flight
    {"stuck", fence, holder}                    record that transition's end first
    {"wait", fence_or_0, wake_ms}               queued: re-check after another
                                                transition (fence) ends, or at wake_ms
    {"same", state} | {"absorbed", state}       nothing to do, nothing written
    {"invalid", state}                          not allowed, nothing written
    {"not_found"}                               (a stale index entry is swept)
    {"exec_mismatch", exec}                     (a queued caller leaves the queue,
                                                as with "lifecycle")
    {"eviction_in_progress", fence, action}     evictor: a transition is in flight, or
                                                fence "0" and action "reserve" (a live
                                                reservation) or "queue" (requests queued)
    {"eviction_not_needed", end_ms, now_ms}
    {"corrupt", detail} | {"schema", version} | {"lifecycle", digest}

  Example (after `sandboxctl scripts --dump DIR`):
    redis-cli --eval DIR/begin_pause.lua 'sbx:{t}:rec:s1' 'sbx:{t}:expiry' 'sbx:{t}:tombs' 'sbx:{t}:ids' 'sbx:{t}:seq' , \
      'sbx:{t}:' s1 cli/1 30000 '' 0 4000
]]

local REC, TP, ID = KEYS[1], ARGV[1], ARGV[2]
local HOLDER, LEASE_MS, EXPECT = ARGV[3], tonumber(ARGV[4]), ARGV[5]
local EVICT, QUEUE_MS = ARGV[6] == '1', tonumber(ARGV[7])

--!generated
--!include errors.lua
--!include clock.lua
--!include record.lua
--!include queue.lua
--!include notify.lua
--!include indexes.lua

local now, now_us = clock()
local r, err = load_record(REC)
if err then return err end
if not r then
  drop_from_indexes(TP, ID)
  return {'not_found'}
end
local q = queue_live(r, now)
local mine = queue_find(q, HOLDER)

-- Leaves the queue (if queued) in `fields` for the record's one HSET (or
-- removes the field when the queue empties), and says whether a waiter
-- behind this one is now at the head.
local function leave_queue(fields)
  if not mine then return false end
  table.remove(q, mine)
  queue_put(q, fields)
  return mine == 1 and #q > 0
end

-- A refusal after a wait: the caller's error is final (it sends no
-- cancel), so it leaves the queue in this step.
local function refuse(reply)
  local fields = {}
  local next_up = leave_queue(fields)
  if #fields > 0 then write_record(REC, r, fields) end
  if next_up then notify(TP, 'c ' .. ID) end
  return reply
end

if r.lc ~= LIFECYCLE then return refuse({'lifecycle', r.lc}) end
if EXPECT ~= '' and r.exec ~= EXPECT then return refuse({'exec_mismatch', r.exec}) end

local live = r.holder ~= '' and r.until_n > now
-- A retry of a begin whose reply was lost: the lease is already ours.
if live and r.holder == HOLDER then
  if r.action ~= ACTION then return {'corrupt', REC .. ': holder ' .. HOLDER .. ' holds ' .. r.action} end
  return {'started', r.fence, int(r.until_n - now), r.exec}
end

local class = class_of(r.state)
local reserved = r.resv_n > now
local decision = rule(r.state, live)
if reserved then decision = 'wait' end
if live and (decision == 'start' or decision == 'same' or decision == 'absorbed') then
  return {'corrupt', 'rule ' .. decision .. ' for ' .. ACTION .. ' on ' .. r.state .. ' with a live lease'}
end
if not live and (decision == 'join' or (decision == 'wait' and not reserved)) then
  return {'corrupt', 'rule ' .. decision .. ' for ' .. ACTION .. ' on ' .. r.state .. ' needs a live lease'}
end
local behind = #q > 0 and mine ~= 1 -- someone queued earlier is still to be decided
local stuck = not live and class == 'inflight' and r.last_fence ~= r.fence and r.fence_n > 0

if EVICT and (live or reserved or behind) then
  if live then return {'eviction_in_progress', r.fence, r.action} end
  if reserved then return {'eviction_in_progress', '0', 'reserve'} end
  return {'eviction_in_progress', '0', 'queue'}
end

-- The vanished holder's outcome is recorded (settle.lua) before anything
-- is decided on it.
if stuck then return {'stuck', r.fence, r.holder} end

if EVICT and r.end_n > now then
  return {'eviction_not_needed', r.end_ms, int(now)}
end

if decision == 'start' and not behind then
  local fence = int(math.max(now_us, r.fence_n + 1, r.floor_n + 1))
  local until_ms = int(now + LEASE_MS)
  local fields = {'state', IN_FLIGHT, 'fence', fence, 'action', ACTION, 'holder', HOLDER,
                  'until_ms', until_ms, 'started_ms', int(now)}
  local end_n, end_ms = r.end_n, r.end_ms
  if PULL_END and r.end_n > now then
    end_n, end_ms = now, int(now)
    fields[#fields + 1] = 'end_ms'
    fields[#fields + 1] = end_ms
  end
  -- The checks first (the index keys a write below touches are sorted sets
  -- or absent; the team's sequence is claimed last): a refusal leaves
  -- nothing written, and the writes below cannot fail after them.
  local revive = is_tombstone(r.state)
  local bad = nil
  if revive then
    -- Leaving a tombstone (a kill that deletes a paused sandbox): the
    -- record is live again in every index, and no longer expires, in this
    -- same step.
    bad = foreign_indexes(TP, {'expiry', 'tombs'}, nil)
  elseif end_n ~= r.end_n then
    bad = foreign_indexes(TP, {'expiry'}, nil)
  end
  if bad then return bad end
  local seq
  seq, bad = claim_sequence(TP)
  if bad then return bad end
  if revive then
    redis.call('ZADD', TP .. 'expiry', end_n, ID)
    redis.call('ZREM', TP .. 'tombs', ID)
    redis.call('PERSIST', REC)
  elseif end_n ~= r.end_n then
    redis.call('ZADD', TP .. 'expiry', end_n, ID)
  end
  local next_up = leave_queue(fields)
  write_record(REC, r, fields)
  announce(TP, change_line(ID, IN_FLIGHT, r.exec, fence, end_ms, ACTION, HOLDER, until_ms, r.resv, nil),
           next_up and ('c ' .. ID) or nil, now, seq)
  return {'started', fence, int(LEASE_MS), r.exec}
end

if decision == 'wait' or decision == 'start' then
  -- Queue (or keep our place, refreshed), and say when to look again.
  if mine then q[mine].d = now + QUEUE_MS else q[#q + 1] = {h = HOLDER, d = now + QUEUE_MS} end
  write_record(REC, r, {'queue', queue_string(q)})
  -- At most half the place: the waiter re-checks (and refreshes it) well
  -- before it runs out.
  local wake = math.floor(QUEUE_MS / 2)
  if live then wake = math.min(wake, r.until_n - now) end
  if reserved then wake = math.min(wake, r.resv_n - now) end
  if behind then wake = math.min(wake, q[1].d - now) end
  local fence = '0'
  if live then fence = r.fence end
  return {'wait', fence, int(math.max(wake, 1))}
end

-- Decided without starting anything: leave the queue if queued.
local fields = {}
if leave_queue(fields) then
  write_record(REC, r, fields)
  notify(TP, 'c ' .. ID)
elseif #fields > 0 then
  write_record(REC, r, fields)
end
if decision == 'join' then return {'join', r.fence, int(r.until_n - now), r.holder} end
if decision == 'same' or decision == 'absorbed' or decision == 'invalid' then return {decision, r.state} end
return {'corrupt', 'unknown decision ' .. tostring(decision)}
