-- record_reply.lua — a validated record as the client reads it: its PTTL,
-- every field of record.lua's FIELDS in that order, then `data` (its pieces
-- joined, data.lua; read here unless the caller passes it).

local function record_reply(out, key, r, data)
  out[#out + 1] = int(redis.call('PTTL', key))
  for _, f in ipairs(FIELDS) do out[#out + 1] = r[f] end
  out[#out + 1] = data or read_data(key)
end
