-- notify.lua — wake-ups on the team's channel <tp>notify, published in the
-- same atomic step as the change they announce (PUBLISH, or SPUBLISH on
-- Redis Cluster, where the channel is in the team's slot and the message
-- never crosses the cluster bus):
--   "o <id> <fence> <action> <outcome> <reason>"   a transition ended
--   "c <id>"                                       the record changed for its
--                                                  waiters (queue head, resume,
--                                                  removal, reservation)
--   "c"                                            the team's places changed

local function notify(message)
  redis.call(PUBLISH, TP .. 'notify', message)
end
