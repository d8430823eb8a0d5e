--[[
  reserve.lua — hold one place of the team's limit, and the id, for a slow
  create or resume (creating a VM takes seconds): `register` of the id
  consumes the reservation, `unreserve` (or its deadline) frees it. While a
  reservation on an existing (paused) record is live, a begin on that record
  waits for it, so that a delete racing a resume is decided after the
  resume's register.

  For a create (ARGV[6] "create") the id must be free: any record refuses
  ("exists"). For a resume ("resume") the record must be a resumable
  tombstone: none is "not_found", any other state "exists". while a transition holds the lease or the id is already
  reserved ("busy"), and when the team's places are all taken
  ("team_limit"). Expired reservations do not count, and are swept once
  every check has passed.

  Input:
    KEYS[1] record       <ns>:{<team>}:rec:<id>
    KEYS[2..4]           <ns>:{<team>}:expiry, :resv, :team
    KEYS[5] sequence     <ns>:{<team>}:seq (the team view's sequence, notify.lua)
    ARGV[1] team prefix  "<ns>:{<team>}:"
    ARGV[2] sandbox id
    ARGV[3] token (unique per reservation; no spaces or '@')
    ARGV[4] how long it holds, ms
    ARGV[5] default team limit, or "" for none
    ARGV[6] "create" | "resume"

  Output:
    {"reserved", deadline_ms, taken, limit_or_empty}
    {"exists", exec, state} | {"not_found"} | {"busy", fence, action}
    {"team_limit", taken, limit}
    {"corrupt", detail} | {"schema", version} | {"lifecycle", digest}

  Example:
    redis-cli --eval DIR/reserve.lua 'sbx:{t}:rec:s1' 'sbx:{t}:expiry' 'sbx:{t}:resv' 'sbx:{t}:team' 'sbx:{t}:seq' , \
      'sbx:{t}:' s1 tok1 30000 '' create
]]

local REC, TP, ID = KEYS[1], ARGV[1], ARGV[2]
local TOKEN, TTL_MS, DEFAULT_LIMIT, MODE = ARGV[3], tonumber(ARGV[4]), ARGV[5], ARGV[6]

--!generated
--!include errors.lua
--!include clock.lua
--!include record.lua
--!include indexes.lua
--!include notify.lua

local now = clock()
local r, err = load_record(REC)
if err then return err end
err = foreign_indexes(TP, {'expiry', 'resv', 'team'}, nil)
if err then return err end
if r and MODE == 'create' then return {'exists', r.exec, r.state} end
if not r and MODE == 'resume' then return {'not_found'} end
if r then
  if r.lc ~= LIFECYCLE then return {'lifecycle', r.lc} end
  if r.holder ~= '' and r.until_n > now then return {'busy', r.fence, r.action} end
  if class_of(r.state) ~= 'resumable' then return {'exists', r.exec, r.state} end
end
local held = redis.call('ZSCORE', TP .. 'resv', ID)
if held and tonumber(held) > now then return {'busy', '0', 'reserve'} end
local limit = team_limit(redis.call('HGET', TP .. 'team', 'limit'), DEFAULT_LIMIT)
local taken = places_taken(TP, now, nil)
if limit and taken + 1 > limit then return {'team_limit', int(taken), int(limit)} end
err = sequence_refusal(TP)
if err then return err end
-- Every check has passed: the writes begin (expired reservations first;
-- a refusal above wrote nothing).
sweep_reservations(TP, now)
local deadline = now + TTL_MS
redis.call('ZADD', TP .. 'resv', deadline, ID)
redis.call('HSET', TP .. 'team', 'tok:' .. ID, TOKEN)
if r then redis.call('HSET', REC, 'resv', TOKEN .. '@' .. int(deadline)) end
announce(TP, 'r ' .. ID .. ' ' .. int(deadline), nil, now)
local shown = ''
if limit then shown = int(limit) end
return {'reserved', int(deadline), int(taken + 1), shown}
