-- queue.lua — fair waiting: the FIFO of requests that wait to re-decide.
--
-- A request that must wait (another transition is in flight, or an earlier
-- waiter is still to be decided) is queued in the record's `queue` field as
-- "holder@deadline". While anyone is queued, only the head may start a
-- transition; every later request that would start waits behind it. Each
-- re-check refreshes the waiter's deadline; an entry whose deadline passed
-- (its waiter died) no longer counts, so a dead waiter blocks nobody beyond
-- its own place's lifetime. Decisions that start nothing (join, same,
-- absorbed, invalid) are never held back.

-- The live entries of r.q (deadline after `now`), oldest first.
local function queue_live(r, now)
  local q = {}
  if r.q then
    for _, e in ipairs(r.q) do
      if e.d > now then q[#q + 1] = e end
    end
  end
  return q
end

local function queue_find(q, holder)
  for i, e in ipairs(q) do
    if e.h == holder then return i end
  end
  return nil
end

local function queue_string(q)
  local words = {}
  for i, e in ipairs(q) do words[i] = e.h .. '@' .. int(e.d) end
  return table.concat(words, ' ')
end

-- The record's `queue` field as q leaves it, for the record's one write
-- (record.lua's write_record): the waiters while anyone is queued, else
-- false (the field is removed), so that a waiter who leaves an otherwise
-- empty queue leaves the record as it found it.
local function queue_put(q, fields)
  fields[#fields + 1] = 'queue'
  fields[#fields + 1] = #q > 0 and queue_string(q) or false
end
