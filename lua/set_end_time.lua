--[[
  set_end_time.lua — move a sandbox's end time, updating the expiry index in
  the same step. Tombstones (resumable or final states) keep theirs.

  Input:
    KEYS[1] record       <ns>:{<team>}:rec:<id>
    KEYS[2] expiry index <ns>:{<team>}:expiry
    KEYS[3] sequence     <ns>:{<team>}:seq (the team view's sequence, notify.lua)
    ARGV[1] team prefix  "<ns>:{<team>}:"
    ARGV[2] sandbox id
    ARGV[3] end time mode: "at" (ARGV[4] is ms since the Unix epoch) |
            "in" (ARGV[4] ms after the server's now)
    ARGV[4] end time value, ms
    ARGV[5] expected execution id, or "" for any

  Output:
    {"ok", previous_end_ms, end_ms}
    {"not_found"}
    {"exec_mismatch", exec}
    {"settled", state}        a tombstone: nothing written
    {"corrupt", detail} | {"schema", version}

  Example:
    redis-cli --eval DIR/set_end_time.lua 'sbx:{t}:rec:s1' 'sbx:{t}:expiry' 'sbx:{t}:seq' , 'sbx:{t}:' s1 in 60000 ''
]]

local REC, TP, ID = KEYS[1], ARGV[1], ARGV[2]
local MODE, VALUE, EXPECT = ARGV[3], ARGV[4], ARGV[5]

--!generated
--!include errors.lua
--!include clock.lua
--!include record.lua
--!include indexes.lua
--!include notify.lua

local now = clock()
local r, err = load_record(REC)
if err then return err end
err = foreign_indexes(TP, {'expiry'}, nil)
if err then return err end
if not r then return {'not_found'} end
if EXPECT ~= '' and r.exec ~= EXPECT then return {'exec_mismatch', r.exec} end
if is_tombstone(r.state) then return {'settled', r.state} end
local seq
seq, err = claim_sequence(TP)
if err then return err end
local end_n = tonumber(VALUE)
if MODE == 'in' then end_n = now + end_n end
local end_ms = int(end_n)
redis.call('HSET', REC, 'end_ms', end_ms)
redis.call('ZADD', TP .. 'expiry', end_n, ID)
-- (Not a tombstone: the record does not expire.)
announce(TP, change_line(ID, r.state, r.exec, r.fence, end_ms, r.action, r.holder, r.until_ms, r.resv, nil), nil, now,
         seq)
return {'ok', r.end_ms, int(end_n)}
