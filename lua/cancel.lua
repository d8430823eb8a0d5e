--[[
  cancel.lua — undo what a begin call left behind when nobody received its
  answer (the caller's future was dropped: an HTTP handler whose client went
  away, a wait that timed out). Matched by the call's holder id, since the
  reply — and with it the fence — may never have arrived:
    * if the holder holds the record's transition (live, or expired with no
      outcome yet), the reply names it ("holds"), and the client fails it
      with finish.lua (whose KEYS name its outcome key) and the reason
      "cancelled", exactly as `fail` would;
    * else if the holder is queued (waiting to re-decide), it leaves the
      queue, and the next waiter is told if it is now at the head;
    * else nothing is written.

  Input:
    KEYS[1] record       <ns>:{<team>}:rec:<id>
    ARGV[1] team prefix  "<ns>:{<team>}:"
    ARGV[2] sandbox id
    ARGV[3] holder id

  Output:
    {"holds", fence, action}   the holder holds this transition: fail it
    {"dequeued"}               the holder left the queue
    {"none"}                   nothing of the holder's was there
    {"corrupt", detail} | {"schema", version} | {"lifecycle", digest}

  Example:
    redis-cli --eval DIR/cancel.lua 'sbx:{t}:rec:s1' , 'sbx:{t}:' s1 cli/1
]]

local REC, TP, ID = KEYS[1], ARGV[1], ARGV[2]
local HOLDER = ARGV[3]

--!generated
--!include errors.lua
--!include clock.lua
--!include record.lua
--!include queue.lua
--!include notify.lua

local now = clock()
local r, err = load_record(REC)
if err then return err end
if not r then return {'none'} end
if r.holder == HOLDER and r.last_fence ~= r.fence then return {'holds', r.fence, r.action} end
local q = queue_live(r, now)
local at = queue_find(q, HOLDER)
if not at then return {'none'} end
table.remove(q, at)
local fields = {}
queue_put(q, fields)
if #fields > 0 then write_record(REC, r, fields) end
if at == 1 and #q > 0 then notify(TP, 'c ' .. ID) end
return {'dequeued'}
