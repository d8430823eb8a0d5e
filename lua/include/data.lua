-- data.lua — the caller's opaque data in a record, in pieces of at most
-- LISTPACK_VALUE bytes (record.lua) so that the record stays a listpack:
-- `data` holds bytes 1..64, `data:2` bytes 65..128, and so on. A piece
-- shorter than LISTPACK_VALUE is the last; `data` is always there (""
-- for no data). src/ops/list.rs joins the pieces by the same rule.

-- Appends the pieces of `data` to `fields` (name, value pairs for one
-- HSET); returns the number of the first piece not written.
local function put_data(fields, data)
  fields[#fields + 1] = 'data'
  fields[#fields + 1] = string.sub(data, 1, LISTPACK_VALUE)
  local k = 2
  while #data >= (k - 1) * LISTPACK_VALUE + 1 do
    fields[#fields + 1] = 'data:' .. k
    fields[#fields + 1] = string.sub(data, (k - 1) * LISTPACK_VALUE + 1, k * LISTPACK_VALUE)
    k = k + 1
  end
  return k
end

-- Removes the pieces of `key` from number `k` on (an older, longer data's).
local function drop_data_from(key, k)
  while redis.call('HDEL', key, 'data:' .. k) == 1 do k = k + 1 end
end

-- The data of record `key`, its pieces joined.
local function read_data(key)
  local d = redis.call('HGET', key, 'data') or ''
  if #d < LISTPACK_VALUE then return d end
  local parts, k = {d}, 2
  while true do
    local p = redis.call('HGET', key, 'data:' .. k)
    if not p then break end
    parts[k] = p
    if #p < LISTPACK_VALUE then break end
    k = k + 1
  end
  return table.concat(parts)
end
