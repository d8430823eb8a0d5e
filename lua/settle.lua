--[[
  settle.lua — how transition <fence> ended. A joiner calls it on every
  re-check; when the lease has ended without an outcome (its holder died)
  it records `abandoned` and publishes it, atomically, so every waiter
  learns the same answer. Mode "force" is the operator's repair: it also
  ends a live lease (the holder is known dead) by recording `abandoned`.

  Input:
    KEYS[1] record       <ns>:{<team>}:rec:<id>
    KEYS[2] outcome      <ns>:{<team>}:out:<id>:<fence>
    KEYS[3] sequence     <ns>:{<team>}:seq (the team view's sequence, notify.lua)
    ARGV[1] team prefix  "<ns>:{<team>}:"
    ARGV[2] sandbox id
    ARGV[3] fence
    ARGV[4] holder id of the transition, or "" (the operator: any holder)
    ARGV[5] mode: "check" | "force"
    ARGV[6] reason recorded with `abandoned` (e.g. "lease expired")

  Output:
    {"outcome", action, outcome, reason}   it had ended (succeeded | failed |
                                           abandoned); nothing written
    {"abandoned", action, reason}          this call recorded `abandoned`
    {"live", lease_left_ms}                still in flight (mode "check")
    {"unknown"}                            no outcome can be known any more: the
                                           record is gone or moved on and the
                                           outcome's retention ended
    {"corrupt", detail} | {"schema", version}
                                           "corrupt" also when the record shows
                                           <fence> in flight with no action, or
                                           an outcome key for <fence> exists that
                                           the record does not show

  Example:
    redis-cli --eval DIR/settle.lua 'sbx:{t}:rec:s1' 'sbx:{t}:out:s1:1796235699297393' 'sbx:{t}:seq' , \
      'sbx:{t}:' s1 1796235699297393 '' check 'lease expired'
]]

local REC, TP, ID = KEYS[1], ARGV[1], ARGV[2]
local FENCE, HOLDER, MODE, REASON = ARGV[3], ARGV[4], ARGV[5], ARGV[6]

--!generated
--!include errors.lua
--!include clock.lua
--!include record.lua
--!include notify.lua
--!include outcome.lua

local now = clock()
local r, err = load_record(REC)
if err then return err end
local act, outcome, why = recorded_outcome(TP, ID, r, FENCE)
-- The record still shows transition FENCE in flight: an outcome key for it
-- that the record does not show (both are written in one step), or no
-- action, is damage no later call can undo. Nothing is written.
local open = r and r.fence == FENCE and r.last_fence ~= FENCE and class_of(r.state) == 'inflight'
if open and act then
  return {'corrupt', REC .. ': outcome ' .. outcome .. ' of fence ' .. FENCE .. ' recorded but not applied'}
end
if act then return {'outcome', act, outcome, why} end
if open and r.action == '' then
  return {'corrupt', REC .. ': in-flight state ' .. r.state .. ' with no action'}
end
if not r or r.fence ~= FENCE or r.action == '' then return {'unknown'} end
if HOLDER ~= '' and r.holder ~= '' and r.holder ~= HOLDER then return {'unknown'} end
if class_of(r.state) ~= 'inflight' then return {'unknown'} end
if r.holder ~= '' and r.until_n > now and MODE ~= 'force' then return {'live', int(r.until_n - now)} end
local seq, bad = claim_sequence(TP)
if bad then return bad end
record_outcome(TP, ID, r, 'abandoned', REASON, {'holder', '', 'until_ms', ''}, now, seq,
               change_line(ID, r.state, r.exec, r.fence, r.end_ms, r.action, '', '', r.resv, nil))
return {'abandoned', r.action, REASON}
