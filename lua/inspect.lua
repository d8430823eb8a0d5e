--[[
  inspect.lua — read a sandbox record (with its lease, queue and
  reservation, which are fields of it) in one atomic step. Read-only. The
  record is validated like every script does (record.lua); the client
  checks the same rules again when it parses the reply.

  Input:
    KEYS[1] record       <ns>:{<team>}:rec:<id>
    ARGV[1] team prefix  "<ns>:{<team>}:"
    ARGV[2] sandbox id

  Output:
    {"record", now_ms, record_pttl, v, lc, state, exec, end_ms, fence, action, holder,
     until_ms, started_ms, last_fence, last_action, last_outcome, last_reason, queue,
     resv, data}                         record_pttl -1: the record does not expire;
                                         data: its pieces joined (data.lua)
    {"not_found"}
    {"corrupt", detail} | {"schema", version}

  Example:
    redis-cli --eval DIR/inspect.lua 'sbx:{t}:rec:s1' , 'sbx:{t}:' s1
]]

local REC, TP, ID = KEYS[1], ARGV[1], ARGV[2]

--!generated
--!include errors.lua
--!include clock.lua
--!include record.lua
--!include data.lua
--!include record_reply.lua

local now = clock()
local r, err = load_record(REC)
if err then return err end
if not r then return {'not_found'} end
local out = {'record', int(now)}
record_reply(out, REC, r)
return out
