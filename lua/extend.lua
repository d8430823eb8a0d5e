--[[
  extend.lua — extend the lease of transition <fence> held by <holder> to
  <lease> from now by the server clock (the watchdog's call, or an explicit
  `Transition::extend`). Fenced: refused, writing nothing, unless fence and
  holder match the record's live lease.

  Input:
    KEYS[1] record       <ns>:{<team>}:rec:<id>
    KEYS[2] sequence     <ns>:{<team>}:seq (the team view's sequence, notify.lua)
    ARGV[1] team prefix  "<ns>:{<team>}:"
    ARGV[2] sandbox id
    ARGV[3] fence
    ARGV[4] holder id
    ARGV[5] new lease length, ms

  Output:
    {"extended", lease_ms}
    {"fenced", current_fence_or_empty}    nothing written
    {"corrupt", detail} | {"schema", version}

  Example:
    redis-cli --eval DIR/extend.lua 'sbx:{t}:rec:s1' 'sbx:{t}:seq' , 'sbx:{t}:' s1 1796235699297393 cli/1 30000
]]

local REC, TP, ID = KEYS[1], ARGV[1], ARGV[2]
local FENCE, HOLDER, LEASE_MS = ARGV[3], ARGV[4], tonumber(ARGV[5])

--!generated
--!include errors.lua
--!include clock.lua
--!include record.lua
--!include notify.lua

local now = clock()
local r, err = load_record(REC)
if err then return err end
if not r then return {'fenced', ''} end
if r.fence ~= FENCE or r.holder ~= HOLDER or r.until_n <= now then return {'fenced', r.fence} end
local seq, bad = claim_sequence(TP)
if bad then return bad end
local until_ms = int(now + LEASE_MS)
redis.call('HSET', REC, 'until_ms', until_ms)
-- (A live lease is on an in-flight state: the record does not expire.)
announce(TP, change_line(ID, r.state, r.exec, r.fence, r.end_ms, r.action, r.holder, until_ms, r.resv, nil), nil, now,
         seq)
return {'extended', int(LEASE_MS)}
