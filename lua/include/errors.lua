-- errors.lua — what to make of a command run with redis.pcall that
-- failed. WRONGTYPE means a key of ours holds another type: corrupt data,
-- refused as such (the caller returns the refusal before any write).
-- Anything else — READONLY from a demoted primary, LOADING, NOPERM from an
-- ACL, OOM — is Redis's own answer: it is raised again unchanged, as
-- redis.call would have, so the client sees it with its class (retryable,
-- permission) instead of a false "corrupt".

local function wrongtype(res, key, want)
  if string.find(res.err, 'WRONGTYPE', 1, true) then
    return {'corrupt', key .. ' is not a ' .. want}
  end
  error(res)
end
