--[[
  unreserve.lua — give back a reservation before its deadline (the create
  or resume it was for did not happen). Only the reservation's own token
  releases it; a reservation already consumed by `register`, expired or
  replaced is left alone. Waiters for the id and for a free place of the
  team are told.

  Input:
    KEYS[1] record       <ns>:{<team>}:rec:<id>
    KEYS[2..3]           <ns>:{<team>}:resv, :team
    KEYS[4] sequence     <ns>:{<team>}:seq (the team view's sequence, notify.lua)
    ARGV[1] team prefix  "<ns>:{<team>}:"
    ARGV[2] sandbox id
    ARGV[3] token

  Output:
    {"released"} | {"none"}
    {"corrupt", detail}        an index of another type, or the team's
                               sequence damaged; nothing written

  Example:
    redis-cli --eval DIR/unreserve.lua 'sbx:{t}:rec:s1' 'sbx:{t}:resv' 'sbx:{t}:team' 'sbx:{t}:seq' , 'sbx:{t}:' s1 tok1
]]

local REC, TP, ID = KEYS[1], ARGV[1], ARGV[2]
local TOKEN = ARGV[3]

--!generated
--!include errors.lua
--!include notify.lua
--!include indexes.lua

local bad = foreign_indexes(TP, {'resv', 'team'}, nil)
if bad then return bad end
local held = redis.call('HGET', TP .. 'team', 'tok:' .. ID)
if held ~= TOKEN then return {'none'} end
bad = sequence_refusal(TP)
if bad then return bad end
redis.call('ZREM', TP .. 'resv', ID)
redis.call('HDEL', TP .. 'team', 'tok:' .. ID)
local resv = redis.pcall('HGET', REC, 'resv')
if type(resv) == 'string' and string.sub(resv, 1, #TOKEN + 1) == TOKEN .. '@' then
  redis.call('HSET', REC, 'resv', '')
end
announce(TP, 'r ' .. ID .. ' -', 'c ' .. ID)
return {'released'}
