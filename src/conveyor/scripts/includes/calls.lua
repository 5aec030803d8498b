-- Calls that are safe to send twice. redis-py sends a command again when the
-- connection drops before its reply arrives, and Redis may have run it: a
-- second run must not add a second job or take a second batch of jobs. The
-- caller gives such a call a token (the last ARGV, "" for none); the script
-- records its reply under `call:<token>` and a second run returns that
-- record instead of doing the work again. Before the token, the caller lists
-- tokens whose replies it has received (ARGV: tok 1, ..., tok f, f, token),
-- 16 at a time: their records go, so a caller keeps at most 16 besides its
-- calls in flight; the ttl only bounds what a caller that died leaves behind.

local CALL_TTL_MS = 300000

-- The call's token ("" none).
local function call_token()
  return ARGV[#ARGV]
end

-- The reply recorded by a previous run of this call (decoded), or nil.
local function recorded_reply(base, token)
  if token == '' then
    return nil
  end
  local raw = redis.call('GET', base .. 'call:' .. token)
  return raw and cjson.decode(raw) or nil
end

-- Record `reply` (a table cjson can encode) for this call, and drop the
-- records of the calls the caller has its replies of.
local function record_reply(base, token, reply)
  local n = #ARGV
  local forget = tonumber(ARGV[n - 1])
  if forget > 0 then
    local keys = {}
    for i = n - 1 - forget, n - 2 do
      keys[#keys + 1] = base .. 'call:' .. ARGV[i]
    end
    redis.call('DEL', unpack(keys))
  end
  if token ~= '' then
    redis.call('SET', base .. 'call:' .. token, cjson.encode(reply), 'PX', CALL_TTL_MS)
  end
end
