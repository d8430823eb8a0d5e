--[[
  finish.lua — end transition <fence> with an outcome, in one atomic step:
  the resulting state (the lifecycle's action table, generated), the lease
  released, the outcome recorded (record + per-fence outcome key) and
  published, the team's indexes updated (finish_body.lua).

  Fenced: only the live lease's holder — fence AND holder match, deadline
  not passed by the server clock — may finish. Anyone else gets "fenced"
  and nothing is written. Retry-safe: if an outcome is already recorded
  for this fence (a retry after a lost reply), it is returned and nothing
  is written, for the whole outcome retention however many transitions
  ran meanwhile.

  Input:
    KEYS[1] record       <ns>:{<team>}:rec:<id>
    KEYS[2] outcome      <ns>:{<team>}:out:<id>:<fence>
    KEYS[3] expiry index <ns>:{<team>}:expiry
    KEYS[4] tombstones   <ns>:{<team>}:tombs
    KEYS[5] sequence     <ns>:{<team>}:seq (the team view's sequence, notify.lua)
    ARGV[1] team prefix  "<ns>:{<team>}:"
    ARGV[2] sandbox id
    ARGV[3] fence of the transition
    ARGV[4] holder id of the transition
    ARGV[5] action of the transition (e.g. "pause")
    ARGV[6] outcome: "succeeded" | "failed"
    ARGV[7] reason ("" for success)

  Output:
    {"finished", state}                   recorded, applied, published; the new state
    {"recorded", outcome, reason}         an outcome was already recorded for this fence
    {"fenced", current_fence}             not the live holder; nothing written
    {"not_found"} | {"corrupt", detail} | {"schema", version} | {"lifecycle", digest}

  Example:
    redis-cli --eval DIR/finish.lua 'sbx:{t}:rec:s1' 'sbx:{t}:out:s1:1796235699297393' 'sbx:{t}:expiry' \
      'sbx:{t}:tombs' 'sbx:{t}:seq' , 'sbx:{t}:' s1 1796235699297393 cli/1 pause succeeded ''
]]

local REC, TP, ID = KEYS[1], ARGV[1], ARGV[2]
local FENCE, HOLDER, ACT, OUTCOME, REASON = ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7]

--!generated
--!include errors.lua
--!include clock.lua
--!include record.lua
--!include notify.lua
--!include outcome.lua
--!include indexes.lua
--!include finish_body.lua

local now = clock()
local r, err = load_record(REC)
if err then return err end
-- The live holder (the common case) has no outcome to look up: an outcome
-- is recorded only as the lease is released.
local holds = r and r.fence == FENCE and r.holder == HOLDER and r.until_n > now and r.action == ACT
if not holds then
  local act, outcome, why = recorded_outcome(TP, ID, r, FENCE)
  if act then return {'recorded', outcome, why} end
  if not r then return {'not_found'} end
  return {'fenced', r.fence}
end
if r.lc ~= LIFECYCLE then return {'lifecycle', r.lc} end
local state, refused = finish_transition(TP, ID, r, OUTCOME, REASON, now)
if refused then return refused end
return {'finished', state}
