-- Calls that are safe to send twice. redis-py sends a command again when the
-- connection drops before its reply arrives, and Redis may have run it: a
-- second run must not add a second job or take a second batch of jobs. The
-- caller gives such a call a token (the last ARGV, "" for none),
-- `<client>:<n>`; the script records its reply as field `n` of the client's
-- hash `call:<client>`, and a second run returns that record instead of doing
-- the work again. Before the token, the caller lists tokens whose replies it
-- has received (ARGV: tok 1, ..., tok f, f, token), 16 at a time: their
-- fields go, so a client's hash keeps at most 16 besides its calls in flight.
-- The hash expires CALL_TTL_MS after the client's first call or its last trim: that only
-- bounds what a client that died leaves behind. (One small hash per client,
-- not a key per call: an HSET into it costs a third of a SET with an expiry,
-- and this runs for every add.)

local CALL_TTL_MS = 300000

-- The call's token ("" none).
local function call_token()
  return ARGV[#ARGV]
end

-- The hash and field that record the call with `token`.
local function call_record(base, token)
  local client, n = string.match(token, '^(.*):([^:]*)$')
  if not client then
    client, n = token, '0'
  end
  return base .. 'call:' .. client, n
end

-- The reply recorded by a previous run of this call (decoded), or nil.
local function recorded_reply(base, token)
  if token == '' then
    return nil
  end
  local key, field = call_record(base, token)
  local raw = redis.call('HGET', key, field)
  return raw and cjson.decode(raw) or nil
end

-- Record `reply` (a table cjson can encode; or `encoded`, its JSON made by the
-- caller) for this call, and drop the records of the calls the caller has its
-- replies of.
local function record_reply(base, token, reply, encoded)
  local n = #ARGV
  local forget = tonumber(ARGV[n - 1])
  local trimmed = {}
  if forget > 0 then
    local fields = {}  -- hash -> its fields to drop (one client's, in practice)
    for i = n - 1 - forget, n - 2 do
      local key, field = call_record(base, ARGV[i])
      fields[key] = fields[key] or {}
      table.insert(fields[key], field)
    end
    for key, list in pairs(fields) do
      redis.call('HDEL', key, unpack(list))
      trimmed[key] = true
    end
  end
  if token ~= '' then
    local key, field = call_record(base, token)
    redis.call('HSET', key, field, encoded or cjson.encode(reply))
    -- The ttl is set by a client's first call and renewed by each trim (every
    -- 16 answered calls): no extra command per call.
    if trimmed[key] or field == '0' then
      redis.call('PEXPIRE', key, CALL_TTL_MS)
    end
  end
end
